#!/usr/bin/python3
"""An RTSP server for the live tests (GStreamer's gst-rtsp-server through PyGObject).

Usage: rtsp_server.py PORT VIDEO.mp4 [--loop]

Serves VIDEO's H.264 stream, copied (not re-encoded), at rtsp://127.0.0.1:PORT/stream over
TCP and UDP transport, at the file's own rate, from its first frame for every client.
Prints "ready" on stdout once it listens; runs until killed. Debian packages:
gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-good (qtdemux, rtph264pay),
gstreamer1.0-plugins-bad (h264parse); run it with Debian's /usr/bin/python3.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main() -> None:
    port, video = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    location = video.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! qtdemux ! h264parse '
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    # One pipeline per client: each starts at the file's first frame.
    factory.set_shared(False)
    factory.set_protocols(
        GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP
    )
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
