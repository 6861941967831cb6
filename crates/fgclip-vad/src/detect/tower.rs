//! The image side of a detector: CLIP's tower on frames squashed to S×S, or FG-CLIP 2's
//! NaFlex tower on frames at their own aspect ratio (its image processor); each with its
//! zero-shot head (softmax for CLIP, sigmoid with `logit_bias` for FG-CLIP 2) and the dense
//! map behind a thumbnail's heat overlay.

use std::path::Path;

use crate::data::preprocess::Preprocess;
use anyhow::{Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use fgclip_core::ClipModel;
use fgclip_core::fgclip2::{Fgclip2Model, NaflexPixels, Walk};
use fgclip_core::model::normalize;
use fgclip_core::zeroshot::{ZeroShotHead, ZeroShotRule, class_embedding};

use super::prompts::PromptSet;
use crate::checkpoint::fgclip2::load_fgclip2_tokenizer;
use crate::data::batch::normalize as normalize_pixels;
use crate::data::naflex::{NaflexConfig, preprocess};
use crate::data::video::RgbFrame;
use crate::device::host_f32;

/// A frame ready for the tower.
pub struct Prepared {
    /// CLIP: (3, S, S) normalised pixels; FG-CLIP 2: (budget, C·p·p) patches.
    pub values: Vec<f32>,
    /// FG-CLIP 2: the frame's patch grid (rows, columns); CLIP: (S, S).
    pub grid: (usize, usize),
    /// FG-CLIP 2: the patch budget; CLIP: S.
    pub size: usize,
}

/// See the module header.
pub enum ImageTower {
    /// CLIP or FG-CLIP v1, with how its frames become S×S.
    Clip {
        model: Box<ClipModel>,
        preprocess: Preprocess,
    },
    Fgclip2 {
        model: Box<Fgclip2Model>,
        processor: NaflexConfig,
    },
}

impl ImageTower {
    /// Width of the image embeddings.
    pub fn embed_dim(&self) -> usize {
        match self {
            Self::Clip { model: m, .. } => m.config().projection_dim,
            Self::Fgclip2 { model, .. } => model.config().vision_config.hidden_size,
        }
    }

    pub fn set_precision(&mut self, precision: fgclip_core::Precision) {
        match self {
            Self::Clip { model: m, .. } => m.set_precision(precision),
            Self::Fgclip2 { model, .. } => model.set_precision(precision),
        }
    }

    /// Resizes and normalises one decoded frame (on the decode thread).
    pub fn prepare(&self, f: &RgbFrame) -> Result<Prepared> {
        match self {
            Self::Clip {
                model: m,
                preprocess,
            } => {
                let s = m.config().vision_config.image_size;
                let small = preprocess.apply(f, s as u32)?;
                Ok(Prepared {
                    values: normalize_pixels(&small.data, s),
                    grid: (s, s),
                    size: s,
                })
            }
            Self::Fgclip2 { processor, .. } => {
                let (w, h) = (f.width as usize, f.height as usize);
                let Some(img) = preprocess(&[(&f.data, w, h)], processor)?.pop() else {
                    bail!("frame {}: the image processor gave nothing", f.index);
                };
                Ok(Prepared {
                    grid: img.spatial_shape,
                    size: img.max_num_patches,
                    values: img.pixel_values,
                })
            }
        }
    }

    /// Normalised embeddings (n, D) of prepared frames, row-major.
    pub fn embed(&self, frames: &[&Prepared], device: &Device) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(frames.len() * self.embed_dim());
        // Frames of one size run together (a video's frames share one).
        for run in frames.chunk_by(|a, b| a.size == b.size) {
            let b = run.len();
            let values: Vec<f32> = run.iter().flat_map(|p| p.values.iter().copied()).collect();
            let size = run[0].size;
            let e = match self {
                Self::Clip { model: m, .. } => {
                    let x =
                        Tensor::<4>::from_data(TensorData::new(values, [b, 3, size, size]), device);
                    m.encode_image(x, false).embeds
                }
                Self::Fgclip2 { model, .. } => {
                    let dim = model.config().vision_config.patch_dim();
                    model.image_features(&NaflexPixels {
                        pixel_values: Tensor::from_data(
                            TensorData::new(values, [b, size, dim]),
                            device,
                        ),
                        spatial_shapes: run.iter().map(|p| p.grid).collect(),
                    })
                }
            };
            out.extend(host_f32(normalize(e))?);
        }
        Ok(out)
    }

    /// The zero-shot head of `prompts`: CLIP's softmax at `min(exp(logit_scale), 100)`, or
    /// FG-CLIP 2's sigmoid at `exp(logit_scale)` with `logit_bias` (prompts through the short
    /// walk, lower-cased). `scale` replaces the model's scale. `tokenizer`: a tokenizer file or
    /// folder (CLIP), a folder with `tokenizer.json` (FG-CLIP 2).
    pub fn head(
        &self,
        tokenizer: &Path,
        prompts: &PromptSet,
        scale: Option<f64>,
        device: &Device,
    ) -> Result<ZeroShotHead> {
        match self {
            Self::Clip { model: m, .. } => {
                let tokenizer = crate::checkpoint::hf::load_tokenizer(tokenizer)?;
                super::prompts::build_head(m, &tokenizer, prompts, scale, device)
            }
            Self::Fgclip2 { model, .. } => {
                let tokenizer = load_fgclip2_tokenizer(tokenizer)?;
                let l = model.text_model.max_length(Walk::Short);
                let mut classes = Vec::new();
                for c in std::iter::once(&prompts.normal).chain(&prompts.classes) {
                    let texts: Vec<&String> = c
                        .templates
                        .iter()
                        .filter(|t| !t.trim().is_empty())
                        .collect();
                    let ids = tokenizer.tokenize_batch(&texts, l)?;
                    let ids =
                        Tensor::<2, Int>::from_data(TensorData::new(ids, [texts.len(), l]), device);
                    classes.push(class_embedding(model.text_features(ids, Walk::Short)));
                }
                let first = |t: Tensor<1>| -> Result<f64> {
                    Ok(host_f32(t)?.first().map_or(0.0, |&v| f64::from(v)))
                };
                let scale = match scale {
                    Some(s) => s,
                    None => first(model.logit_scale.val().exp())?,
                };
                let bias = first(model.logit_bias.val())?;
                Ok(ZeroShotHead::new(classes, scale).with_rule(ZeroShotRule::Sigmoid { bias }))
            }
        }
    }

    /// Cosine of each patch of `f` to class `class`, with the grid's (rows, columns); None
    /// when the tower has no dense path.
    pub fn class_map(
        &self,
        f: &RgbFrame,
        head: &ZeroShotHead,
        class: usize,
        device: &Device,
    ) -> Result<Option<(Vec<f32>, usize, usize)>> {
        let prepared = self.prepare(f)?;
        match self {
            Self::Clip { model: m, .. } => {
                let s = prepared.size;
                let x =
                    Tensor::<4>::from_data(TensorData::new(prepared.values, [1, 3, s, s]), device);
                let Some(grid) = m.encode_image(x, true).patch_grid else {
                    return Ok(None);
                };
                let g = grid.dims()[1];
                Ok(Some((host_f32(head.class_map(grid, class))?, g, g)))
            }
            Self::Fgclip2 { model, .. } => {
                let (h, w) = prepared.grid;
                let dim = model.config().vision_config.patch_dim();
                let x = NaflexPixels {
                    pixel_values: Tensor::from_data(
                        TensorData::new(prepared.values, [1, prepared.size, dim]),
                        device,
                    ),
                    spatial_shapes: vec![(h, w)],
                };
                let (_, dense) = model.image_and_dense_features(&x);
                let d = dense.dims()[2];
                let grid = dense.slice([0..1, 0..h * w, 0..d]).reshape([1, h, w, d]);
                Ok(Some((host_f32(head.class_map(grid, class))?, h, w)))
            }
        }
    }
}
