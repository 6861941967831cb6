//! Video probing and frame-exact decoding with FFmpeg's libraries (`ffmpeg-next`).
//!
//! Frame indices follow OpenCV's `CAP_PROP_POS_FRAMES` arithmetic, the convention of the
//! VAD annotations: the first frame of the file is 0; after a seek, the first decoded
//! frame is numbered from its timestamp (`round(fps · (ts − start_time) · time_base)`
//! minus the first frame's own number) and later frames are counted from it. Only the
//! wanted frames are converted to RGB, and frames are handed to a callback one at a
//! time, so memory stays flat on hour-long videos.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{Context, Result, bail};
use ffmpeg::format::Pixel;
use ffmpeg::media::Type;
use ffmpeg::software::scaling::{self, Flags};
use ffmpeg_next as ffmpeg;
use serde::Serialize;

pub(crate) fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = ffmpeg::init();
        // Damaged files make the decoders print screens of errors; they are counted here.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// What `fgclip probe` reports.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VideoInfo {
    pub path: PathBuf,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// Frames: the container's count, or packets counted where asked or missing.
    pub frame_count: u64,
    /// `header`, `packets` or `duration` (fps · duration, when nothing better exists).
    pub frame_count_source: &'static str,
    pub duration_s: f64,
    /// Display rotation in degrees (from the stream's display matrix), not applied.
    pub rotation: i32,
    pub has_audio: bool,
}

/// An RGB24 frame, rows packed (`width * 3` bytes each).
#[derive(Clone, Debug)]
pub struct RgbFrame {
    pub index: u64,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbFrame {
    /// Mean of each channel over the frame.
    pub fn mean_rgb(&self) -> [f64; 3] {
        let mut sum = [0u64; 3];
        for px in self.data.chunks_exact(3) {
            for c in 0..3 {
                sum[c] += px[c] as u64;
            }
        }
        let n = (self.data.len() / 3).max(1) as f64;
        [sum[0] as f64 / n, sum[1] as f64 / n, sum[2] as f64 / n]
    }
}

fn rate(r: ffmpeg::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r))
}

struct Opened {
    input: ffmpeg::format::context::Input,
    stream: usize,
    time_base: f64,
    start_time: i64,
    fps: f64,
}

fn open_input(path: &Path) -> Result<Opened> {
    init();
    if !path.exists() {
        bail!("{}: no such file", path.display());
    }
    let input = ffmpeg::format::input(path)
        .with_context(|| format!("{}: not a readable video", path.display()))?;
    let stream = input
        .streams()
        .best(Type::Video)
        .with_context(|| format!("{}: no video stream", path.display()))?;
    let fps = rate(stream.avg_frame_rate())
        .or_else(|| rate(stream.rate()))
        .with_context(|| format!("{}: the video stream has no frame rate", path.display()))?;
    let time_base = rate(stream.time_base())
        .with_context(|| format!("{}: the video stream has no time base", path.display()))?;
    let start_time = match stream.start_time() {
        ffmpeg::ffi::AV_NOPTS_VALUE => 0,
        t => t,
    };
    let index = stream.index();
    Ok(Opened {
        input,
        stream: index,
        time_base,
        start_time,
        fps,
    })
}

/// Metadata of a video. With `count_packets` the frame count is the number of video
/// packets (exact for the usual one-frame-per-packet files; the header can lie).
pub fn probe(path: &Path, count_packets: bool) -> Result<VideoInfo> {
    let mut o = open_input(path)?;
    let stream = o
        .input
        .stream(o.stream)
        .with_context(|| format!("{}: video stream vanished", path.display()))?;
    let params = stream.parameters();
    let codec_ctx = ffmpeg::codec::context::Context::from_parameters(params)
        .with_context(|| format!("{}: unsupported codec parameters", path.display()))?;
    let codec = codec_ctx.id();
    let decoder = codec_ctx
        .decoder()
        .video()
        .with_context(|| format!("{}: no decoder for {codec:?}", path.display()))?;
    let (width, height) = (decoder.width(), decoder.height());
    let header_frames = stream.frames().max(0) as u64;
    let stream_duration = stream.duration();
    let duration_s = if stream_duration > 0 {
        stream_duration as f64 * o.time_base
    } else if o.input.duration() > 0 {
        o.input.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)
    } else {
        0.0
    };
    let rotation = display_rotation(&stream);
    let has_audio = o.input.streams().best(Type::Audio).is_some();
    let (frame_count, frame_count_source) = if count_packets || header_frames == 0 {
        let index = o.stream;
        let packets = o
            .input
            .packets()
            .filter(|(s, _)| s.index() == index)
            .count() as u64;
        if packets > 0 {
            (packets, "packets")
        } else {
            ((duration_s * o.fps).round() as u64, "duration")
        }
    } else {
        (header_frames, "header")
    };
    Ok(VideoInfo {
        path: path.to_path_buf(),
        codec: format!("{codec:?}").to_lowercase(),
        width,
        height,
        fps: o.fps,
        frame_count,
        frame_count_source,
        duration_s,
        rotation,
        has_audio,
    })
}

fn display_rotation(stream: &ffmpeg::format::stream::Stream) -> i32 {
    for side in stream.side_data() {
        if side.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix
            && side.data().len() >= 36
        {
            // SAFETY: a display matrix is nine i32 values; the length was checked above.
            let theta =
                unsafe { ffmpeg::ffi::av_display_rotation_get(side.data().as_ptr() as *const i32) };
            if theta.is_finite() {
                return (-theta).round() as i32;
            }
        }
    }
    0
}

/// Counts of what went wrong while decoding (damaged data is skipped, not fatal).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct DecodeStats {
    pub packets_rejected: u64,
    pub frames_decoded: u64,
    pub seeks: u64,
}

/// Decoded frames to RGB24 at their own size, as OpenCV converts them (swscale, bicubic
/// flag); the converter is kept while the format and size stay.
#[derive(Default)]
pub(crate) struct ToRgb {
    ctx: Option<(Pixel, u32, u32, scaling::Context)>,
}

impl ToRgb {
    /// `frame` as frame `index` of `what` (for messages).
    pub(crate) fn convert(
        &mut self,
        frame: &ffmpeg::frame::Video,
        index: u64,
        what: &dyn std::fmt::Display,
    ) -> Result<RgbFrame> {
        let (fmt, w, h) = (frame.format(), frame.width(), frame.height());
        let stale = !matches!(&self.ctx, Some((f, cw, ch, _)) if *f == fmt && *cw == w && *ch == h);
        if stale {
            let ctx = scaling::Context::get(fmt, w, h, Pixel::RGB24, w, h, Flags::BICUBIC)
                .with_context(|| format!("{what}: cannot convert {fmt:?} to RGB"))?;
            self.ctx = Some((fmt, w, h, ctx));
        }
        let Some((_, _, _, ctx)) = self.ctx.as_mut() else {
            bail!("{what}: no RGB converter");
        };
        let mut rgb = ffmpeg::frame::Video::empty();
        ctx.run(frame, &mut rgb)
            .with_context(|| format!("{what}: frame {index}: RGB conversion failed"))?;
        let stride = rgb.stride(0);
        let row = w as usize * 3;
        let plane = rgb.data(0);
        let mut data = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            data.extend_from_slice(&plane[y * stride..y * stride + row]);
        }
        Ok(RgbFrame {
            index,
            width: w,
            height: h,
            data,
        })
    }
}

/// A video opened for frame-exact reading.
pub struct VideoReader {
    path: PathBuf,
    o: Opened,
    decoder: ffmpeg::decoder::Video,
    to_rgb: ToRgb,
    /// The frame number of the file's first frame, from its timestamp.
    first_frame_number: Option<i64>,
    /// Index of the last frame decoded; None right after opening or a seek.
    last: Option<u64>,
    /// True until the first frame after opening has been decoded.
    at_start: bool,
    /// Largest key-frame interval seen: a target further than this is reached by seeking.
    gop: u64,
    last_key: Option<u64>,
    eof: bool,
    pub stats: DecodeStats,
}

impl VideoReader {
    pub fn open(path: &Path) -> Result<Self> {
        let o = open_input(path)?;
        let stream = o
            .input
            .stream(o.stream)
            .with_context(|| format!("{}: video stream vanished", path.display()))?;
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
            .with_context(|| format!("{}: unsupported codec parameters", path.display()))?;
        let mut threading =
            ffmpeg::codec::threading::Config::kind(ffmpeg::codec::threading::Type::Frame);
        threading.count = 0;
        ctx.set_threading(threading);
        let decoder = ctx
            .decoder()
            .video()
            .with_context(|| format!("{}: cannot open a decoder", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            o,
            decoder,
            to_rgb: ToRgb::default(),
            first_frame_number: None,
            last: None,
            at_start: true,
            gop: 64,
            last_key: None,
            eof: false,
            stats: DecodeStats::default(),
        })
    }

    pub fn fps(&self) -> f64 {
        self.o.fps
    }

    fn ts_to_frame_number(&self, ts: i64) -> i64 {
        let sec = (ts - self.o.start_time) as f64 * self.o.time_base;
        (self.o.fps * sec + 0.5).floor() as i64
    }

    /// The frame number of the last key frame at or before `target`, from the
    /// container's index (None when the format keeps no index).
    fn key_frame_before(&self, target: u64) -> Option<u64> {
        let first = self.first_frame_number.unwrap_or(0);
        let ts = self.o.start_time
            + (((target as i64 + first) as f64 / self.o.fps) / self.o.time_base + 0.5).floor()
                as i64;
        let stream = self.o.input.stream(self.o.stream)?;
        // SAFETY: the stream pointer is valid while `self.o.input` lives; the index entry
        // returned by FFmpeg is read before any other call on the context.
        unsafe {
            let st = stream.as_ptr() as *mut ffmpeg::ffi::AVStream;
            let idx =
                ffmpeg::ffi::av_index_search_timestamp(st, ts, ffmpeg::ffi::AVSEEK_FLAG_BACKWARD);
            if idx < 0 {
                return None;
            }
            let entry = ffmpeg::ffi::avformat_index_get_entry(st, idx);
            if entry.is_null() {
                return None;
            }
            let n = self.ts_to_frame_number((*entry).timestamp) - first;
            Some(n.max(0) as u64)
        }
    }

    /// Whether reaching `target` from the last decoded frame `p` is cheaper by decoding
    /// on than by seeking: true unless a key frame lies between them (from the
    /// container's index, or else the largest key-frame interval seen).
    fn decode_on(&self, p: u64, target: u64) -> bool {
        if target <= p {
            return false;
        }
        match self.key_frame_before(target) {
            // A small margin absorbs index timestamps that are DTS rather than PTS.
            Some(k) => k <= p + 2 || target - p <= 4,
            None => target - p <= self.gop / 2,
        }
    }

    /// Decodes the next frame into `frame` (skipping undecodable packets); false at the end.
    fn decode_next(&mut self, frame: &mut ffmpeg::frame::Video) -> bool {
        loop {
            if self.decoder.receive_frame(frame).is_ok() {
                self.stats.frames_decoded += 1;
                return true;
            }
            if self.eof {
                return false;
            }
            let mut packet = ffmpeg::Packet::empty();
            match packet.read(&mut self.o.input) {
                Ok(()) => {
                    if packet.stream() == self.o.stream
                        && self.decoder.send_packet(&packet).is_err()
                    {
                        self.stats.packets_rejected += 1;
                    }
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(e) => {
                    // The end, or a read error past a damaged region: flush what is left.
                    if e != ffmpeg::Error::Eof {
                        self.stats.packets_rejected += 1;
                    }
                    self.eof = true;
                    let _ = self.decoder.send_eof();
                }
            }
        }
    }

    /// Decodes and numbers the next frame: None at the end of the data.
    fn advance(&mut self, frame: &mut ffmpeg::frame::Video) -> Result<Option<u64>> {
        if !self.decode_next(frame) {
            return Ok(None);
        }
        let index = match self.last {
            Some(i) => i + 1,
            None if self.at_start => {
                let ts = frame.timestamp().unwrap_or(self.o.start_time);
                self.first_frame_number = Some(self.ts_to_frame_number(ts));
                self.at_start = false;
                0
            }
            None => match frame.timestamp() {
                Some(ts) => {
                    let n = self.ts_to_frame_number(ts) - self.first_frame_number.unwrap_or(0);
                    n.max(0) as u64
                }
                None => {
                    // No timestamps to number from: count from the start instead.
                    self.rewind()?;
                    return self.advance(frame);
                }
            },
        };
        self.last = Some(index);
        if frame.is_key() {
            if let Some(k) = self.last_key
                && index > k
            {
                self.gop = self.gop.max(index - k);
            }
            self.last_key = Some(index);
        }
        Ok(Some(index))
    }

    fn rewind(&mut self) -> Result<()> {
        let mut fresh = Self::open(&self.path)?;
        fresh.first_frame_number = self.first_frame_number;
        fresh.stats = self.stats;
        fresh.gop = self.gop;
        *self = fresh;
        Ok(())
    }

    /// Seeks so that the next decoded frame is at or before `target`, with OpenCV's
    /// growing margin when a key frame's timestamp lands late; returns the first frame
    /// after the seek (decoded into `frame`), None past the end of the data.
    fn seek_for(&mut self, target: u64, frame: &mut ffmpeg::frame::Video) -> Result<Option<u64>> {
        if self.first_frame_number.is_none() {
            if !self.at_start {
                self.rewind()?;
            }
            if self.advance(frame)?.is_none() {
                bail!("{}: no decodable video frame", self.path.display());
            }
        }
        let first = self.first_frame_number.unwrap_or(0);
        let mut delta = 0u64;
        loop {
            if delta > target {
                self.rewind()?;
                return self.advance(frame);
            }
            let frame_no = (target - delta) as i64 + first;
            let ts = self.o.start_time
                + ((frame_no as f64 / self.o.fps) / self.o.time_base + 0.5).floor() as i64;
            // SAFETY: the context pointer is valid for the life of `self.o.input`.
            let ret = unsafe {
                ffmpeg::ffi::av_seek_frame(
                    self.o.input.as_mut_ptr(),
                    self.o.stream as i32,
                    ts,
                    ffmpeg::ffi::AVSEEK_FLAG_BACKWARD,
                )
            };
            self.stats.seeks += 1;
            if ret < 0 {
                self.rewind()?;
                return self.advance(frame);
            }
            self.decoder.flush();
            self.eof = false;
            self.last = None;
            self.at_start = false;
            match self.advance(frame)? {
                Some(n) if n <= target => return Ok(Some(n)),
                _ => delta = if delta == 0 { 16 } else { delta * 2 },
            }
        }
    }

    fn convert_to_rgb(&mut self, frame: &ffmpeg::frame::Video, index: u64) -> Result<RgbFrame> {
        self.to_rgb.convert(frame, index, &self.path.display())
    }

    /// Decodes the frames with the given indices (any order, duplicates ignored) and
    /// hands each to `on_frame` in ascending order. Returns the indices found; those
    /// missing lie past the end of the decodable data.
    pub fn read_frames(
        &mut self,
        indices: &[u64],
        mut on_frame: impl FnMut(RgbFrame) -> Result<()>,
    ) -> Result<Vec<u64>> {
        let mut targets: Vec<u64> = indices.to_vec();
        targets.sort_unstable();
        targets.dedup();
        let mut found = Vec::with_capacity(targets.len());
        let mut frame = ffmpeg::frame::Video::empty();
        // Index of the frame now in `frame`, if any.
        let mut have: Option<u64> = None;
        for &target in &targets {
            let mut seeked = false;
            loop {
                match have {
                    Some(h) if h == target => {
                        found.push(h);
                        let rgb = self.convert_to_rgb(&frame, h)?;
                        on_frame(rgb)?;
                        break;
                    }
                    Some(h) if h > target => break,
                    _ => {}
                }
                let forward = seeked
                    || match self.last {
                        Some(p) => self.decode_on(p, target),
                        None => self.at_start && (target == 0 || self.decode_on(0, target)),
                    };
                let next = if forward {
                    self.advance(&mut frame)?
                } else {
                    seeked = true;
                    self.seek_for(target, &mut frame)?
                };
                match next {
                    Some(i) => have = Some(i),
                    None => return Ok(found),
                }
            }
        }
        Ok(found)
    }
}

/// Resizes an RGB frame to `size`×`size` (no crop: normalised boxes stay valid) with
/// Pillow's antialiased bicubic filter (see [`super::resize`]).
pub fn resize_rgb(frame: &RgbFrame, size: u32) -> Result<RgbFrame> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    if frame.data.len() != w * h * 3 {
        bail!(
            "frame {}: {} bytes for {w}x{h} RGB",
            frame.index,
            frame.data.len()
        );
    }
    Ok(RgbFrame {
        index: frame.index,
        width: size,
        height: size,
        data: super::resize::resize_rgb24(&frame.data, w, h, size as usize, size as usize),
    })
}
