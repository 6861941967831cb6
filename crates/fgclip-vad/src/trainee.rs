//! The model a run trains, one type for the optimizer, the collective and checkpoints:
//! FG-CLIP's recipe on CLIP-shaped towers ([`FgClip`]) or FG-CLIP 2's on its own
//! ([`Fgclip2Video`]). Each keeps its own loss; this module only routes.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use fgclip_core::fgclip::FgClip;
use fgclip_core::fgclip2::{Fgclip2LossWeights, Fgclip2Video, Fgclip2VideoBatch};
use fgclip_core::fusion::TemporalFusion;
use fgclip_core::gather::RowGather;
use fgclip_core::names::NamedParam;
use fgclip_core::precision::Precision;

pub use fgclip_core::ModelKind as Family;

/// A tower whose weights stay fixed (config `freeze`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tower {
    Vision,
    Text,
}

// One value a run, moved only between steps: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Trainee {
    Clip(FgClip),
    Fgclip2(Fgclip2Video),
}

/// A step's loss and its named terms (zero where a family has no such term).
pub struct StepTerms {
    pub loss: Tensor<1>,
    pub loss_global: Tensor<1>,
    pub loss_global_long: Tensor<1>,
    pub loss_region: Tensor<1>,
    pub loss_region_text: Tensor<1>,
    /// FG-CLIP's: this process's share (summed over processes it is the global value);
    /// FG-CLIP 2's: the global value on every process.
    pub loss_hard_negative: Tensor<1>,
    pub num_regions: usize,
    pub num_long: usize,
    pub num_hard_regions: usize,
    /// FG-CLIP 2's cross-modal rank threshold for the next step.
    pub threshold: Option<f64>,
}

impl StepTerms {
    fn from_v1(t: fgclip_core::fgclip::LossTerms, device: &Device) -> Self {
        Self {
            loss: t.loss,
            loss_global: t.loss_global,
            loss_global_long: t.loss_global_long,
            loss_region: t.loss_region,
            loss_region_text: Tensor::zeros([1], device),
            loss_hard_negative: t.loss_hard_negative,
            num_regions: t.num_regions,
            num_long: t.num_long,
            num_hard_regions: t.num_hard_regions,
            threshold: None,
        }
    }

    fn from_v2(t: fgclip_core::fgclip2::Fgclip2LossTerms) -> Self {
        Self {
            loss: t.loss,
            loss_global: t.loss_global,
            loss_global_long: t.loss_global_long,
            loss_region: t.loss_region,
            loss_region_text: t.loss_region_text,
            loss_hard_negative: t.loss_hard_negative,
            num_regions: t.num_regions,
            num_long: t.num_long,
            num_hard_regions: t.num_hard_regions,
            threshold: Some(t.threshold),
        }
    }
}

/// A batch in the family's tensors.
pub enum FamilyBatch {
    Clip(fgclip_core::fgclip::VideoBatch),
    Fgclip2(Fgclip2VideoBatch),
}

impl Trainee {
    pub fn family(&self) -> Family {
        match self {
            Self::Clip(_) => Family::Clip,
            Self::Fgclip2(_) => Family::Fgclip2,
        }
    }

    /// The FG-CLIP model, for the paths only it has (`check-steps`, benchmarks).
    pub fn as_clip(&self) -> Option<&FgClip> {
        match self {
            Self::Clip(m) => Some(m),
            Self::Fgclip2(_) => None,
        }
    }

    /// Every parameter under its HF name.
    pub fn named_params(&self) -> Vec<NamedParam<'_>> {
        match self {
            Self::Clip(m) => m.named_params(),
            Self::Fgclip2(m) => m.named_params(),
        }
    }

    /// Parameters that act only after the gather: every process holds their whole
    /// gradient (count it once when summing over processes).
    pub fn gathered_only(&self) -> Vec<String> {
        match self {
            Self::Clip(m) => m.gathered_only_params(),
            // Every FG-CLIP 2 term is computed from the gathered rows.
            Self::Fgclip2(_) => vec![
                "logit_scale".into(),
                "logit_bias".into(),
                fgclip_core::fgclip2::video::REGION_SCALE_NAME.into(),
                fgclip_core::fgclip2::video::HARD_NEGATIVE_SCALE_NAME.into(),
            ],
        }
    }

    /// Whether the hard-negative term a process reports is its share of the global value.
    pub fn hard_term_is_share(&self) -> bool {
        matches!(self, Self::Clip(_))
    }

    pub fn set_precision(&mut self, precision: Precision) {
        match self {
            Self::Clip(m) => m.set_precision(precision),
            Self::Fgclip2(m) => m.model.set_precision(precision),
        }
    }

    /// The width of the embeddings the loss compares.
    pub fn projection_dim(&self) -> usize {
        match self {
            Self::Clip(m) => m.clip.config().projection_dim,
            Self::Fgclip2(m) => m.model.config().text_config.projection(),
        }
    }

    pub fn fusion(&self) -> Option<&TemporalFusion> {
        match self {
            Self::Clip(m) => m.fusion.as_ref(),
            Self::Fgclip2(m) => m.fusion.as_ref(),
        }
    }

    pub fn with_fusion(self, fusion: Option<TemporalFusion>) -> Self {
        match self {
            Self::Clip(m) => Self::Clip(m.with_fusion(fusion)),
            Self::Fgclip2(m) => Self::Fgclip2(m.with_fusion(fusion)),
        }
    }

    /// The model with `towers` frozen (no gradient, no update).
    pub fn freeze(self, towers: &[Tower]) -> Self {
        match self {
            Self::Clip(mut m) => {
                for t in towers {
                    match t {
                        Tower::Vision => {
                            m.clip.vision_model = m.clip.vision_model.no_grad();
                            m.clip.visual_projection = m.clip.visual_projection.no_grad();
                        }
                        Tower::Text => {
                            m.clip.text_model = m.clip.text_model.no_grad();
                            m.clip.text_projection = m.clip.text_projection.no_grad();
                        }
                    }
                }
                Self::Clip(m)
            }
            Self::Fgclip2(mut m) => {
                for t in towers {
                    match t {
                        Tower::Vision => {
                            m.model.vision_model = m.model.vision_model.no_grad();
                            m.model.dense_feature_head = m.model.dense_feature_head.no_grad();
                        }
                        Tower::Text => {
                            m.model.text_model = m.model.text_model.no_grad();
                            m.model.longtext_head = m.model.longtext_head.no_grad();
                            m.model.boxtext_head = m.model.boxtext_head.no_grad();
                        }
                    }
                }
                Self::Fgclip2(m)
            }
        }
    }

    /// The loss of this process's share of a global batch.
    pub fn loss_gathered(
        &self,
        batch: &FamilyBatch,
        weights: &Fgclip2LossWeights,
        threshold: f64,
        gather: &dyn RowGather,
        device: &Device,
    ) -> anyhow::Result<StepTerms> {
        Ok(match (self, batch) {
            (Self::Clip(m), FamilyBatch::Clip(b)) => {
                let w = fgclip_core::fgclip::LossWeights {
                    region: weights.region,
                    hard_negative: weights.hard_negative,
                };
                StepTerms::from_v1(m.loss_gathered(b, &w, gather), device)
            }
            (Self::Fgclip2(m), FamilyBatch::Fgclip2(b)) => {
                StepTerms::from_v2(m.loss_gathered(b, weights, threshold, gather))
            }
            _ => anyhow::bail!("a batch of the other model family"),
        })
    }

    /// The loss on a process without clips in this step (see the families' own).
    pub fn loss_without_rows(
        &self,
        long_captions: bool,
        weights: &Fgclip2LossWeights,
        threshold: f64,
        gather: &dyn RowGather,
        device: &Device,
    ) -> StepTerms {
        match self {
            Self::Clip(m) => {
                let w = fgclip_core::fgclip::LossWeights {
                    region: weights.region,
                    hard_negative: weights.hard_negative,
                };
                StepTerms::from_v1(
                    m.loss_without_rows(long_captions, &w, gather, device),
                    device,
                )
            }
            Self::Fgclip2(m) => StepTerms::from_v2(m.loss_without_rows(
                long_captions,
                weights,
                threshold,
                gather,
                device,
            )),
        }
    }
}

/// What the optimizer, the collective and checkpoints need of a model: its parameters by
/// HF name, which of them act only after the gather, and the clamp after a step.
pub trait Trainable: Module {
    fn params(&self) -> Vec<NamedParam<'_>>;
    /// Parameters every process holds the whole gradient of (see [`Trainee::gathered_only`]).
    fn gathered_only_params(&self) -> Vec<String>;
    /// The model after open_clip's clamp of the logit scales to [0, `max`] (FG-CLIP's
    /// recipe); FG-CLIP 2's recipe has no clamp.
    fn clamped(self, max: Option<f64>) -> Self;
}

impl Trainable for FgClip {
    fn params(&self) -> Vec<NamedParam<'_>> {
        self.named_params()
    }
    fn gathered_only_params(&self) -> Vec<String> {
        vec![
            "logit_scale".into(),
            fgclip_core::fgclip::region_scale_name(self.clip.config()).into(),
        ]
    }
    fn clamped(self, max: Option<f64>) -> Self {
        clamp_logit_scales(self, max)
    }
}

impl Trainable for Trainee {
    fn params(&self) -> Vec<NamedParam<'_>> {
        self.named_params()
    }
    fn gathered_only_params(&self) -> Vec<String> {
        self.gathered_only()
    }
    fn clamped(self, max: Option<f64>) -> Self {
        match self {
            Self::Clip(m) => Self::Clip(m.clamped(max)),
            other => other,
        }
    }
}

/// open_clip's `logit_scale.clamp_(0, math.log(100))` after the step, on all three scales; the
/// parameters stay leaves with their ids (a frozen one stays frozen).
pub fn clamp_logit_scales(mut model: FgClip, max: Option<f64>) -> FgClip {
    let Some(max) = max else {
        return model;
    };
    let clamp = |t: Tensor<1>| {
        let grad = t.is_require_grad();
        let t = t.detach().clamp(0.0, max).detach();
        if grad { t.require_grad() } else { t }
    };
    model.clip.logit_scale = model.clip.logit_scale.map(clamp);
    model.logit_scale_region = model.logit_scale_region.map(clamp);
    model.logit_scale_hardneg = model.logit_scale_hardneg.map(clamp);
    model
}
