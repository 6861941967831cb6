//! Training: the FG-CLIP loss on batches, `fgclip check-loss` for one batch file, and
//! `fgclip train` (config, schedule, optimizer, metrics, checkpoints, exact resume,
//! export).

pub mod adamw;
mod check;
pub mod collective;
mod config;
mod inputs;
mod metrics;
mod start;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use burn::module::Module as _;
use burn::tensor::Device;
use fgclip_core::Tokenizer;
use fgclip_core::fgclip::FgClip;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

pub use crate::checkpoint::export::{
    TrainedBy, export_final, export_model, hf_config_json, model_arrays,
};
pub use crate::checkpoint::store::TrainState;
pub use check::{LossReport, check_loss, read_batch};
pub use config::{
    ConfigChange, ConfigRequest, Fusion, RESUMABLE_KEYS, Schedule, Segments, Tower, TrainConfig,
    WarmupRule, config_changes, parse_train_config, read_train_config,
};
pub use start::{ResumeFrom, Start};

use crate::checkpoint::hf::load_fgclip;
use crate::checkpoint::store::save_checkpoint;
use crate::data::annotations;
use crate::data::batch::{Batch, Loader, LoaderPosition, SampleConfig};
use crate::device::host_scalar as scalar;
use crate::io::write_atomic;
use crate::param_groups::ParamGroups;
use crate::update;
use collective::Collective;
pub(crate) use inputs::region_text_length;
use inputs::{join_hard_negatives, text_layout, to_video_batch};
use metrics::{MetricRow, Metrics};

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
    /// The settings asked for; on resume, the run's saved config is the base and only
    /// [`config::RESUMABLE_KEYS`] may differ from it.
    pub config: ConfigRequest,
    /// New run, `--overwrite` or `--resume`.
    pub start: Start,
    pub progress: bool,
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

fn initial_model(
    req: &TrainRequest,
    cfg: &TrainConfig,
    device: &Device,
    log: &dyn Fn(&str),
) -> Result<FgClip> {
    let model = match &req.model {
        ModelSource::Dir(dir) => load_fgclip(dir, device, cfg.reset_region_scales)?,
        ModelSource::Preset(name) => {
            let config = crate::presets::resolve(name)?;
            let init = fgclip_core::RandomInit::new(&config, cfg.seed);
            FgClip::load(
                &fgclip_core::Weights::new(&init, device),
                &config,
                fgclip_core::fgclip::Scales::fresh(),
            )?
        }
    };
    with_configured_fusion(model, cfg, device, log)
}

/// The model with the frame fusion `cfg` asks for: a model's own temporal transformer is
/// kept (it must cover `frames`), a fresh one (equal to mean pooling) made where it has
/// none, and dropped with a note for `fusion: mean`.
fn with_configured_fusion(
    model: FgClip,
    cfg: &TrainConfig,
    device: &Device,
    log: &dyn Fn(&str),
) -> Result<FgClip> {
    use fgclip_core::fusion::{FusionConfig, TemporalFusion};
    match (cfg.fusion, &model.fusion) {
        (Fusion::Mean, None) => Ok(model),
        (Fusion::Mean, Some(_)) => {
            log("note: `fusion: mean`: the model's temporal transformer is not used and not saved");
            Ok(model.with_fusion(None))
        }
        (Fusion::Transformer, Some(f)) => {
            if f.config().max_frames < cfg.frames {
                bail!(
                    "the model's temporal transformer covers {} frames, the config's `frames` is {}",
                    f.config().max_frames,
                    cfg.frames
                );
            }
            Ok(model)
        }
        (Fusion::Transformer, None) => {
            let p = model.clip.config().projection_dim;
            let config = FusionConfig::new(p, cfg.fusion_layers, cfg.frames);
            let fusion = TemporalFusion::init(config, cfg.seed, device)?;
            Ok(model.with_fusion(Some(fusion)))
        }
    }
}

/// Where the tokenizer comes from: `--tokenizer`, else the model folder's tokenizer files,
/// else (a preset, or a folder without them) CLIP's BPE built into the binary (`builtin`).
pub fn tokenizer_source(tokenizer: Option<&PathBuf>, model: &ModelSource) -> Result<PathBuf> {
    const FILES: [&str; 3] = [
        "tokenizer.json",
        "vocab.json",
        "bpe_simple_vocab_16e6.txt.gz",
    ];
    match (tokenizer, model) {
        (Some(t), _) => Ok(t.clone()),
        (None, ModelSource::Dir(d)) if FILES.iter().any(|f| d.join(f).is_file()) => Ok(d.clone()),
        (None, _) => Ok(PathBuf::from("builtin")),
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
    if let ModelSource::Dir(dir) = &req.model {
        // Before anything is written: a model family the trainer cannot train.
        crate::checkpoint::fgclip2::refuse_training(dir)?;
    }
    let device = device.clone().autodiff();
    let mut opened = start::open_run(run, &req.start, &req.config, &device, collective, log)?;
    let cfg = opened.cfg.clone();

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
    let tokenizer: Tokenizer = crate::checkpoint::hf::load_tokenizer(&tok_src)?;

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
            let model = initial_model(req, &cfg, &device, log)?;
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
    let mut model = freeze(model, &cfg.freeze);
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
    let image_size = model.clip.config().vision_config.image_size as u32;
    let context_length = model.clip.config().text_config.max_position_embeddings;
    let layout = text_layout(&model, &clips, &tokenizer, &cfg, context_length, log);
    let sample_cfg = SampleConfig {
        frames: cfg.frames,
        image_size,
        max_anns: cfg.max_anns,
        whole_video_normals: cfg.segments == Segments::WholeVideo,
        augment: cfg.augment.clone(),
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
            (rank, world),
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
                    &cfg.loss_weights(),
                    &gather,
                    &device,
                )
            } else {
                let batch = Batch::collate(&loaded.samples, &sample_cfg, &tokenizer, &layout);
                model.loss_gathered(
                    &to_video_batch(&batch, i64::from(tokenizer.end_of_text()), &device),
                    &cfg.loss_weights(),
                    &gather,
                )
            };
            let (lg, lrg, lgl) = (
                scalar(terms.loss_global.clone())?,
                scalar(terms.loss_region.clone())?,
                scalar(terms.loss_global_long.clone())?,
            );
            let mut lh = scalar(terms.loss_hard_negative.clone())?;
            let mut loss = scalar(terms.loss.clone())?;
            if world > 1 {
                // Each rank holds its share of the hard-negative term.
                let mut share = [lh as f32];
                collective.all_reduce_sum_f32(&mut share);
                lh = f64::from(share[0]);
                loss = lg + lgl + cfg.region_weight * lrg + cfg.hard_negative_weight * lh;
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
            };
            if let Some(m) = &metrics {
                m.append(&row)?;
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
        export_final(run, &model, &tok_src, &cfg, state.step)?
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
