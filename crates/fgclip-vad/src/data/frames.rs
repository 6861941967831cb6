//! `fgclip frames`: a segment's frames (or T of them) to a uint8 `.npy`.

use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;

use super::npy;
use super::preprocess::Preprocess;
use super::sampling::{extent, uniform_positions};
use super::video::{DecodeStats, VideoReader, probe};

/// What `fgclip frames` reports on stdout.
#[derive(Debug, Serialize)]
pub struct FramesReport {
    pub indices: Vec<u64>,
    pub fps: f64,
    pub frame_count: u64,
    pub width: u32,
    pub height: u32,
    pub out: Option<String>,
    pub decode: DecodeStats,
}

impl FramesReport {
    fn new(
        indices: Vec<u64>,
        info: &super::video::VideoInfo,
        (width, height): (u32, u32),
        out: &Path,
        decode: DecodeStats,
    ) -> Self {
        Self {
            indices,
            fps: info.fps,
            frame_count: info.frame_count,
            width,
            height,
            out: Some(out.display().to_string()),
            decode,
        }
    }
}

/// The frames asked for: the video's metadata, the segment and the frame numbers wanted
/// (`sample` of them at segment centres, else every frame of the segment).
fn plan(
    video: &Path,
    timestamps: Option<(f64, f64)>,
    sample: Option<usize>,
) -> Result<(super::video::VideoInfo, super::sampling::Extent, Vec<u64>)> {
    let info = probe(video, false)?;
    if let Some((s, e)) = timestamps
        && !(s.is_finite() && e.is_finite() && s < e && s >= 0.0)
    {
        bail!(
            "{}: bad timestamps [{s}, {e}]: need 0 ≤ start < end",
            video.display()
        );
    }
    if sample == Some(0) {
        bail!("--sample must be at least 1");
    }
    let Some(ext) = extent(timestamps, info.fps, info.frame_count) else {
        bail!(
            "{}: the segment {} holds no frame (the video has {} frames at {} fps, {:.3} s)",
            video.display(),
            timestamps.map_or("(whole video)".to_string(), |(s, e)| format!(
                "[{s}, {e}] s"
            )),
            info.frame_count,
            info.fps,
            info.duration_s
        );
    };
    let wanted: Vec<u64> = match sample {
        Some(t) => uniform_positions(ext, t),
        None => (ext.first..=ext.last).collect(),
    };
    Ok((info, ext, wanted))
}

/// Decoded frames in memory: (n, height, width, 3) RGB.
pub struct Frames {
    pub indices: Vec<u64>,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
    pub fps: f64,
    pub frame_count: u64,
}

/// Decodes `wanted` (in order, repeats kept) and brings each to `size`.
fn decode_wanted(
    video: &Path,
    reader: &mut VideoReader,
    wanted: &[u64],
    ext: super::sampling::Extent,
    info: &super::video::VideoInfo,
    size: Option<(u32, Preprocess)>,
    progress: &indicatif::ProgressBar,
) -> Result<Frames> {
    let mut frames: Vec<(u64, Vec<u8>)> = Vec::new();
    let (mut w, mut h) = (info.width, info.height);
    let found = reader.read_frames(wanted, |f| {
        let f = match size {
            Some((s, p)) => p.apply(&f, s)?,
            None => f,
        };
        (w, h) = (f.width, f.height);
        frames.push((f.index, f.data));
        progress.inc(1);
        Ok(())
    })?;
    if found.is_empty() {
        bail!(
            "{}: no frame of {}..={} could be decoded (past the end of the data?)",
            video.display(),
            ext.first,
            ext.last
        );
    }
    // Repeated sample positions (segments shorter than T) repeat their frame.
    let mut indices = Vec::with_capacity(wanted.len());
    let mut data = Vec::new();
    for &i in wanted {
        if let Ok(k) = frames.binary_search_by_key(&i, |(j, _)| *j) {
            indices.push(i);
            data.extend_from_slice(&frames[k].1);
        }
    }
    Ok(Frames {
        indices,
        width: w,
        height: h,
        data,
        fps: info.fps,
        frame_count: info.frame_count,
    })
}

/// `fgclip frames` in memory (the Python package's `read_frames`): the same frames, OpenCV's
/// numbering, the same errors.
pub fn read_frames(
    video: &Path,
    timestamps: Option<(f64, f64)>,
    sample: Option<usize>,
    size: Option<(u32, Preprocess)>,
    progress: &indicatif::ProgressBar,
) -> Result<Frames> {
    let (info, ext, wanted) = plan(video, timestamps, sample)?;
    let mut reader = VideoReader::open(video)?;
    progress.set_length(wanted.len() as u64);
    decode_wanted(video, &mut reader, &wanted, ext, &info, size, progress)
}

/// Frames for `timestamps` (or the whole video), `sample` of them at segment centres,
/// brought to `size` × `size` by the given preprocessing. Errors when the segment is empty
/// (nothing is written then).
pub fn extract_frames(
    video: &Path,
    timestamps: Option<(f64, f64)>,
    sample: Option<usize>,
    size: Option<(u32, Preprocess)>,
    out: &Path,
    progress: &indicatif::ProgressBar,
) -> Result<FramesReport> {
    let (info, ext, wanted) = plan(video, timestamps, sample)?;
    let mut reader = VideoReader::open(video)?;
    progress.set_length(wanted.len() as u64);
    if sample.is_none() {
        return stream_segment(video, &mut reader, &wanted, size, out, &info, ext, progress);
    }
    let f = decode_wanted(video, &mut reader, &wanted, ext, &info, size, progress)?;
    let (w, h) = (f.width, f.height);
    npy::write_u8(out, &[f.indices.len(), h as usize, w as usize, 3], &f.data)?;
    Ok(FramesReport::new(
        f.indices,
        &info,
        (w, h),
        out,
        reader.stats,
    ))
}

/// Every frame of the segment, written to disk as it is decoded (an hour-long segment
/// takes bounded memory): the pixel bytes go to a temporary file, then behind the header.
#[allow(clippy::too_many_arguments)]
fn stream_segment(
    video: &Path,
    reader: &mut VideoReader,
    wanted: &[u64],
    size: Option<(u32, Preprocess)>,
    out: &Path,
    info: &super::video::VideoInfo,
    ext: super::sampling::Extent,
    progress: &indicatif::ProgressBar,
) -> Result<FramesReport> {
    use std::io::Write;
    let body = out.with_extension("npy.body.tmp");
    let result = (|| -> Result<FramesReport> {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&body)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", body.display()))?,
        );
        let mut indices = Vec::new();
        let mut dims: Option<(u32, u32)> = None;
        reader.read_frames(wanted, |f| {
            let f = match size {
                Some((s, p)) => p.apply(&f, s)?,
                None => f,
            };
            if dims.is_some_and(|d| d != (f.width, f.height)) {
                bail!(
                    "frame {} is {}×{}, unlike the frames before it",
                    f.index,
                    f.width,
                    f.height
                );
            }
            dims = Some((f.width, f.height));
            file.write_all(&f.data)?;
            indices.push(f.index);
            progress.inc(1);
            Ok(())
        })?;
        file.flush()?;
        drop(file);
        let Some((w, h)) = dims else {
            bail!(
                "{}: no frame of {}..={} could be decoded (past the end of the data?)",
                video.display(),
                ext.first,
                ext.last
            );
        };
        npy::write_u8_from_file(out, &[indices.len(), h as usize, w as usize, 3], &body)?;
        Ok(FramesReport::new(indices, info, (w, h), out, reader.stats))
    })();
    std::fs::remove_file(&body).ok();
    result
}
