//! `fgclip train` (one process or one MPI rank), `check-loss`, `check-steps`, `check-roi`.

use anyhow::Result;
use fgclip_vad::cli::*;
use fgclip_vad::train;

use super::Context;

/// The training config of `--config` (or the defaults), `--precision` replacing its own.
fn config_with_precision(
    path: Option<&std::path::Path>,
    precision: Option<fgclip_core::Precision>,
) -> Result<train::TrainConfig> {
    let mut config = match path {
        Some(p) => train::read_train_config(p)?,
        None => train::TrainConfig::default(),
    };
    if let Some(p) = precision {
        config.precision = p;
    }
    Ok(config)
}

/// The settings `train` is asked for: `--config` (resolved over the defaults) and the
/// flags that set single keys on top of it, which also apply on `--resume`.
fn config_request(a: &TrainArgs, ctx: &Context) -> Result<train::ConfigRequest> {
    let mut req = train::ConfigRequest {
        file: a
            .config
            .as_deref()
            .map(train::read_train_config)
            .transpose()?,
        set: serde_json::Map::new(),
    };
    if let Some(p) = ctx.precision_flag {
        req.set.insert("precision".into(), serde_json::to_value(p)?);
    }
    if let Some(h) = &a.hard_negatives {
        req.set
            .insert("hard_negatives_file".into(), serde_json::to_value(h)?);
    }
    for (k, v) in a.hyper.config_keys() {
        req.set.insert(k.into(), v);
    }
    Ok(req)
}

pub fn train(a: TrainArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let config = config_request(&a, ctx)?;
    if a.print_config {
        let mut resolved = config.resolve(&train::TrainConfig::default())?;
        // With a model, its family's loss weights stand where the config leaves them null.
        let source = match (&a.model, &a.preset) {
            (Some(dir), None) => Some(train::ModelSource::Dir(dir.clone())),
            (None, Some(p)) => Some(train::ModelSource::Preset(p.clone())),
            _ => None,
        };
        if let Some(source) = source {
            resolved = resolved.with_family_weights(train::requested_family(&source)?);
        }
        say!("{}", serde_json::to_string_pretty(&resolved)?);
        return Ok(0);
    }
    let (Some(annotations), Some(videos), Some(out)) = (a.annotations, a.videos, a.out) else {
        anyhow::bail!("--annotations, --videos and --out are required");
    };
    let model = match (a.model, a.preset) {
        (Some(dir), None) => train::ModelSource::Dir(dir),
        (None, Some(p)) => train::ModelSource::Preset(p),
        _ => anyhow::bail!("give one of --model or --preset"),
    };
    let start = match (a.resume, a.overwrite) {
        (Some(_), true) => anyhow::bail!("--resume and --overwrite exclude each other"),
        (Some(p), false) if p.as_os_str() == "latest" => {
            train::Start::Resume(train::ResumeFrom::Latest)
        }
        (Some(p), false) => train::Start::Resume(train::ResumeFrom::Checkpoint(p)),
        (None, true) => train::Start::Overwrite,
        (None, false) => train::Start::New,
    };
    let req = train::TrainRequest {
        annotations,
        videos,
        model,
        tokenizer: a.tokenizer,
        out,
        config,
        start,
        progress: !ctx.quiet,
        on_step: None,
    };
    let collective = train::collective::open()?;
    let (rank, world) = (collective.rank(), collective.world_size());
    let mut req = train::TrainRequest {
        progress: req.progress && rank == 0,
        ..req
    };
    if let Some(per_rank) = a.hyper.batch_size_per_rank {
        req.config
            .set
            .insert("batch_size".into(), serde_json::json!(per_rank * world));
    }
    match train::run_train_on(&req, &device, collective.as_ref(), &|m| eprintln!("{m}")) {
        Ok(summary) => {
            if rank == 0 {
                say!("{}", serde_json::to_string(&summary)?);
            }
        }
        // One rank's failure ends every rank's wait: the whole job stops.
        Err(e) if world > 1 => {
            eprintln!("error: rank {rank} of {world}: {e:#}");
            collective.abort(1)
        }
        Err(e) => return Err(e),
    }
    Ok(0)
}

pub fn check_loss(a: CheckLossArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let precision = ctx.precision;
    // Gradients need an autodiff device; the loss alone does not.
    let device = if a.grads.is_some() {
        device.autodiff()
    } else {
        device
    };
    use fgclip_vad::checkpoint::fgclip2::{ModelKind, load_fgclip2_video, model_kind};
    let family = model_kind(&a.model)?;
    let cfg = train::TrainConfig {
        region_weight: a.region_weight,
        region_text_weight: a.region_text_weight,
        hard_negative_weight: a.hard_negative_weight,
        ..train::TrainConfig::default()
    };
    cfg.validate()?;
    let w = cfg.family_weights(family);
    if family == ModelKind::Fgclip2 {
        let mut model = load_fgclip2_video(&a.model, &device, false)?;
        model.model.set_precision(precision);
        let batch = train::read_fgclip2_batch(&a.batch, model.model.config(), &device)?;
        let report =
            train::check_loss_fgclip2(&model, &batch, &w, a.threshold, a.grads.as_deref())?;
        say!("{}", serde_json::to_string(&report)?);
        return Ok(0);
    }
    if a.region_text_weight.is_some() {
        anyhow::bail!(
            "--region-text-weight is FG-CLIP 2's term; {} is not an FG-CLIP 2 model",
            a.model.display()
        );
    }
    let mut model = fgclip_vad::checkpoint::hf::load_fgclip(&a.model, &device, false)?;
    model.set_precision(precision);
    let batch = train::read_batch(&a.batch, model.clip.config(), &device)?;
    if batch.global_long.is_some() && !model.clip.has_long_text() {
        eprintln!(
            "warning: {} has no long-text path (a plain CLIP model): the batch's long captions are ignored",
            a.model.display()
        );
    }
    let weights = fgclip_core::fgclip::LossWeights {
        region: w.region,
        hard_negative: w.hard_negative,
    };
    let report = train::check_loss(&model, &batch, &weights, a.grads.as_deref())?;
    say!("{}", serde_json::to_string(&report)?);
    Ok(0)
}

pub fn check_steps(a: CheckStepsArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let precision_flag = ctx.precision_flag;
    let config = config_with_precision(a.config.as_deref(), precision_flag)?;
    let device = device.autodiff();
    let mut model = fgclip_vad::checkpoint::hf::load_fgclip(&a.model, &device, false)?;
    model.set_precision(config.precision);
    let batch = train::read_batch(&a.batch, model.clip.config(), &device)?;
    let report = fgclip_vad::train::update::check_steps(model, &batch, &config, a.steps, &a.watch)?;
    say!("{}", serde_json::to_string(&report)?);
    Ok(0)
}

pub fn check_roi(a: CheckRoiArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let arrays = fgclip_vad::roi_check::roi_cases(&a.cases, &device)?;
    fgclip_vad::checkpoint::safetensors_io::write_arrays(&a.out, &arrays)?;
    say!(
        "{}",
        serde_json::json!({"arrays": arrays.len(), "out": a.out})
    );
    Ok(0)
}

pub fn ablate(a: AblateArgs, ctx: &Context) -> Result<i32> {
    use anyhow::Context as _;
    use fgclip_vad::ablate;
    use fgclip_vad::detect::{DetectOptions, HeldOut, PromptSet};

    if a.print_grid {
        say!("{}", ablate::EXAMPLE_GRID);
        return Ok(0);
    }
    let (Some(grid_path), Some(annotations), Some(videos), Some(test_list), Some(gt), Some(out)) =
        (a.grid, a.annotations, a.videos, a.test_list, a.gt, a.out)
    else {
        anyhow::bail!("--grid, --annotations, --videos, --test-list, --gt and --out are required");
    };
    let model = match (a.model, a.preset) {
        (Some(dir), None) => train::ModelSource::Dir(dir),
        (None, Some(p)) => train::ModelSource::Preset(p),
        _ => anyhow::bail!("give one of --model or --preset"),
    };
    // Every check before the first run: the tokenizer, the grid, the truth, the list.
    fgclip_vad::checkpoint::hf::load_tokenizer(&train::tokenizer_source(
        a.tokenizer.as_ref(),
        &model,
    )?)?;
    let text = std::fs::read_to_string(&grid_path)
        .with_context(|| format!("reading the grid file {}", grid_path.display()))?;
    let grid: ablate::GridFile = serde_json::from_str(&text)
        .with_context(|| format!("parsing the grid file {}", grid_path.display()))?;
    let base_config = config_with_precision(a.config.as_deref(), ctx.precision_flag)?;
    ablate::Plan::new(&grid, &grid_path, &base_config)?;
    let truth = fgclip_vad::eval::read_truth(&gt, a.protocol)?;
    let held_out = HeldOut::read(
        &test_list,
        &videos,
        truth,
        a.protocol,
        PromptSet::resolve(&a.prompts)?,
    )?;
    let req = ablate::AblateRequest {
        grid_file: grid_path,
        grid,
        annotations,
        videos,
        model,
        tokenizer: a.tokenizer,
        base_config,
        held_out,
        detect: DetectOptions {
            stride: a.stride,
            per_snippet: None,
            smooth: a.smooth,
            threshold: 0.5,
            top_k: 3,
            batch_size: 32,
            thumbnails: false,
        },
        out: out.clone(),
    };
    let bar = super::progress(ctx.quiet);
    let log = |m: &str| bar.suspend(|| eprintln!("{m}"));
    let (plan, results) = ablate::run_ablation(&req, &ctx.device, &bar, &log)?;
    say!(
        "{} runs ({} cells × {} seeds) in {}: results.csv, table.md, table.tex, report.html",
        results.len(),
        plan.cells.len(),
        plan.seeds.len(),
        out.display()
    );
    Ok(0)
}
