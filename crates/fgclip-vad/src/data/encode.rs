//! Writing videos with FFmpeg's libraries: RGB frames in, H.264 (libx264) or MPEG-4
//! part 2 out, in any container FFmpeg guesses from the file name (.mp4, .avi, .mkv).
//! Used by the synthetic dataset and by tests that make their own videos.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{self, Flags};
use ffmpeg_next as ffmpeg;

/// Which encoder to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// libx264, with B-frames.
    H264,
    /// FFmpeg's MPEG-4 part 2 encoder.
    Mpeg4,
}

/// Encoder settings.
#[derive(Clone, Copy, Debug)]
pub struct EncodeOptions {
    pub codec: Codec,
    pub fps: u32,
    /// Key-frame interval in frames.
    pub gop: u32,
    pub b_frames: usize,
    /// libx264's constant rate factor (lower is better quality); MPEG-4 uses qscale 2.
    pub crf: u32,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            codec: Codec::H264,
            fps: 25,
            gop: 50,
            b_frames: 2,
            crf: 18,
        }
    }
}

/// An open output video; frames are RGB24, `width * height * 3` bytes each.
pub struct VideoWriter {
    path: PathBuf,
    octx: ffmpeg::format::context::Output,
    encoder: ffmpeg::encoder::Video,
    scaler: scaling::Context,
    width: u32,
    height: u32,
    time_base: ffmpeg::Rational,
    stream_time_base: ffmpeg::Rational,
    next_pts: i64,
}

impl VideoWriter {
    pub fn create(path: &Path, width: u32, height: u32, opts: EncodeOptions) -> Result<Self> {
        Self::open(path, width, height, opts, false)
    }

    /// A fragmented MP4 (whatever the file name says): playable up to its last fragment
    /// even if the process dies before [`finish`](Self::finish) (event clips).
    pub fn create_fragmented(
        path: &Path,
        width: u32,
        height: u32,
        opts: EncodeOptions,
    ) -> Result<Self> {
        Self::open(path, width, height, opts, true)
    }

    fn open(
        path: &Path,
        width: u32,
        height: u32,
        opts: EncodeOptions,
        fragmented: bool,
    ) -> Result<Self> {
        super::video::init();
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) || width == 0 || height == 0 {
            bail!(
                "{}: frame size {width}x{height} must be even and non-zero (yuv420p)",
                path.display()
            );
        }
        let octx = if fragmented {
            ffmpeg::format::output_as(path, "mp4")
        } else {
            ffmpeg::format::output(path)
        };
        let mut octx =
            octx.with_context(|| format!("{}: cannot create the output", path.display()))?;
        let codec = match opts.codec {
            Codec::H264 => ffmpeg::encoder::find_by_name("libx264")
                .or_else(|| ffmpeg::encoder::find(ffmpeg::codec::Id::H264)),
            Codec::Mpeg4 => ffmpeg::encoder::find(ffmpeg::codec::Id::MPEG4),
        }
        .with_context(|| format!("FFmpeg has no {:?} encoder", opts.codec))?;
        let global_header = octx
            .format()
            .flags()
            .contains(ffmpeg::format::Flags::GLOBAL_HEADER);
        let time_base = ffmpeg::Rational::new(1, opts.fps as i32);
        let mut enc = ffmpeg::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .context("cannot make a video encoder")?;
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(Pixel::YUV420P);
        enc.set_time_base(time_base);
        enc.set_frame_rate(Some(ffmpeg::Rational::new(opts.fps as i32, 1)));
        enc.set_gop(opts.gop);
        enc.set_max_b_frames(opts.b_frames);
        if global_header {
            enc.set_flags(ffmpeg::codec::Flags::GLOBAL_HEADER);
        }
        let mut dict = ffmpeg::Dictionary::new();
        match opts.codec {
            Codec::H264 => {
                dict.set("preset", "veryfast");
                dict.set("crf", &opts.crf.to_string());
                // Deterministic output: no threads-dependent decisions.
                dict.set("threads", "1");
                dict.set("x264-params", "log-level=none");
            }
            Codec::Mpeg4 => {
                dict.set("qscale", "2");
            }
        }
        if opts.codec == Codec::Mpeg4 {
            enc.set_quality(2);
        }
        let encoder = enc.open_with(dict).with_context(|| {
            format!(
                "{}: cannot open the {:?} encoder",
                path.display(),
                opts.codec
            )
        })?;
        {
            let mut stream = octx.add_stream(codec).context("cannot add a stream")?;
            stream.set_parameters(&encoder);
            stream.set_time_base(time_base);
            stream.set_avg_frame_rate(ffmpeg::Rational::new(opts.fps as i32, 1));
            stream.set_rate(ffmpeg::Rational::new(opts.fps as i32, 1));
        }
        if fragmented {
            let mut mux = ffmpeg::Dictionary::new();
            mux.set("movflags", "frag_keyframe+empty_moov+default_base_moof");
            octx.write_header_with(mux).map(|_| ())
        } else {
            octx.write_header().map(|_| ())
        }
        .with_context(|| format!("{}: cannot write the header", path.display()))?;
        let stream_time_base = octx.stream(0).map(|s| s.time_base()).unwrap_or(time_base);
        let scaler = scaling::Context::get(
            Pixel::RGB24,
            width,
            height,
            Pixel::YUV420P,
            width,
            height,
            Flags::BICUBIC,
        )
        .context("cannot make an RGB to YUV converter")?;
        Ok(Self {
            path: path.to_path_buf(),
            octx,
            encoder,
            scaler,
            width,
            height,
            time_base,
            stream_time_base,
            next_pts: 0,
        })
    }

    /// Appends one RGB24 frame.
    pub fn write_rgb(&mut self, rgb: &[u8]) -> Result<()> {
        let (w, h) = (self.width as usize, self.height as usize);
        if rgb.len() != w * h * 3 {
            bail!(
                "frame has {} bytes, a {w}x{h} RGB frame has {}",
                rgb.len(),
                w * h * 3
            );
        }
        let mut src = ffmpeg::frame::Video::new(Pixel::RGB24, self.width, self.height);
        let stride = src.stride(0);
        {
            let plane = src.data_mut(0);
            for y in 0..h {
                plane[y * stride..y * stride + w * 3]
                    .copy_from_slice(&rgb[y * w * 3..(y + 1) * w * 3]);
            }
        }
        let mut yuv = ffmpeg::frame::Video::empty();
        self.scaler
            .run(&src, &mut yuv)
            .context("RGB to YUV conversion failed")?;
        yuv.set_pts(Some(self.next_pts));
        self.next_pts += 1;
        self.encoder
            .send_frame(&yuv)
            .with_context(|| format!("{}: encoding failed", self.path.display()))?;
        self.drain()
    }

    /// Appends a YUV 4:2:0 frame of the writer's size at `pts` (in frames, 1/fps); a pts
    /// not after the last one written is skipped (false).
    pub fn write_yuv(&mut self, frame: &ffmpeg::frame::Video, pts: i64) -> Result<bool> {
        if pts < self.next_pts {
            return Ok(false);
        }
        if (frame.format(), frame.width(), frame.height())
            != (Pixel::YUV420P, self.width, self.height)
        {
            bail!(
                "{}: a {:?} {}x{} frame, the video is YUV420P {}x{}",
                self.path.display(),
                frame.format(),
                frame.width(),
                frame.height(),
                self.width,
                self.height
            );
        }
        let mut f = frame.clone();
        f.set_pts(Some(pts));
        self.next_pts = pts + 1;
        self.encoder
            .send_frame(&f)
            .with_context(|| format!("{}: encoding failed", self.path.display()))?;
        self.drain()?;
        Ok(true)
    }

    fn drain(&mut self) -> Result<()> {
        let mut packet = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts(self.time_base, self.stream_time_base);
            packet
                .write_interleaved(&mut self.octx)
                .with_context(|| format!("{}: writing failed", self.path.display()))?;
        }
        Ok(())
    }

    /// Flushes the encoder and writes the trailer.
    pub fn finish(mut self) -> Result<()> {
        self.encoder
            .send_eof()
            .with_context(|| format!("{}: flushing the encoder failed", self.path.display()))?;
        self.drain()?;
        self.octx
            .write_trailer()
            .with_context(|| format!("{}: cannot write the trailer", self.path.display()))?;
        Ok(())
    }
}
