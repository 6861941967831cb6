//! FG-CLIP 2 trained on video clips: `FG_CLIP2_Model.forward` of FG-CLIP 2's
//! `fgclip2/model/strcs/fgclip2.py` with its loss terms ([`super::loss`]), applied to clips
//! of T frames as the FG-CLIP v1 video model is ([`crate::fgclip`]):
//!
//! - video embedding `v = normalize(mean_t normalize(e_t))` (or the temporal fusion), `e_t`
//!   the NaFlex tower's pooled output of frame t on its own patch grid;
//! - region embedding: ROI Align 1×1 of `dense_feature_head`'s output on each valid frame's
//!   own grid, normalised, averaged over the frames, normalised; region captions and hard
//!   negatives through the box walk and `boxtext_head`;
//! - `loss = σ(v, short) + σ(v, long) + 0.2 · CLIP(regions, region captions; s_fg)
//!   + 0.1 · intra-text(region captions) + 0.5 · hard`, σ SigLIP's loss with `logit_scale`
//!   and `logit_bias`, the long term over the clips that have a long caption.
//!
//! Every term is over the rows of all processes ([`crate::gather`]); the hard term's
//! running threshold is computed from the gathered rows, so every process holds the same
//! value, and one process equals several. Unlike FG-CLIP 2's code, the region and
//! hard-negative terms are computed whenever the batch has regions (its code skips them
//! without long captions, and drops them on any error).

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::loss::{HardRows, hard_negative_loss, next_threshold, region_text_loss, sigmoid_loss};
use super::{Fgclip2Config, Fgclip2Model, NaflexPixels, Walk, roi_features};
use crate::error::WeightError;
use crate::fgclip::hard_negatives::HardSelection;
use crate::fgclip::regions::RegionFrames;
use crate::fgclip::{HardNegatives, LongCaptions, ScaleInit, fuse_frames};
use crate::fusion::TemporalFusion;
use crate::gather::{OneProcess, RowGather};
use crate::loss::contrastive_loss;
use crate::model::normalize;
use crate::weights::Weights;

/// The initial value of the two scales FG-CLIP 2's checkpoints do not have
/// (`train_fgclip2.py`'s `log_scale`).
pub const SCALE_INIT: f32 = 4.6052;
/// HF name of the region scale (FG-CLIP's spelling).
pub const REGION_SCALE_NAME: &str = "logit_scale_finegraind";
/// HF name of the hard-negative scale.
pub const HARD_NEGATIVE_SCALE_NAME: &str = "logit_scale_hardneg";

#[derive(Module, Debug)]
pub struct Fgclip2Video {
    pub model: Fgclip2Model,
    /// Shape [1]; `logit_scale_finegraind`.
    pub logit_scale_finegraind: Param<Tensor<1>>,
    /// Shape [1]; `logit_scale_hardneg`.
    pub logit_scale_hardneg: Param<Tensor<1>>,
    pub fusion: Option<TemporalFusion>,
}

/// A batch: B clips of T frames in FG-CLIP 2's image layout, the captions and regions as
/// [`crate::fgclip::VideoBatch`] holds them.
pub struct Fgclip2VideoBatch {
    /// B·T frames, clip-major.
    pub pixels: NaflexPixels,
    /// T.
    pub frames: usize,
    /// (B, 64): the short walk's ids.
    pub global_input_ids: Tensor<2, Int>,
    /// (B, N, 64): the box walk's ids.
    pub region_input_ids: Tensor<3, Int>,
    /// (B, T, N, 4), normalised `[x1, y1, x2, y2]`.
    pub boxes: Vec<f32>,
    /// (B, T, N).
    pub bbox_mask: Vec<u8>,
    /// (B, 196): the long walk's ids.
    pub global_long: Option<LongCaptions>,
    /// (B, N, H, 64).
    pub hard_negatives: Option<HardNegatives>,
}

/// The weights of the region terms: FG-CLIP 2's 0.2 / 0.1 / 0.5 by default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fgclip2LossWeights {
    pub region: f64,
    pub region_text: f64,
    pub hard_negative: f64,
}

impl Default for Fgclip2LossWeights {
    fn default() -> Self {
        Self {
            region: 0.2,
            region_text: 0.1,
            hard_negative: 0.5,
        }
    }
}

/// The loss, its named terms and the threshold the forward leaves.
pub struct Fgclip2LossTerms {
    pub loss: Tensor<1>,
    pub loss_global: Tensor<1>,
    /// 0 without long captions.
    pub loss_global_long: Tensor<1>,
    pub loss_region: Tensor<1>,
    /// 0 below two regions.
    pub loss_region_text: Tensor<1>,
    /// 0 when no region has a negative.
    pub loss_hard_negative: Tensor<1>,
    /// Regions with at least one valid frame (all processes).
    pub num_regions: usize,
    pub num_long: usize,
    pub num_hard_regions: usize,
    /// How many captions each row of the intra-text term sums: min(10, K − 1).
    pub region_text_top_k: usize,
    /// The cross-modal rank threshold for the next forward (clamped to [0, 10]); the input
    /// threshold when no region has a negative.
    pub threshold: f64,
}

impl Fgclip2Video {
    /// FG-CLIP 2 weights by HF names; the two extra scales as `region` and `hard` say
    /// ([`ScaleInit::Value`]`(`[`SCALE_INIT`]`)` for a published checkpoint).
    pub fn load(
        w: &Weights,
        config: &Fgclip2Config,
        region: ScaleInit,
        hard: ScaleInit,
    ) -> Result<Self, WeightError> {
        let model = Fgclip2Model::load(w, config)?;
        let region = region.value(w, REGION_SCALE_NAME, &model.logit_scale)?;
        let hard = hard.value(w, HARD_NEGATIVE_SCALE_NAME, &model.logit_scale)?;
        Ok(Self {
            logit_scale_finegraind: w.param(REGION_SCALE_NAME, region),
            logit_scale_hardneg: w.param(HARD_NEGATIVE_SCALE_NAME, hard),
            model,
            fusion: None,
        })
    }

    /// The model with `fusion` over the frames (none: mean pooling).
    pub fn with_fusion(mut self, fusion: Option<TemporalFusion>) -> Self {
        self.fusion = fusion;
        self
    }

    fn width(&self) -> usize {
        self.model.config().text_config.projection()
    }

    /// Video embeddings (B, D) and, with `with_dense`, the frames' dense features
    /// (B·T, P, D).
    pub fn encode_video(
        &self,
        pixels: &NaflexPixels,
        frames: usize,
        with_dense: bool,
    ) -> (Tensor<2>, Option<Tensor<3>>) {
        let (pooled, dense) = if with_dense {
            let (p, d) = self.model.image_and_dense_features(pixels);
            (p, Some(d))
        } else {
            (self.model.image_features(pixels), None)
        };
        let [bt, d] = pooled.dims();
        let b = bt / frames.max(1);
        let per_frame = normalize(pooled).reshape([b, frames, d]);
        (
            normalize(fuse_frames(self.fusion.as_ref(), per_frame)),
            dense,
        )
    }

    /// Region embeddings (K, D) from dense features of the B·T frames, and the (b, i) of
    /// each region: ROI features on each valid frame's own grid, normalised, averaged,
    /// normalised.
    pub fn encode_regions(
        &self,
        dense: Tensor<3>,
        spatial_shapes: &[(usize, usize)],
        boxes: &[f32],
        mask: &[u8],
        [b, t, n]: [usize; 3],
    ) -> Option<(Tensor<2>, Vec<(usize, usize)>)> {
        let frames = RegionFrames::new(boxes, mask, [b, t, n])?;
        let device = dense.device();
        let rois = roi_features(dense, spatial_shapes, &frames.boxes, &frames.image);
        Some((frames.embed(rois, &device), frames.regions))
    }

    /// The loss of a batch in one process, from the cross-modal rank `threshold` the
    /// previous forward left (0 at the start of a run).
    pub fn loss(
        &self,
        batch: &Fgclip2VideoBatch,
        weights: &Fgclip2LossWeights,
        threshold: f64,
    ) -> Fgclip2LossTerms {
        self.loss_gathered(batch, weights, threshold, &OneProcess)
    }

    /// The loss of this process's share of a global batch: every term over the rows of
    /// all processes, this process's rows with their graph (see [`crate::gather`]).
    pub fn loss_gathered(
        &self,
        batch: &Fgclip2VideoBatch,
        weights: &Fgclip2LossWeights,
        threshold: f64,
        gather: &dyn RowGather,
    ) -> Fgclip2LossTerms {
        let t = batch.frames;
        let [b, n, l] = batch.region_input_ids.dims();
        let device = batch.pixels.pixel_values.device();
        let p = self.width();
        let any_region = batch.bbox_mask.iter().any(|&m| m != 0);
        let (video, dense) = self.encode_video(&batch.pixels, t, any_region);
        let text = normalize(
            self.model
                .text_features(batch.global_input_ids.clone(), Walk::Short),
        );
        let global = (
            gather.gather(Some(video.clone()), p, &device),
            gather.gather(Some(text), p, &device),
        );

        let long = batch.global_long.as_ref().map(|long| {
            let rows: Vec<i64> = (0..long.mask.len())
                .filter(|&i| long.mask[i] != 0)
                .map(|i| i as i64)
                .collect();
            (!rows.is_empty()).then(|| {
                let k = rows.len();
                let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [k]), &device);
                let ids = long.input_ids.clone().select(0, index.clone());
                let text = normalize(self.model.text_features(ids, Walk::Long));
                (video.clone().select(0, index), text)
            })
        });

        let regions = dense.and_then(|d| {
            self.encode_regions(
                d,
                &batch.pixels.spatial_shapes,
                &batch.boxes,
                &batch.bbox_mask,
                [b, t, n],
            )
        });
        let mut local_region = None;
        let mut local_hard = None;
        if let Some((emb, which)) = regions {
            let rows: Vec<i64> = which.iter().map(|&(bi, i)| (bi * n + i) as i64).collect();
            let k = rows.len();
            let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [k]), &device);
            let region_ids = batch
                .region_input_ids
                .clone()
                .reshape([b * n, l])
                .select(0, index);
            let hard = batch
                .hard_negatives
                .as_ref()
                .and_then(|h| HardSelection::new(h, &which, n, l));
            // Region captions and their hard negatives share one text-tower pass.
            let ids = match &hard {
                Some(sel) => Tensor::cat(vec![region_ids, sel.ids.clone()], 0),
                None => region_ids,
            };
            let texts = normalize(self.model.text_features(ids, Walk::Box));
            let region_text = texts.clone().slice([0..k, 0..p]);
            if let Some(sel) = hard {
                let m = sel.num_negatives;
                let negatives = texts.slice([k..k + m, 0..p]);
                local_hard = Some(hard_rows_local(
                    &sel,
                    emb.clone(),
                    region_text.clone(),
                    negatives,
                ));
            }
            local_region = Some((emb, region_text));
        }
        self.terms_from_rows(
            global,
            long,
            local_region,
            local_hard,
            weights,
            threshold,
            gather,
            &device,
        )
    }

    /// The loss on a process that has no clip in this step: it takes part in every gather
    /// in [`Self::loss_gathered`]'s order with no rows of its own. `long_captions`: the
    /// batches carry long captions (the other processes' layout).
    pub fn loss_without_rows(
        &self,
        long_captions: bool,
        weights: &Fgclip2LossWeights,
        threshold: f64,
        gather: &dyn RowGather,
        device: &Device,
    ) -> Fgclip2LossTerms {
        let p = self.width();
        let global = (
            gather.gather(None, p, device),
            gather.gather(None, p, device),
        );
        let long = long_captions.then_some(None);
        self.terms_from_rows(global, long, None, None, weights, threshold, gather, device)
    }

    /// Gathers the region and hard rows (in this order, on every process) and computes
    /// every term from the gathered rows.
    #[allow(clippy::too_many_arguments)]
    fn terms_from_rows(
        &self,
        global: (Option<Tensor<2>>, Option<Tensor<2>>),
        long: Option<Option<(Tensor<2>, Tensor<2>)>>,
        local_region: Option<(Tensor<2>, Tensor<2>)>,
        local_hard: Option<LocalHard>,
        weights: &Fgclip2LossWeights,
        threshold: f64,
        gather: &dyn RowGather,
        device: &Device,
    ) -> Fgclip2LossTerms {
        let zero = || Tensor::<1>::zeros([1], device);
        let p = self.width();
        let scale = self.model.logit_scale.val().exp();
        let bias = self.model.logit_bias.val();
        let sigmoid = |pair: (Option<Tensor<2>>, Option<Tensor<2>>)| match pair {
            (Some(v), Some(t)) => {
                let k = v.dims()[0];
                Some((sigmoid_loss(v, t, scale.clone(), bias.clone()), k))
            }
            _ => None,
        };
        let loss_global = sigmoid(global).map_or_else(zero, |(l, _)| l);
        let (loss_global_long, num_long) = match long {
            Some(local) => {
                let (v, t) = local.unzip();
                sigmoid((gather.gather(v, p, device), gather.gather(t, p, device)))
                    .unwrap_or_else(|| (zero(), 0))
            }
            None => (zero(), 0),
        };

        let (emb, text) = local_region.unzip();
        let all_emb = gather.gather(emb, p, device);
        let all_text = gather.gather(text, p, device);
        let (mut loss_region, mut loss_region_text) = (zero(), zero());
        let (mut num_regions, mut region_text_top_k) = (0, 0);
        if let (Some(e), Some(t)) = (all_emb, all_text) {
            num_regions = e.dims()[0];
            let s_fg = self.logit_scale_finegraind.val().exp();
            loss_region = contrastive_loss(e, t.clone(), s_fg);
            if let Some(l) = region_text_loss(t) {
                loss_region_text = l;
                region_text_top_k = super::loss::REGION_TEXT_TOP_K.min(num_regions - 1);
            }
        }

        let h = self.gather_hard(local_hard, gather, device);
        let (mut loss_hard_negative, mut num_hard_regions, mut next) = (zero(), 0, threshold);
        if let Some(rows) = h {
            num_hard_regions = rows.regions.dims()[0];
            let s_h = self.logit_scale_hardneg.val().exp();
            if let Some(term) = hard_negative_loss(rows, s_h, threshold) {
                loss_hard_negative = term.loss;
                next = next_threshold(term.threshold);
            }
        }
        Fgclip2LossTerms {
            loss: loss_global.clone()
                + loss_global_long.clone()
                + loss_region.clone() * weights.region
                + loss_region_text.clone() * weights.region_text
                + loss_hard_negative.clone() * weights.hard_negative,
            loss_global,
            loss_global_long,
            loss_region,
            loss_region_text,
            loss_hard_negative,
            num_regions,
            num_long,
            num_hard_regions,
            region_text_top_k,
            threshold: next,
        }
    }

    /// The hard rows of all processes: regions, positives and negatives with their graph
    /// here, the slots' mask as a constant. Every process makes the same four gathers.
    fn gather_hard(
        &self,
        local: Option<LocalHard>,
        gather: &dyn RowGather,
        device: &Device,
    ) -> Option<HardRows> {
        let p = self.width();
        // The slot count is the batch layout's, the same on every process that has hard
        // rows; one without rows learns it from the others.
        let slots = local.as_ref().map_or(0, |l| l.slots);
        let holders = gather.sum_count(usize::from(local.is_some()));
        let h = gather.sum_count(slots) / holders.max(1);
        let (regions, positives, negatives, real) = match local {
            Some(l) => (
                Some(l.regions),
                Some(l.positives),
                Some(l.negatives),
                Some(l.real),
            ),
            None => (None, None, None, None),
        };
        let regions = gather.gather(regions, p, device);
        let positives = gather.gather(positives, p, device);
        let negatives = gather.gather(negatives, h * p, device);
        let real = gather.gather(real, h, device);
        let (regions, positives, negatives, real) = (regions?, positives?, negatives?, real?);
        let k = regions.dims()[0];
        let real: Vec<bool> = real
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default()
            .into_iter()
            .map(|v| v != 0.0)
            .collect();
        Some(HardRows {
            regions,
            positives,
            negatives: negatives.reshape([k * h, p]),
            real,
            slots: h,
        })
    }
}

/// This process's hard rows before the gather.
struct LocalHard {
    /// (K_h, D).
    regions: Tensor<2>,
    /// (K_h, D).
    positives: Tensor<2>,
    /// (K_h, H·D): each region's H slots, zero rows for empty ones.
    negatives: Tensor<2>,
    /// (K_h, H): 1 for a real negative.
    real: Tensor<2>,
    slots: usize,
}

fn hard_rows_local(
    sel: &HardSelection,
    regions: Tensor<2>,
    region_text: Tensor<2>,
    negatives: Tensor<2>,
) -> LocalHard {
    let device = regions.device();
    let p = regions.dims()[1];
    let (kh, h, m) = (sel.regions.len(), sel.h, sel.num_negatives);
    let pick = Tensor::<1, Int>::from_data(
        TensorData::new(
            sel.regions.iter().map(|&k| k as i64).collect::<Vec<_>>(),
            [kh],
        ),
        &device,
    );
    let table = Tensor::cat(vec![negatives, Tensor::zeros([1, p], &device)], 0);
    let slots = Tensor::<1, Int>::from_data(TensorData::new(sel.slots.clone(), [kh * h]), &device);
    let real: Vec<f32> = sel
        .slots
        .iter()
        .map(|&s| if s == m as i64 { 0.0 } else { 1.0 })
        .collect();
    LocalHard {
        regions: regions.select(0, pick.clone()),
        positives: region_text.select(0, pick),
        negatives: table.select(0, slots).reshape([kh, h * p]),
        real: Tensor::from_data(TensorData::new(real, [kh, h]), &device),
        slots: h,
    }
}
