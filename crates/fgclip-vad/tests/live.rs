//! Live inputs against real servers on loopback: Debian's `ffmpeg` CLI publishing a fixture
//! video at its own rate (`-re`) as MPEG-TS over UDP and as an HTTP stream (`-listen 1`).
//! The H.264 stream is copied, so every frame received must equal the file's own frame.
//! Times asserted are stream timestamps, never wall-clock.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::loopback::{free_tcp_port, free_udp_port, which};
use fgclip_vad::data::live::{LiveOptions, LiveSource};
use fgclip_vad::data::video::VideoReader;

fn video() -> std::path::PathBuf {
    common::fixtures().join("videos/testsrc_h264.mp4")
}

/// `ffmpeg` publishing the first 2 s of the fixture to `url` at its own rate.
fn publish(url: &str, extra: &[&str]) -> Child {
    Command::new(which("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(video())
        .args(["-t", "2", "-an", "-c:v", "copy", "-f", "mpegts"])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting ffmpeg: {e}"))
}

/// Reads until the stream ends or falls silent; (frame index in the file, stream time).
fn receive(live: &mut LiveSource) -> Vec<(Vec<u8>, f64)> {
    let mut got = Vec::new();
    while let Ok(Some(f)) = live.next_frame() {
        got.push((f.frame.data, f.stream_s));
    }
    got
}

/// The frames received are consecutive frames of the file, with stream times 1/30 s apart.
fn check_frames(got: &[(Vec<u8>, f64)], what: &str) {
    assert!(
        got.len() >= 50,
        "{what}: {} frames of 60 received",
        got.len()
    );
    let mut reader = VideoReader::open(&video()).unwrap();
    // `-t 2` with the stream copied cuts at packets: a few frames past 60 may come.
    let wanted: Vec<u64> = (0..90).collect();
    let mut file = Vec::new();
    reader
        .read_frames(&wanted, |f| {
            file.push(f.data);
            Ok(())
        })
        .unwrap();
    // The first frame received is some frame k of the file; the rest follow it.
    let k = file
        .iter()
        .position(|f| *f == got[0].0)
        .unwrap_or_else(|| panic!("{what}: the first frame received is no frame of the file"));
    // Past the 2 s cut (stream copy cuts at packets) the last frames lack the frames they
    // refer to, and some are dropped: the first 60 frames are checked.
    assert!(got.len() <= 90 - k, "{what}: more frames than sent");
    for (i, (data, t)) in got.iter().enumerate().take(60 - k.min(60)) {
        assert!(
            *data == file[k + i],
            "{what}: frame {i} differs from the file's {}",
            k + i
        );
        let dt = t - got[0].1;
        assert!(
            (dt - i as f64 / 30.0).abs() < 1e-3,
            "{what}: frame {i} at {dt} s"
        );
    }
}

#[test]
fn udp_mpeg_ts_from_the_ffmpeg_cli() {
    let port = free_udp_port();
    let url = format!("udp://127.0.0.1:{port}");
    let options = LiveOptions {
        timeout: Duration::from_secs(3),
        ..LiveOptions::default()
    };
    // The listener first: UDP keeps nothing for a reader that is not there yet.
    let reader = std::thread::spawn({
        let url = url.clone();
        move || {
            let mut live = LiveSource::open(&url, &options).map_err(|e| format!("{e:#}"))?;
            Ok::<_, String>((receive(&mut live), live.stats))
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut sender = publish(&format!("{url}?pkt_size=1316"), &[]);
    let (got, stats) = reader.join().unwrap().unwrap();
    let _ = sender.wait();
    check_frames(&got, "udp");
    assert_eq!(stats.frames as usize, got.len());
}

#[test]
fn http_stream_from_the_ffmpeg_cli() {
    let port = free_tcp_port();
    let url = format!("http://127.0.0.1:{port}/cam");
    let mut server = publish(&url, &["-listen", "1"]);
    let options = LiveOptions {
        timeout: Duration::from_secs(5),
        ..LiveOptions::default()
    };
    // The server needs a moment to listen: retry the connection briefly.
    let mut live = None;
    for _ in 0..50 {
        match LiveSource::open(&url, &options) {
            Ok(l) => {
                live = Some(l);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let mut live = live.expect("could not connect to ffmpeg's HTTP server");
    let got = receive(&mut live);
    let _ = server.wait();
    check_frames(&got, "http");
    // The server closed the stream: the end, not an error.
    assert!(live.next_frame().is_ok_and(|f| f.is_none()));
}

#[test]
fn an_unreachable_source_fails_within_its_timeout() {
    let options = LiveOptions {
        timeout: Duration::from_secs(1),
        ..LiveOptions::default()
    };
    let port = free_tcp_port();
    let e = LiveSource::open(&format!("http://127.0.0.1:{port}/none"), &options)
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(e.contains("cannot open the input"), "{e}");
}
