//! `fgclip validate`, `fgclip probe` and `fgclip frames`.

use anyhow::Result;
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

pub fn probe(a: ProbeArgs) -> Result<i32> {
    let info = video::probe(&a.video, a.count_packets)?;
    say!("{}", serde_json::to_string_pretty(&info)?);
    Ok(0)
}

pub fn frames(a: FramesArgs, ctx: &Context) -> Result<i32> {
    let ts = a.timestamps.map(|t| (t[0], t[1]));
    let bar = progress(ctx.quiet);
    bar.set_message("frames");
    let report = frames::extract_frames(&a.video, ts, a.sample, a.size, &a.out, &bar);
    bar.finish_and_clear();
    let report = report?;
    say!("{}", serde_json::to_string(&report)?);
    Ok(0)
}
