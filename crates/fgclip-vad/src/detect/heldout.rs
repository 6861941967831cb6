//! A trained model scored on held-out videos and evaluated against their ground truth:
//! what `demo` and `ablate` do after training.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;
use fgclip_core::Precision;
use indicatif::ProgressBar;

use super::{DetectOptions, PromptSet, detect_video};
use crate::eval::{EvalReport, Protocol, VideoTruth, evaluate, read_scores};
use crate::io::write_atomic;

/// Held-out videos, their ground truth and the prompts to score them with.
pub struct HeldOut {
    pub videos: Vec<PathBuf>,
    pub truth: Vec<VideoTruth>,
    pub protocol: Protocol,
    pub prompts: PromptSet,
}

impl HeldOut {
    /// `list`: one video path a line, relative to `root`; blank lines ignored.
    pub fn read(
        list: &Path,
        root: &Path,
        truth: Vec<VideoTruth>,
        protocol: Protocol,
        prompts: PromptSet,
    ) -> Result<Self> {
        let videos =
            crate::data::video_list::read_video_list(list, Some(root)).context("the test list")?;
        Ok(Self {
            videos,
            truth,
            protocol,
            prompts,
        })
    }
}

/// One held-out video's outcome.
pub struct VideoOutcome {
    pub stem: String,
    pub predicted_class: String,
    pub max_score: f32,
    /// The ground-truth class ("" when the video has none).
    pub true_class: String,
}

/// Detects every held-out video with the model in `model_dir` into `out` and evaluates the
/// frame scores; `out/eval.json` holds the report.
pub fn score_held_out(
    model_dir: &Path,
    precision: Precision,
    held_out: &HeldOut,
    opts: &DetectOptions,
    out: &Path,
    device: &Device,
    bar: &ProgressBar,
) -> Result<(EvalReport, Vec<VideoOutcome>)> {
    let mut model = super::VideoModel::load(model_dir, device, None, None)?;
    model.tower.set_precision(precision);
    let head = model
        .tower
        .head(model_dir, &held_out.prompts, None, device)?;
    let names = held_out.prompts.names();
    let det = out.join("detections");
    let mut outcomes = Vec::new();
    for v in &held_out.videos {
        let stem = v
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let t = held_out.truth.iter().find(|t| t.stem == stem);
        let r = detect_video(&model, &head, &names, v, &det, opts, t, device, bar)?;
        outcomes.push(VideoOutcome {
            stem,
            predicted_class: r.predicted_class,
            max_score: r.max_score,
            true_class: t.map(|t| t.class.clone()).unwrap_or_default(),
        });
    }
    let (scores, counts) = read_scores(&det)?;
    let report = evaluate(&held_out.truth, &scores, &counts, held_out.protocol, None)?;
    write_atomic(
        &out.join("eval.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    Ok((report, outcomes))
}
