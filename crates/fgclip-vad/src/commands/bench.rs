//! `fgclip bench …` and `fgclip presets`.

use anyhow::Result;
use fgclip_vad::cli::*;
use fgclip_vad::{bench, presets, train};

use super::Context;

pub fn embed(a: BenchEmbedArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let precision = ctx.precision;
    let timings = match presets::resolve_fgclip2(&a.preset) {
        Some(config) => bench::bench_embed_fgclip2(
            &config?,
            a.batch,
            &a.patches,
            (a.warmup, a.iters),
            precision,
            &device,
        )?,
        None => {
            let config = presets::resolve(&a.preset)?;
            bench::bench_embed(&config, a.batch, a.warmup, a.iters, precision, &device)?
        }
    };
    if a.json {
        say!("{}", serde_json::to_string_pretty(&timings)?);
    } else {
        say!(
            "preset {} on {} in {} (batch {}, {} iters)",
            a.preset,
            ctx.device_name,
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
    Ok(0)
}

pub fn collective(a: BenchCollectiveArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let config = presets::resolve(&a.preset)?;
    let collective = train::collective::open()?;
    let t = bench::bench_collective(&config, collective.as_ref(), a.rows, a.iters, &device)?;
    if collective.rank() == 0 {
        say!("{}", serde_json::to_string(&t)?);
    }
    Ok(0)
}

pub fn checkpoint(a: BenchCheckpointArgs, ctx: &Context) -> Result<i32> {
    let config = presets::resolve(&a.preset)?;
    let m = bench::checkpoint::bench_checkpoint(&config, &a.out, &ctx.device);
    if !a.keep {
        std::fs::remove_dir_all(&a.out).ok();
    }
    let m = m?;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    if a.json {
        say!(
            "{}",
            serde_json::json!({"preset": a.preset, "memory": m, "extra_per_byte_written": m.extra_per_byte()})
        );
    } else {
        say!(
            "preset {}: checkpoint {:.2} GiB (weights {:.2}, optimizer {:.2}) in {:.1} s; resident {:.2} GiB before, peak {:.2} GiB during: {:.2} GiB extra = {:.2}× the bytes written (the step's own peak {:.2} GiB)",
            a.preset,
            gib(m.bytes_written),
            gib(m.weights_bytes),
            gib(m.optimizer_bytes),
            m.write_s,
            gib(m.resident_before),
            gib(m.peak_during),
            gib(m.peak_during.saturating_sub(m.resident_before)),
            m.extra_per_byte(),
            gib(m.peak_of_step)
        );
    }
    Ok(0)
}

pub fn train(a: BenchTrainArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let precision = ctx.precision;
    let started = ctx.started;
    let run = bench::TrainBench {
        batch: a.batch,
        frames: a.frames,
        warmup: a.warmup,
        iters: a.iters,
        precision,
        hard_negatives: a.hard_negatives,
        pad_text: a.pad_text,
    };
    let t = match presets::resolve_fgclip2(&a.preset) {
        Some(config) => {
            bench::fgclip2::bench_train_fgclip2(&config?, &run, a.patches, &device, started)?
        }
        None => bench::bench_train(&presets::resolve(&a.preset)?, &run, &device, started)?,
    };
    if a.json {
        say!(
            "{}",
            serde_json::json!({"preset": a.preset, "device": ctx.device_name, "matmul": fgclip_core::gemm::matmul_kernels().name(), "precision": precision.name(), "batch": a.batch, "frames": a.frames, "iters": a.iters, "pad_text": a.pad_text, "step": t.step, "split": t.split, "first_step_ms": t.first_step_ms, "to_first_step_s": t.to_first_step_s})
        );
    } else {
        say!(
            "preset {} on {} in {} (batch {} clips × {} frames, captions {}, {} iters): {} median {:.1} ms (min {:.1}, max {:.1}; forward {:.0}, backward {:.0}, optimizer {:.0}), {:.2} clips/s; first step {:.1} s, {:.1} s after start",
            a.preset,
            ctx.device_name,
            precision.name(),
            a.batch,
            a.frames,
            if presets::resolve_fgclip2(&a.preset).is_some() {
                "padded to 64 / 196 as FG-CLIP 2 feeds them"
            } else if a.pad_text {
                "padded"
            } else {
                "cut after end-of-text"
            },
            a.iters,
            t.step.name,
            t.step.median_ms,
            t.step.min_ms,
            t.step.max_ms,
            t.split.forward_ms,
            t.split.backward_ms,
            t.split.optimizer_ms,
            t.step.items_per_s,
            t.first_step_ms / 1e3,
            t.to_first_step_s
        );
        if t.split.cublas_products > 0.0 {
            say!(
                "  cuBLAS ({}): {:.0} products a step, {:.1} ms in them, {:.1} ms waiting for the kernels queued before them",
                fgclip_core::gemm::matmul_kernels().name(),
                t.split.cublas_products,
                t.split.cublas_gemm_ms,
                t.split.cublas_queue_wait_ms
            );
        }
    }
    Ok(0)
}

pub fn detect(a: BenchDetectArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let precision = ctx.precision;
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
                bench::make_bench_video(&path, a.seconds, 250)?;
            }
            path
        }
    };
    let t = bench::bench_detect(&config, &video, a.stride, a.batch, precision, &device)?;
    let rss = bench::peak_rss_mib().unwrap_or(f64::NAN);
    if a.json {
        say!(
            "{}",
            serde_json::json!({"preset": a.preset, "device": ctx.device_name, "matmul": fgclip_core::gemm::matmul_kernels().name(), "precision": precision.name(), "video": video, "stride": a.stride, "timing": t, "peak_rss_mib": rss})
        );
    } else {
        say!(
            "preset {} on {} in {}: {}: {} snippets (stride {}) in {:.1} s = {:.2} video-seconds/s, {:.1} frames/s; decode {:.1} s (CPU, beside the model), model {:.1} s, model waiting {:.1} s; peak RSS {rss:.0} MiB",
            a.preset,
            ctx.device_name,
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
    Ok(0)
}

pub fn decode(a: BenchDecodeArgs) -> Result<i32> {
    let mut videos = a.videos.clone();
    let tmp = std::env::temp_dir().join(format!("fgclip-bench-{}", std::process::id()));
    if videos.is_empty() {
        let dir = a.keep.clone().unwrap_or_else(|| tmp.clone());
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("bench_90s_640x360_h264.mp4");
        if !path.exists() {
            eprintln!("writing {} …", path.display());
            bench::make_bench_video(&path, 90, 250)?;
        }
        videos.push(path);
    }
    for v in &videos {
        let r = bench::bench_decode(v, a.size, a.frames, (a.segment[0], a.segment[1]), a.iters)?;
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
    Ok(0)
}

pub fn presets() -> Result<i32> {
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
    for (name, _) in presets::FGCLIP2_PRESETS {
        let Some(c) = presets::resolve_fgclip2(name) else {
            continue;
        };
        let c = c?;
        let (v, t) = (&c.vision_config, &c.text_config);
        say!(
            "{name:<14} FG-CLIP 2: NaFlex patch {} width {} layers {} | text width {} layers {} vocab {} | embed {}",
            v.patch_size,
            v.hidden_size,
            v.num_hidden_layers,
            t.hidden_size,
            t.num_hidden_layers,
            t.vocab_size,
            v.hidden_size
        );
    }
    Ok(0)
}

pub fn watch(a: BenchWatchArgs, ctx: &Context) -> Result<i32> {
    let config = presets::resolve(&a.preset)?;
    let tmp = tempfile_dir()?;
    let dir = a.keep.clone().unwrap_or_else(|| tmp.clone());
    std::fs::create_dir_all(&dir)?;
    // Long enough that the publishers' looping is rare; 30 fps, 640×360, a key frame a
    // second as cameras send them (a stream is joined mid-way, at its next key frame).
    let video = dir.join("bench_60s_640x360_h264_gop30.mp4");
    if !video.exists() {
        eprintln!("writing {} …", video.display());
        bench::make_bench_video(&video, 60, 30)?;
    }
    let r = bench::watch::bench_watch(
        &config,
        &video,
        a.streams,
        a.seconds,
        a.stride,
        a.batch,
        ctx.precision,
        &ctx.device,
    );
    if a.keep.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let r = r?;
    if a.json {
        say!(
            "{}",
            serde_json::to_string(
                &serde_json::json!({"preset": a.preset, "device": ctx.device_name, "matmul": fgclip_core::gemm::matmul_kernels().name(), "precision": ctx.precision.name(), "result": r})
            )?
        );
    } else {
        say!(
            "preset {} on {}: {} streams of 640x360 30 fps at stride {} for {:.0} s: {}; decoded fps {:?}; {} snippets scored, {} dropped, {} tower calls; latency p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; peak RSS {:.0} MiB",
            a.preset,
            ctx.device_name,
            r.streams,
            r.stride,
            r.seconds,
            if r.sustained {
                "sustained in real time"
            } else {
                "NOT sustained"
            },
            r.decoded_fps
                .iter()
                .map(|f| (f * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            r.snippets_scored,
            r.snippets_dropped,
            r.tower_calls,
            r.latency_ms.p50,
            r.latency_ms.p95,
            r.latency_ms.max,
            r.peak_rss_mib.unwrap_or(f64::NAN),
        );
    }
    Ok(0)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    Ok(std::env::temp_dir().join(format!("fgclip-bench-watch-{}", std::process::id())))
}
