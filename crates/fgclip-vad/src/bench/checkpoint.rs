//! `fgclip bench checkpoint`: the memory a training checkpoint write takes. A preset's
//! model with random weights makes one AdamW step (so the optimizer holds its moments, as
//! in a run), then `save_checkpoint` writes it; the process's resident memory is read
//! before the write and its peak during it (Linux: `/proc/self/status`, the peak reset
//! through `/proc/self/clear_refs`).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use fgclip_core::fgclip::{FgClip, LossWeights, Scales};
use fgclip_core::{ClipConfig, RandomInit, Weights};
use serde::Serialize;

use crate::checkpoint::store::{TrainState, save_checkpoint};
use crate::trainee::Trainee;

/// What `bench checkpoint` reports (bytes).
#[derive(Debug, Serialize)]
pub struct CheckpointMemory {
    /// Resident memory when the write starts (model, optimizer state, the step's leftovers).
    pub resident_before: u64,
    /// The peak resident memory during the write.
    pub peak_during: u64,
    /// The peak of the training step before it (for comparison).
    pub peak_of_step: u64,
    /// The checkpoint's files.
    pub bytes_written: u64,
    pub weights_bytes: u64,
    pub optimizer_bytes: u64,
    pub write_s: f64,
}

impl CheckpointMemory {
    /// Memory the write took above what was resident when it started, per byte written.
    pub fn extra_per_byte(&self) -> f64 {
        self.peak_during.saturating_sub(self.resident_before) as f64
            / self.bytes_written.max(1) as f64
    }
}

fn status_kib(field: &str) -> Result<u64> {
    let text = std::fs::read_to_string("/proc/self/status")
        .context("reading /proc/self/status (the benchmark needs Linux)")?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

fn reset_peak() -> Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")
}

/// One AdamW step of `config`'s model (1 clip × 1 frame), then a checkpoint into `run`.
pub fn bench_checkpoint(
    config: &ClipConfig,
    run: &Path,
    device: &Device,
) -> Result<CheckpointMemory> {
    let device = device.clone().autodiff();
    let model = FgClip::load(
        &Weights::new(&RandomInit::new(config, 0), &device),
        config,
        Scales::fresh(),
    )?;
    let vb = super::bench_batch(config, (1, 1), 0, false, &device);
    let mut optim = burn::optim::ModuleOptimizer::from(crate::train::adamw::FusedAdamW::new(
        &AdamWConfig::new(),
    ));
    reset_peak()?;
    let weights = LossWeights {
        region: 0.1,
        hard_negative: 0.5,
    };
    let loss = model.loss(&vb, &weights).loss;
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = optim.step(1e-5, model, grads);
    drop(vb);
    let peak_of_step = status_kib("VmHWM:")? * 1024;
    let trainee = Trainee::Clip(model);
    let state = TrainState {
        step: 1,
        epoch: 0,
        batch: 1,
        total_steps: 1,
        clips_seen: 1,
        clips_skipped: 0,
        nonfinite_steps: 0,
        consecutive_nonfinite: 0,
        world_size: 1,
        files: Default::default(),
        cmr_threshold: 0.0,
    };
    if run.exists() {
        bail!("{} exists: give a folder that does not", run.display());
    }
    let resident_before = status_kib("VmRSS:")? * 1024;
    reset_peak()?;
    let t = Instant::now();
    let dir = save_checkpoint(run, &trainee, &optim, &state, 1)?;
    let write_s = t.elapsed().as_secs_f64();
    let peak_during = status_kib("VmHWM:")? * 1024;
    let size = |f: &str| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
    let bytes_written = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    Ok(CheckpointMemory {
        resident_before,
        peak_during,
        peak_of_step,
        bytes_written,
        weights_bytes: size("model.safetensors"),
        optimizer_bytes: size("optimizer.bpk"),
        write_s,
    })
}
