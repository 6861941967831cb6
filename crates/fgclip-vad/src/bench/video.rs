//! Video benchmarks: decode + resize throughput (`bench decode`), `detect`'s snippet
//! pipeline (`bench detect`), and the generated video both run on.

use std::time::Instant;

use anyhow::Result;
use burn::tensor::Device;
use fgclip_core::{ClipConfig, ClipModel, Precision, RandomInit, Weights};

use super::time;

/// Decoding figures of `fgclip bench decode`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DecodeTiming {
    pub video: String,
    pub frames: u64,
    /// Whole video decoded, converted to RGB and resized to `size`: frames per second.
    pub full_decode_fps: f64,
    /// Median ms to take `t` uniformly spaced frames (resized) from the segment.
    pub sample_ms: f64,
    pub sample_segment_s: (f64, f64),
    pub t: usize,
    pub size: u32,
}

/// Writes a synthetic surveillance-like H.264 video (moving blocks on a textured
/// background) for decode benchmarks: `seconds` long, 640×360, 30 fps, a key frame every
/// `gop` frames.
pub fn make_bench_video(path: &std::path::Path, seconds: u32, gop: u32) -> Result<()> {
    use crate::data::encode::{Codec, EncodeOptions, VideoWriter};
    let (w, h, fps) = (640usize, 360usize, 30u32);
    let opts = EncodeOptions {
        codec: Codec::H264,
        fps,
        gop,
        b_frames: 2,
        crf: 23,
    };
    let mut writer = VideoWriter::create(path, w as u32, h as u32, opts)?;
    let mut frame = vec![0u8; w * h * 3];
    for i in 0..(seconds * fps) as usize {
        for y in 0..h {
            for x in 0..w {
                let tex = ((x * 7 + y * 13) % 23) as u8 * 3;
                let mut px = [90 + tex, 100 + tex, 80 + tex];
                let (bx, by) = ((i * 3 + y / 4) % w, (i + x / 8) % h);
                if x.abs_diff(bx) < 30 && y.abs_diff(by) < 40 {
                    px = [200, 60, 40];
                }
                frame[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&px);
            }
        }
        writer.write_rgb(&frame)?;
    }
    writer.finish()
}

/// Full decode + resize throughput, and the time to sample `t` frames from a segment.
pub fn bench_decode(
    video: &std::path::Path,
    size: u32,
    t: usize,
    segment: (f64, f64),
    iters: usize,
) -> Result<DecodeTiming> {
    use crate::data::sampling::{extent, uniform_positions};
    use crate::data::video::{VideoReader, probe, resize_rgb};
    let info = probe(video, true)?;
    let all: Vec<u64> = (0..info.frame_count).collect();
    let start = Instant::now();
    let mut reader = VideoReader::open(video)?;
    let mut n = 0u64;
    reader.read_frames(&all, |f| {
        let _ = resize_rgb(&f, size)?;
        n += 1;
        Ok(())
    })?;
    let full = n as f64 / start.elapsed().as_secs_f64();
    let ext = extent(Some(segment), info.fps, info.frame_count)
        .ok_or_else(|| anyhow::anyhow!("segment {segment:?} is outside {}", video.display()))?;
    let picks = uniform_positions(ext, t);
    let sample = time("sample", t, 1, iters, || {
        if let Ok(mut r) = VideoReader::open(video) {
            let _ = r.read_frames(&picks, |f| resize_rgb(&f, size).map(|_| ()));
        }
    });
    Ok(DecodeTiming {
        video: video.display().to_string(),
        frames: n,
        full_decode_fps: full,
        sample_ms: sample.median_ms,
        sample_segment_s: segment,
        t,
        size,
    })
}

/// Figures of `fgclip bench detect`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DetectTiming {
    /// Video seconds per wall second.
    pub realtime: f64,
    /// Video frames per wall second.
    pub frames_per_s: f64,
    pub snippets: usize,
    pub seconds: f64,
    /// Where the time went (decode thread beside the model).
    pub split: crate::detect::SnippetTiming,
}

/// Detection throughput on `video` with random weights of `config`: the snippet
/// embedding pipeline of `fgclip detect` (decode, resize, image tower, every `stride`
/// frames).
pub fn bench_detect(
    config: &ClipConfig,
    video: &std::path::Path,
    stride: u64,
    batch: usize,
    precision: Precision,
    device: &Device,
) -> Result<DetectTiming> {
    use crate::detect::{Snippets, snippet_embeddings_timed};
    let mut model = ClipModel::load(&Weights::new(&RandomInit::new(config, 0), device), config)?;
    model.set_precision(precision);
    let info = crate::data::video::probe(video, true)?;
    let layout = Snippets {
        frames: info.frame_count,
        stride,
        per_snippet: 1,
    };
    let start = Instant::now();
    let model = crate::detect::VideoModel::mean_pooling(model);
    let (e, split) = snippet_embeddings_timed(
        &model,
        video,
        &layout,
        batch,
        device,
        &indicatif::ProgressBar::hidden(),
    )?;
    let secs = start.elapsed().as_secs_f64();
    let duration = info.frame_count as f64 / info.fps;
    Ok(DetectTiming {
        realtime: duration / secs,
        frames_per_s: info.frame_count as f64 / secs,
        snippets: e.len() / config.projection_dim,
        seconds: secs,
        split,
    })
}
