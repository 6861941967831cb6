//! From an annotated clip to a training sample, and samples to a batch (DESIGN.md §3),
//! with a multi-threaded prefetching loader that is deterministic for a seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

use anyhow::{Context, Result, bail};
use fgclip_core::Tokenizer;

use super::annotations::Clip;
use super::sampling::{extent, place_key_frames, random_positions, uniform_positions};
use super::video::{VideoReader, probe, resize_rgb};
use crate::checkpoint::safetensors_io::Array;

/// CLIP's pixel normalisation.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// The box of a region without key frames: the whole frame.
pub const VIRTUAL_BOX: [f32; 4] = [0.0, 0.0, 1.0, 1.0];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleConfig {
    /// Frames per clip, T.
    pub frames: usize,
    /// Model image size, S.
    pub image_size: u32,
    /// Regions per clip, N.
    pub max_anns: usize,
}

/// Evaluation takes the segment centres; training one random frame per segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    Uniform,
    Random { seed: u64 },
}

/// One clip, ready to batch.
#[derive(Clone, Debug)]
pub struct Sample {
    pub clip: usize,
    pub frame_indices: Vec<u64>,
    /// (T, 3, S, S), CLIP-normalised.
    pub pixels: Vec<f32>,
    /// (T, N, 4).
    pub boxes: Vec<f32>,
    /// (T, N): 1 where the region has a box on that frame.
    pub mask: Vec<u8>,
    pub global_caption: String,
    /// At most N; the batch pads the rest.
    pub region_captions: Vec<String>,
}

/// A small generator with a portable, fixed sequence (sampling must not change with a
/// dependency's version).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Mixes values into one seed, so each (seed, epoch, clip) draws its own stream.
pub fn mix(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243f_6a88_85a3_08d3u64, |h, &p| {
        let mut r = Rng::new(h ^ p.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next_u64()
    })
}

/// Builds the sample of `clip` (videos under `root`).
pub fn build_sample(
    clip: &Clip,
    root: &Path,
    cfg: &SampleConfig,
    sampling: Sampling,
) -> Result<Sample> {
    let path = root.join(&clip.video);
    let info = probe(&path, false).with_context(|| format!("clip {}: video", clip.index))?;
    let ext = extent(clip.timestamps, info.fps, info.frame_count).with_context(|| {
        format!(
            "clip {}: timestamps {:?} hold no frame of {} ({} frames at {} fps)",
            clip.index,
            clip.timestamps,
            path.display(),
            info.frame_count,
            info.fps
        )
    })?;
    let regions = &clip.regions[..clip.regions.len().min(cfg.max_anns)];
    let keys: Vec<Vec<u64>> = regions
        .iter()
        .map(|r| {
            r.boxes
                .iter()
                .filter(|b| b.enabled && ext.contains(b.frame))
                .map(|b| b.frame)
                .collect()
        })
        .collect();
    let base = match sampling {
        Sampling::Uniform => uniform_positions(ext, cfg.frames),
        Sampling::Random { seed } => {
            let mut rng = Rng::new(seed);
            random_positions(ext, cfg.frames, |n| rng.below(n))
        }
    };
    let positions = place_key_frames(&base, &keys);

    let s = cfg.image_size as usize;
    let mut decoded: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
    let mut reader = VideoReader::open(&path).with_context(|| format!("clip {}", clip.index))?;
    reader
        .read_frames(&positions, |f| {
            let small = resize_rgb(&f, cfg.image_size)?;
            decoded.insert(f.index, normalize(&small.data, s));
            Ok(())
        })
        .with_context(|| format!("clip {}: decoding {}", clip.index, path.display()))?;
    if decoded.is_empty() {
        bail!(
            "clip {}: none of frames {positions:?} of {} could be decoded",
            clip.index,
            path.display()
        );
    }
    // Frames past the decodable end (headers that over-count) take the last frame before.
    let mut frame_indices = Vec::with_capacity(positions.len());
    let mut pixels = Vec::with_capacity(positions.len() * 3 * s * s);
    for &p in &positions {
        let (&i, px) = decoded
            .range(..=p)
            .next_back()
            .or_else(|| decoded.iter().next())
            .with_context(|| format!("clip {}: no frame for {p}", clip.index))?;
        frame_indices.push(i);
        pixels.extend_from_slice(px);
    }

    let (t, n) = (cfg.frames, cfg.max_anns);
    let mut boxes = vec![0f32; t * n * 4];
    let mut mask = vec![0u8; t * n];
    for (i, region) in regions.iter().enumerate() {
        for (ti, &frame) in frame_indices.iter().enumerate() {
            let b = if region.boxes.is_empty() {
                Some(VIRTUAL_BOX)
            } else {
                region
                    .boxes
                    .iter()
                    .find(|b| b.enabled && b.frame == frame && ext.contains(frame))
                    .map(|b| b.bbox)
            };
            if let Some(b) = b {
                boxes[(ti * n + i) * 4..(ti * n + i) * 4 + 4].copy_from_slice(&b);
                mask[ti * n + i] = 1;
            }
        }
    }
    Ok(Sample {
        clip: clip.index,
        frame_indices,
        pixels,
        boxes,
        mask,
        global_caption: clip.global_caption.clone(),
        region_captions: regions.iter().map(|r| r.caption.clone()).collect(),
    })
}

/// RGB24 (S, S, 3) → CLIP-normalised (3, S, S).
pub fn normalize(rgb: &[u8], s: usize) -> Vec<f32> {
    let mut out = vec![0f32; 3 * s * s];
    for (p, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * s * s + p] = (px[c] as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
    out
}

/// B samples stacked in the layout of DESIGN.md §3.
#[derive(Clone, Debug)]
pub struct Batch {
    pub b: usize,
    pub t: usize,
    pub n: usize,
    pub s: usize,
    pub clips: Vec<usize>,
    pub pixel_values: Vec<f32>,
    pub global_input_ids: Vec<i64>,
    pub region_input_ids: Vec<i64>,
    pub boxes: Vec<f32>,
    pub bbox_mask: Vec<u8>,
    pub box_nums: Vec<i64>,
    pub context_length: usize,
}

impl Batch {
    pub fn collate(
        samples: &[Sample],
        cfg: &SampleConfig,
        tokenizer: &Tokenizer,
        context_length: usize,
    ) -> Self {
        let (t, n, s) = (cfg.frames, cfg.max_anns, cfg.image_size as usize);
        let mut batch = Batch {
            b: samples.len(),
            t,
            n,
            s,
            clips: samples.iter().map(|x| x.clip).collect(),
            pixel_values: Vec::with_capacity(samples.len() * t * 3 * s * s),
            global_input_ids: Vec::new(),
            region_input_ids: Vec::new(),
            boxes: Vec::new(),
            bbox_mask: Vec::new(),
            box_nums: Vec::new(),
            context_length,
        };
        for x in samples {
            batch.pixel_values.extend_from_slice(&x.pixels);
            batch
                .global_input_ids
                .extend(tokenizer.tokenize(&x.global_caption, context_length));
            for i in 0..n {
                let caption = x.region_captions.get(i).map_or("", String::as_str);
                batch
                    .region_input_ids
                    .extend(tokenizer.tokenize(caption, context_length));
            }
            batch.boxes.extend_from_slice(&x.boxes);
            batch.bbox_mask.extend_from_slice(&x.mask);
            batch.box_nums.push(x.region_captions.len() as i64);
        }
        batch
    }

    /// The tensors under DESIGN.md's names, for a safetensors file.
    pub fn to_arrays(&self) -> BTreeMap<String, Array> {
        let (b, t, n, s, l) = (self.b, self.t, self.n, self.s, self.context_length);
        BTreeMap::from([
            (
                "pixel_values".into(),
                Array::F32 {
                    shape: vec![b, t, 3, s, s],
                    data: self.pixel_values.clone(),
                },
            ),
            (
                "global_input_ids".into(),
                Array::I64 {
                    shape: vec![b, l],
                    data: self.global_input_ids.clone(),
                },
            ),
            (
                "region_input_ids".into(),
                Array::I64 {
                    shape: vec![b, n, l],
                    data: self.region_input_ids.clone(),
                },
            ),
            (
                "boxes".into(),
                Array::F32 {
                    shape: vec![b, t, n, 4],
                    data: self.boxes.clone(),
                },
            ),
            (
                "bbox_mask".into(),
                Array::U8 {
                    shape: vec![b, t, n],
                    data: self.bbox_mask.clone(),
                },
            ),
            (
                "box_nums".into(),
                Array::I64 {
                    shape: vec![b],
                    data: self.box_nums.clone(),
                },
            ),
        ])
    }
}

/// Where a loader starts: epoch and batch within it (for exact resume).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoaderPosition {
    pub epoch: u64,
    pub batch: usize,
}

/// A batch from the loader, with the clips that had to be skipped.
pub struct Loaded {
    pub position: LoaderPosition,
    pub samples: Vec<Sample>,
    /// (clip index, reason) of clips dropped from this batch.
    pub skipped: Vec<(usize, String)>,
}

/// The clip order of an epoch: shuffled by (seed, epoch), or in file order.
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        Rng::new(mix(&[seed, epoch])).shuffle(&mut order);
    }
    order
}

/// Loads one epoch's batches from `start` on, `workers` threads decoding ahead of the
/// consumer (at most `prefetch` samples in flight). Results come in order and are the
/// same for any number of workers: each sample's randomness is drawn from
/// (seed, epoch, clip).
pub struct Loader {
    rx: mpsc::Receiver<(usize, Result<Sample>)>,
    window: Arc<(Mutex<usize>, Condvar)>,
    order: Vec<usize>,
    clips: Arc<Vec<Clip>>,
    batch_size: usize,
    next_batch: usize,
    epoch: u64,
    pending: BTreeMap<usize, Result<Sample>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Loader {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        clips: Arc<Vec<Clip>>,
        root: PathBuf,
        cfg: SampleConfig,
        batch_size: usize,
        seed: u64,
        shuffle: bool,
        random_frames: bool,
        start: LoaderPosition,
        workers: usize,
        prefetch: usize,
        drop_last: bool,
    ) -> Self {
        let batch_size = batch_size.max(1);
        let mut order = epoch_order(clips.len(), seed, start.epoch, shuffle);
        if drop_last {
            // open_clip's DataLoader(drop_last=True): no short last batch.
            order.truncate(order.len() / batch_size * batch_size);
        }
        let first = (start.batch * batch_size).min(order.len());
        let next_job = Arc::new(AtomicUsize::new(first));
        // The window: jobs below `consumed + prefetch` may start.
        let window = Arc::new((Mutex::new(first), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        let prefetch = prefetch.max(batch_size);
        let handles = (0..workers.max(1))
            .map(|_| {
                let (tx, clips, root, order, next_job, window) = (
                    tx.clone(),
                    clips.clone(),
                    root.clone(),
                    order.clone(),
                    next_job.clone(),
                    window.clone(),
                );
                let epoch = start.epoch;
                std::thread::spawn(move || {
                    loop {
                        let j = next_job.fetch_add(1, Ordering::SeqCst);
                        if j >= order.len() {
                            break;
                        }
                        {
                            let (lock, cvar) = &*window;
                            let mut consumed = match lock.lock() {
                                Ok(g) => g,
                                Err(_) => break,
                            };
                            while j >= *consumed + prefetch {
                                consumed = match cvar.wait(consumed) {
                                    Ok(g) => g,
                                    Err(_) => return,
                                };
                            }
                        }
                        let clip = &clips[order[j]];
                        let sampling = if random_frames {
                            Sampling::Random {
                                seed: mix(&[seed, epoch, clip.index as u64]),
                            }
                        } else {
                            Sampling::Uniform
                        };
                        let result = build_sample(clip, &root, &cfg, sampling);
                        if tx.send((j, result)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Self {
            rx,
            window,
            order,
            clips,
            batch_size,
            next_batch: start.batch,
            epoch: start.epoch,
            pending: BTreeMap::new(),
            handles,
        }
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
}

impl Iterator for Loader {
    type Item = Loaded;

    fn next(&mut self) -> Option<Loaded> {
        let lo = self.next_batch * self.batch_size;
        if lo >= self.order.len() {
            return None;
        }
        let hi = (lo + self.batch_size).min(self.order.len());
        while (lo..hi).any(|j| !self.pending.contains_key(&j)) {
            match self.rx.recv() {
                Ok((j, r)) => {
                    self.pending.insert(j, r);
                }
                Err(_) => break,
            }
        }
        let mut samples = Vec::new();
        let mut skipped = Vec::new();
        for j in lo..hi {
            match self.pending.remove(&j) {
                Some(Ok(s)) => samples.push(s),
                Some(Err(e)) => skipped.push((self.clips[self.order[j]].index, format!("{e:#}"))),
                None => skipped.push((self.clips[self.order[j]].index, "worker stopped".into())),
            }
        }
        let (lock, cvar) = &*self.window;
        if let Ok(mut consumed) = lock.lock() {
            *consumed = hi;
        }
        cvar.notify_all();
        let position = LoaderPosition {
            epoch: self.epoch,
            batch: self.next_batch,
        };
        self.next_batch += 1;
        Some(Loaded {
            position,
            samples,
            skipped,
        })
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Let waiting workers run to the end of the order and exit.
        let (lock, cvar) = &*self.window;
        if let Ok(mut consumed) = lock.lock() {
            *consumed = usize::MAX / 2;
        }
        cvar.notify_all();
        // Dropping the receiver makes their next send fail.
        let (_tx, rx) = mpsc::channel();
        drop(std::mem::replace(&mut self.rx, rx));
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_uses_clip_statistics() {
        let v = normalize(&[255, 0, 0], 1);
        assert!((v[0] - (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]).abs() < 1e-6);
        assert!((v[1] - (0.0 - CLIP_MEAN[1]) / CLIP_STD[1]).abs() < 1e-6);
        // Channel-first: a 2×2 image puts the four reds first.
        let v = normalize(&[255, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 255], 2);
        assert_eq!(v.len(), 12);
        assert!(v[..2].iter().all(|&r| r > 1.0) && v[2..4].iter().all(|&r| r < 0.0));
        assert!(v[8..10].iter().all(|&b| b < 0.0) && v[10..].iter().all(|&b| b > 1.0));
    }

    #[test]
    fn epoch_orders_are_deterministic_permutations() {
        let a = epoch_order(50, 7, 0, true);
        assert_eq!(a, epoch_order(50, 7, 0, true));
        assert_ne!(a, epoch_order(50, 7, 1, true));
        assert_ne!(a, epoch_order(50, 8, 0, true));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_eq!(epoch_order(5, 7, 0, false), vec![0, 1, 2, 3, 4]);
    }
}
