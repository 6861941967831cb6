//! Live inputs (`fgclip watch`): anything FFmpeg's libraries open as an input — `rtsp://`,
//! `http(s)://`, `udp://`, `srt://` where the build has it, a device, or a file — decoded
//! frame after frame in stream order with each frame's stream time. A file can be played at
//! its own rate (`realtime`), as a camera would deliver it. Packets the decoder rejects
//! (damaged streams) are skipped and counted; reads time out instead of blocking forever.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ffmpeg::media::Type;
use ffmpeg_next as ffmpeg;

use super::video::{RgbFrame, ToRgb};

/// How a live input is opened.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Deliver frames no faster than their timestamps (files played as cameras).
    pub realtime: bool,
    /// RTSP transport: "tcp" or "udp" (FFmpeg's `rtsp_transport`).
    pub rtsp_transport: Option<String>,
    /// How long a connection or a read may wait for data before it fails.
    pub timeout: Duration,
    /// Set from elsewhere (a signal, a shutdown): a blocked connect or read returns at once.
    pub stop: Option<&'static AtomicBool>,
    /// Also deliver every frame scaled into this width × height in YUV 4:2:0 (event clips).
    pub clip_size: Option<(u32, u32)>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            realtime: false,
            rtsp_transport: None,
            timeout: Duration::from_secs(10),
            stop: None,
            clip_size: None,
        }
    }
}

/// A decoded frame and where it is in the stream.
pub struct LiveFrame {
    /// RGB at the stream's size; `index` counts the frames delivered from 0.
    pub frame: RgbFrame,
    /// Seconds since the stream's first frame, from its timestamps (its frame count and
    /// rate when it has none).
    pub stream_s: f64,
}

/// A decoded frame of [`LiveSource::next`]: RGB only where asked for (converting every
/// frame of a 30 fps camera when one in 16 is scored would cost more than decoding).
pub struct LiveDecoded {
    /// Counts the frames delivered from 0.
    pub index: u64,
    pub stream_s: f64,
    pub rgb: Option<RgbFrame>,
    /// At [`LiveOptions::clip_size`], YUV 4:2:0.
    pub clip: Option<ffmpeg::frame::Video>,
}

/// What a live input has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LiveStats {
    pub frames: u64,
    pub packets: u64,
    /// Packets the demuxer flagged as damaged or the decoder rejected (damaged data, or
    /// a stream joined before its next key frame), skipped.
    pub packets_skipped: u64,
    /// Frames the decoder delivered with damage concealed (FFmpeg's corrupt flag or decode
    /// error flags).
    pub frames_corrupt: u64,
}

/// An open live input.
pub struct LiveSource {
    name: String,
    input: ffmpeg::format::context::Input,
    stream: usize,
    decoder: ffmpeg::decoder::Video,
    to_rgb: ToRgb,
    time_base: f64,
    fps: f64,
    /// The first timestamp seen and the stream time it stands for (frames before it, with
    /// none, count at the frame rate).
    first_pts: Option<(i64, f64)>,
    started: Option<Instant>,
    realtime: bool,
    eof: bool,
    clip: Option<(u32, u32, Option<ffmpeg::software::scaling::Context>)>,
    pub stats: LiveStats,
}

/// The URL schemes `watch` takes (a path without one is a file or a device).
pub const SCHEMES: [&str; 7] = ["rtsp", "rtsps", "http", "https", "udp", "srt", "file"];

/// `source` is a URL of a scheme FFmpeg opens here, or an existing path; a clear error
/// otherwise (an unknown scheme, a missing file).
pub fn check_source(source: &str) -> Result<()> {
    if let Some((scheme, _)) = source.split_once("://") {
        if !SCHEMES.contains(&scheme) {
            bail!(
                "{source}: unknown scheme `{scheme}://` (one of {})",
                SCHEMES.join(", ")
            );
        }
        return Ok(());
    }
    if !std::path::Path::new(source).exists() {
        bail!("{source}: no such file or device (a URL needs its scheme, e.g. rtsp://)");
    }
    Ok(())
}

impl LiveSource {
    /// Opens `source` (connecting, for a network input; fails after `options.timeout`).
    pub fn open(source: &str, options: &LiveOptions) -> Result<Self> {
        super::video::init();
        check_source(source)?;
        let mut dict = ffmpeg::Dictionary::new();
        let micros = options.timeout.as_micros().to_string();
        // Read and connect time-outs, by the names the protocols know them (`timeout`:
        // udp's, tcp's, http's and rtsp's own; `rw_timeout`: any protocol's reads).
        dict.set("rw_timeout", &micros);
        dict.set("timeout", &micros);
        if source.starts_with("rtsp")
            && let Some(t) = &options.rtsp_transport
        {
            dict.set("rtsp_transport", t);
        }
        let stop = options.stop;
        let input = ffmpeg::format::input_with_interrupt_and_dictionary(
            &source,
            move || stop.is_some_and(|s| s.load(Ordering::Relaxed)),
            dict,
        )
        .with_context(|| format!("{source}: cannot open the input"))?;
        let stream = input
            .streams()
            .best(Type::Video)
            .with_context(|| format!("{source}: no video stream"))?;
        let rate =
            |r: ffmpeg::Rational| (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r));
        let fps = rate(stream.avg_frame_rate())
            .or_else(|| rate(stream.rate()))
            .unwrap_or(25.0);
        let time_base = rate(stream.time_base()).unwrap_or(1.0 / 90_000.0);
        let index = stream.index();
        let ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .with_context(|| format!("{source}: unsupported codec parameters"))?;
        let decoder = ctx
            .decoder()
            .video()
            .with_context(|| format!("{source}: cannot open a decoder"))?;
        Ok(Self {
            name: source.to_string(),
            input,
            stream: index,
            decoder,
            to_rgb: ToRgb::default(),
            time_base,
            fps,
            first_pts: None,
            started: None,
            realtime: options.realtime,
            eof: false,
            clip: options.clip_size.map(|(w, h)| (w, h, None)),
            stats: LiveStats::default(),
        })
    }

    /// Deliver every frame also scaled to `size` in YUV 4:2:0 from now on (None: no more).
    pub fn set_clip_size(&mut self, size: Option<(u32, u32)>) {
        self.clip = size.map(|(w, h)| (w, h, None));
    }

    /// The stream's frame size from its header (width, height).
    pub fn size(&self) -> (u32, u32) {
        (self.decoder.width(), self.decoder.height())
    }

    /// The stream's frame rate (its header's, else 25).
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// The next frame in RGB; None at the end of the stream (a file's end, a closed
    /// connection).
    pub fn next_frame(&mut self) -> Result<Option<LiveFrame>> {
        Ok(self.next(|_| true)?.and_then(|d| {
            Some(LiveFrame {
                frame: d.rgb?,
                stream_s: d.stream_s,
            })
        }))
    }

    /// The next frame, converted to RGB where `rgb(index)` says so.
    pub fn next(&mut self, rgb: impl Fn(u64) -> bool) -> Result<Option<LiveDecoded>> {
        let mut decoded = ffmpeg::frame::Video::empty();
        loop {
            if self.decoder.receive_frame(&mut decoded).is_ok() {
                return self.deliver(&decoded, rgb).map(Some);
            }
            if self.eof {
                return Ok(None);
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => {
                    self.eof = true;
                    // Flush the frames the decoder still holds.
                    let _ = self.decoder.send_eof();
                    continue;
                }
                // A damaged packet in the container: skipped and counted.
                Err(ffmpeg::Error::InvalidData) => {
                    self.stats.packets_skipped += 1;
                    continue;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("{}: reading the stream", self.name));
                }
            }
            if packet.stream() != self.stream {
                continue;
            }
            self.stats.packets += 1;
            // The demuxer flags a packet it knows is damaged (an MPEG-TS continuity-counter
            // break, a failed CRC): skipped, not decoded into garbage.
            if packet.is_corrupt() {
                self.stats.packets_skipped += 1;
                continue;
            }
            if self.decoder.send_packet(&packet).is_err() {
                self.stats.packets_skipped += 1;
            }
        }
    }

    fn deliver(
        &mut self,
        decoded: &ffmpeg::frame::Video,
        rgb: impl Fn(u64) -> bool,
    ) -> Result<LiveDecoded> {
        let n = self.stats.frames;
        self.stats.frames += 1;
        // SAFETY: reading a plain field of the frame FFmpeg just filled.
        let error_flags = unsafe { (*decoded.as_ptr()).decode_error_flags };
        if decoded.is_corrupt() || error_flags != 0 {
            self.stats.frames_corrupt += 1;
        }
        let stream_s = match decoded.timestamp().or(decoded.pts()) {
            Some(pts) => {
                let fps = self.fps;
                let (first, base) = *self.first_pts.get_or_insert((pts, n as f64 / fps));
                base + (pts - first) as f64 * self.time_base
            }
            None => n as f64 / self.fps,
        };
        if self.realtime {
            let started = *self.started.get_or_insert_with(Instant::now);
            let due = started + Duration::from_secs_f64(stream_s.max(0.0));
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let frame = if rgb(n) {
            Some(self.to_rgb.convert(decoded, n, &self.name)?)
        } else {
            None
        };
        let clip = match self.clip.as_mut() {
            Some((w, h, ctx)) => {
                use ffmpeg::format::Pixel;
                use ffmpeg::software::scaling::{Context, Flags};
                let (fmt, fw, fh) = (decoded.format(), decoded.width(), decoded.height());
                let fits = ctx.as_ref().is_some_and(|c| {
                    let i = c.input();
                    i.format == fmt && i.width == fw && i.height == fh
                });
                if !fits {
                    *ctx = Some(
                        Context::get(fmt, fw, fh, Pixel::YUV420P, *w, *h, Flags::BILINEAR)
                            .with_context(|| format!("{}: cannot scale {fmt:?}", self.name))?,
                    );
                }
                let mut out = ffmpeg::frame::Video::empty();
                if let Some(c) = ctx.as_mut() {
                    c.run(decoded, &mut out)
                        .with_context(|| format!("{}: frame {n}: scaling failed", self.name))?;
                }
                Some(out)
            }
            None => None,
        };
        Ok(LiveDecoded {
            index: n,
            stream_s,
            rgb: frame,
            clip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/videos/testsrc_h264.mp4"
    );

    /// A file as a live input: every frame once, in order, its stream time its number over
    /// the rate (30 fps), the pixels those of frame-exact reading.
    #[test]
    fn a_file_plays_every_frame_in_stream_order() -> Result<()> {
        let mut live = LiveSource::open(VIDEO, &LiveOptions::default())?;
        assert_eq!(live.fps(), 30.0);
        let mut times = Vec::new();
        let mut first = None;
        while let Some(f) = live.next_frame()? {
            if f.frame.index == 45 {
                first = Some(f.frame.data.clone());
            }
            times.push(f.stream_s);
        }
        assert_eq!(times.len(), 360);
        for (k, t) in times.iter().enumerate() {
            assert!((t - k as f64 / 30.0).abs() < 1e-9, "frame {k} at {t}");
        }
        assert_eq!(live.stats.frames, 360);
        assert_eq!(live.stats.packets_skipped, 0);
        let mut reader = super::super::video::VideoReader::open(std::path::Path::new(VIDEO))?;
        let mut want = None;
        reader.read_frames(&[45], |f| {
            want = Some(f.data);
            Ok(())
        })?;
        assert!(first.is_some() && first == want);
        Ok(())
    }

    #[test]
    fn bad_sources_are_clear_errors() {
        let e = format!(
            "{:#}",
            check_source("ftp://cam/1")
                .err()
                .map_or(String::new(), |e| e.to_string())
        );
        assert!(e.contains("unknown scheme `ftp://`"), "{e}");
        let e = check_source("/no/such/cam.mp4")
            .err()
            .map_or(String::new(), |e| e.to_string());
        assert!(e.contains("no such file"), "{e}");
        assert!(check_source("rtsp://127.0.0.1:8554/cam").is_ok());
        let e = LiveSource::open("/dev/null", &LiveOptions::default())
            .err()
            .map_or(String::new(), |e| format!("{e:#}"));
        assert!(e.contains("/dev/null"), "{e}");
    }
}
