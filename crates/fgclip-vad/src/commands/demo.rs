//! `fgclip demo` and `fgclip synth`.

use anyhow::Result;
use fgclip_vad::cli::*;

use super::{Context, progress};

pub fn demo(a: DemoArgs, ctx: &Context) -> Result<i32> {
    let device = ctx.device.clone();
    let precision = ctx.precision;
    let mut cfg = if a.tiny {
        fgclip_vad::demo::DemoConfig::tiny()
    } else {
        fgclip_vad::demo::DemoConfig::standard()
    };
    if let Some(c) = a.captions {
        cfg = cfg.fgclip2(c);
    }
    if let Some(s) = a.max_steps {
        cfg.train.max_steps = Some(s);
    }
    if let Some(s) = a.seed {
        cfg.train.seed = s;
    }
    if a.augment {
        cfg.train.augment = fgclip_vad::demo::demo_augment();
    }
    if let Some(n) = a.num_videos {
        cfg.synth.train_videos = n.max(1);
    }
    if let Some(w) = a.hard_negative_weight {
        cfg.train.hard_negative_weight = Some(w);
    }
    if let Some(w) = a.region_weight {
        cfg.train.region_weight = Some(w);
    }
    cfg.train.precision = precision;
    let s = fgclip_vad::demo::run_demo(&a.out, &cfg, &device, !ctx.quiet, &|m| eprintln!("{m}"))?;
    eprintln!(
        "report: {}\nheld-out frame-level ROC AUC: {} (AP {}) in {:.0} s",
        s.report.display(),
        s.roc_auc.map_or("n/a".into(), |v| format!("{v:.4}")),
        s.average_precision
            .map_or("n/a".into(), |v| format!("{v:.4}")),
        s.seconds
    );
    say!("{}", serde_json::to_string(&s)?);
    Ok(0)
}

pub fn synth(a: SynthArgs, ctx: &Context) -> Result<i32> {
    let cfg = fgclip_vad::synth::SynthConfig {
        train_videos: a.num_videos,
        test_videos: (a.num_videos / 3).max(1),
        seconds: a.seconds.max(2),
        seed: a.seed,
    };
    let bar = progress(ctx.quiet);
    let s = fgclip_vad::synth::generate(&a.out, &cfg, &bar)?;
    bar.finish_and_clear();
    say!("{}", serde_json::to_string_pretty(&s)?);
    Ok(0)
}
