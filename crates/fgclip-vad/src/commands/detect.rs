//! `fgclip detect`, `fgclip extract` and `fgclip eval`.

use anyhow::Result;
use fgclip_vad::cli::*;

use super::{Context, emit, progress};

pub fn detect(a: DetectArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let precision = ctx.precision;
    let mut model =
        fgclip_vad::detect::VideoModel::load(&a.model, &device, a.max_num_patches, a.preprocess)?;
    model.tower.set_precision(precision);
    let prompts = fgclip_vad::detect::PromptSet::resolve(&a.prompts)?;
    let tokenizer = a.tokenizer.as_deref().unwrap_or(&a.model);
    let head = model.tower.head(tokenizer, &prompts, a.scale, &device)?;
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
    let videos = a.videos.resolve()?;
    let mut failed = 0;
    for v in &videos {
        let bar = progress(ctx.quiet);
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
    Ok(0)
}

pub fn extract(a: ExtractArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let precision = ctx.precision;
    let mut model =
        fgclip_vad::detect::VideoModel::load(&a.model, &device, a.max_num_patches, a.preprocess)?;
    model.tower.set_precision(precision);
    let videos = a.videos.resolve()?;
    let bar = progress(ctx.quiet);
    let (done, skipped, failed) = fgclip_vad::detect::extract_features(
        &model,
        &videos,
        &a.out,
        fgclip_vad::detect::ExtractLayout {
            layout: (
                a.stride,
                a.frames_per_snippet
                    .unwrap_or_else(|| model.default_frames_per_snippet()),
            ),
            batch_size: a.batch_size,
        },
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
    Ok(0)
}

pub fn eval(a: EvalArgs) -> Result<i32> {
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
    Ok(0)
}
