//! Training: the FG-CLIP loss on batches, `fgclip check-loss` for one batch file, and
//! `fgclip train` (config, schedule, optimizer, metrics, checkpoints, exact resume,
//! export).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use fgclip_core::fgclip::{FgClip, VideoBatch};
use fgclip_core::names::{ParamRef, to_hf_layout};
use serde::Serialize;

use crate::checkpoint::safetensors_io::{Array, read_arrays, write_arrays};
use crate::inference::host_f32;

/// What `check-loss` prints.
#[derive(Debug, Serialize)]
pub struct LossReport {
    pub loss: f64,
    pub loss_global: f64,
    pub loss_region: f64,
    pub num_regions: usize,
}

/// Reads a batch file in the layout of DESIGN.md §3 onto `device`, checking every
/// tensor's presence, dtype and shape against the others and against the model's
/// `config` (image size, channels, token positions, vocabulary).
pub fn read_batch(
    path: &Path,
    config: &fgclip_core::ClipConfig,
    device: &Device,
) -> Result<VideoBatch> {
    let mut a = read_arrays(path)?;
    let mut take = |name: &str| {
        a.remove(name)
            .with_context(|| format!("{}: no tensor `{name}`", path.display()))
    };
    let f32s = |name: &str, arr: Array, rank: usize| -> Result<(Vec<usize>, Vec<f32>)> {
        match arr {
            Array::F32 { shape, data } if shape.len() == rank => {
                if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                    bail!(
                        "{}: `{name}` has a non-finite value at flat index {i}",
                        path.display()
                    );
                }
                Ok((shape, data))
            }
            other => bail!(
                "{}: `{name}` must be a rank-{rank} float tensor, got shape {:?}",
                path.display(),
                other.shape()
            ),
        }
    };
    let ints = |name: &str, arr: Array, rank: usize| -> Result<(Vec<usize>, Vec<i64>)> {
        match arr {
            Array::I64 { shape, data } if shape.len() == rank => Ok((shape, data)),
            Array::U8 { shape, data } if shape.len() == rank => {
                Ok((shape, data.into_iter().map(i64::from).collect()))
            }
            other => bail!(
                "{}: `{name}` must be a rank-{rank} integer tensor, got shape {:?}",
                path.display(),
                other.shape()
            ),
        }
    };
    let (ps, pixels) = f32s("pixel_values", take("pixel_values")?, 5)?;
    let (gs, global) = ints("global_input_ids", take("global_input_ids")?, 2)?;
    let (rs, region) = ints("region_input_ids", take("region_input_ids")?, 3)?;
    let (bs, boxes) = f32s("boxes", take("boxes")?, 4)?;
    let (ms, mask) = ints("bbox_mask", take("bbox_mask")?, 3)?;
    let (b, t, n) = (ps[0], ps[1], rs[1]);
    let (c, size) = (
        config.vision_config.num_channels,
        config.vision_config.image_size,
    );
    if b == 0 || t == 0 || ps[2..] != [c, size, size] {
        bail!(
            "{}: `pixel_values` has shape {ps:?}, the model expects [B ≥ 1, T ≥ 1, {c}, {size}, {size}]",
            path.display()
        );
    }
    let (vocab, positions) = (
        config.text_config.vocab_size,
        config.text_config.max_position_embeddings,
    );
    if gs[1] == 0 || gs[1] > positions {
        bail!(
            "{}: `global_input_ids` has shape {gs:?}: {} token positions, the model has 1 to {positions}",
            path.display(),
            gs[1]
        );
    }
    for (name, ids) in [("global_input_ids", &global), ("region_input_ids", &region)] {
        if let Some(&id) = ids.iter().find(|&&id| id < 0 || id as u64 >= vocab as u64) {
            bail!(
                "{}: `{name}` holds token id {id}, outside the model's vocabulary of {vocab}",
                path.display()
            );
        }
    }
    let expect = [
        ("global_input_ids", gs.clone(), vec![b, gs[1]]),
        ("region_input_ids", rs.clone(), vec![b, n, gs[1]]),
        ("boxes", bs, vec![b, t, n, 4]),
        ("bbox_mask", ms, vec![b, t, n]),
    ];
    for (name, got, want) in expect {
        if got != want {
            bail!(
                "{}: `{name}` has shape {got:?}, expected {want:?} from pixel_values {ps:?}",
                path.display()
            );
        }
    }
    if let Some(i) = boxes.iter().position(|v| !(0.0..=1.0).contains(v)) {
        bail!(
            "{}: `boxes` value {} at flat index {i} is outside [0, 1]",
            path.display(),
            boxes[i]
        );
    }
    Ok(VideoBatch {
        pixel_values: Tensor::from_data(
            TensorData::new(pixels, [ps[0], ps[1], ps[2], ps[3], ps[4]]),
            device,
        ),
        global_input_ids: Tensor::<2, Int>::from_data(TensorData::new(global, [b, gs[1]]), device),
        region_input_ids: Tensor::<3, Int>::from_data(
            TensorData::new(region, [b, n, gs[1]]),
            device,
        ),
        boxes,
        bbox_mask: mask.into_iter().map(|m| u8::from(m != 0)).collect(),
    })
}

fn scalar(t: Tensor<1>) -> Result<f64> {
    Ok(host_f32(t)?.first().copied().unwrap_or(f32::NAN) as f64)
}

/// The loss of one batch and, with `grads_out`, the gradient of every parameter by HF
/// name written there.
pub fn check_loss(
    model: &FgClip,
    batch: &VideoBatch,
    region_weight: f64,
    grads_out: Option<&Path>,
) -> Result<LossReport> {
    let terms = model.loss(batch, region_weight);
    if let Some(out) = grads_out {
        let grads = terms.loss.backward();
        // A parameter outside the graph (none today) reports a zero gradient.
        let arrays = hf_arrays(model, false, |p| {
            let (g1, g2) = match p {
                ParamRef::D1(t) => (t.val().grad(&grads).map(host_f32), None),
                ParamRef::D2(t) => (None, t.val().grad(&grads).map(host_f32)),
            };
            g1.or(g2).transpose()
        })?;
        write_arrays(out, &arrays)?;
    }
    Ok(LossReport {
        loss: scalar(terms.loss)?,
        loss_global: scalar(terms.loss_global)?,
        loss_region: scalar(terms.loss_region)?,
        num_regions: terms.num_regions,
    })
}

// ---------------------------------------------------------------------------------------
// fgclip train
// ---------------------------------------------------------------------------------------

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module as _;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use fgclip_core::{Precision, Tokenizer};
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::hf::{FGCLIP_EXTRA, load_fgclip};
use crate::checkpoint::safetensors_io::write_atomic;
use crate::data::annotations;
use crate::data::batch::{Batch, Loader, LoaderPosition, SampleConfig};
use crate::param_groups::{ParamGroups, WeightDecayRule};
use crate::update;

/// Learning-rate schedule after warm-up.
/// How the warm-up counts (see [`TrainConfig::warmup_rule`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmupRule {
    #[default]
    Hf,
    OpenClip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Constant,
}

/// A tower whose weights stay fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tower {
    Vision,
    Text,
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
    /// λ in loss = loss_global + λ · loss_region.
    pub region_weight: f64,
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
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 8,
            frames: 8,
            max_anns: 4,
            region_weight: 0.1,
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
        if !(self.region_weight.is_finite() && self.region_weight >= 0.0) {
            bail!(
                "config: `region_weight` must be ≥ 0, got {}",
                self.region_weight
            );
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
    pub(crate) fn optimizer(&self, model: &FgClip) -> (ParamGroups, ModuleOptimizer) {
        let groups = ParamGroups::new(model, self.weight_decay_rule, self.text_model_lr.is_some());
        let optim = groups.optimizer(&self.adamw());
        (groups, optim)
    }
}

/// Reads a config file; unknown keys are errors (a typo must not train silently).
pub fn read_train_config(path: &Path) -> Result<TrainConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let c: TrainConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a training config", path.display()))?;
    c.validate()
        .with_context(|| format!("in {}", path.display()))?;
    Ok(c)
}

/// Where the model to fine-tune comes from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// An HF CLIP folder (or an fgclip export).
    Dir(PathBuf),
    /// Random weights of a preset (`configs/*.json`), seeded by the training seed.
    Preset(String),
}

/// What `fgclip train` was asked to do.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    pub annotations: PathBuf,
    pub videos: PathBuf,
    pub model: ModelSource,
    pub tokenizer: Option<PathBuf>,
    pub out: PathBuf,
    pub config: TrainConfig,
    pub resume: bool,
    pub progress: bool,
}

/// Everything a checkpoint holds besides the weights and the optimizer state.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    /// Where the data order continues.
    pub epoch: u64,
    pub batch: usize,
    pub total_steps: usize,
    pub clips_seen: u64,
    pub clips_skipped: u64,
    pub nonfinite_steps: u64,
    pub consecutive_nonfinite: usize,
    /// (size, FNV-1a 64) of each file, to detect a damaged checkpoint.
    pub files: BTreeMap<String, (u64, String)>,
}

/// A finished run.
#[derive(Debug, Serialize)]
pub struct TrainSummary {
    pub run: PathBuf,
    pub steps: usize,
    pub clips_seen: u64,
    pub clips_skipped: u64,
    pub nonfinite_steps: u64,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub final_model: PathBuf,
    pub resumed_from: Option<usize>,
}

fn fnv64(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// The model's weights by HF name (`logit_scale_region` included unless `plain_clip`).
pub fn model_arrays(model: &FgClip, plain_clip: bool) -> Result<BTreeMap<String, Array>> {
    hf_arrays(model, plain_clip, |p| {
        match p {
            ParamRef::D1(t) => host_f32(t.val()),
            ParamRef::D2(t) => host_f32(t.val()),
        }
        .map(Some)
    })
}

/// One array per parameter, by HF name and in HF layout, of what `value` reads from it
/// (its weights, or its gradient; None: zeros).
fn hf_arrays(
    model: &FgClip,
    plain_clip: bool,
    value: impl Fn(ParamRef<'_>) -> Result<Option<Vec<f32>>>,
) -> Result<BTreeMap<String, Array>> {
    let mut out = BTreeMap::new();
    for p in model.named_params() {
        if plain_clip && p.name == "logit_scale_region" {
            continue;
        }
        let held = match p.param {
            ParamRef::D1(t) => t.val().dims().to_vec(),
            ParamRef::D2(t) => t.val().dims().to_vec(),
        };
        let values = value(p.param)?.unwrap_or_else(|| vec![0.0; held.iter().product()]);
        let (shape, data) = to_hf_layout(p.layout, &held, &values);
        out.insert(p.name, Array::F32 { shape, data });
    }
    Ok(out)
}

/// HF `config.json` text for a model config.
pub fn hf_config_json(config: &fgclip_core::ClipConfig) -> Result<String> {
    let mut v = serde_json::to_value(config)?;
    if let Some(o) = v.as_object_mut() {
        o.insert("architectures".into(), serde_json::json!(["CLIPModel"]));
        o.insert("model_type".into(), serde_json::json!("clip"));
        if let Some(t) = o.get_mut("text_config").and_then(|t| t.as_object_mut()) {
            t.insert("model_type".into(), serde_json::json!("clip_text_model"));
        }
        if let Some(t) = o.get_mut("vision_config").and_then(|t| t.as_object_mut()) {
            t.insert("model_type".into(), serde_json::json!("clip_vision_model"));
        }
    }
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Writes `RUN/checkpoints/step-NNNNNNNN/` atomically (a temporary folder, fsync, rename)
/// and keeps the newest `keep`.
fn save_checkpoint(
    run: &Path,
    model: &FgClip,
    optim: &ModuleOptimizer,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let dir = checkpoints_dir(run);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = format!("step-{:08}", state.step);
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut state = state.clone();
    let config_text = hf_config_json(model.clip.config())?;
    let weights = {
        let arrays = model_arrays(model, false)?;
        let path = tmp.join("model.safetensors");
        write_arrays(&path, &arrays)?;
        std::fs::read(&path)?
    };
    let optim_bytes = optim
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("serialising the optimizer state: {e:?}"))?;
    write_atomic(&tmp.join("optimizer.bpk"), &optim_bytes)?;
    write_atomic(&tmp.join("config.json"), config_text.as_bytes())?;
    state.files.insert(
        "model.safetensors".into(),
        (weights.len() as u64, fnv64(&weights)),
    );
    state.files.insert(
        "optimizer.bpk".into(),
        (optim_bytes.len() as u64, fnv64(&optim_bytes)),
    );
    write_atomic(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(&state)?.as_bytes(),
    )?;
    sync_dir(&tmp);
    let final_dir = dir.join(&name);
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).ok();
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), final_dir.display()))?;
    sync_dir(&dir);
    // Prune: the newest `keep` stay.
    let mut all = list_checkpoints(run);
    while all.len() > keep {
        let (_, old) = all.remove(0);
        std::fs::remove_dir_all(&old).ok();
    }
    Ok(final_dir)
}

/// Checkpoint folders, oldest first.
fn list_checkpoints(run: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(checkpoints_dir(run))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse::<usize>().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Reads and verifies one checkpoint's state; the files must have the recorded sizes
/// and hashes.
fn verify_checkpoint(dir: &Path) -> Result<TrainState> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("reading {}", state_path.display()))?;
    let state: TrainState = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged", state_path.display()))?;
    for (name, (size, hash)) in &state.files {
        let bytes = std::fs::read(dir.join(name))
            .with_context(|| format!("reading {}", dir.join(name).display()))?;
        if bytes.len() as u64 != *size || fnv64(&bytes) != *hash {
            bail!(
                "{} is damaged ({} bytes, {} expected)",
                dir.join(name).display(),
                bytes.len(),
                size
            );
        }
    }
    if !state.files.contains_key("model.safetensors") || !state.files.contains_key("optimizer.bpk")
    {
        bail!("{} lists no model or optimizer file", state_path.display());
    }
    Ok(state)
}

/// The newest intact checkpoint (damaged ones are reported and passed over).
fn load_latest_checkpoint(
    run: &Path,
    device: &Device,
    fresh_optim: impl Fn(&FgClip) -> ModuleOptimizer,
    log: &dyn Fn(&str),
) -> Result<Option<(FgClip, ModuleOptimizer, TrainState)>> {
    for (_, dir) in list_checkpoints(run).into_iter().rev() {
        let loaded = verify_checkpoint(&dir).and_then(|state| {
            let model = load_fgclip(&dir, device)?;
            let bytes = std::fs::read(dir.join("optimizer.bpk"))?;
            let optim = fresh_optim(&model)
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
                .map_err(|e| anyhow::anyhow!("{}: optimizer state: {e:?}", dir.display()))?;
            Ok((model, optim, state))
        });
        match loaded {
            Ok(x) => return Ok(Some(x)),
            Err(e) => log(&format!(
                "warning: skipping checkpoint {}: {e:#}",
                dir.display()
            )),
        }
    }
    Ok(None)
}

/// Appends metrics rows; `keep_until` rewrites the files without rows past that step
/// (after a resume).
struct Metrics {
    jsonl: PathBuf,
    csv: PathBuf,
}

const CSV_HEADER: &str = "step,epoch,loss,loss_global,loss_region,grad_norm,num_regions,lr,clips,skipped,clips_per_s,elapsed_s";

#[derive(Serialize, serde::Deserialize)]
struct MetricRow {
    step: usize,
    epoch: u64,
    loss: f64,
    loss_global: f64,
    loss_region: f64,
    /// Global L2 norm of the gradients before clipping (as HF Trainer logs it).
    #[serde(default)]
    grad_norm: f64,
    num_regions: usize,
    lr: f64,
    clips: usize,
    skipped: usize,
    clips_per_s: f64,
    elapsed_s: f64,
}

impl Metrics {
    fn open(run: &Path, keep_until: usize) -> Result<Self> {
        let m = Self {
            jsonl: run.join("metrics.jsonl"),
            csv: run.join("metrics.csv"),
        };
        // The rows up to the checkpoint stay byte for byte (a parsed and re-printed float
        // may change in its last digits).
        #[derive(serde::Deserialize)]
        struct Step {
            step: usize,
        }
        let old = std::fs::read_to_string(&m.jsonl).unwrap_or_default();
        let mut jsonl = String::new();
        for line in old.lines() {
            if serde_json::from_str::<Step>(line).is_ok_and(|r| r.step <= keep_until) {
                jsonl.push_str(line);
                jsonl.push('\n');
            }
        }
        let old_csv = std::fs::read_to_string(&m.csv).unwrap_or_default();
        let mut csv = format!("{CSV_HEADER}\n");
        for line in old_csv.lines().skip(1) {
            let step = line.split(',').next().and_then(|f| f.parse::<usize>().ok());
            if step.is_some_and(|s| s <= keep_until) {
                csv.push_str(line);
                csv.push('\n');
            }
        }
        write_atomic(&m.jsonl, jsonl.as_bytes())?;
        write_atomic(&m.csv, csv.as_bytes())?;
        Ok(m)
    }

    fn csv_row(r: &MetricRow) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{:.3},{:.3}\n",
            r.step,
            r.epoch,
            r.loss,
            r.loss_global,
            r.loss_region,
            r.grad_norm,
            r.num_regions,
            r.lr,
            r.clips,
            r.skipped,
            r.clips_per_s,
            r.elapsed_s
        )
    }

    fn append(&self, r: &MetricRow) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.jsonl)?;
        writeln!(f, "{}", serde_json::to_string(r)?)?;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.csv)?;
        f.write_all(Self::csv_row(r).as_bytes())?;
        Ok(())
    }
}

fn initial_model(req: &TrainRequest, device: &Device) -> Result<FgClip> {
    match &req.model {
        ModelSource::Dir(dir) => load_fgclip(dir, device),
        ModelSource::Preset(name) => {
            let config = crate::presets::resolve(name)?;
            let init = fgclip_core::RandomInit::new(&config, req.config.seed);
            Ok(FgClip::load(
                &fgclip_core::Weights::new(&init, device),
                &config,
                fgclip_core::fgclip::RegionScale::Value(
                    fgclip_core::fgclip::LOGIT_SCALE_REGION_INIT,
                ),
            )?)
        }
    }
}

fn tokenizer_source(req: &TrainRequest) -> Result<PathBuf> {
    match (&req.tokenizer, &req.model) {
        (Some(t), _) => Ok(t.clone()),
        (None, ModelSource::Dir(d)) => Ok(d.clone()),
        (None, ModelSource::Preset(p)) => bail!(
            "training the preset `{p}` from scratch needs a tokenizer: give --tokenizer (`builtin` for CLIP's BPE, or a tokenizer.json, vocab.json, bpe_simple_vocab_16e6.txt.gz or a model folder)"
        ),
    }
}

/// Copies the tokenizer files found at `src` (a file or a folder) into `dst`.
fn copy_tokenizer(src: &Path, dst: &Path) -> Result<()> {
    if src.as_os_str() == "builtin" {
        return write_atomic(
            &dst.join(crate::checkpoint::hf::BUILTIN_BPE_NAME),
            crate::checkpoint::hf::BUILTIN_BPE,
        );
    }
    let files: Vec<PathBuf> = if src.is_dir() {
        [
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
            "merges.txt",
            "bpe_simple_vocab_16e6.txt.gz",
            "special_tokens_map.json",
        ]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.is_file())
        .collect()
    } else {
        let mut v = vec![src.to_path_buf()];
        let name = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == "vocab.json" {
            v.push(src.with_file_name("merges.txt"));
        } else if name == "merges.txt" {
            v.push(src.with_file_name("vocab.json"));
        }
        v
    };
    for f in files {
        if let Some(name) = f.file_name() {
            std::fs::copy(&f, dst.join(name))
                .with_context(|| format!("copying {}", f.display()))?;
        }
    }
    Ok(())
}

/// Writes `RUN/final/`: HF `config.json` + `model.safetensors` (loadable by transformers'
/// `CLIPModel`), `fgclip.json` with the region logit scale, and the tokenizer files.
pub fn export_final(
    run: &Path,
    model: &FgClip,
    tokenizer_src: &Path,
    config: &TrainConfig,
) -> Result<PathBuf> {
    let dir = run.join("final");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_arrays(&dir.join("model.safetensors"), &model_arrays(model, true)?)?;
    write_atomic(
        &dir.join("config.json"),
        hf_config_json(model.clip.config())?.as_bytes(),
    )?;
    let region = host_f32(model.logit_scale_region.val())?
        .first()
        .copied()
        .unwrap_or(f32::NAN);
    let extra = serde_json::json!({
        "logit_scale_region": region,
        "region_weight": config.region_weight,
        "about": "fgclip: the FG-CLIP region logit scale, which HF CLIPModel has no place for",
    });
    write_atomic(
        &dir.join(FGCLIP_EXTRA),
        (serde_json::to_string_pretty(&extra)? + "\n").as_bytes(),
    )?;
    copy_tokenizer(tokenizer_src, &dir)?;
    Ok(dir)
}

fn to_video_batch(batch: &Batch, device: &Device) -> VideoBatch {
    let (b, t, n, s, l) = (batch.b, batch.t, batch.n, batch.s, batch.context_length);
    VideoBatch {
        pixel_values: Tensor::from_data(
            TensorData::new(batch.pixel_values.clone(), [b, t, 3, s, s]),
            device,
        ),
        global_input_ids: Tensor::<2, Int>::from_data(
            TensorData::new(batch.global_input_ids.clone(), [b, l]),
            device,
        ),
        region_input_ids: Tensor::<3, Int>::from_data(
            TensorData::new(batch.region_input_ids.clone(), [b, n, l]),
            device,
        ),
        boxes: batch.boxes.clone(),
        bbox_mask: batch.bbox_mask.clone(),
    }
}

fn freeze(mut model: FgClip, towers: &[Tower]) -> FgClip {
    for t in towers {
        match t {
            Tower::Vision => {
                model.clip.vision_model = model.clip.vision_model.no_grad();
                model.clip.visual_projection = model.clip.visual_projection.no_grad();
            }
            Tower::Text => {
                model.clip.text_model = model.clip.text_model.no_grad();
                model.clip.text_projection = model.clip.text_projection.no_grad();
            }
        }
    }
    model
}

/// Runs `fgclip train`.
pub fn run_train(req: &TrainRequest, device: &Device, log: &dyn Fn(&str)) -> Result<TrainSummary> {
    let cfg = &req.config;
    cfg.validate()?;
    let run = &req.out;
    std::fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
    let device = device.clone().autodiff();

    // Data.
    let dataset = annotations::load(&req.annotations, cfg.max_anns)?;
    let bad = dataset.clips_with_errors();
    if !bad.is_empty() {
        log(&format!(
            "warning: {} clip(s) of {} have errors and are skipped (run `fgclip validate`)",
            bad.len(),
            req.annotations.display()
        ));
    }
    let clips = Arc::new(dataset.usable());
    if clips.is_empty() {
        bail!("{}: no usable clip to train on", req.annotations.display());
    }
    let tok_src = tokenizer_source(req)?;
    let tokenizer: Tokenizer = crate::checkpoint::hf::load_tokenizer(&tok_src)?;

    // Model, optimizer, state: fresh or from the newest intact checkpoint.
    let config_path = run.join("config.json");
    let mut resumed_from = None;
    let (model, mut optim, mut state) = match req
        .resume
        .then(|| load_latest_checkpoint(run, &device, |m| cfg.optimizer(m).1, log))
        .transpose()?
        .flatten()
    {
        Some((m, o, s)) => {
            // The run's own settings win over the command line's on resume.
            if config_path.is_file() {
                let saved = read_train_config(&config_path)?;
                if &saved != cfg {
                    log("note: resuming with the run's saved config.json");
                }
            }
            resumed_from = Some(s.step);
            log(&format!("resuming from step {}", s.step));
            (m, o, s)
        }
        None => {
            if req.resume {
                log("no checkpoint to resume from: starting from the beginning");
            }
            let model = initial_model(req, &device)?;
            let state = TrainState {
                step: 0,
                epoch: 0,
                batch: 0,
                total_steps: 0,
                clips_seen: 0,
                clips_skipped: 0,
                nonfinite_steps: 0,
                consecutive_nonfinite: 0,
                files: BTreeMap::new(),
            };
            let optim = cfg.optimizer(&model).1;
            (model, optim, state)
        }
    };
    let cfg = if resumed_from.is_some() && config_path.is_file() {
        read_train_config(&config_path)?
    } else {
        write_atomic(
            &config_path,
            (serde_json::to_string_pretty(cfg)? + "\n").as_bytes(),
        )?;
        cfg.clone()
    };
    let mut model = freeze(model, &cfg.freeze);
    let groups = ParamGroups::new(&model, cfg.weight_decay_rule, cfg.text_model_lr.is_some());
    write_atomic(
        &run.join("param_groups.json"),
        groups
            .to_json(cfg.weight_decay, cfg.text_model_lr)
            .as_bytes(),
    )?;
    cfg.precision.check_device(&device)?;
    model.set_precision(cfg.precision);
    let image_size = model.clip.config().vision_config.image_size as u32;
    let context_length = model.clip.config().text_config.max_position_embeddings;
    let sample_cfg = SampleConfig {
        frames: cfg.frames,
        image_size,
        max_anns: cfg.max_anns,
    };
    let batches_per_epoch = if cfg.drop_last {
        clips.len() / cfg.batch_size
    } else {
        clips.len().div_ceil(cfg.batch_size)
    };
    if batches_per_epoch == 0 {
        bail!(
            "{} usable clips are fewer than batch_size {} (drop_last drops the short batch): lower batch_size or set drop_last to false",
            clips.len(),
            cfg.batch_size
        );
    }
    let total = cfg
        .max_steps
        .unwrap_or(usize::MAX)
        .min(batches_per_epoch * cfg.epochs);
    state.total_steps = total;
    let metrics = Metrics::open(run, state.step)?;

    let bar = if req.progress {
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:25} {pos}/{len} steps {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_position(state.step as u64);
        b
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut first_skips: Vec<String> = Vec::new();
    let mut first_loss = None;
    let mut last_loss = None;
    let mut since_save = 0usize;
    'epochs: while state.step < total && (state.epoch as usize) < cfg.epochs {
        let (steps_before, skipped_before) = (state.step, state.clips_skipped);
        let loader = Loader::new(
            clips.clone(),
            req.videos.clone(),
            sample_cfg,
            cfg.batch_size,
            cfg.seed,
            cfg.shuffle,
            true,
            LoaderPosition {
                epoch: state.epoch,
                batch: state.batch,
            },
            cfg.loader_workers,
            cfg.batch_size * 2,
            cfg.drop_last,
        );
        for loaded in loader {
            let t0 = Instant::now();
            for (clip, why) in &loaded.skipped {
                bar.suspend(|| log(&format!("warning: skipping clip {clip}: {why}")));
                if first_skips.len() < 3 {
                    first_skips.push(why.clone());
                }
            }
            state.clips_skipped += loaded.skipped.len() as u64;
            state.batch = loaded.position.batch + 1;
            if loaded.samples.is_empty() {
                continue;
            }
            let batch = Batch::collate(&loaded.samples, &sample_cfg, &tokenizer, context_length);
            let lr = cfg.lr_at(state.step, total);
            let terms = model.loss(&to_video_batch(&batch, &device), cfg.region_weight);
            let loss = scalar(terms.loss.clone())?;
            // A non-finite loss or gradient norm skips the step: the weights stay as they were.
            let update = update::gradients(&model, terms.loss.clone(), loss, cfg.grad_clip_norm)?;
            let (grads, grad_norm) = match update {
                Ok(u) => u,
                Err(what) => {
                    state.nonfinite_steps += 1;
                    state.consecutive_nonfinite += 1;
                    bar.suspend(|| {
                        log(&format!(
                            "warning: non-finite {what} at step {}: step skipped",
                            state.step
                        ))
                    });
                    if state.consecutive_nonfinite >= cfg.max_nonfinite_steps {
                        bail!(
                            "{} consecutive non-finite losses or gradient norms (last at step {}): stopping. Lower learning_rate or check the data; checkpoints written so far are intact",
                            state.consecutive_nonfinite,
                            state.step
                        );
                    }
                    continue;
                }
            };
            state.consecutive_nonfinite = 0;
            let (lg, lrg) = (
                scalar(terms.loss_global.clone())?,
                scalar(terms.loss_region.clone())?,
            );
            model = update::apply(model, &mut optim, &groups, grads, lr, &cfg);
            state.step += 1;
            state.clips_seen += batch.b as u64;
            first_loss.get_or_insert(loss);
            last_loss = Some(loss);
            let dt = t0.elapsed().as_secs_f64();
            metrics.append(&MetricRow {
                step: state.step,
                epoch: loaded.position.epoch,
                loss,
                loss_global: lg,
                loss_region: lrg,
                grad_norm,
                num_regions: terms.num_regions,
                lr,
                clips: batch.b,
                skipped: loaded.skipped.len(),
                clips_per_s: batch.b as f64 / dt.max(1e-9),
                elapsed_s: started.elapsed().as_secs_f64(),
            })?;
            bar.set_position(state.step as u64);
            bar.set_message(format!(
                "ep {} loss {loss:.4} (g {lg:.4} r {lrg:.4}) lr {lr:.2e} {:.1} clips/s",
                loaded.position.epoch + 1,
                batch.b as f64 / dt.max(1e-9)
            ));
            since_save += 1;
            if since_save >= cfg.checkpoint_every || state.step >= total {
                save_checkpoint(run, &model, &optim, &state, cfg.keep_checkpoints)?;
                since_save = 0;
            }
            if state.step >= total {
                break 'epochs;
            }
        }
        // Sampling is deterministic: an epoch whose clips were all skipped will be again.
        // (A resumed position at an epoch's end loads nothing and is no failure.)
        if state.step == steps_before && state.clips_skipped > skipped_before {
            bail!(
                "no training step was made in epoch {}: {} clip(s) skipped{} (check --videos and `fgclip validate`)",
                state.epoch + 1,
                state.clips_skipped - skipped_before,
                if first_skips.is_empty() {
                    String::new()
                } else {
                    format!(", e.g. {}", first_skips.join("; "))
                }
            );
        }
        state.epoch += 1;
        state.batch = 0;
    }
    bar.finish_and_clear();
    if since_save > 0 {
        save_checkpoint(run, &model, &optim, &state, cfg.keep_checkpoints)?;
    }
    let final_model = export_final(run, &model, &tok_src, &cfg)?;
    Ok(TrainSummary {
        run: run.clone(),
        steps: state.step,
        clips_seen: state.clips_seen,
        clips_skipped: state.clips_skipped,
        nonfinite_steps: state.nonfinite_steps,
        first_loss,
        last_loss,
        final_model,
        resumed_from,
    })
}
