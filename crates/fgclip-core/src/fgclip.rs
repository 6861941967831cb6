//! The FG-CLIP video model and its dual contrastive loss (Xie et al., "FG-CLIP:
//! Fine-Grained Visual and Textual Alignment", 2025; `fgclip/model/clip_strc/fgclip.py`),
//! applied to clips of T frames as DESIGN.md §4 defines:
//!
//! - video embedding `v = normalize(mean_t normalize(e_t))`;
//! - region embedding: ROI Align (1×1, aligned, adaptive) of the dense patch grid on each
//!   valid frame, normalised, averaged over the frames, normalised;
//! - `loss = CLIP(v, global text; s_g) + λ · CLIP(regions, region texts; s_r)`, with
//!   `s = exp(logit_scale)` unclamped, as FG-CLIP and HF `CLIPModel` (training clamps the
//!   parameters after each step instead), and the region loss 0 when there are no regions.

use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::ClipConfig;
use crate::error::WeightError;
use crate::loss::contrastive_loss;
use crate::model::{ClipModel, normalize};
use crate::names::{HfLayout, NamedParam, ParamRef};
use crate::roi::{RoiAlignConfig, roi_align};
use crate::weights::Weights;

/// ln 100: open_clip's and OpenAI's bound for the logit-scale parameters, applied after
/// each optimizer step (never in the forward).
pub const LOGIT_SCALE_MAX: f64 = 4.605_170_185_988_092;
/// FG-CLIP's initial region logit scale, ln(1/0.07).
pub const LOGIT_SCALE_REGION_INIT: f32 = 2.6592;

/// Where [`FgClip::load`] takes the region scale's initial value from (DESIGN.md §7).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RegionScale {
    /// `logit_scale_region` in the weights (an fgclip checkpoint).
    FromWeights,
    /// A value: an export's `fgclip.json`, or [`LOGIT_SCALE_REGION_INIT`] for a model made
    /// from scratch.
    Value(f32),
    /// The checkpoint's own `logit_scale`, as FG-CLIP's training script starts it from a
    /// CLIP checkpoint (4.6052 for OpenAI's).
    SameAsLogitScale,
}

#[derive(Module, Debug)]
pub struct FgClip {
    pub clip: ClipModel,
    /// Shape [1]; saved beside the HF weights as `logit_scale_region`.
    pub logit_scale_region: Param<Tensor<1>>,
}

/// A batch in the layout of DESIGN.md §3. Boxes and masks are host data: they select and
/// weight features but are never differentiated.
pub struct VideoBatch {
    /// (B, T, 3, S, S).
    pub pixel_values: Tensor<5>,
    /// (B, L).
    pub global_input_ids: Tensor<2, Int>,
    /// (B, N, L).
    pub region_input_ids: Tensor<3, Int>,
    /// (B, T, N, 4), normalised `[x1, y1, x2, y2]`.
    pub boxes: Vec<f32>,
    /// (B, T, N).
    pub bbox_mask: Vec<u8>,
}

/// The loss and its named terms.
pub struct LossTerms {
    pub loss: Tensor<1>,
    pub loss_global: Tensor<1>,
    pub loss_region: Tensor<1>,
    /// K: regions with at least one valid frame.
    pub num_regions: usize,
}

impl FgClip {
    /// CLIP weights by HF names, `logit_scale_region` as `region_scale` says.
    pub fn load(
        w: &Weights,
        config: &ClipConfig,
        region_scale: RegionScale,
    ) -> Result<Self, WeightError> {
        let clip = ClipModel::load(w, config)?;
        let region = match region_scale {
            RegionScale::FromWeights => w.scalar("logit_scale_region")?,
            RegionScale::Value(v) => Tensor::from_data(TensorData::new(vec![v], [1]), w.device()),
            // A leaf of its own: sharing the graph node would send its gradient to both.
            RegionScale::SameAsLogitScale => clip.logit_scale.val().detach(),
        };
        Ok(Self {
            clip,
            logit_scale_region: w.param("logit_scale_region", region),
        })
    }

    /// Where the matmul-heavy work computes; parameters stay f32 (see
    /// [`crate::precision::Precision`]).
    pub fn set_precision(&mut self, precision: crate::precision::Precision) {
        self.clip.set_precision(precision);
    }

    /// `v` (B, P) and, with `with_dense`, the projected dense grids (B·T, g, g, P).
    pub fn encode_video(
        &self,
        pixel_values: Tensor<5>,
        with_dense: bool,
    ) -> (Tensor<2>, Option<Tensor<4>>) {
        let [b, t, c, s, _] = pixel_values.dims();
        let out = self
            .clip
            .encode_image(pixel_values.reshape([b * t, c, s, s]), with_dense);
        let p = out.embeds.dims()[1];
        let v = normalize(
            normalize(out.embeds)
                .reshape([b, t, p])
                .mean_dim(1)
                .reshape([b, p]),
        );
        (v, out.patch_grid)
    }

    /// Region embeddings (K, P) from dense grids (B·T, g, g, P), and the (b, i) of each.
    pub fn encode_regions(
        &self,
        grid: Tensor<4>,
        boxes: &[f32],
        mask: &[u8],
        b: usize,
        t: usize,
        n: usize,
    ) -> Option<(Tensor<2>, Vec<(usize, usize)>)> {
        let [bt, g, _, p] = grid.dims();
        let mut roi_boxes = Vec::new();
        let mut roi_image = Vec::new();
        let mut regions = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for bi in 0..b {
            for i in 0..n {
                let frames: Vec<usize> = (0..t)
                    .filter(|&ti| mask[(bi * t + ti) * n + i] != 0)
                    .collect();
                if frames.is_empty() {
                    continue;
                }
                let mut rows = Vec::with_capacity(frames.len());
                for ti in frames {
                    let o = ((bi * t + ti) * n + i) * 4;
                    // float32, as FG-CLIP computes box × g (DESIGN.md §4).
                    let gs = g as f32;
                    roi_boxes.push([
                        boxes[o] * gs,
                        boxes[o + 1] * gs,
                        boxes[o + 2] * gs,
                        boxes[o + 3] * gs,
                    ]);
                    roi_image.push(bi * t + ti);
                    rows.push(roi_boxes.len() - 1);
                }
                regions.push((bi, i));
                members.push(rows);
            }
        }
        if regions.is_empty() {
            return None;
        }
        let device = grid.device();
        // (B·T, g, g, P) → (B·T, P, g, g): ROI Align's channel-first layout.
        let features = grid.permute([0, 3, 1, 2]);
        debug_assert_eq!(features.dims()[0], bt);
        let r = roi_boxes.len();
        let rois =
            roi_align(features, &roi_boxes, &roi_image, &RoiAlignConfig::fgclip()).reshape([r, p]);
        let rois = normalize(rois);
        let k = regions.len();
        let mut mean = vec![0f32; k * r];
        for (ki, rows) in members.iter().enumerate() {
            for &ri in rows {
                mean[ki * r + ri] = 1.0 / rows.len() as f32;
            }
        }
        let mean = Tensor::<2>::from_data(TensorData::new(mean, [k, r]), &device);
        Some((normalize(mean.matmul(rois)), regions))
    }

    /// The FG-CLIP loss of a batch.
    pub fn loss(&self, batch: &VideoBatch, region_weight: f64) -> LossTerms {
        let [b, t, _, _, _] = batch.pixel_values.dims();
        let [_, n, l] = batch.region_input_ids.dims();
        let device = batch.pixel_values.device();
        let (video, grid) = self.encode_video(batch.pixel_values.clone(), true);
        let text = normalize(self.clip.encode_text(batch.global_input_ids.clone()));
        let s_g = self.clip.logit_scale.val().exp();
        let loss_global = contrastive_loss(video, text, s_g);
        let regions =
            grid.and_then(|g| self.encode_regions(g, &batch.boxes, &batch.bbox_mask, b, t, n));
        let (loss_region, num_regions) = match regions {
            Some((emb, which)) => {
                let rows: Vec<i64> = which.iter().map(|&(bi, i)| (bi * n + i) as i64).collect();
                let k = rows.len();
                let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [k]), &device);
                let ids = batch
                    .region_input_ids
                    .clone()
                    .reshape([b * n, l])
                    .select(0, index);
                let region_text = normalize(self.clip.encode_text(ids));
                let s_r = self.logit_scale_region.val().exp();
                (contrastive_loss(emb, region_text, s_r), k)
            }
            None => (Tensor::<1>::zeros([1], &device), 0),
        };
        LossTerms {
            loss: loss_global.clone() + loss_region.clone() * region_weight,
            loss_global,
            loss_region,
            num_regions,
        }
    }

    /// Every parameter under its HF name, `logit_scale_region` last.
    pub fn named_params(&self) -> Vec<NamedParam<'_>> {
        let mut out = self.clip.named_params();
        out.push(NamedParam {
            name: "logit_scale_region".into(),
            layout: HfLayout::Scalar,
            param: ParamRef::D1(&self.logit_scale_region),
        });
        out
    }
}
