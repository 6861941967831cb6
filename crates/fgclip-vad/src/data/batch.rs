//! From an annotated clip to a training sample, and samples to a batch (DESIGN.md §3,
//! with §7's long captions and hard negatives). The loader is in [`super::loader`].

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use fgclip_core::Tokenizer;

use super::annotations::Clip;
use super::augment::{AugmentOp, ClipAugment};
use super::naflex::{NaflexConfig, preprocess};
use super::sampling::{extent, place_key_frames, random_positions, uniform_positions};
use super::video::{VideoReader, probe};
use crate::checkpoint::safetensors_io::Array;

pub use super::loader::{Loaded, Loader, LoaderPosition, LoaderSettings, epoch_order};
pub use super::rng::{Rng, mix};

/// CLIP's pixel normalisation.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// The box of a region without key frames: the whole frame.
pub const VIRTUAL_BOX: [f32; 4] = [0.0, 0.0, 1.0, 1.0];

#[derive(Clone, Debug, PartialEq)]
pub struct SampleConfig {
    /// Frames per clip, T.
    pub frames: usize,
    /// Model image size, S.
    pub image_size: u32,
    /// Regions per clip, N.
    pub max_anns: usize,
    /// Sample normal clips (no boxes) over their whole video, not their `timestamps`
    /// (config `segments: whole_video`; the cost comparison of the paper's claim).
    pub whole_video_normals: bool,
    /// The clip augmentation pipeline (empty: none), see [`super::augment`].
    pub augment: Vec<AugmentOp>,
    /// FG-CLIP 2's image processor: each frame becomes the patches of its own grid
    /// (`image_size` is then unused).
    pub naflex: Option<NaflexConfig>,
    /// How a frame becomes S×S without augmentation (boxes follow).
    pub preprocess: super::preprocess::Preprocess,
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
    /// (T, 3, S, S), CLIP-normalised; with NaFlex (T, rows · columns, 3·p²), each
    /// frame's own patches.
    pub pixels: Vec<f32>,
    /// With NaFlex, the frames' patch grid (rows, columns); a clip's frames share it.
    pub spatial_shape: Option<(usize, usize)>,
    /// (T, N, 4).
    pub boxes: Vec<f32>,
    /// (T, N): 1 where the region has a box on that frame.
    pub mask: Vec<u8>,
    pub global_caption: String,
    pub long_caption: Option<String>,
    /// At most N; the batch pads the rest.
    pub region_captions: Vec<String>,
    /// Each kept region's hard negatives.
    pub hard_negatives: Vec<Vec<String>>,
}

/// Builds the sample of `clip` (videos under `root`).
pub fn build_sample(
    clip: &Clip,
    root: &Path,
    cfg: &SampleConfig,
    sampling: Sampling,
) -> Result<Sample> {
    build_sample_augmented(clip, root, cfg, sampling, 0)
}

/// [`build_sample`] with the clip's augmentation drawn from `augment_seed` (the loader's
/// (seed, epoch, clip)); no augmentation when `cfg.augment` is empty.
pub fn build_sample_augmented(
    clip: &Clip,
    root: &Path,
    cfg: &SampleConfig,
    sampling: Sampling,
    augment_seed: u64,
) -> Result<Sample> {
    let path = root.join(&clip.video);
    let info = probe(&path, false).with_context(|| format!("clip {}: video", clip.index))?;
    let timestamps = if cfg.whole_video_normals && !clip.has_boxes() {
        None
    } else {
        clip.timestamps
    };
    let ext = extent(timestamps, info.fps, info.frame_count).with_context(|| {
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
    let mut spatial_shape = None;
    let mut reader = VideoReader::open(&path).with_context(|| format!("clip {}", clip.index))?;
    // One set of augmentation parameters for the clip, drawn once its frame size is known.
    let mut aug: Option<(ClipAugment, u32, u32)> = None;
    // The decoded frame size, for mapping boxes into a centre crop.
    let mut frame_size: Option<(u32, u32)> = None;
    reader
        .read_frames(&positions, |f| {
            if let Some(nf) = &cfg.naflex {
                let (w, h) = (f.width as usize, f.height as usize);
                let img = preprocess(&[(&f.data, w, h)], nf)?.remove(0);
                if spatial_shape.is_some_and(|g| g != img.spatial_shape) {
                    bail!(
                        "frame {} has another size than the clip's first frame",
                        f.index
                    );
                }
                spatial_shape = Some(img.spatial_shape);
                let own = img.patches() * nf.patch_size * nf.patch_size * 3;
                let mut values = img.pixel_values;
                values.truncate(own);
                decoded.insert(f.index, values);
            } else if cfg.augment.is_empty() {
                let small = cfg.preprocess.apply(&f, cfg.image_size)?;
                frame_size = Some((f.width, f.height));
                decoded.insert(f.index, normalize(&small.data, s));
            } else {
                let (a, _, _) = *aug.get_or_insert_with(|| {
                    let a = ClipAugment::draw(&cfg.augment, f.width, f.height, augment_seed);
                    (a, f.width, f.height)
                });
                decoded.insert(f.index, normalize_f32(&a.frame(&f, cfg.image_size)?, s));
            }
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
    let mut pixels =
        Vec::with_capacity(positions.len() * decoded.values().next().map_or(0, Vec::len));
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
            let b = match (b, aug, frame_size) {
                (Some(b), Some((a, w, h)), _) => a.bbox(b, w, h),
                (Some(b), None, Some((w, h))) => cfg.preprocess.map_box(b, w, h, cfg.image_size),
                (b, _, _) => b,
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
        spatial_shape,
        boxes,
        mask,
        global_caption: clip.global_caption.clone(),
        long_caption: clip.long_caption.clone(),
        region_captions: regions.iter().map(|r| r.caption.clone()).collect(),
        hard_negatives: regions.iter().map(|r| r.hard_negatives.clone()).collect(),
    })
}

/// 0..=255 floats (S, S, 3) → CLIP-normalised (3, S, S), as [`normalize`].
pub fn normalize_f32(rgb: &[f32], s: usize) -> Vec<f32> {
    normalize_values(rgb, s, |v| v)
}

/// RGB24 (S, S, 3) → CLIP-normalised (3, S, S).
pub fn normalize(rgb: &[u8], s: usize) -> Vec<f32> {
    normalize_values(rgb, s, f32::from)
}

/// Interleaved RGB values (S, S, 3), each 0..=255 as `value` reads it → CLIP-normalised
/// planes (3, S, S).
fn normalize_values<T: Copy>(rgb: &[T], s: usize, value: impl Fn(T) -> f32) -> Vec<f32> {
    let mut out = vec![0f32; 3 * s * s];
    for (p, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * s * s + p] = (value(px[c]) / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
    out
}

/// How a caption becomes `len` ids: CLIP's BPE (cut, end-of-text kept, zero-padded) or a
/// `tokenizer.json` tokenizer in transformers' layout (FG-CLIP 2: lower-cased, padded with
/// its pad token on its side).
pub trait CaptionIds {
    fn ids(&self, text: &str, len: usize) -> Result<Vec<i64>>;
}

impl CaptionIds for Tokenizer {
    fn ids(&self, text: &str, len: usize) -> Result<Vec<i64>> {
        Ok(self.tokenize(text, len))
    }
}

impl CaptionIds for fgclip_core::HfTokenizer {
    fn ids(&self, text: &str, len: usize) -> Result<Vec<i64>> {
        self.tokenize_batch(&[text], len)
            .with_context(|| format!("tokenizing {text:?}"))
    }
}

/// How captions become ids: DESIGN.md §7's routing by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextLayout {
    /// The short path (global and region captions, hard negatives): 77 for CLIP.
    pub context_length: usize,
    /// Long captions' padded length (248) when the model has FG-CLIP's long path; `None`:
    /// long captions are left out.
    pub long_length: Option<usize>,
    /// Negatives per region, H (the most any region of the run has); 0: none.
    pub hard_negatives: usize,
}

impl TextLayout {
    /// Global and region captions only (DESIGN.md §3).
    pub fn short(context_length: usize) -> Self {
        Self {
            context_length,
            long_length: None,
            hard_negatives: 0,
        }
    }
}

/// B samples stacked in the layout of DESIGN.md §3 (and §7's optional tensors).
#[derive(Clone, Debug)]
pub struct Batch {
    pub b: usize,
    pub t: usize,
    pub n: usize,
    pub s: usize,
    pub clips: Vec<usize>,
    /// (B, T, 3, S, S); with NaFlex (B·T, P, 3·p²), every frame padded to P patches.
    pub pixel_values: Vec<f32>,
    /// With NaFlex: each frame's patch grid (B·T), and P (the most patches of any frame).
    pub spatial_shapes: Vec<(usize, usize)>,
    pub patches: usize,
    pub global_input_ids: Vec<i64>,
    pub region_input_ids: Vec<i64>,
    pub boxes: Vec<f32>,
    pub bbox_mask: Vec<u8>,
    pub box_nums: Vec<i64>,
    pub context_length: usize,
    /// Length of `global_long_input_ids` rows; 0: no long captions in this layout.
    pub long_length: usize,
    /// (B, long_length).
    pub global_long_input_ids: Vec<i64>,
    /// (B): 1 for clips with a long caption.
    pub global_long_mask: Vec<u8>,
    /// H; 0: no hard negatives in this layout.
    pub h: usize,
    /// (B, N, H, context_length), negatives only.
    pub hard_input_ids: Vec<i64>,
    /// (B, N, H).
    pub hard_mask: Vec<u8>,
}

impl Batch {
    pub fn collate(
        samples: &[Sample],
        cfg: &SampleConfig,
        tokenizer: &dyn CaptionIds,
        layout: &TextLayout,
    ) -> Result<Self> {
        let (t, n, s) = (cfg.frames, cfg.max_anns, cfg.image_size as usize);
        let context_length = layout.context_length;
        let h = layout.hard_negatives;
        let mut batch = Batch {
            b: samples.len(),
            t,
            n,
            s,
            clips: samples.iter().map(|x| x.clip).collect(),
            pixel_values: Vec::with_capacity(samples.len() * t * 3 * s * s),
            spatial_shapes: Vec::new(),
            patches: 0,
            global_input_ids: Vec::new(),
            region_input_ids: Vec::new(),
            boxes: Vec::new(),
            bbox_mask: Vec::new(),
            box_nums: Vec::new(),
            context_length,
            long_length: layout.long_length.unwrap_or(0),
            global_long_input_ids: Vec::new(),
            global_long_mask: Vec::new(),
            h,
            hard_input_ids: Vec::new(),
            hard_mask: Vec::new(),
        };
        if let Some(nf) = &cfg.naflex {
            batch.naflex_pixels(samples, nf.patch_size * nf.patch_size * 3)?;
        }
        for x in samples {
            if cfg.naflex.is_none() {
                batch.pixel_values.extend_from_slice(&x.pixels);
            }
            batch
                .global_input_ids
                .extend(tokenizer.ids(&x.global_caption, context_length)?);
            for i in 0..n {
                let caption = x.region_captions.get(i).map_or("", String::as_str);
                batch
                    .region_input_ids
                    .extend(tokenizer.ids(caption, context_length)?);
            }
            batch.boxes.extend_from_slice(&x.boxes);
            batch.bbox_mask.extend_from_slice(&x.mask);
            batch.box_nums.push(x.region_captions.len() as i64);
            if let Some(ll) = layout.long_length {
                // A long caption always takes the long path, even when short (FG-CLIP).
                let text = x.long_caption.as_deref().unwrap_or("");
                batch.global_long_input_ids.extend(tokenizer.ids(text, ll)?);
                batch
                    .global_long_mask
                    .push(u8::from(x.long_caption.is_some()));
            }
            for i in 0..n {
                let negatives = x.hard_negatives.get(i).map_or(&[][..], Vec::as_slice);
                for j in 0..h {
                    let caption = negatives.get(j).map_or("", String::as_str);
                    batch
                        .hard_input_ids
                        .extend(tokenizer.ids(caption, context_length)?);
                    batch.hard_mask.push(u8::from(j < negatives.len()));
                }
            }
        }
        Ok(batch)
    }

    /// Every frame's own patches padded to the batch's largest grid, and the grids.
    fn naflex_pixels(&mut self, samples: &[Sample], dim: usize) -> Result<()> {
        let t = self.t;
        let mut grids = Vec::with_capacity(samples.len());
        for x in samples {
            let Some((r, c)) = x.spatial_shape else {
                bail!("clip {}: its frames were not cut into patches", x.clip);
            };
            if x.pixels.len() != t * r * c * dim {
                bail!(
                    "clip {}: {} pixel values for {t} frames of {r}×{c} patches",
                    x.clip,
                    x.pixels.len()
                );
            }
            grids.push((r, c));
        }
        let p = grids.iter().map(|&(r, c)| r * c).max().unwrap_or(0);
        self.patches = p;
        self.pixel_values = vec![0f32; samples.len() * t * p * dim];
        for (bi, (x, &(r, c))) in samples.iter().zip(&grids).enumerate() {
            let own = r * c * dim;
            for ti in 0..t {
                let dst = (bi * t + ti) * p * dim;
                self.pixel_values[dst..dst + own]
                    .copy_from_slice(&x.pixels[ti * own..(ti + 1) * own]);
                self.spatial_shapes.push((r, c));
            }
        }
        Ok(())
    }

    /// The tensors under DESIGN.md's names, for a safetensors file.
    pub fn to_arrays(&self) -> BTreeMap<String, Array> {
        let (b, t, n, s, l) = (self.b, self.t, self.n, self.s, self.context_length);
        let pixel_shape = if self.spatial_shapes.is_empty() {
            vec![b, t, 3, s, s]
        } else {
            let p = self.patches;
            vec![b * t, p, self.pixel_values.len() / (b * t * p).max(1)]
        };
        let mut out = BTreeMap::from([
            (
                "pixel_values".into(),
                Array::F32 {
                    shape: pixel_shape,
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
        ]);
        if !self.spatial_shapes.is_empty() {
            let p = self.patches;
            out.insert(
                "spatial_shapes".into(),
                Array::I64 {
                    shape: vec![b * t, 2],
                    data: self
                        .spatial_shapes
                        .iter()
                        .flat_map(|&(r, c)| [r as i64, c as i64])
                        .collect(),
                },
            );
            out.insert(
                "pixel_attention_mask".into(),
                Array::I64 {
                    shape: vec![b * t, p],
                    data: self
                        .spatial_shapes
                        .iter()
                        .flat_map(|&(r, c)| (0..p).map(move |i| i64::from(i < r * c)))
                        .collect(),
                },
            );
        }
        if self.long_length > 0 {
            out.insert(
                "global_long_input_ids".into(),
                Array::I64 {
                    shape: vec![b, self.long_length],
                    data: self.global_long_input_ids.clone(),
                },
            );
            out.insert(
                "global_long_mask".into(),
                Array::U8 {
                    shape: vec![b],
                    data: self.global_long_mask.clone(),
                },
            );
        }
        if self.h > 0 {
            out.insert(
                "hard_input_ids".into(),
                Array::I64 {
                    shape: vec![b, n, self.h, l],
                    data: self.hard_input_ids.clone(),
                },
            );
            out.insert(
                "hard_mask".into(),
                Array::U8 {
                    shape: vec![b, n, self.h],
                    data: self.hard_mask.clone(),
                },
            );
        }
        out
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
}
