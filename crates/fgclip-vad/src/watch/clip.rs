//! Event clips: the frames of a live source around an event, encoded with FFmpeg's H.264
//! encoder (`data/encode.rs`) into a fragmented MP4, so a clip cut short by a crash still
//! plays up to its last fragment. Frames come scaled to the
//! clip size by the decoder (`LiveOptions::clip_size`); a ring of the last seconds gives the
//! pre-roll.

use std::collections::VecDeque;
use std::path::Path;

use anyhow::{Context, Result};
use ffmpeg_next::frame;

use crate::data::encode::{Codec, EncodeOptions, VideoWriter};

/// Clip frame size for a stream of `width` × `height`: at most `max_width` wide, the aspect
/// kept, both even (YUV 4:2:0).
pub fn clip_size(width: u32, height: u32, max_width: u32) -> (u32, u32) {
    let w = width.min(max_width.max(16));
    let h = (u64::from(height) * u64::from(w) / u64::from(width.max(1))) as u32;
    ((w & !1).max(2), (h & !1).max(2))
}

/// The last `seconds` of clip frames with their stream times.
pub struct Ring {
    seconds: f64,
    frames: VecDeque<(f64, frame::Video)>,
}

impl Ring {
    pub fn new(seconds: f64) -> Self {
        Self {
            seconds,
            frames: VecDeque::new(),
        }
    }

    pub fn push(&mut self, stream_s: f64, f: frame::Video) {
        self.frames.push_back((stream_s, f));
        while let Some((t, _)) = self.frames.front() {
            if stream_s - t > self.seconds {
                self.frames.pop_front();
            } else {
                break;
            }
        }
    }

    /// Frames at or after `from_s`, oldest first.
    pub fn since(&self, from_s: f64) -> impl Iterator<Item = &(f64, frame::Video)> {
        self.frames.iter().filter(move |(t, _)| *t >= from_s)
    }

    pub fn clear(&mut self) {
        self.frames.clear();
    }
}

/// An event clip being written: a fragmented MP4 (playable up to its last fragment if the
/// process dies mid-clip) at the stream's rate rounded to whole frames a second.
pub struct ClipWriter {
    writer: VideoWriter,
    fps: f64,
    start_s: f64,
    pub frames: u64,
}

impl ClipWriter {
    /// A clip of `width` × `height` frames (even) whose time 0 is stream time `start_s`.
    pub fn create(path: &Path, width: u32, height: u32, fps: f64, start_s: f64) -> Result<Self> {
        let fps = fps.round().clamp(1.0, 240.0);
        let opts = EncodeOptions {
            codec: Codec::H264,
            fps: fps as u32,
            gop: fps as u32,
            b_frames: 0,
            crf: 26,
        };
        let writer = VideoWriter::create_fragmented(path, width, height, opts)
            .with_context(|| format!("{}: cannot write the clip", path.display()))?;
        Ok(Self {
            writer,
            fps,
            start_s,
            frames: 0,
        })
    }

    /// Adds a frame (YUV 4:2:0 at the clip size) at stream time `stream_s`; a frame that
    /// falls on an earlier frame's slot is skipped.
    pub fn push(&mut self, stream_s: f64, f: &frame::Video) -> Result<()> {
        let pts = ((stream_s - self.start_s) * self.fps).round() as i64;
        if pts >= 0 && self.writer.write_yuv(f, pts)? {
            self.frames += 1;
        }
        Ok(())
    }

    /// Flushes the encoder and closes the file.
    pub fn finish(self) -> Result<()> {
        self.writer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::live::{LiveOptions, LiveSource};

    #[test]
    fn clip_sizes_are_even_and_keep_the_aspect() {
        assert_eq!(clip_size(640, 360, 320), (320, 180));
        assert_eq!(clip_size(641, 361, 1000), (640, 360));
        assert_eq!(clip_size(200, 100, 320), (200, 100));
        assert_eq!(clip_size(1920, 1080, 480), (480, 270));
    }

    /// A clip of the fixture's first 2 s reads back (FFmpeg's own demuxer) with its frames
    /// and duration.
    #[test]
    fn a_clip_reads_back_with_its_frames() -> Result<()> {
        let video = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/videos/testsrc_h264.mp4"
        );
        let mut live = LiveSource::open(
            video,
            &LiveOptions {
                clip_size: Some((160, 90)),
                ..LiveOptions::default()
            },
        )?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("clip.mp4");
        let mut w = ClipWriter::create(&path, 160, 90, live.fps(), 0.0)?;
        while let Some(d) = live.next(|_| false)? {
            if d.index >= 60 {
                break;
            }
            if let Some(c) = &d.clip {
                w.push(d.stream_s, c)?;
            }
        }
        assert_eq!(w.frames, 60);
        w.finish()?;
        let info = crate::data::video::probe(&path, true)?;
        assert_eq!((info.width, info.height), (160, 90));
        assert_eq!(info.frame_count, 60);
        assert!((info.fps - 30.0).abs() < 0.1, "{}", info.fps);
        Ok(())
    }
}
