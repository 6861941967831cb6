//! The FG-CLIP video model and its loss (Xie et al., "FG-CLIP: Fine-Grained Visual and
//! Textual Alignment", 2025; v1.0 `fgclip/model/clip_strc/fgclip.py`: `forward`,
//! `clip_loss`, `pairwise_contrastive_loss`, `hard_contrastive_loss`), applied to clips of
//! T frames as DESIGN.md §4 and §7 define:
//!
//! - video embedding `v = normalize(mean_t normalize(e_t))`, or the temporal transformer's
//!   fusion of the `normalize(e_t)` ([`crate::fusion`]);
//! - region embedding: ROI Align (1×1, aligned, adaptive) of the dense patch grid on each
//!   valid frame, normalised, averaged over the frames, normalised;
//! - `loss = CLIP(v, global text; s_g) + CLIP(v, long text; s_g) + λ · CLIP(regions,
//!   region texts; s_r) + μ · hard`, the long term over the clips with a long caption
//!   (FG-CLIP's `loss_itcl`), `hard` the mean over regions with negatives of
//!   CE(s_h · [⟨r, t_pos⟩, ⟨r, t_1⟩ … ⟨r, t_H⟩], 0);
//! - `s = exp(logit_scale)` unclamped, as FG-CLIP and HF `CLIPModel` (training clamps the
//!   parameters after each step instead); a term without inputs is 0. With T = 1 this is
//!   FG-CLIP's image loss (tested on `fgclip_v1_tiny`).

use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor, TensorData};

use crate::config::ClipConfig;
use crate::error::WeightError;
use crate::fusion::TemporalFusion;
use crate::gather::{OneProcess, RowGather};
use crate::loss::contrastive_loss;
use crate::model::{ClipModel, normalize};
use crate::names::{HfLayout, NamedParam, ParamRef};
use crate::roi::{RoiAlignConfig, roi_align};
use crate::weights::Weights;
use hard_negatives::HardSelection;
use regions::RegionFrames;

pub(crate) mod hard_negatives;
pub(crate) mod regions;

/// ln 100: open_clip's and OpenAI's bound for the logit-scale parameters, applied after
/// each optimizer step (never in the forward).
pub const LOGIT_SCALE_MAX: f64 = 4.605_170_185_988_092;
/// FG-CLIP's initial region logit scale, ln(1/0.07).
pub const LOGIT_SCALE_REGION_INIT: f32 = 2.6592;

/// Where [`FgClip::load`] takes a scale's initial value from (DESIGN.md §7).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScaleInit {
    /// The checkpoint's own tensor: `logit_scale_region` (fgclip) or
    /// `logit_scale_finegraind` (FG-CLIP v1) for the region scale, `logit_scale_hardneg`
    /// for the hard-negative scale.
    FromWeights,
    /// A value: an export's `fgclip.json`, or [`LOGIT_SCALE_REGION_INIT`] for a model made
    /// from scratch.
    Value(f32),
    /// The checkpoint's own `logit_scale`, as FG-CLIP's training script starts it from a
    /// CLIP checkpoint (4.6052 for OpenAI's).
    SameAsLogitScale,
}

impl ScaleInit {
    /// The initial value of the scale `name` (shape [1]); `logit_scale` is the model's.
    pub fn value(
        self,
        w: &Weights,
        name: &str,
        logit_scale: &Param<Tensor<1>>,
    ) -> Result<Tensor<1>, WeightError> {
        Ok(match self {
            ScaleInit::FromWeights => w.scalar(name)?,
            ScaleInit::Value(v) => Tensor::from_data(TensorData::new(vec![v], [1]), w.device()),
            // A leaf of its own: sharing the graph node would send its gradient to both.
            ScaleInit::SameAsLogitScale => logit_scale.val().detach(),
        })
    }
}

/// Initial values of the region and hard-negative scales.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scales {
    pub region: ScaleInit,
    pub hard_negative: ScaleInit,
}

impl Scales {
    /// Both scales from the same rule.
    pub fn both(init: ScaleInit) -> Self {
        Self {
            region: init,
            hard_negative: init,
        }
    }

    /// A model made from scratch: both at [`LOGIT_SCALE_REGION_INIT`].
    pub fn fresh() -> Self {
        Self::both(ScaleInit::Value(LOGIT_SCALE_REGION_INIT))
    }
}

/// HF name of the hard-negative scale (FG-CLIP's, used by fgclip too).
pub const HARD_NEGATIVE_SCALE_NAME: &str = "logit_scale_hardneg";

/// HF name of the region scale: FG-CLIP v1's `logit_scale_finegraind` for its
/// checkpoints, fgclip's `logit_scale_region` otherwise.
pub fn region_scale_name(config: &ClipConfig) -> &'static str {
    if config.is_fgclip_v1() {
        "logit_scale_finegraind"
    } else {
        "logit_scale_region"
    }
}

#[derive(Module, Debug)]
pub struct FgClip {
    pub clip: ClipModel,
    /// Shape [1]; saved as [`region_scale_name`].
    pub logit_scale_region: Param<Tensor<1>>,
    /// Shape [1]; saved as `logit_scale_hardneg`.
    pub logit_scale_hardneg: Param<Tensor<1>>,
    /// The temporal transformer; none: mean pooling over the frames.
    pub fusion: Option<TemporalFusion>,
}

/// FG-CLIP's long captions of a batch (its `loss_itcl` term).
pub struct LongCaptions {
    /// (B, L ≤ 248): every clip's row, padding rows where `mask` is 0.
    pub input_ids: Tensor<2, Int>,
    /// (B): 1 for the clips that have a long caption.
    pub mask: Vec<u8>,
}

/// Hard-negative captions per region.
pub struct HardNegatives {
    /// (B, N, H, L), the negatives only (the positive is the region caption).
    pub input_ids: Tensor<4, Int>,
    /// (B, N, H): 1 for a real negative.
    pub mask: Vec<u8>,
}

/// A batch in the layout of DESIGN.md §3 and §7. Boxes and masks are host data: they
/// select and weight features but are never differentiated.
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
    /// Long captions; ignored by a model without the long path (the caller says so).
    pub global_long: Option<LongCaptions>,
    pub hard_negatives: Option<HardNegatives>,
}

/// The weights of the loss terms: `loss = global + long + region·λ + hard·μ`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossWeights {
    /// λ, FG-CLIP's 0.1.
    pub region: f64,
    /// μ, FG-CLIP's 0.5.
    pub hard_negative: f64,
}

/// The loss and its named terms (DESIGN.md §7's names).
pub struct LossTerms {
    pub loss: Tensor<1>,
    /// FG-CLIP's `loss_itcs`.
    pub loss_global: Tensor<1>,
    /// FG-CLIP's `loss_itcl`; 0 without long captions.
    pub loss_global_long: Tensor<1>,
    pub loss_region: Tensor<1>,
    /// 0 when no region has a negative.
    pub loss_hard_negative: Tensor<1>,
    /// K: regions with at least one valid frame.
    pub num_regions: usize,
    /// Clips whose long caption entered the loss.
    pub num_long: usize,
    /// Regions of the region loss with at least one hard negative.
    pub num_hard_regions: usize,
}

impl LossTerms {
    /// The terms `[global, global_long, region, hard_negative]` and counts `[regions, long,
    /// hard regions]`, with `loss = global + global_long + λ·region + μ·hard`.
    fn weighted(weights: &LossWeights, terms: [Tensor<1>; 4], counts: [usize; 3]) -> Self {
        let [
            loss_global,
            loss_global_long,
            loss_region,
            loss_hard_negative,
        ] = terms;
        let [num_regions, num_long, num_hard_regions] = counts;
        Self {
            loss: loss_global.clone()
                + loss_global_long.clone()
                + loss_region.clone() * weights.region
                + loss_hard_negative.clone() * weights.hard_negative,
            loss_global,
            loss_global_long,
            loss_region,
            loss_hard_negative,
            num_regions,
            num_long,
            num_hard_regions,
        }
    }
}

impl FgClip {
    /// CLIP weights by HF names, the two extra scales as `scales` says.
    pub fn load(w: &Weights, config: &ClipConfig, scales: Scales) -> Result<Self, WeightError> {
        let clip = ClipModel::load(w, config)?;
        let init = |how: ScaleInit, name: &str| how.value(w, name, &clip.logit_scale);
        let region_name = region_scale_name(config);
        let region = init(scales.region, region_name)?;
        let hard = init(scales.hard_negative, HARD_NEGATIVE_SCALE_NAME)?;
        Ok(Self {
            clip,
            logit_scale_region: w.param(region_name, region),
            logit_scale_hardneg: w.param(HARD_NEGATIVE_SCALE_NAME, hard),
            fusion: None,
        })
    }

    /// The model with `fusion` over the frames (none: mean pooling).
    pub fn with_fusion(mut self, fusion: Option<TemporalFusion>) -> Self {
        self.fusion = fusion;
        self
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
        let frames = normalize(out.embeds).reshape([b, t, p]);
        let v = normalize(fuse_frames(self.fusion.as_ref(), frames));
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
        let frames = RegionFrames::new(boxes, mask, [b, t, n])?;
        // float32, as FG-CLIP computes box × g (DESIGN.md §4).
        let gs = g as f32;
        let roi_boxes: Vec<[f32; 4]> = frames.boxes.iter().map(|bx| bx.map(|v| v * gs)).collect();
        let device = grid.device();
        // (B·T, g, g, P) → (B·T, P, g, g): ROI Align's channel-first layout.
        let features = grid.permute([0, 3, 1, 2]);
        debug_assert_eq!(features.dims()[0], bt);
        let r = roi_boxes.len();
        let rois = roi_align(
            features,
            &roi_boxes,
            &frames.image,
            &RoiAlignConfig::fgclip(),
        )
        .reshape([r, p]);
        Some((frames.embed(rois, &device), frames.regions))
    }

    /// The FG-CLIP loss of a batch (DESIGN.md §4 and §7), in one process.
    pub fn loss(&self, batch: &VideoBatch, weights: &LossWeights) -> LossTerms {
        self.loss_gathered(batch, weights, &OneProcess)
    }

    /// The loss of this process's share of a global batch: every contrastive term over the
    /// rows of all processes (see [`crate::gather`]); the hard-negative term over this
    /// process's regions, divided by the regions of all processes. `loss_hard_negative`
    /// (and `loss`) hold this process's share of the hard term: summed over processes,
    /// the shares give the global value. The counts are global.
    pub fn loss_gathered(
        &self,
        batch: &VideoBatch,
        weights: &LossWeights,
        gather: &dyn RowGather,
    ) -> LossTerms {
        let [b, t, _, _, _] = batch.pixel_values.dims();
        let [_, n, l] = batch.region_input_ids.dims();
        let device = batch.pixel_values.device();
        let zero = || Tensor::<1>::zeros([1], &device);
        let p = self.clip.config().projection_dim;
        let (video, grid) = self.encode_video(batch.pixel_values.clone(), true);
        let text = normalize(self.clip.encode_text(batch.global_input_ids.clone()));
        let s_g = self.clip.logit_scale.val().exp();
        let all_video = gather.gather(Some(video.clone()), p, &device);
        let all_text = gather.gather(Some(text), p, &device);
        let loss_global = match (all_video, all_text) {
            (Some(v), Some(t)) => contrastive_loss(v, t, s_g.clone()),
            _ => zero(),
        };

        let (loss_global_long, num_long) = match self.long_term(video, batch, s_g, gather) {
            Some((loss, k)) => (loss, k),
            None => (zero(), 0),
        };

        let regions =
            grid.and_then(|g| self.encode_regions(g, &batch.boxes, &batch.bbox_mask, b, t, n));
        let mut local_region = None;
        let mut hard_share = None;
        let mut local_hard_regions = 0;
        if let Some((emb, which)) = regions {
            let rows: Vec<i64> = which.iter().map(|&(bi, i)| (bi * n + i) as i64).collect();
            let k = rows.len();
            let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [k]), &device);
            let region_ids = batch
                .region_input_ids
                .clone()
                .reshape([b * n, l])
                .select(0, index);
            // Region captions and their hard negatives share one text-tower pass.
            let hard = batch
                .hard_negatives
                .as_ref()
                .and_then(|h| HardSelection::new(h, &which, n, l));
            let ids = match &hard {
                Some(sel) => Tensor::cat(vec![region_ids, sel.ids.clone()], 0),
                None => region_ids,
            };
            let texts = normalize(self.clip.encode_text(ids));
            let region_text = texts.clone().slice([0..k, 0..p]);
            if let Some(sel) = hard {
                let m = sel.num_negatives;
                let negatives = texts.slice([k..k + m, 0..p]);
                let s_h = self.logit_scale_hardneg.val().exp();
                local_hard_regions = sel.regions.len();
                hard_share = Some(sel.loss_sum(emb.clone(), region_text.clone(), negatives, s_h));
            }
            local_region = Some((emb, region_text));
        }
        // Every process gathers, with or without regions of its own.
        let (local_emb, local_text) = local_region.unzip();
        let all_emb = gather.gather(local_emb, p, &device);
        let all_region_text = gather.gather(local_text, p, &device);
        let (loss_region, num_regions) = match (all_emb, all_region_text) {
            (Some(e), Some(t)) => {
                let k = e.dims()[0];
                let s_r = self.logit_scale_region.val().exp();
                (contrastive_loss(e, t, s_r), k)
            }
            _ => (zero(), 0),
        };
        let num_hard_regions = gather.sum_count(local_hard_regions);
        let loss_hard_negative = match hard_share {
            Some(sum) if num_hard_regions > 0 => sum.div_scalar(num_hard_regions as f64),
            _ => zero(),
        };
        LossTerms::weighted(
            weights,
            [
                loss_global,
                loss_global_long,
                loss_region,
                loss_hard_negative,
            ],
            [num_regions, num_long, num_hard_regions],
        )
    }

    /// The loss on a process that has no clip in this step: it takes part in every gather
    /// (in [`Self::loss_gathered`]'s order) with no rows of its own, so the others are not
    /// left waiting, and computes the same global terms from their rows. Only the scales
    /// of the gathered terms get a gradient here. `long_captions`: the batches carry long
    /// captions (the other processes' layout).
    pub fn loss_without_rows(
        &self,
        long_captions: bool,
        weights: &LossWeights,
        gather: &dyn RowGather,
        device: &burn::tensor::Device,
    ) -> LossTerms {
        let zero = || Tensor::<1>::zeros([1], device);
        let p = self.clip.config().projection_dim;
        let s_g = self.clip.logit_scale.val().exp();
        let pair = |s: Tensor<1>| -> Option<(Tensor<1>, usize)> {
            let a = gather.gather(None, p, device);
            let b = gather.gather(None, p, device);
            let (a, b) = (a?, b?);
            let k = a.dims()[0];
            Some((contrastive_loss(a, b, s), k))
        };
        let loss_global = pair(s_g.clone()).map_or_else(zero, |(l, _)| l);
        let (loss_global_long, num_long) = if long_captions && self.clip.has_long_text() {
            pair(s_g).unwrap_or_else(|| (zero(), 0))
        } else {
            (zero(), 0)
        };
        let (loss_region, num_regions) =
            pair(self.logit_scale_region.val().exp()).unwrap_or_else(|| (zero(), 0));
        let num_hard_regions = gather.sum_count(0);
        let loss_hard_negative = zero();
        LossTerms::weighted(
            weights,
            [
                loss_global,
                loss_global_long,
                loss_region,
                loss_hard_negative,
            ],
            [num_regions, num_long, num_hard_regions],
        )
    }

    /// `CLIP(v, long text; s_g)` over the clips that have a long caption (FG-CLIP's
    /// `loss_itcl`), and their count; `None` without any or without the long path.
    fn long_term(
        &self,
        video: Tensor<2>,
        batch: &VideoBatch,
        s_g: Tensor<1>,
        gather: &dyn RowGather,
    ) -> Option<(Tensor<1>, usize)> {
        // Whether to gather at all is the same on every process (model and batch layout).
        let long = batch.global_long.as_ref()?;
        if !self.clip.has_long_text() {
            return None;
        }
        let device = video.device();
        let p = video.dims()[1];
        let rows: Vec<i64> = (0..long.mask.len())
            .filter(|&i| long.mask[i] != 0)
            .map(|i| i as i64)
            .collect();
        let local = if rows.is_empty() {
            None
        } else {
            let k = rows.len();
            let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [k]), &device);
            let ids = long.input_ids.clone().select(0, index.clone());
            let text = normalize(self.clip.encode_text_long(ids)?);
            Some((video.select(0, index), text))
        };
        let (v, t) = local.unzip();
        let all_v = gather.gather(v, p, &device);
        let all_t = gather.gather(t, p, &device);
        let (v, t) = (all_v?, all_t?);
        let k = v.dims()[0];
        Some((contrastive_loss(v, t, s_g), k))
    }

    /// Every parameter under its HF name, the region and hard-negative scales last.
    pub fn named_params(&self) -> Vec<NamedParam<'_>> {
        let mut out = self.clip.named_params();
        out.push(NamedParam {
            name: region_scale_name(self.clip.config()).into(),
            layout: HfLayout::Scalar,
            param: ParamRef::D1(&self.logit_scale_region),
        });
        out.push(NamedParam {
            name: HARD_NEGATIVE_SCALE_NAME.into(),
            layout: HfLayout::Scalar,
            param: ParamRef::D1(&self.logit_scale_hardneg),
        });
        if let Some(f) = &self.fusion {
            out.extend(f.named_params());
        }
        out
    }
}

/// (B, T, P) normalised frame embeddings → (B, P) video embeddings before the final
/// normalisation: the mean over frames, or `fusion`'s output.
pub fn fuse_frames(fusion: Option<&TemporalFusion>, frames: Tensor<3>) -> Tensor<2> {
    let [b, _, p] = frames.dims();
    match fusion {
        Some(f) => f.forward(frames),
        None => frames.mean_dim(1).reshape([b, p]),
    }
}
