//! Training: the FG-CLIP loss on batches, `fgclip check-loss` for one batch file, and
//! `fgclip train` (config, schedule, optimizer, metrics, checkpoints, exact resume,
//! export).

pub mod adamw;
mod check;
pub mod collective;
mod config;
mod inputs;
mod metrics;
pub mod param_groups;
mod setup;
mod start;
pub mod update;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

pub use crate::checkpoint::export::{
    TrainedBy, export_final, export_model, hf_config_json, model_arrays,
};
pub use crate::checkpoint::store::TrainState;
pub use check::{
    Fgclip2LossReport, LossReport, check_loss, check_loss_fgclip2, read_batch, read_fgclip2_batch,
};
pub use config::{
    ConfigChange, ConfigRequest, Fusion, RESUMABLE_KEYS, Schedule, Segments, Tower, TrainConfig,
    WarmupRule, config_changes, parse_train_config, read_train_config,
};
pub use setup::{requested_family, tokenizer_source};
pub use start::{ResumeFrom, Start};

use crate::checkpoint::store::save_checkpoint;
use crate::data::annotations;
use crate::data::batch::{Batch, Loader, LoaderPosition, LoaderSettings};
use crate::device::host_scalar as scalar;
use crate::io::write_atomic;
use crate::trainee::{Family, FamilyBatch, Trainee};
use collective::Collective;
pub(crate) use inputs::region_text_length;
use inputs::{join_hard_negatives, to_fgclip2_batch, to_video_batch};
use metrics::{MetricRow, Metrics};
use param_groups::ParamGroups;

/// Where the model to fine-tune comes from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// An HF CLIP folder (or an fgclip export).
    Dir(PathBuf),
    /// Random weights of a preset (`configs/*.json`), seeded by the training seed.
    Preset(String),
}

/// What a step observer says after each optimizer step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepControl {
    Continue,
    /// Stop at this step boundary: a checkpoint of this step is written (so `--resume`
    /// continues to the same weights) and the run ends with [`Interrupted`].
    Stop,
}

/// Called after every optimizer step (on rank 0) with the step's metrics row, as
/// `metrics.jsonl` has it (the Python package's `on_step` and its Ctrl-C).
#[derive(Clone)]
pub struct StepHook(pub Arc<dyn Fn(&serde_json::Value) -> StepControl + Send + Sync>);

impl std::fmt::Debug for StepHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepHook")
    }
}

/// A run stopped by its [`StepHook`] at a step boundary, its checkpoint written.
#[derive(Debug)]
pub struct Interrupted {
    pub step: usize,
    pub run: PathBuf,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "training stopped at step {}; {} holds its checkpoint (resume continues it)",
            self.step,
            self.run.display()
        )
    }
}

impl std::error::Error for Interrupted {}

/// What `fgclip train` was asked to do.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    pub annotations: PathBuf,
    pub videos: PathBuf,
    pub model: ModelSource,
    pub tokenizer: Option<PathBuf>,
    pub out: PathBuf,
    /// The settings asked for; on resume, the run's saved config is the base and only
    /// [`config::RESUMABLE_KEYS`] may differ from it.
    pub config: ConfigRequest,
    /// New run, `--overwrite` or `--resume`.
    pub start: Start,
    pub progress: bool,
    /// Called after every step (rank 0); None for the command line.
    pub on_step: Option<StepHook>,
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
    /// Ranks that trained (1: one process).
    pub world_size: usize,
}

/// Runs `fgclip train` in one process.
pub fn run_train(req: &TrainRequest, device: &Device, log: &dyn Fn(&str)) -> Result<TrainSummary> {
    run_train_on(req, device, &collective::SingleProcess, log)
}

/// Runs `fgclip train` as one rank of `collective` (DESIGN.md §7): the global batch is
/// split between the ranks, every contrastive term sees all of it, gradients are summed;
/// rank 0 alone logs and writes checkpoints, metrics and `final/`.
pub fn run_train_on(
    req: &TrainRequest,
    device: &Device,
    collective: &dyn Collective,
    log: &dyn Fn(&str),
) -> Result<TrainSummary> {
    let (rank, world) = (collective.rank(), collective.world_size());
    let lead = rank == 0;
    let silent = |_: &str| {};
    let log: &dyn Fn(&str) = if lead { log } else { &silent };
    let run = &req.out;
    // Before anything is written: the model's family decides the loss weights' defaults.
    let family = requested_family(&req.model)?;
    let device = device.clone().autodiff();
    let mut opened = start::open_run(
        run,
        &req.start,
        &req.config,
        family,
        &device,
        collective,
        log,
    )?;
    let cfg = opened.cfg.clone();
    if family == Family::Fgclip2 && !cfg.augment.is_empty() {
        bail!(
            "config: `augment` is not supported for FG-CLIP 2 models yet (their frames keep their own aspect ratio through the image processor); set it to []"
        );
    }

    // Data.
    let mut dataset = annotations::load(&req.annotations, cfg.max_anns)?;
    if let Some(path) = &cfg.hard_negatives_file {
        join_hard_negatives(&mut dataset, path, log)?;
    }
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
    let tok_src = tokenizer_source(req.tokenizer.as_ref(), &req.model)?;
    let tokenizer = setup::RunTokenizer::load(family, &tok_src)?;

    // Model, optimizer, state: fresh or from the checkpoint the run continues from.
    let resumed = opened.resumed.take();
    let resumed_from = resumed.as_ref().map(|(_, _, s)| s.step);
    let (model, mut optim, mut state) = match resumed {
        Some((m, o, s)) => {
            log(&format!("resuming from step {}", s.step));
            if s.world_size != collective.world_size() {
                log(&format!(
                    "warning: the checkpoint was trained on {} rank(s), this run has {}: the same global batch, so the same training up to float summation order, but not bit for bit",
                    s.world_size,
                    collective.world_size()
                ));
            }
            (m, o, s)
        }
        None => {
            let model = setup::initial_model(req, &cfg, &device, log)?;
            let state = TrainState {
                step: 0,
                epoch: 0,
                batch: 0,
                total_steps: 0,
                clips_seen: 0,
                clips_skipped: 0,
                nonfinite_steps: 0,
                consecutive_nonfinite: 0,
                world_size: collective.world_size(),
                files: BTreeMap::new(),
                cmr_threshold: 0.0,
            };
            let optim = cfg.optimizer(&model).1;
            (model, optim, state)
        }
    };
    if world > 1 {
        if cfg.batch_size % world != 0 {
            bail!(
                "batch_size {} (the global batch) is not a multiple of the {world} ranks",
                cfg.batch_size
            );
        }
        if !cfg.drop_last {
            bail!(
                "training on several ranks needs drop_last: true (every rank takes batch_size / ranks clips of each batch)"
            );
        }
        log(&format!(
            "{world} ranks ({}): {} clips per rank of each global batch of {}",
            collective.engine(),
            cfg.batch_size / world,
            cfg.batch_size
        ));
    }
    if model.family() != family {
        bail!(
            "the run's checkpoint is a {:?} model, --model a {family:?} one",
            model.family()
        );
    }
    let mut model = model.freeze(&cfg.freeze);
    let groups = ParamGroups::new(&model, cfg.weight_decay_rule, cfg.text_model_lr.is_some());
    if lead {
        write_atomic(
            &run.join("param_groups.json"),
            groups
                .to_json(cfg.weight_decay, cfg.text_model_lr)
                .as_bytes(),
        )?;
    }
    cfg.precision.check_device(&device)?;
    model.set_precision(cfg.precision);
    let weights = cfg.family_weights(family);
    let (sample_cfg, layout) =
        setup::run_inputs(&model, &req.model, &clips, &tokenizer, &cfg, &weights, log)?;
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
    if state.step > total {
        bail!(
            "the run continues from step {}, past its end at step {total} (max_steps {}, epochs {} of {batches_per_epoch} steps): raise max_steps or epochs",
            state.step,
            cfg.max_steps.map_or("null".to_string(), |m| m.to_string()),
            cfg.epochs
        );
    }
    if lead {
        opened.record(run, world, log)?;
    }
    state.total_steps = total;
    state.world_size = world;
    let metrics = if lead {
        Some(Metrics::open(run, state.step)?)
    } else {
        None
    };

    let bar = if req.progress && lead {
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
            sample_cfg.clone(),
            &LoaderSettings {
                batch_size: cfg.batch_size,
                seed: cfg.seed,
                shuffle: cfg.shuffle,
                random_frames: true,
                workers: cfg.loader_workers,
                prefetch: cfg.batch_size * 2,
                drop_last: cfg.drop_last,
                rank,
                world,
            },
            LoaderPosition {
                epoch: state.epoch,
                batch: state.batch,
            },
        );
        for loaded in loader {
            let t0 = Instant::now();
            for (clip, why) in &loaded.skipped {
                // Every rank reports its own skips.
                let who = if world > 1 {
                    format!("rank {rank}: ")
                } else {
                    String::new()
                };
                bar.suspend(|| {
                    eprintln_or_log(
                        lead,
                        log,
                        &format!("warning: {who}skipping clip {clip}: {why}"),
                    )
                });
                if first_skips.len() < 3 {
                    first_skips.push(why.clone());
                }
            }
            // The ranks agree on the global batch: its clips and skips, summed.
            let mut counts = [loaded.samples.len() as u64, loaded.skipped.len() as u64];
            collective.all_reduce_sum_u64(&mut counts);
            let [global_clips, global_skipped] = counts;
            state.clips_skipped += global_skipped;
            state.batch = loaded.position.batch + 1;
            if global_clips == 0 {
                continue;
            }
            let lr = cfg.lr_at(state.step, total);
            let gather = collective::CollectiveGather(collective);
            // A rank whose clips were all skipped still takes part: the global batch is
            // the other ranks' clips, as in one process with those clips skipped.
            let terms = if loaded.samples.is_empty() {
                model.loss_without_rows(
                    layout.long_length.is_some(),
                    &weights,
                    state.cmr_threshold,
                    &gather,
                    &device,
                )
            } else {
                let batch = Batch::collate(&loaded.samples, &sample_cfg, tokenizer.ids(), &layout)?;
                let batch = match &model {
                    Trainee::Clip(_) => {
                        FamilyBatch::Clip(to_video_batch(&batch, tokenizer.eot(), &device))
                    }
                    Trainee::Fgclip2(_) => FamilyBatch::Fgclip2(to_fgclip2_batch(&batch, &device)),
                };
                model.loss_gathered(&batch, &weights, state.cmr_threshold, &gather, &device)?
            };
            let (lg, lrg, lgl, lrt) = (
                scalar(terms.loss_global.clone())?,
                scalar(terms.loss_region.clone())?,
                scalar(terms.loss_global_long.clone())?,
                scalar(terms.loss_region_text.clone())?,
            );
            let mut lh = scalar(terms.loss_hard_negative.clone())?;
            let mut loss = scalar(terms.loss.clone())?;
            if world > 1 && model.hard_term_is_share() {
                // Each rank holds its share of FG-CLIP's hard-negative term.
                let mut share = [lh as f32];
                collective.all_reduce_sum_f32(&mut share);
                lh = f64::from(share[0]);
                loss = lg
                    + lgl
                    + weights.region * lrg
                    + weights.region_text * lrt
                    + weights.hard_negative * lh;
            }
            // A non-finite loss or gradient norm skips the step: the weights stay as they were.
            let update = update::gradients(
                &model,
                terms.loss.clone(),
                loss,
                cfg.grad_clip_norm,
                collective,
            )?;
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
            if let Some(t) = terms.threshold {
                state.cmr_threshold = t;
            }
            model = update::apply(model, &mut optim, &groups, grads, lr, &cfg);
            state.step += 1;
            state.clips_seen += global_clips;
            first_loss.get_or_insert(loss);
            last_loss = Some(loss);
            let dt = t0.elapsed().as_secs_f64();
            let row = MetricRow {
                step: state.step,
                epoch: loaded.position.epoch,
                loss,
                loss_global: lg,
                loss_region: lrg,
                grad_norm,
                num_regions: terms.num_regions,
                lr,
                clips: global_clips as usize,
                skipped: global_skipped as usize,
                clips_per_s: global_clips as f64 / dt.max(1e-9),
                elapsed_s: started.elapsed().as_secs_f64(),
                loss_global_long: lgl,
                loss_hard_negative: lh,
                num_hard_regions: terms.num_hard_regions,
                world_size: world,
                loss_region_text: lrt,
                cmr_threshold: state.cmr_threshold,
            };
            if let Some(m) = &metrics {
                m.append(&row)?;
            }
            // Every rank takes the lead's decision, so that all stop at the same step.
            let mut stop = [0u64];
            if let (true, Some(hook)) = (lead, &req.on_step) {
                let values = serde_json::to_value(&row)?;
                let control = bar.suspend(|| (hook.0)(&values));
                stop[0] = u64::from(control == StepControl::Stop);
            }
            if req.on_step.is_some() {
                collective.all_reduce_sum_u64(&mut stop);
            }
            if stop[0] > 0 {
                bar.finish_and_clear();
                if lead {
                    save_checkpoint(run, &model, &optim, &state, cfg.keep_checkpoints)?;
                }
                collective.barrier();
                return Err(Interrupted {
                    step: state.step,
                    run: run.clone(),
                }
                .into());
            }
            bar.set_position(state.step as u64);
            bar.set_message(format!(
                "ep {} loss {loss:.4} (g {lg:.4} r {lrg:.4}) lr {lr:.2e} {:.1} clips/s",
                loaded.position.epoch + 1,
                global_clips as f64 / dt.max(1e-9)
            ));
            since_save += 1;
            if since_save >= cfg.checkpoint_every || state.step >= total {
                if lead {
                    save_checkpoint(run, &model, &optim, &state, cfg.keep_checkpoints)?;
                }
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
    if since_save > 0 && lead {
        save_checkpoint(run, &model, &optim, &state, cfg.keep_checkpoints)?;
    }
    let final_model = if lead {
        let trained = TrainedBy {
            step: state.step,
            weights,
            frames: cfg.frames,
            preprocess: cfg.preprocess,
        };
        export_final(run, &model, &tok_src, &trained)?
    } else {
        run.join("final")
    };
    // No rank leaves before rank 0 has written the run's files.
    collective.barrier();
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
        world_size: world,
    })
}

/// A skip warning: through `log` on rank 0, straight to stderr on the others (whose `log`
/// is silent), so no rank's skips go unreported.
fn eprintln_or_log(lead: bool, log: &dyn Fn(&str), msg: &str) {
    if lead { log(msg) } else { eprintln!("{msg}") }
}
