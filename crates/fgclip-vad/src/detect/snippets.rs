//! Snippet embeddings: a video cut into snippets of `stride` frames, only the snippet
//! frames decoded and resized (on a thread beside the model), embedded in batches; and
//! `fgclip extract`, which writes them per video.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use fgclip_core::fgclip::fuse_frames;
use fgclip_core::fusion::TemporalFusion;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::data::video::{VideoReader, probe};
use crate::device::host_f32;

use super::VideoModel;

/// Snippet layout of a video.
#[derive(Clone, Copy, Debug)]
pub struct Snippets {
    pub frames: u64,
    pub stride: u64,
    /// Frames per snippet, averaged or fused by the temporal transformer (1 = the centre
    /// frame).
    pub per_snippet: u64,
}

impl Snippets {
    pub fn count(&self) -> usize {
        self.frames.div_ceil(self.stride.max(1)) as usize
    }

    /// First and last frame of snippet `k`.
    pub fn span(&self, k: usize) -> (u64, u64) {
        let s = k as u64 * self.stride;
        (s, (s + self.stride - 1).min(self.frames.saturating_sub(1)))
    }

    /// The frames representing snippet `k`: its centre, or `per_snippet` evenly spaced.
    pub fn frames_of(&self, k: usize) -> Vec<u64> {
        let (s, e) = self.span(k);
        let len = e - s + 1;
        let m = self.per_snippet.clamp(1, len);
        (0..m).map(|j| s + ((2 * j + 1) * len) / (2 * m)).collect()
    }
}

/// Where [`snippet_embeddings_timed`] spent its time, in seconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SnippetTiming {
    /// Decoding, RGB conversion, resizing and normalising on the CPU (the decode thread's
    /// busy time, not counting waits for the model to take a batch).
    pub decode_s: f64,
    /// The image tower, including reading the embeddings back.
    pub embed_s: f64,
    /// The model side waiting for the decoder.
    pub wait_s: f64,
    /// Wall time of the whole pipeline.
    pub total_s: f64,
}

/// Per-snippet frame embeddings on their way to one embedding per snippet: summed (mean
/// pooling), or held until the snippet is complete and then fused by the temporal
/// transformer, so that only the snippets in progress are held.
struct SnippetPool<'a> {
    p: usize,
    fusion: Option<&'a TemporalFusion>,
    /// (n, P): running sums; a fused snippet's row is its fused embedding, count 1.
    sums: Vec<f32>,
    counts: Vec<u32>,
    expected: Vec<u32>,
    /// Fusion: the frames received so far of incomplete snippets, in frame order.
    held: BTreeMap<usize, Vec<f32>>,
}

impl<'a> SnippetPool<'a> {
    fn new(layout: &Snippets, p: usize, fusion: Option<&'a TemporalFusion>) -> Self {
        let n = layout.count();
        Self {
            p,
            fusion,
            sums: vec![0f32; n * p],
            counts: vec![0; n],
            expected: (0..n).map(|k| layout.frames_of(k).len() as u32).collect(),
            held: BTreeMap::new(),
        }
    }

    /// Adds one frame's normalised embedding to snippet `k`.
    fn add(&mut self, k: usize, row: &[f32]) {
        let p = self.p;
        match self.fusion {
            None => {
                self.sums[k * p..(k + 1) * p]
                    .iter_mut()
                    .zip(row)
                    .for_each(|(s, v)| *s += v);
                self.counts[k] += 1;
            }
            Some(_) => self.held.entry(k).or_default().extend_from_slice(row),
        }
    }

    /// Fuses the held snippets that are complete (`all`: every held one, at the end).
    fn fuse_ready(&mut self, device: &Device, all: bool) -> Result<()> {
        let Some(fusion) = self.fusion else {
            return Ok(());
        };
        let p = self.p;
        let ready: Vec<usize> = self
            .held
            .iter()
            .filter(|(k, rows)| all || rows.len() / p == self.expected[**k] as usize)
            .map(|(k, _)| *k)
            .collect();
        // One tensor per frame count (the last snippet of a video may be shorter).
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for k in ready {
            let t = self.held[&k].len() / p;
            groups.entry(t).or_default().push(k);
        }
        for (t, ks) in groups {
            let mut values = Vec::with_capacity(ks.len() * t * p);
            for k in &ks {
                values.extend(self.held.remove(k).unwrap_or_default());
            }
            let frames = Tensor::<3>::from_data(TensorData::new(values, [ks.len(), t, p]), device);
            let fused = host_f32(fuse_frames(Some(fusion), frames))?;
            for (i, k) in ks.iter().enumerate() {
                self.sums[k * p..(k + 1) * p].copy_from_slice(&fused[i * p..(i + 1) * p]);
                self.counts[*k] = 1;
            }
        }
        Ok(())
    }
}

/// Normalised snippet embeddings (n, P), row-major, decoding only the snippet frames.
pub fn snippet_embeddings(
    model: &VideoModel,
    video: &Path,
    layout: &Snippets,
    batch_size: usize,
    device: &Device,
    progress: &ProgressBar,
) -> Result<Vec<f32>> {
    snippet_embeddings_timed(model, video, layout, batch_size, device, progress).map(|(e, _)| e)
}

/// [`snippet_embeddings`] and where its time went. A decode thread prepares the next
/// batches while the model embeds the current one, so on a GPU the wall time is about the
/// decoder's alone.
pub fn snippet_embeddings_timed(
    model: &VideoModel,
    video: &Path,
    layout: &Snippets,
    batch_size: usize,
    device: &Device,
    progress: &ProgressBar,
) -> Result<(Vec<f32>, SnippetTiming)> {
    use std::time::Instant;
    let start = Instant::now();
    let p = model.tower.embed_dim();
    let n = layout.count();
    model.check_frames_per_snippet(layout.per_snippet)?;
    let wanted: Vec<u64> = (0..n).flat_map(|k| layout.frames_of(k)).collect();
    let mut owner: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for k in 0..n {
        for f in layout.frames_of(k) {
            owner.entry(f).or_default().push(k);
        }
    }
    let mut pool = SnippetPool::new(layout, p, model.fusion.as_ref());
    let mut timing = SnippetTiming::default();
    type Pending = Vec<(u64, super::Prepared)>;
    // Two batches in flight: enough to keep the model busy, little memory.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Pending>(2);
    let batch_size = batch_size.max(1);
    let decoded = std::thread::scope(|scope| -> Result<f64> {
        let decoder = scope.spawn(move || -> Result<f64> {
            let t0 = Instant::now();
            let mut blocked = 0.0;
            let mut pending: Pending = Vec::with_capacity(batch_size);
            let mut send = |batch: Pending| -> Result<()> {
                let t = Instant::now();
                // A closed channel means the model side failed; its error is reported.
                let r = tx
                    .send(batch)
                    .map_err(|_| anyhow::anyhow!("model side stopped"));
                blocked += t.elapsed().as_secs_f64();
                r
            };
            let mut reader = VideoReader::open(video)?;
            reader.read_frames(&wanted, |f| {
                pending.push((f.index, model.tower.prepare(&f)?));
                if pending.len() >= batch_size {
                    send(std::mem::take(&mut pending))?;
                }
                Ok(())
            })?;
            if !pending.is_empty() {
                send(pending)?;
            }
            Ok(t0.elapsed().as_secs_f64() - blocked)
        });
        let mut model_side = || -> Result<()> {
            loop {
                let t = Instant::now();
                let Ok(batch) = rx.recv() else {
                    return Ok(());
                };
                timing.wait_s += t.elapsed().as_secs_f64();
                let t = Instant::now();
                let b = batch.len();
                let frames: Vec<&super::Prepared> = batch.iter().map(|(_, f)| f).collect();
                let e = model.tower.embed(&frames, device)?;
                for (i, (frame, _)) in batch.iter().enumerate() {
                    for &k in owner.get(frame).map(Vec::as_slice).unwrap_or(&[]) {
                        pool.add(k, &e[i * p..(i + 1) * p]);
                    }
                }
                pool.fuse_ready(device, false)?;
                timing.embed_s += t.elapsed().as_secs_f64();
                progress.inc(b as u64);
            }
        };
        let model_result = model_side();
        // Unblocks a decoder waiting to send after a model failure.
        drop(rx);
        let decode_result = decoder
            .join()
            .map_err(|_| anyhow::anyhow!("{}: the decode thread panicked", video.display()))?;
        model_result?;
        decode_result
    })?;
    timing.decode_s = decoded;
    // Snippets cut short by the end of the decodable video are fused from what they have.
    pool.fuse_ready(device, true)?;
    let SnippetPool {
        mut sums, counts, ..
    } = pool;
    // Snippets past the decodable end take the last decoded snippet's embedding.
    let mut last: Option<usize> = None;
    for k in 0..n {
        if counts[k] > 0 {
            let c = counts[k] as f32;
            let row = &mut sums[k * p..(k + 1) * p];
            let norm = row
                .iter()
                .map(|v| (v / c) * (v / c))
                .sum::<f32>()
                .sqrt()
                .max(1e-12);
            row.iter_mut().for_each(|v| *v = *v / c / norm);
            last = Some(k);
        } else if let Some(j) = last {
            let row: Vec<f32> = sums[j * p..(j + 1) * p].to_vec();
            sums[k * p..(k + 1) * p].copy_from_slice(&row);
        }
    }
    if last.is_none() {
        bail!("{}: no frame could be decoded", video.display());
    }
    timing.total_s = start.elapsed().as_secs_f64();
    Ok((sums, timing))
}

/// One video's snippet embeddings, as `extract` writes them: (snippets, D) row-major and
/// the snippet count; `layout` is (stride, frames per snippet).
pub fn video_features(
    model: &VideoModel,
    video: &Path,
    layout: (u64, u64),
    batch_size: usize,
    device: &Device,
    progress: &ProgressBar,
) -> Result<(Vec<f32>, usize)> {
    model.check_frames_per_snippet(layout.1.max(1))?;
    let info = probe(video, true)?;
    let l = Snippets {
        frames: info.frame_count,
        stride: layout.0.max(1),
        per_snippet: layout.1.max(1),
    };
    let e = snippet_embeddings(model, video, &l, batch_size, device, progress)?;
    Ok((e, l.count()))
}

/// How `extract` cuts and embeds: (stride, frames per snippet) and frames a forward pass.
#[derive(Clone, Copy, Debug)]
pub struct ExtractLayout {
    pub layout: (u64, u64),
    pub batch_size: usize,
}

/// `fgclip extract`: one `.npy` (snippets, P) of normalised embeddings per video; videos
/// whose `.npy` exists are skipped, so an interrupted run resumes.
pub fn extract_features(
    model: &VideoModel,
    videos: &[PathBuf],
    out: &Path,
    ExtractLayout { layout, batch_size }: ExtractLayout,
    device: &Device,
    progress: &ProgressBar,
    log: &dyn Fn(&str),
) -> Result<(usize, usize, usize)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (mut done, mut skipped, mut failed) = (0, 0, 0);
    let p = model.tower.embed_dim();
    model.check_frames_per_snippet(layout.1.max(1))?;
    for v in videos {
        let stem = v
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = out.join(format!("{stem}.npy"));
        if target.is_file() {
            skipped += 1;
            continue;
        }
        progress.set_message(stem.clone());
        let result = video_features(model, v, layout, batch_size, device, progress)
            .and_then(|(e, n)| crate::data::npy::write_f32(&target, &[n, p], &e));
        match result {
            Ok(()) => done += 1,
            Err(e) => {
                failed += 1;
                progress.suspend(|| log(&format!("warning: {}: {e:#}", v.display())));
            }
        }
    }
    Ok((done, skipped, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_layout() {
        let l = Snippets {
            frames: 100,
            stride: 16,
            per_snippet: 1,
        };
        assert_eq!(l.count(), 7);
        assert_eq!(l.span(6), (96, 99));
        assert_eq!(l.frames_of(0), vec![8]);
        assert_eq!(l.frames_of(6), vec![98]);
        let l = Snippets {
            frames: 100,
            stride: 16,
            per_snippet: 4,
        };
        assert_eq!(l.frames_of(0), vec![2, 6, 10, 14]);
        assert_eq!(l.frames_of(6), vec![96, 97, 98, 99]);
    }
}
