//! `fgclip embed`.

use anyhow::Result;
use fgclip_vad::cli::*;
use fgclip_vad::inference;

use super::Context;

pub fn embed(a: EmbedArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let precision = ctx.precision;
    let summary = inference::run_embed(
        &inference::EmbedRequest {
            model: a.model,
            pixels: a.pixels,
            texts: a.texts,
            tokenizer: a.tokenizer,
            out: a.out,
            batch_size: a.batch_size,
            progress: !ctx.quiet,
            precision,
            long: a.long,
            walk: match a.walk.as_deref() {
                Some("short") => Some(fgclip_core::fgclip2::Walk::Short),
                Some("long") => Some(fgclip_core::fgclip2::Walk::Long),
                Some("box") => Some(fgclip_core::fgclip2::Walk::Box),
                _ => None,
            },
        },
        &device,
    )?;
    if summary.cut_texts > 0 {
        eprintln!(
            "note: {} text(s) are longer than their path and were cut (77 tokens, 248 on FG-CLIP's long path; FG-CLIP 2: 64, 196 on the long walk)",
            summary.cut_texts
        );
    }
    say!("{}", serde_json::to_string(&summary)?);
    Ok(0)
}
