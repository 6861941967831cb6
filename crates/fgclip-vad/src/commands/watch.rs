//! `fgclip watch`: arguments checked before anything connects, SIGINT / SIGTERM turned into
//! a clean stop (open events closed, clips finished, files flushed, exit 0).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use fgclip_vad::cli::WatchArgs;
use fgclip_vad::data::live::LiveOptions;
use fgclip_vad::watch::events::EventRules;
use fgclip_vad::watch::exec::ExecHook;
use fgclip_vad::watch::source::SourceSettings;
use fgclip_vad::watch::{WatchOptions, run_id, wall_now};

use super::Context;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn seconds(name: &str, v: f64) -> Result<Duration> {
    if !v.is_finite() || v < 0.0 {
        bail!("--{name} {v}: a number of seconds, 0 or more");
    }
    Ok(Duration::from_secs_f64(v))
}

pub fn watch(a: WatchArgs, ctx: &Context) -> Result<i32> {
    if !(0.0..=1.0).contains(&a.threshold) {
        bail!(
            "--threshold {}: scores are probabilities, the threshold lies in [0, 1]",
            a.threshold
        );
    }
    for (name, v) in [
        ("stride", a.stride as usize),
        ("smooth", a.smooth),
        ("min-snippets", a.min_snippets),
        ("batch-size", a.batch_size),
        ("max-pending", a.max_pending),
    ] {
        if v == 0 {
            bail!("--{name} must be at least 1");
        }
    }
    for s in &a.sources {
        fgclip_vad::data::live::check_source(s)?;
    }
    let timeout = seconds("timeout", a.timeout)?;
    let backoff = (
        seconds("reconnect-min", a.reconnect_min)?,
        seconds("reconnect-max", a.reconnect_max)?,
    );
    let exec_timeout = seconds("exec-timeout", a.exec_timeout)?;
    let status_every = seconds("status-every", a.status_every)?;
    for (name, v) in [
        ("pre-roll", a.pre_roll),
        ("post-roll", a.post_roll),
        ("clip-max", a.clip_max),
    ] {
        seconds(name, v)?;
    }
    let duration = a.duration.map(|d| seconds("duration", d)).transpose()?;

    let device = ctx.device.clone();
    let mut model =
        fgclip_vad::detect::VideoModel::load(&a.model, &device, a.max_num_patches, a.preprocess)?;
    model.tower.set_precision(ctx.precision);
    let prompts = fgclip_vad::detect::PromptSet::resolve(&a.prompts)?;
    let tokenizer = a.tokenizer.as_deref().unwrap_or(&a.model);
    let head = model.tower.head(tokenizer, &prompts, a.scale, &device)?;
    let names = prompts.names();
    let per_snippet = a
        .frames_per_snippet
        .unwrap_or_else(|| model.default_frames_per_snippet())
        .clamp(1, a.stride);
    let options = WatchOptions {
        sources: a.sources.clone(),
        source: SourceSettings {
            live: LiveOptions {
                realtime: a.realtime,
                rtsp_transport: a.rtsp_transport.clone(),
                timeout,
                stop: None,
                clip_size: None,
            },
            stride: a.stride,
            per_snippet,
            max_pending: a.max_pending,
            backoff,
            max_reconnects: a.max_reconnects,
            clips: !a.no_clips,
            clip_width: a.clip_width,
            pre_roll_s: a.pre_roll,
            ring_snippets: a.min_snippets + a.smooth + a.max_pending + 2,
            clip_max_s: a.clip_max,
        },
        rules: EventRules {
            threshold: a.threshold,
            min_snippets: a.min_snippets,
            smooth: a.smooth,
        },
        batch_size: a.batch_size,
        status_every,
        pre_roll_s: a.pre_roll,
        post_roll_s: a.post_roll,
        clips: !a.no_clips,
        thumbnails: !a.no_thumbnails,
        exec: a.exec.clone().map(|argv| ExecHook {
            argv,
            timeout: exec_timeout,
            counters: Default::default(),
        }),
        log_snippets: a.log_snippets,
        duration,
        run_id: run_id(wall_now()),
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    if !ctx.quiet {
        eprintln!(
            "watch: {} source(s), run {}, writing {} (Ctrl-C to stop)",
            options.sources.len(),
            options.run_id,
            a.out.display()
        );
    }
    let summary = fgclip_vad::watch::watch(
        fgclip_vad::watch::Scoring {
            model: &model,
            head: &head,
            names: &names,
        },
        &options,
        &a.out,
        &device,
        &STOP,
        Box::new(|line| super::emit(&format!("{line}\n"))),
    )?;
    if !ctx.quiet {
        eprintln!(
            "watch: stopped after {:.1} s: {} snippets scored, {} events, latency p50 {:.0} ms p95 {:.0} ms",
            summary.seconds,
            summary.snippets_scored,
            summary.events,
            summary.latency_ms.p50,
            summary.latency_ms.p95
        );
    }
    Ok(0)
}
