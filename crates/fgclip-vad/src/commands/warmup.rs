//! `fgclip warmup`: a training shape's kernels compiled ahead of the run, several processes
//! at once. On a GPU every new kernel is compiled by NVRTC, one after another within a
//! process (~0.6 s each, several hundred for a step: BENCHMARKS.md); separate processes
//! compile side by side. They share the kernel cache: cubecl 0.11.3 keeps it in one
//! multi-process database per cache folder, written insert-only, and reads compiled kernels
//! lazily, so a job finds what another job compiled a moment before (BENCHMARKS.md). The
//! jobs are the step's pieces — the image tower at the step's frame batch, at `detect`'s
//! batch, the text tower, the whole step — so that they compile different kernels; the
//! whole step runs with the others, and the user's run then finds the kernels compiled.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use fgclip_vad::cli::WarmupArgs;
use serde::Serialize;

use super::Context;

/// One process of the warm-up.
#[derive(Debug, Serialize)]
struct JobResult {
    job: String,
    args: Vec<String>,
    seconds: f64,
    /// Exit status; None when it was stopped at the time limit.
    status: Option<i32>,
}

/// The jobs: (name, the `fgclip` arguments after the global options).
fn jobs(a: &WarmupArgs, precision: &str) -> Vec<(String, Vec<String>)> {
    let run = |name: &str, command: &[&str], extra: &[String]| {
        let mut args: Vec<String> = ["--precision", precision, "bench"]
            .iter()
            .chain(command)
            .chain(&["--preset", a.preset.as_str()])
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().cloned());
        args.extend(["--warmup", "1", "--iters", "1"].map(String::from));
        (name.to_string(), args)
    };
    let n = |flag: &str, v: usize| [flag.to_string(), v.to_string()];
    let frames = (a.batch * a.frames).max(1);
    let mut out = vec![
        run(
            "step",
            &["train"],
            &[
                n("--batch", a.batch),
                n("--frames", a.frames),
                n("--hard-negatives", a.hard_negatives),
            ]
            .concat(),
        ),
        // The image tower at the step's frame batch (its text tower too: `bench embed`).
        run("image-tower", &["embed"], &n("--batch", frames)),
    ];
    if a.detect_batch > 0 && a.detect_batch != frames {
        out.push(run(
            "detect-batch",
            &["embed"],
            &n("--batch", a.detect_batch),
        ));
    }
    out
}

pub fn warmup(a: WarmupArgs, ctx: &Context) -> Result<i32> {
    if a.batch == 0 || a.frames == 0 {
        bail!("--batch and --frames must be at least 1");
    }
    // The preset must exist before any process starts.
    fgclip_vad::presets::resolve(&a.preset)?;
    let exe = std::env::current_exe().context("finding the fgclip binary")?;
    let precision = ctx.precision.name();
    let todo = jobs(&a, precision);
    let parallel = a.jobs.unwrap_or(todo.len()).max(1);
    let limit = Duration::from_secs(a.timeout);
    let started = Instant::now();
    let mut queue = todo.into_iter();
    let mut running: Vec<(String, Vec<String>, Instant, Child)> = Vec::new();
    let mut results = Vec::new();
    loop {
        while running.len() < parallel {
            let Some((name, args)) = queue.next() else {
                break;
            };
            let child = Command::new(&exe)
                .args(&ctx.global)
                .arg("--quiet")
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting warm-up job {name}"))?;
            if !ctx.quiet && !a.json {
                eprintln!("warmup: started {name}");
            }
            running.push((name, args, Instant::now(), child));
        }
        if running.is_empty() {
            break;
        }
        let mut still = Vec::new();
        for (name, args, t0, mut child) in running {
            let status = match child.try_wait() {
                Ok(Some(st)) => Some(st.code().unwrap_or(-1)),
                Ok(None) if t0.elapsed() >= limit => {
                    let _ = child.kill();
                    let _ = child.wait();
                    None
                }
                Ok(None) => {
                    still.push((name, args, t0, child));
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("waiting for {name}")),
            };
            if status != Some(0) && status.is_some() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                eprintln!("warmup: {name} failed: {}", err.trim());
            }
            let r = JobResult {
                job: name,
                args,
                seconds: t0.elapsed().as_secs_f64(),
                status,
            };
            if !ctx.quiet && !a.json {
                eprintln!(
                    "warmup: {} {} in {:.1} s",
                    r.job,
                    match r.status {
                        Some(0) => "done",
                        Some(_) => "failed",
                        None => "stopped at the time limit",
                    },
                    r.seconds
                );
            }
            results.push(r);
        }
        running = still;
        std::thread::sleep(Duration::from_millis(100));
    }
    let failed = results.iter().filter(|r| r.status != Some(0)).count();
    let summary = serde_json::json!({
        "preset": a.preset,
        "device": ctx.device_name,
        "precision": precision,
        "seconds": started.elapsed().as_secs_f64(),
        "parallel": parallel,
        // What every job was started with before its own arguments.
        "global": ctx.global,
        "jobs": results,
    });
    if a.json {
        say!("{}", serde_json::to_string(&summary)?);
    } else {
        say!(
            "warm-up of {} ({precision}, {} clips × {} frames) on {}: {} jobs in {:.1} s, {} failed",
            a.preset,
            a.batch,
            a.frames,
            ctx.device_name,
            summary["jobs"].as_array().map_or(0, Vec::len),
            started.elapsed().as_secs_f64(),
            failed
        );
    }
    Ok(i32::from(failed > 0))
}
