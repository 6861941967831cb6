use anyhow::Result;
use clap::Parser;
use fgclip_vad::cli::{BenchCommand, Cli, Command};
use fgclip_vad::data::{frames, validate, video};
use fgclip_vad::{bench, device, inference, presets, train};

// In the binary crate, not the library: the linker always keeps a binary's own objects,
// so these definitions are there when cubecl-llvm's references are resolved.
#[cfg(feature = "cuda")]
mod cuda_link;

fn main() {
    let started = std::time::Instant::now();
    let cli = Cli::parse();
    match run(cli, started) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn progress(quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>8} [{bar:30}] {pos}/{len} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Writes to stdout; a closed pipe (`fgclip … | head`) ends the program quietly.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

macro_rules! say {
    ($($arg:tt)*) => { emit(&format!("{}\n", format_args!($($arg)*))) };
}

/// Runs a command; returns the exit status.
fn run(cli: Cli, started: std::time::Instant) -> Result<i32> {
    let device = device::open_device(
        &cli.device,
        &device::DeviceOptions {
            kernel_cache: cli.kernel_cache.clone(),
            no_kernel_cache: cli.no_kernel_cache,
            autotune: cli.autotune.clone(),
        },
    )?;
    // Given: replaces the training config's precision; otherwise f32.
    let precision_flag = cli
        .precision
        .as_deref()
        .map(fgclip_core::Precision::parse)
        .transpose()?;
    let precision = precision_flag.unwrap_or_default();
    precision.check_device(&device)?;
    match cli.command {
        Command::Demo(a) => {
            let mut cfg = if a.tiny {
                fgclip_vad::demo::DemoConfig::tiny()
            } else {
                fgclip_vad::demo::DemoConfig::standard()
            };
            if let Some(s) = a.steps {
                cfg.train.max_steps = Some(s);
            }
            if let Some(w) = a.hard_negative_weight {
                cfg.train.hard_negative_weight = w;
            }
            cfg.train.precision = precision;
            let s = fgclip_vad::demo::run_demo(&a.out, &cfg, &device, !cli.quiet, &|m| {
                eprintln!("{m}")
            })?;
            eprintln!(
                "report: {}\nheld-out frame-level ROC AUC: {} (AP {}) in {:.0} s",
                s.report.display(),
                s.roc_auc.map_or("n/a".into(), |v| format!("{v:.4}")),
                s.average_precision
                    .map_or("n/a".into(), |v| format!("{v:.4}")),
                s.seconds
            );
            say!("{}", serde_json::to_string(&s)?);
        }
        Command::Synth(a) => {
            let cfg = fgclip_vad::synth::SynthConfig {
                train_videos: a.videos,
                test_videos: (a.videos / 3).max(1),
                seconds: a.seconds.max(2),
                seed: a.seed,
            };
            let bar = progress(cli.quiet);
            let s = fgclip_vad::synth::generate(&a.out, &cfg, &bar)?;
            bar.finish_and_clear();
            say!("{}", serde_json::to_string_pretty(&s)?);
        }
        Command::Embed(a) => {
            let summary = inference::run_embed(
                &inference::EmbedRequest {
                    model: a.model,
                    pixels: a.pixels,
                    texts: a.texts,
                    tokenizer: a.tokenizer,
                    out: a.out,
                    batch_size: a.batch_size,
                    progress: !cli.quiet,
                    precision,
                    long: a.long,
                },
                &device,
            )?;
            if summary.cut_texts > 0 {
                eprintln!(
                    "note: {} text(s) are longer than their path and were cut (77 tokens; 248 on FG-CLIP's long path)",
                    summary.cut_texts
                );
            }
            say!("{}", serde_json::to_string(&summary)?);
        }
        Command::Bench(BenchCommand::Embed(a)) => {
            let config = presets::resolve(&a.preset)?;
            let timings =
                bench::bench_embed(&config, a.batch, a.warmup, a.iters, precision, &device)?;
            if a.json {
                say!("{}", serde_json::to_string_pretty(&timings)?);
            } else {
                say!(
                    "preset {} on {} in {} (batch {}, {} iters)",
                    a.preset,
                    cli.device,
                    precision.name(),
                    a.batch,
                    a.iters
                );
                for t in &timings {
                    say!(
                        "{:<28} median {:>9.1} ms  (min {:.1}, max {:.1})  {:>8.1} items/s",
                        t.name,
                        t.median_ms,
                        t.min_ms,
                        t.max_ms,
                        t.items_per_s
                    );
                }
            }
        }
        Command::Validate(a) => {
            let bar = progress(cli.quiet);
            bar.set_message("videos");
            let summary = match validate::validate(
                a.annotations.as_deref(),
                a.hard_negatives.as_deref(),
                a.videos.as_deref(),
                a.max_anns,
                &bar,
            ) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(2);
                }
            };
            bar.finish_and_clear();
            if a.json {
                say!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                emit(&validate::render(&summary));
            }
            return Ok(if summary.errors > 0 { 1 } else { 0 });
        }
        Command::Train(a) => {
            let mut config = match &a.config {
                Some(p) => train::read_train_config(p)?,
                None => train::TrainConfig::default(),
            };
            if let Some(p) = precision_flag {
                config.precision = p;
            }
            if let Some(h) = &a.hard_negatives {
                config.hard_negatives_file = Some(h.clone());
            }
            if a.print_config {
                say!("{}", serde_json::to_string_pretty(&config)?);
                return Ok(0);
            }
            let (Some(annotations), Some(videos), Some(out)) = (a.annotations, a.videos, a.out)
            else {
                anyhow::bail!("--annotations, --videos and --out are required");
            };
            let model = match (a.model, a.preset) {
                (Some(dir), None) => train::ModelSource::Dir(dir),
                (None, Some(p)) => train::ModelSource::Preset(p),
                _ => anyhow::bail!("give one of --model or --preset"),
            };
            let req = train::TrainRequest {
                annotations,
                videos,
                model,
                tokenizer: a.tokenizer,
                out,
                config,
                resume: a.resume,
                progress: !cli.quiet,
            };
            let collective = train::collective::open()?;
            let (rank, world) = (collective.rank(), collective.world_size());
            let req = train::TrainRequest {
                progress: req.progress && rank == 0,
                ..req
            };
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
        }
        Command::Detect(a) => {
            let mut model = fgclip_vad::checkpoint::hf::load_model(&a.model, &device)?;
            model.set_precision(precision);
            let tokenizer = fgclip_vad::checkpoint::hf::load_tokenizer(
                a.tokenizer.as_deref().unwrap_or(&a.model),
            )?;
            let prompts = fgclip_vad::detect::PromptSet::resolve(&a.prompts)?;
            let head =
                fgclip_vad::detect::build_head(&model, &tokenizer, &prompts, a.scale, &device)?;
            let names = prompts.names();
            let truth = match &a.gt {
                Some(p) => fgclip_vad::eval::read_truth(p, a.protocol)?,
                None => Vec::new(),
            };
            let opts = fgclip_vad::detect::DetectOptions {
                stride: a.stride,
                per_snippet: a.frames_per_snippet,
                smooth: a.smooth,
                threshold: a.threshold,
                top_k: a.top,
                batch_size: a.batch_size,
                thumbnails: true,
            };
            let mut failed = 0;
            for v in &a.videos {
                let bar = progress(cli.quiet);
                bar.set_message(
                    v.file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                let stem = v
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let t = truth.iter().find(|t| t.stem == stem);
                match fgclip_vad::detect::detect_video(
                    &model, &head, &names, v, &a.out, &opts, t, &device, &bar,
                ) {
                    Ok(r) => {
                        bar.finish_and_clear();
                        say!(
                            "{}",
                            serde_json::json!({"video": r.video, "frames": r.frame_count, "predicted_class": r.predicted_class, "max_score": r.max_score, "out": a.out.join(format!("{stem}.json"))})
                        );
                    }
                    Err(e) => {
                        bar.finish_and_clear();
                        eprintln!("error: {e:#}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                return Ok(1);
            }
        }
        Command::Extract(a) => {
            let mut model = fgclip_vad::checkpoint::hf::load_model(&a.model, &device)?;
            model.set_precision(precision);
            let text = std::fs::read_to_string(&a.list)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", a.list.display()))?;
            let videos: Vec<std::path::PathBuf> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(Into::into)
                .collect();
            let bar = progress(cli.quiet);
            let (done, skipped, failed) = fgclip_vad::detect::extract_features(
                &model,
                &videos,
                &a.videos,
                &a.out,
                (a.stride, a.frames_per_snippet),
                a.batch_size,
                &device,
                &bar,
                &|m| eprintln!("{m}"),
            )?;
            bar.finish_and_clear();
            say!(
                "{}",
                serde_json::json!({"extracted": done, "skipped_existing": skipped, "failed": failed, "out": a.out})
            );
            if failed > 0 {
                return Ok(1);
            }
        }
        Command::Eval(a) => {
            let truth = fgclip_vad::eval::read_truth(&a.gt, a.protocol)?;
            let (scores, counts) = fgclip_vad::eval::read_scores(&a.scores)?;
            let report = fgclip_vad::eval::evaluate(
                &truth,
                &scores,
                &counts,
                a.protocol,
                a.allow_length_mismatch,
            )?;
            if a.json {
                say!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                emit(&fgclip_vad::eval::render(&report));
            }
        }
        Command::CheckLoss(a) => {
            // Gradients need an autodiff device; the loss alone does not.
            let device = if a.grads.is_some() {
                device.autodiff()
            } else {
                device
            };
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
                region: a.region_weight,
                hard_negative: a.hard_negative_weight,
            };
            let report = train::check_loss(&model, &batch, &weights, a.grads.as_deref())?;
            say!("{}", serde_json::to_string(&report)?);
        }
        Command::CheckSteps(a) => {
            let mut config = match &a.config {
                Some(p) => train::read_train_config(p)?,
                None => train::TrainConfig::default(),
            };
            if let Some(p) = precision_flag {
                config.precision = p;
            }
            let device = device.autodiff();
            let mut model = fgclip_vad::checkpoint::hf::load_fgclip(&a.model, &device, false)?;
            model.set_precision(config.precision);
            let batch = train::read_batch(&a.batch, model.clip.config(), &device)?;
            let report =
                fgclip_vad::update::check_steps(model, &batch, &config, a.steps, &a.watch)?;
            say!("{}", serde_json::to_string(&report)?);
        }
        Command::CheckRoi(a) => {
            let arrays = fgclip_vad::roi_check::roi_cases(&a.cases, &device)?;
            fgclip_vad::checkpoint::safetensors_io::write_arrays(&a.out, &arrays)?;
            say!(
                "{}",
                serde_json::json!({"arrays": arrays.len(), "out": a.out})
            );
        }
        Command::Probe(a) => {
            let info = video::probe(&a.video, a.count_packets)?;
            say!("{}", serde_json::to_string_pretty(&info)?);
        }
        Command::Frames(a) => {
            let ts = a.timestamps.map(|t| (t[0], t[1]));
            let report = frames::extract_frames(&a.video, ts, a.sample, a.size, &a.out)?;
            say!("{}", serde_json::to_string(&report)?);
        }
        Command::Bench(BenchCommand::Collective(a)) => {
            let config = presets::resolve(&a.preset)?;
            let collective = train::collective::open()?;
            let t =
                bench::bench_collective(&config, collective.as_ref(), a.rows, a.iters, &device)?;
            if collective.rank() == 0 {
                say!("{}", serde_json::to_string(&t)?);
            }
        }
        Command::Bench(BenchCommand::Train(a)) => {
            let config = presets::resolve(&a.preset)?;
            let run = bench::TrainBench {
                batch: a.batch,
                frames: a.frames,
                warmup: a.warmup,
                iters: a.iters,
                precision,
                hard_negatives: a.hard_negatives,
            };
            let t = bench::bench_train(&config, &run, &device, started)?;
            if a.json {
                say!(
                    "{}",
                    serde_json::json!({"preset": a.preset, "device": cli.device, "precision": precision.name(), "batch": a.batch, "frames": a.frames, "iters": a.iters, "step": t.step, "first_step_ms": t.first_step_ms, "to_first_step_s": t.to_first_step_s})
                );
            } else {
                say!(
                    "preset {} on {} in {} (batch {} clips × {} frames, {} iters): {} median {:.1} ms (min {:.1}, max {:.1}), {:.2} clips/s; first step {:.1} s, {:.1} s after start",
                    a.preset,
                    cli.device,
                    precision.name(),
                    a.batch,
                    a.frames,
                    a.iters,
                    t.step.name,
                    t.step.median_ms,
                    t.step.min_ms,
                    t.step.max_ms,
                    t.step.items_per_s,
                    t.first_step_ms / 1e3,
                    t.to_first_step_s
                );
            }
        }
        Command::Bench(BenchCommand::Detect(a)) => {
            let config = presets::resolve(&a.preset)?;
            let tmp = std::env::temp_dir().join(format!("fgclip-bench-{}", std::process::id()));
            let video = match &a.video {
                Some(v) => v.clone(),
                None => {
                    let dir = a.keep.clone().unwrap_or_else(|| tmp.clone());
                    std::fs::create_dir_all(&dir)?;
                    let path = dir.join(format!("bench_{}s_640x360_h264.mp4", a.seconds));
                    if !path.exists() {
                        eprintln!("writing {} …", path.display());
                        bench::make_bench_video(&path, a.seconds)?;
                    }
                    path
                }
            };
            let t = bench::bench_detect(&config, &video, a.stride, a.batch, precision, &device)?;
            let rss = bench::peak_rss_mib().unwrap_or(f64::NAN);
            if a.json {
                say!(
                    "{}",
                    serde_json::json!({"preset": a.preset, "device": cli.device, "precision": precision.name(), "video": video, "stride": a.stride, "timing": t, "peak_rss_mib": rss})
                );
            } else {
                say!(
                    "preset {} on {} in {}: {}: {} snippets (stride {}) in {:.1} s = {:.2} video-seconds/s, {:.1} frames/s; decode {:.1} s (CPU, beside the model), model {:.1} s, model waiting {:.1} s; peak RSS {rss:.0} MiB",
                    a.preset,
                    cli.device,
                    precision.name(),
                    video.display(),
                    t.snippets,
                    a.stride,
                    t.seconds,
                    t.realtime,
                    t.frames_per_s,
                    t.split.decode_s,
                    t.split.embed_s,
                    t.split.wait_s,
                );
            }
            if a.keep.is_none() && a.video.is_none() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        Command::Bench(BenchCommand::Decode(a)) => {
            let mut videos = a.videos.clone();
            let tmp = std::env::temp_dir().join(format!("fgclip-bench-{}", std::process::id()));
            if videos.is_empty() {
                let dir = a.keep.clone().unwrap_or_else(|| tmp.clone());
                std::fs::create_dir_all(&dir)?;
                let path = dir.join("bench_90s_640x360_h264.mp4");
                if !path.exists() {
                    eprintln!("writing {} …", path.display());
                    bench::make_bench_video(&path, 90)?;
                }
                videos.push(path);
            }
            for v in &videos {
                let r = bench::bench_decode(
                    v,
                    a.size,
                    a.frames,
                    (a.segment[0], a.segment[1]),
                    a.iters,
                )?;
                say!(
                    "{}: {} frames, decode+resize {} {:.1} frames/s; {} frames from [{}, {}] s in {:.1} ms (median)",
                    r.video,
                    r.frames,
                    r.size,
                    r.full_decode_fps,
                    r.t,
                    r.sample_segment_s.0,
                    r.sample_segment_s.1,
                    r.sample_ms
                );
            }
            if a.keep.is_none() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
        }
        Command::Presets => {
            for (name, _) in presets::PRESETS {
                let c = presets::resolve(name)?;
                let v = &c.vision_config;
                say!(
                    "{name:<14} image {}px patch {} width {} layers {} | text width {} layers {} | embed {}",
                    v.image_size,
                    v.patch_size,
                    v.hidden_size,
                    v.num_hidden_layers,
                    c.text_config.hidden_size,
                    c.text_config.num_hidden_layers,
                    c.projection_dim
                );
            }
        }
    }
    Ok(0)
}
