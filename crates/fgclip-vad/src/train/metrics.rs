//! `RUN/metrics.jsonl` and `RUN/metrics.csv`: one row per optimizer step.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::io::write_atomic;

/// Appends metrics rows; `keep_until` rewrites the files without rows past that step
/// (after a resume).
pub(super) struct Metrics {
    jsonl: PathBuf,
    csv: PathBuf,
}

const CSV_HEADER: &str = "step,epoch,loss,loss_global,loss_region,grad_norm,num_regions,lr,clips,skipped,clips_per_s,elapsed_s,loss_global_long,loss_hard_negative,num_hard_regions,world_size,loss_region_text,cmr_threshold";

#[derive(Serialize, serde::Deserialize)]
pub(super) struct MetricRow {
    pub(super) step: usize,
    pub(super) epoch: u64,
    pub(super) loss: f64,
    pub(super) loss_global: f64,
    pub(super) loss_region: f64,
    /// Global L2 norm of the gradients before clipping (as HF Trainer logs it).
    #[serde(default)]
    pub(super) grad_norm: f64,
    pub(super) num_regions: usize,
    pub(super) lr: f64,
    pub(super) clips: usize,
    pub(super) skipped: usize,
    pub(super) clips_per_s: f64,
    pub(super) elapsed_s: f64,
    /// FG-CLIP's long-caption term (0 without long captions).
    #[serde(default)]
    pub(super) loss_global_long: f64,
    /// The hard-negative term (0 without hard negatives).
    #[serde(default)]
    pub(super) loss_hard_negative: f64,
    /// Regions of the step's region loss with at least one hard negative.
    #[serde(default)]
    pub(super) num_hard_regions: usize,
    /// Ranks that computed the step (1: one process).
    #[serde(default = "one")]
    pub(super) world_size: usize,
    /// FG-CLIP 2's intra-text term of the region captions (0 for FG-CLIP models).
    #[serde(default)]
    pub(super) loss_region_text: f64,
    /// FG-CLIP 2's cross-modal rank threshold after the step (0 for FG-CLIP models).
    #[serde(default)]
    pub(super) cmr_threshold: f64,
}

fn one() -> usize {
    1
}

impl Metrics {
    pub(super) fn open(run: &Path, keep_until: usize) -> Result<Self> {
        let m = Self {
            jsonl: run.join("metrics.jsonl"),
            csv: run.join("metrics.csv"),
        };
        // The rows up to the checkpoint stay byte for byte (a parsed and re-printed float
        // may change in its last digits).
        #[derive(serde::Deserialize)]
        struct Step {
            step: usize,
        }
        let old = std::fs::read_to_string(&m.jsonl).unwrap_or_default();
        let mut jsonl = String::new();
        for line in old.lines() {
            if serde_json::from_str::<Step>(line).is_ok_and(|r| r.step <= keep_until) {
                jsonl.push_str(line);
                jsonl.push('\n');
            }
        }
        let old_csv = std::fs::read_to_string(&m.csv).unwrap_or_default();
        let mut csv = format!("{CSV_HEADER}\n");
        for line in old_csv.lines().skip(1) {
            let step = line.split(',').next().and_then(|f| f.parse::<usize>().ok());
            if step.is_some_and(|s| s <= keep_until) {
                csv.push_str(line);
                csv.push('\n');
            }
        }
        write_atomic(&m.jsonl, jsonl.as_bytes())?;
        write_atomic(&m.csv, csv.as_bytes())?;
        Ok(m)
    }

    fn csv_row(r: &MetricRow) -> Result<String> {
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        w.write_record([
            r.step.to_string(),
            r.epoch.to_string(),
            r.loss.to_string(),
            r.loss_global.to_string(),
            r.loss_region.to_string(),
            r.grad_norm.to_string(),
            r.num_regions.to_string(),
            r.lr.to_string(),
            r.clips.to_string(),
            r.skipped.to_string(),
            format!("{:.3}", r.clips_per_s),
            format!("{:.3}", r.elapsed_s),
            r.loss_global_long.to_string(),
            r.loss_hard_negative.to_string(),
            r.num_hard_regions.to_string(),
            r.world_size.to_string(),
            r.loss_region_text.to_string(),
            r.cmr_threshold.to_string(),
        ])?;
        let bytes = w
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing CSV: {e}"))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub(super) fn append(&self, r: &MetricRow) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.jsonl)?;
        writeln!(f, "{}", serde_json::to_string(r)?)?;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.csv)?;
        f.write_all(Self::csv_row(r)?.as_bytes())?;
        Ok(())
    }
}
