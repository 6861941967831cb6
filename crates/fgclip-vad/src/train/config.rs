//! Every training setting (`fgclip train --print-config`), their checks and the
//! learning-rate schedule.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::optim::{AdamWConfig, ModuleOptimizer};
use fgclip_core::Precision;
use fgclip_core::fgclip::LossWeights;
use fgclip_core::fgclip2::Fgclip2LossWeights;
use serde::Serialize;

use crate::data::augment::AugmentOp;
use crate::data::preprocess::Preprocess;
use crate::train::param_groups::{ParamGroups, WeightDecayRule};
use crate::trainee::{Family, Trainable};

/// How the warm-up counts (see [`TrainConfig::warmup_rule`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmupRule {
    #[default]
    Hf,
    OpenClip,
}

/// Learning-rate schedule after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Constant,
}

pub use crate::trainee::Tower;

/// Which frames a normal clip (one without boxes) is sampled from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segments {
    /// Its `timestamps` segment (the whole video without one).
    #[default]
    Timestamps,
    /// The whole video, whatever its `timestamps` say.
    WholeVideo,
}

/// How a clip's T frame embeddings become its video embedding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    /// Their mean (FG-CLIP on single images, T = 1).
    #[default]
    Mean,
    /// A temporal transformer (CLIP4Clip's seqTransf) that starts as the mean
    /// (`fgclip_core::fusion`), trained with the model and saved beside it.
    Transformer,
}

/// Every training setting; saved resolved as `RUN/config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Clips per step.
    pub batch_size: usize,
    /// Frames per clip, T.
    pub frames: usize,
    /// Regions per clip, N (max_anns).
    pub max_anns: usize,
    /// λ in loss = loss_global + loss_global_long + λ · loss_region + ν · loss_region_text
    /// + μ · loss_hard_negative; null: the model family's (FG-CLIP's 0.1, FG-CLIP 2's 0.2).
    pub region_weight: Option<f64>,
    /// ν, the region captions' intra-text term (FG-CLIP 2 only); null: FG-CLIP 2's 0.1.
    pub region_text_weight: Option<f64>,
    /// FG-CLIP 2: the image processor's patch budget per frame (null: the model folder's
    /// `preprocessor_config.json`, else 256); setting it turns `dynamic_max_patches` off
    /// unless that is set too. 1024 patches a frame is costly on video.
    pub max_num_patches: Option<usize>,
    /// FG-CLIP 2: take each frame's budget from its own size (128 to 1024 patches; a
    /// 640×360 frame gets 1024) instead of `max_num_patches` (null: the model folder's
    /// setting, else on).
    pub dynamic_max_patches: Option<bool>,
    /// FG-CLIP 2: the length captions, region captions and hard negatives are padded to
    /// (`base_length` of its training script; null: the model's 64 positions).
    pub text_length: Option<usize>,
    /// FG-CLIP 2: the long captions' length (`max_seq_length`; null: the model's 196).
    pub long_text_length: Option<usize>,
    /// μ; null: FG-CLIP's and FG-CLIP 2's 0.5.
    pub hard_negative_weight: Option<f64>,
    /// A VAGTA hard-negative sidecar (`{"items": [...]}`) joined to the annotations on
    /// (video, timestamps, region_index); `train --hard-negatives` sets it.
    pub hard_negatives_file: Option<std::path::PathBuf>,
    /// Start the region and hard-negative scales at `logit_scale` even when the checkpoint
    /// has its own (FG-CLIP's training script does this); false keeps them.
    pub reset_region_scales: bool,
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    pub adam_beta1: f32,
    pub adam_beta2: f32,
    pub adam_epsilon: f32,
    /// Linear warm-up over this many steps.
    pub warmup_steps: usize,
    /// `hf`: step s of the warm-up runs at `learning_rate · s / warmup_steps` (transformers'
    /// schedules, as FG-CLIP trains: the first step's rate is 0); `open_clip`: at
    /// `learning_rate · (s + 1) / warmup_steps`.
    pub warmup_rule: WarmupRule,
    pub schedule: Schedule,
    /// The cosine schedule ends at learning_rate · min_lr_ratio.
    pub min_lr_ratio: f64,
    /// Clip the global L2 norm of all gradients to this, as PyTorch's `clip_grad_norm_`
    /// (HF Trainer's `max_grad_norm`, open_clip's `--grad-clip-norm`); null: none.
    pub grad_clip_norm: Option<f32>,
    pub epochs: usize,
    /// Stop after this many optimizer steps (null: run all epochs).
    pub max_steps: Option<usize>,
    /// Seeds the clip order and frame sampling of every epoch.
    pub seed: u64,
    pub shuffle: bool,
    /// Drop an epoch's last, incomplete batch, as open_clip does: a batch of one clip has no
    /// negatives and its global loss is exactly 0. A batch that loses clips to skips is
    /// still trained.
    pub drop_last: bool,
    /// Threads decoding videos ahead of the step.
    pub loader_workers: usize,
    /// Save a checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Checkpoints kept (the newest).
    pub keep_checkpoints: usize,
    pub freeze: Vec<Tower>,
    /// Consecutive non-finite losses that stop the run.
    pub max_nonfinite_steps: usize,
    /// Which parameters get no weight decay: `fgclip` (HF Trainer's rule: biases and
    /// LayerNorm) or `open_clip` (also every parameter under 2 dimensions and the logit
    /// scales). `RUN/param_groups.json` lists the groups by HF name.
    pub weight_decay_rule: WeightDecayRule,
    /// The text tower's (`text_model.*`) own peak learning rate, following the same
    /// schedule; null: `learning_rate`.
    pub text_model_lr: Option<f64>,
    /// After each step both logit scales are clamped to [0, this] as open_clip and OpenAI
    /// CLIP do (ln 100); null: no clamp, as FG-CLIP. The forward never clamps.
    pub logit_scale_max: Option<f64>,
    /// `f32`, or `bf16`: linear layers, patch embedding and attention in bf16 with f32
    /// master weights, AdamW state, norms and losses (PyTorch autocast, as FG-CLIP trains).
    pub precision: Precision,
    /// `timestamps` (default): normal clips sample their segment; `whole_video`: their
    /// whole video (an ablation of the timestamp segments).
    pub segments: Segments,
    /// Box-aware clip augmentation, applied in order (empty: none), e.g.
    /// `[{"crop": {"scale": [0.6, 1.0]}}, {"flip": 0.5}, {"jitter": {"brightness": 0.3}}]`.
    pub augment: Vec<AugmentOp>,
    /// How a frame becomes the S×S input of CLIP and FG-CLIP v1: `squash` (default: resize
    /// to S×S; boxes near the edges stay in) or `center_crop` (HF CLIPImageProcessor's
    /// shortest edge to S and centre crop; boxes mapped into the crop, a box outside it
    /// drops that frame's region). FG-CLIP 2 has its own processor. Not with `augment`,
    /// whose crops replace it.
    pub preprocess: Preprocess,
    /// `mean` (default) or `transformer`: how the T frame embeddings of a clip are fused.
    pub fusion: Fusion,
    /// Layers of the temporal transformer (`fusion: transformer`).
    pub fusion_layers: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 8,
            frames: 8,
            max_anns: 4,
            region_weight: None,
            region_text_weight: None,
            max_num_patches: None,
            dynamic_max_patches: None,
            text_length: None,
            long_text_length: None,
            hard_negative_weight: None,
            hard_negatives_file: None,
            reset_region_scales: false,
            learning_rate: 1e-5,
            weight_decay: 0.1,
            adam_beta1: 0.9,
            adam_beta2: 0.98,
            adam_epsilon: 1e-6,
            warmup_steps: 0,
            warmup_rule: WarmupRule::Hf,
            schedule: Schedule::Cosine,
            min_lr_ratio: 0.0,
            grad_clip_norm: Some(1.0),
            epochs: 1,
            max_steps: None,
            seed: 42,
            shuffle: true,
            drop_last: true,
            loader_workers: 2,
            checkpoint_every: 100,
            keep_checkpoints: 3,
            freeze: Vec::new(),
            max_nonfinite_steps: 5,
            precision: Precision::F32,
            segments: Segments::Timestamps,
            augment: Vec::new(),
            preprocess: Preprocess::Squash,
            fusion: Fusion::Mean,
            fusion_layers: 2,
            weight_decay_rule: WeightDecayRule::Fgclip,
            text_model_lr: None,
            logit_scale_max: Some(fgclip_core::fgclip::LOGIT_SCALE_MAX),
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("batch_size", self.batch_size),
            ("frames", self.frames),
            ("max_anns", self.max_anns),
            ("epochs", self.epochs),
            ("checkpoint_every", self.checkpoint_every),
            ("keep_checkpoints", self.keep_checkpoints),
            ("max_nonfinite_steps", self.max_nonfinite_steps),
            ("fusion_layers", self.fusion_layers),
        ];
        for (name, v) in positive {
            if v == 0 {
                bail!("config: `{name}` must be at least 1");
            }
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            bail!(
                "config: `learning_rate` must be > 0, got {}",
                self.learning_rate
            );
        }
        for (key, v) in [
            ("max_num_patches", self.max_num_patches),
            ("text_length", self.text_length),
            ("long_text_length", self.long_text_length),
        ] {
            if v == Some(0) {
                bail!("config: `{key}` must be at least 1 or null");
            }
        }
        for (key, v) in [
            ("region_weight", self.region_weight),
            ("region_text_weight", self.region_text_weight),
            ("hard_negative_weight", self.hard_negative_weight),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                bail!("config: `{key}` must be ≥ 0 or null, got {v}");
            }
        }
        if let Some(m) = self.logit_scale_max
            && !(m.is_finite() && m >= 0.0)
        {
            bail!("config: `logit_scale_max` must be ≥ 0 or null, got {m}");
        }
        if let Some(t) = self.text_model_lr
            && !(t.is_finite() && t >= 0.0)
        {
            bail!("config: `text_model_lr` must be ≥ 0 or null, got {t}");
        }
        crate::data::augment::validate(&self.augment)?;
        if self.preprocess == Preprocess::CenterCrop && !self.augment.is_empty() {
            bail!(
                "preprocess: center_crop with augment: the augmentation's crops replace the centre crop; use one of them"
            );
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            bail!(
                "config: `min_lr_ratio` must be in [0, 1], got {}",
                self.min_lr_ratio
            );
        }
        Ok(())
    }

    /// The learning rate of optimizer step `step` (0-based) of `total`: transformers'
    /// `get_constant_schedule_with_warmup` / `get_cosine_with_min_lr_schedule_with_warmup`
    /// (open_clip's `const_lr` / `cosine_lr` with `warmup_rule: open_clip`).
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        let base = self.learning_rate;
        if step < self.warmup_steps {
            let done = match self.warmup_rule {
                WarmupRule::Hf => step,
                WarmupRule::OpenClip => step + 1,
            };
            return base * done as f64 / self.warmup_steps as f64;
        }
        match self.schedule {
            Schedule::Constant => base,
            Schedule::Cosine => {
                let span = total.saturating_sub(self.warmup_steps).max(1) as f64;
                let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
                let min = base * self.min_lr_ratio;
                min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    /// The loss weights of the model family, the config's where it sets them.
    pub fn family_weights(&self, family: Family) -> Fgclip2LossWeights {
        let d = match family {
            Family::Clip => Fgclip2LossWeights {
                region: 0.1,
                region_text: 0.0,
                hard_negative: 0.5,
            },
            Family::Fgclip2 => Fgclip2LossWeights::default(),
        };
        Fgclip2LossWeights {
            region: self.region_weight.unwrap_or(d.region),
            region_text: self.region_text_weight.unwrap_or(d.region_text),
            hard_negative: self.hard_negative_weight.unwrap_or(d.hard_negative),
        }
    }

    /// The config with the family's loss weights written in (what a run records).
    pub fn with_family_weights(mut self, family: Family) -> Self {
        let w = self.family_weights(family);
        self.region_weight = Some(w.region);
        self.hard_negative_weight = Some(w.hard_negative);
        if family == Family::Fgclip2 {
            self.region_text_weight = Some(w.region_text);
        }
        self
    }

    /// λ and μ of the FG-CLIP loss.
    pub fn loss_weights(&self) -> LossWeights {
        let w = self.family_weights(Family::Clip);
        LossWeights {
            region: w.region,
            hard_negative: w.hard_negative,
        }
    }

    /// The text tower's learning rate at a step whose base rate is `lr`.
    pub fn text_lr_at(&self, lr: f64) -> Option<f64> {
        self.text_model_lr.map(|t| t * lr / self.learning_rate)
    }

    fn adamw(&self) -> AdamWConfig {
        // Gradient clipping is global and done before the step (`clip_grad_norm`).
        AdamWConfig::new()
            .with_beta_1(self.adam_beta1)
            .with_beta_2(self.adam_beta2)
            .with_epsilon(self.adam_epsilon)
            .with_weight_decay(self.weight_decay as f32)
    }

    /// The parameter groups of `model` and their AdamW.
    pub(crate) fn optimizer<M: Trainable>(&self, model: &M) -> (ParamGroups, ModuleOptimizer) {
        let groups = ParamGroups::new(model, self.weight_decay_rule, self.text_model_lr.is_some());
        let optim = groups.optimizer(&self.adamw());
        (groups, optim)
    }
}

/// Reads a config file; unknown keys are errors (a typo must not train silently).
pub fn read_train_config(path: &Path) -> Result<TrainConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_train_config(&text, path)
}

/// [`read_train_config`] of text in memory; `path` names it in errors.
pub fn parse_train_config(text: &str, path: &Path) -> Result<TrainConfig> {
    let c: TrainConfig = serde_json::from_str(text)
        .with_context(|| format!("{}: not a training config", path.display()))?;
    c.validate()
        .with_context(|| format!("in {}", path.display()))?;
    Ok(c)
}

/// The settings a run is asked for: a config file (`--config`, already resolved over the
/// defaults) or none, and single keys set by flags on top of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigRequest {
    pub file: Option<TrainConfig>,
    /// Keys set on the command line (`--precision`, `--hard-negatives`, …), by config name.
    pub set: serde_json::Map<String, serde_json::Value>,
}

impl From<TrainConfig> for ConfigRequest {
    fn from(c: TrainConfig) -> Self {
        Self {
            file: Some(c),
            set: serde_json::Map::new(),
        }
    }
}

impl ConfigRequest {
    /// The config: the file's (else `base`: the defaults for a new run, the run's saved
    /// config on resume) with the flags' keys on top.
    pub fn resolve(&self, base: &TrainConfig) -> Result<TrainConfig> {
        let start = self.file.as_ref().unwrap_or(base);
        if self.set.is_empty() {
            return Ok(start.clone());
        }
        let mut value = serde_json::to_value(start)?;
        if let Some(obj) = value.as_object_mut() {
            for (k, v) in &self.set {
                obj.insert(k.clone(), v.clone());
            }
        }
        let c: TrainConfig =
            serde_json::from_value(value).context("the command line's training settings")?;
        c.validate()?;
        Ok(c)
    }
}

/// Keys that may change when a run resumes: they change how long it runs and how it keeps
/// its checkpoints, not what a step computes. Every other key must stay as the run was
/// started (a resumed run is the same run).
pub const RESUMABLE_KEYS: [&str; 6] = [
    "max_steps",
    "epochs",
    "checkpoint_every",
    "keep_checkpoints",
    "loader_workers",
    "max_nonfinite_steps",
];

/// One key of a config that differs from the run's saved one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigChange {
    pub key: String,
    pub saved: serde_json::Value,
    pub asked: serde_json::Value,
}

/// The keys in which `asked` differs from `saved`, in the config's key order.
pub fn config_changes(saved: &TrainConfig, asked: &TrainConfig) -> Result<Vec<ConfigChange>> {
    let (a, b) = (serde_json::to_value(saved)?, serde_json::to_value(asked)?);
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        bail!("a training config is not a JSON object");
    };
    Ok(b.iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, v)| ConfigChange {
            key: k.clone(),
            saved: a.get(k).cloned().unwrap_or(serde_json::Value::Null),
            asked: v.clone(),
        })
        .collect())
}

/// The config a resumed run continues with: `asked` when it differs from the run's
/// `saved` one only in [`RESUMABLE_KEYS`] (the changes are returned to be logged), an
/// error listing the other differing keys otherwise.
pub fn resume_config(
    saved: &TrainConfig,
    asked: &TrainConfig,
    saved_path: &Path,
) -> Result<Vec<ConfigChange>> {
    let changes = config_changes(saved, asked)?;
    let refused: Vec<String> = changes
        .iter()
        .filter(|c| !RESUMABLE_KEYS.contains(&c.key.as_str()))
        .map(|c| format!("`{}`: {} in the run, {} asked", c.key, c.saved, c.asked))
        .collect();
    if !refused.is_empty() {
        bail!(
            "--resume: the settings differ from the run's {} in {} key(s) that change what a step computes: {}. Resume without --config (and without those flags) to continue with the run's own settings, or start a new run (another --out); only {} may change on resume",
            saved_path.display(),
            refused.len(),
            refused.join("; "),
            RESUMABLE_KEYS.map(|k| format!("`{k}`")).join(", ")
        );
    }
    Ok(changes)
}
