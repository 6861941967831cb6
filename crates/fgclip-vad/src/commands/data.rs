//! `fgclip validate`, `fgclip probe` and `fgclip frames`.

use anyhow::{Context as _, Result};
use fgclip_vad::cli::*;
use fgclip_vad::data::{frames, validate, video};

use super::{Context, emit, progress};

pub fn validate(a: ValidateArgs, ctx: &Context) -> Result<i32> {
    let bar = progress(ctx.quiet);
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
    Ok(if summary.errors > 0 { 1 } else { 0 })
}

/// One video: its metadata as pretty JSON; several: one JSON line each (a video that cannot
/// be read: an `error` line, exit status 1).
pub fn probe(a: ProbeArgs) -> Result<i32> {
    let videos = a.videos.resolve()?;
    if let [video] = videos.as_slice() {
        let info = video::probe(video, a.count_packets)?;
        say!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(0);
    }
    let mut failed = 0;
    for v in &videos {
        match video::probe(v, a.count_packets) {
            Ok(info) => say!("{}", serde_json::to_string(&info)?),
            Err(e) => {
                failed += 1;
                say!(
                    "{}",
                    serde_json::json!({"path": v, "error": format!("{e:#}")})
                );
            }
        }
    }
    Ok(i32::from(failed > 0))
}

/// One video into `--out` (a file); several into `--out/<stem>.npy` each.
pub fn frames(a: FramesArgs, ctx: &Context) -> Result<i32> {
    let ts = a.timestamps.map(|t| (t[0], t[1]));
    let videos = a.videos.resolve()?;
    let single = videos.len() == 1;
    let mut failed = 0;
    for v in &videos {
        let out = if single {
            a.out.clone()
        } else {
            let stem = v.file_stem().map(|s| s.to_string_lossy().into_owned());
            a.out.join(format!("{}.npy", stem.unwrap_or_default()))
        };
        if !single {
            std::fs::create_dir_all(&a.out)
                .with_context(|| format!("creating {}", a.out.display()))?;
        }
        let bar = progress(ctx.quiet);
        bar.set_message("frames");
        let report = frames::extract_frames(
            v,
            ts,
            a.sample,
            a.size.map(|s| (s, a.preprocess)),
            &out,
            &bar,
        );
        bar.finish_and_clear();
        match report {
            Ok(r) => say!("{}", serde_json::to_string(&r)?),
            Err(e) if !single => {
                failed += 1;
                eprintln!("error: {}: {e:#}", v.display());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(i32::from(failed > 0))
}
