//! `fgclip ablate`: a grid of training variants over any config keys, each trained,
//! detected and evaluated on held-out videos, repeated over seeds. Resumable: a finished
//! run (its `result.json`) is skipped, an interrupted one resumes from its checkpoint.
//! Outputs `results.csv` (one row per run), `table.md` / `table.tex` (mean ± std per
//! cell), plots of AUC against each numeric grid key and `report.html` (see `tables.rs`).

mod tables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::detect::{DetectOptions, HeldOut, score_held_out};
use crate::io::write_atomic;
use crate::train::{ModelSource, ResumeFrom, Start, TrainConfig, TrainRequest, run_train};

pub use tables::{Summary, summarise, write_outputs};

/// The grid file (`fgclip ablate --print-grid` prints an example).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GridFile {
    /// Free text (notes on the grid), ignored.
    #[serde(default, rename = "_comment", skip_serializing_if = "Option::is_none")]
    pub comment: Option<Value>,
    /// Config keys every run shares.
    #[serde(default)]
    pub base: Map<String, Value>,
    /// Config key → values: every combination is a cell.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<Value>>,
    /// Further cells, each its own keys over `base` (one-at-a-time ablations).
    #[serde(default)]
    pub variants: Vec<Map<String, Value>>,
    /// Each cell runs once per seed (config key `seed`).
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
}

fn default_seeds() -> Vec<u64> {
    vec![1, 2, 3]
}

/// The documented example `--print-grid` prints.
pub const EXAMPLE_GRID: &str = r#"{
  "_comment": [
    "fgclip ablate: every combination of `grid` is a cell, each of `variants` one more",
    "(its keys over `base`); each cell trains once per seed. Keys are training config keys",
    "(fgclip train --print-config). region_weight 0 = global contrast only."
  ],
  "base": {"max_steps": 300, "batch_size": 16, "frames": 4, "learning_rate": 0.0005},
  "grid": {"region_weight": [0.0, 0.5, 1.0]},
  "variants": [
    {"hard_negative_weight": 0.0},
    {"frames": 8},
    {"fusion": "transformer"}
  ],
  "seeds": [1, 2, 3]
}
"#;

/// One cell: the keys it sets over `base`.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub index: usize,
    pub label: String,
    pub keys: Map<String, Value>,
}

/// What will run: the cells, the seeds and each (cell, seed)'s resolved config.
pub struct Plan {
    pub cells: Vec<Cell>,
    pub seeds: Vec<u64>,
    /// Keys that differ between cells, grid keys first, in file order of appearance.
    pub varied: Vec<String>,
    configs: BTreeMap<(usize, u64), TrainConfig>,
}

/// A training config as its JSON object (its keys are the config keys).
fn config_object(config: &TrainConfig) -> Result<Map<String, Value>> {
    match serde_json::to_value(config)? {
        Value::Object(m) => Ok(m),
        _ => bail!("the training config is not a JSON object"),
    }
}

/// A key's value as tables and labels print it: strings bare, the rest as JSON.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn label(keys: &Map<String, Value>) -> String {
    if keys.is_empty() {
        return "base".into();
    }
    keys.iter()
        .map(|(k, v)| format!("{k}={}", show(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Plan {
    /// Checks every key and value against the training config before anything runs;
    /// errors name the file, the key and where it appears.
    pub fn new(file: &GridFile, source: &Path, base_config: &TrainConfig) -> Result<Self> {
        let known = config_object(&TrainConfig::default())?;
        let name = source.display();
        let check_key = |k: &str, place: &str| -> Result<()> {
            if k == "seed" {
                bail!("{name}: `seed` in {place}: list the seeds in `seeds` instead");
            }
            if !known.contains_key(k) {
                let keys: Vec<&String> = known.keys().collect();
                bail!(
                    "{name}: `{k}` in {place} is not a training config key (fgclip train \
                     --print-config); the keys: {}",
                    keys.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        };
        // One key at a time over the defaults, so a wrong type names its key.
        let check_value = |k: &str, v: &Value, place: &str| -> Result<()> {
            let mut m = known.clone();
            m.insert(k.to_string(), v.clone());
            serde_json::from_value::<TrainConfig>(Value::Object(m))
                .map_err(|e| anyhow::anyhow!("{name}: `{k}` = {v} in {place}: {e}"))?;
            Ok(())
        };
        for (k, v) in &file.base {
            check_key(k, "base")?;
            check_value(k, v, "base")?;
        }
        for (k, values) in &file.grid {
            check_key(k, "grid")?;
            if values.is_empty() {
                bail!("{name}: `{k}` in grid has no values");
            }
            for v in values {
                check_value(k, v, "grid")?;
            }
        }
        for (i, variant) in file.variants.iter().enumerate() {
            if variant.is_empty() {
                bail!("{name}: variant {} sets no key", i + 1);
            }
            for (k, v) in variant {
                check_key(k, &format!("variant {}", i + 1))?;
                check_value(k, v, &format!("variant {}", i + 1))?;
            }
        }
        if file.grid.is_empty() && file.variants.is_empty() {
            bail!("{name}: the grid is empty: give `grid` values or `variants` to compare");
        }
        if file.seeds.is_empty() {
            bail!("{name}: `seeds` is empty");
        }

        // The cartesian product of the grid (one empty cell, the base, without a grid).
        let mut combos: Vec<Map<String, Value>> = vec![Map::new()];
        for (k, values) in &file.grid {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert(k.clone(), v.clone());
                        c
                    })
                })
                .collect();
        }
        combos.extend(file.variants.iter().cloned());
        let cells: Vec<Cell> = combos
            .into_iter()
            .enumerate()
            .map(|(index, keys)| Cell {
                index,
                label: label(&keys),
                keys,
            })
            .collect();
        let mut varied: Vec<String> = file.grid.keys().cloned().collect();
        for v in &file.variants {
            for k in v.keys() {
                if !varied.contains(k) {
                    varied.push(k.clone());
                }
            }
        }

        let mut base = config_object(base_config)?;
        for (k, v) in &file.base {
            base.insert(k.clone(), v.clone());
        }
        let mut configs = BTreeMap::new();
        for cell in &cells {
            for &seed in &file.seeds {
                let mut m = base.clone();
                for (k, v) in &cell.keys {
                    m.insert(k.clone(), v.clone());
                }
                m.insert("seed".into(), Value::from(seed));
                let config: TrainConfig = serde_json::from_value(Value::Object(m))
                    .with_context(|| format!("{name}: cell `{}`", cell.label))?;
                config
                    .validate()
                    .with_context(|| format!("{name}: cell `{}`, seed {seed}", cell.label))?;
                configs.insert((cell.index, seed), config);
            }
        }
        Ok(Self {
            cells,
            seeds: file.seeds.clone(),
            varied,
            configs,
        })
    }

    pub fn runs(&self) -> usize {
        self.cells.len() * self.seeds.len()
    }

    /// The folder name of a run under `runs/`.
    pub fn run_id(cell: usize, seed: u64) -> String {
        format!("c{cell:03}-s{seed}")
    }
}

/// One finished run: a row of `results.csv`, saved as the run's `result.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub run: String,
    pub cell: usize,
    pub label: String,
    pub seed: u64,
    /// The cell's keys (the varied ones).
    pub keys: Map<String, Value>,
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
    pub train_seconds: f64,
    pub clips_per_s: f64,
    /// Peak resident memory of this run (training, detection, evaluation); None where
    /// the OS does not say.
    pub peak_rss_mb: Option<f64>,
    /// Time the loader spent decoding and sampling training clips (summed over workers).
    pub decode_seconds: f64,
    pub steps: usize,
    pub last_loss: Option<f64>,
    pub detect_seconds: f64,
}

/// What `ablate` works on besides the grid.
pub struct AblateRequest {
    pub grid_file: PathBuf,
    pub grid: GridFile,
    pub annotations: PathBuf,
    pub videos: PathBuf,
    pub model: ModelSource,
    pub tokenizer: Option<PathBuf>,
    pub base_config: TrainConfig,
    pub held_out: HeldOut,
    pub detect: DetectOptions,
    pub out: PathBuf,
}

/// Resets the process's peak-RSS mark (Linux `clear_refs` 5), so each run reports its own.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `VmHWM` in MiB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn read_result(path: &Path) -> Option<RunResult> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Runs every (cell, seed) not finished yet, then writes the tables, plots and report.
pub fn run_ablation(
    req: &AblateRequest,
    device: &Device,
    bar: &indicatif::ProgressBar,
    log: &dyn Fn(&str),
) -> Result<(Plan, Vec<RunResult>)> {
    let plan = Plan::new(&req.grid, &req.grid_file, &req.base_config)?;
    std::fs::create_dir_all(req.out.join("runs"))
        .with_context(|| format!("creating {}", req.out.display()))?;
    write_atomic(
        &req.out.join("grid.json"),
        serde_json::to_string_pretty(&req.grid)?.as_bytes(),
    )?;
    let total = plan.runs();
    bar.set_length(total as u64);
    bar.set_message("runs");
    let mut results = Vec::new();
    let mut done = 0usize;
    let family = crate::train::requested_family(&req.model)?;
    for cell in &plan.cells {
        for &seed in &plan.seeds {
            let id = Plan::run_id(cell.index, seed);
            let dir = req.out.join("runs").join(&id);
            done += 1;
            let config = &plan.configs[&(cell.index, seed)];
            check_same_config(&dir, config, family)?;
            if let Some(mut r) = read_result(&dir.join("result.json")) {
                // Its config is this cell's (checked above), but the folder may come from
                // another grid — copied in, or a key moved between `base` and `grid` — so
                // the row takes this grid's names, not the ones it was saved under.
                r.run = id.clone();
                r.cell = cell.index;
                r.label = cell.label.clone();
                r.seed = seed;
                r.keys = cell.keys.clone();
                log(&format!(
                    "[{done}/{total}] {id} ({}, seed {seed}): done before, skipped",
                    cell.label
                ));
                results.push(r);
                bar.inc(1);
                continue;
            }
            log(&format!(
                "[{done}/{total}] {id} ({}, seed {seed}) …",
                cell.label
            ));
            let result = run_one(req, cell, seed, &id, &dir, config.clone(), device, log)?;
            log(&format!(
                "    AUC {} AP {} in {:.0} s",
                result.roc_auc.map_or("-".into(), |v| format!("{v:.4}")),
                result
                    .average_precision
                    .map_or("-".into(), |v| format!("{v:.4}")),
                result.train_seconds + result.detect_seconds
            ));
            write_atomic(
                &dir.join("result.json"),
                serde_json::to_string_pretty(&result)?.as_bytes(),
            )?;
            results.push(result);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    write_outputs(&req.out, &plan, &results, &req.grid_file)?;
    Ok((plan, results))
}

/// A run folder left by an earlier grid must have been trained with the config this grid
/// gives it: a finished run is reused and an interrupted one resumed under its id, so an
/// edited grid in the same `--out` would otherwise mix another cell's results in.
fn check_same_config(
    dir: &Path,
    config: &TrainConfig,
    family: crate::trainee::Family,
) -> Result<()> {
    // A run records its family's loss weights where the grid leaves them null.
    let config = &config.clone().with_family_weights(family);
    let saved = dir.join("train").join("config.json");
    if !saved.is_file() {
        return Ok(());
    }
    let before = crate::train::read_train_config(&saved)?.with_family_weights(family);
    if &before != config {
        let (a, b) = (
            serde_json::to_value(&before)?,
            serde_json::to_value(config)?,
        );
        let changed: Vec<String> = match (a.as_object(), b.as_object()) {
            (Some(a), Some(b)) => b
                .iter()
                .filter(|(k, v)| a.get(*k) != Some(v))
                .map(|(k, _)| format!("`{k}`"))
                .collect(),
            _ => Vec::new(),
        };
        bail!(
            "{} was trained with another config ({} differ): the grid changed since; use a new --out, or remove that run",
            dir.display(),
            changed.join(", ")
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    req: &AblateRequest,
    cell: &Cell,
    seed: u64,
    id: &str,
    dir: &Path,
    config: TrainConfig,
    device: &Device,
    log: &dyn Fn(&str),
) -> Result<RunResult> {
    let rss_tracked = reset_peak_rss();
    let train_dir = dir.join("train");
    // An interrupted run (its config checked equal to this cell's) resumes from its
    // newest intact checkpoint, or starts again when it wrote none.
    let start = if train_dir.join("config.json").is_file() {
        Start::Resume(ResumeFrom::Latest)
    } else {
        Start::New
    };
    let precision = config.precision;
    let batch_size = config.batch_size;
    let decode_before = crate::data::loader::decode_seconds_total();
    let t0 = Instant::now();
    let summary = run_train(
        &TrainRequest {
            annotations: req.annotations.clone(),
            videos: req.videos.clone(),
            model: req.model.clone(),
            tokenizer: req.tokenizer.clone(),
            out: train_dir,
            config: config.into(),
            start,
            progress: false,
            on_step: None,
        },
        device,
        log,
    )
    .with_context(|| format!("training cell `{}`, seed {seed}", cell.label))?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let decode_seconds = crate::data::loader::decode_seconds_total() - decode_before;
    let t1 = Instant::now();
    let hidden = indicatif::ProgressBar::hidden();
    let (report, _) = score_held_out(
        &summary.final_model,
        precision,
        &req.held_out,
        &req.detect,
        dir,
        device,
        &hidden,
    )
    .with_context(|| format!("detecting with cell `{}`, seed {seed}", cell.label))?;
    let detect_seconds = t1.elapsed().as_secs_f64();
    // Steps run in this process (a resumed run counts only what it did here).
    let steps_here = summary.steps - summary.resumed_from.unwrap_or(0);
    Ok(RunResult {
        run: id.to_string(),
        cell: cell.index,
        label: cell.label.clone(),
        seed,
        keys: cell.keys.clone(),
        roc_auc: report.roc_auc,
        average_precision: report.average_precision,
        train_seconds,
        clips_per_s: (steps_here * batch_size) as f64 / train_seconds.max(1e-9),
        peak_rss_mb: if rss_tracked { peak_rss_mb() } else { None },
        decode_seconds,
        steps: summary.steps,
        last_loss: summary.last_loss,
        detect_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(json: &str) -> GridFile {
        serde_json::from_str(json).unwrap()
    }

    fn plan(json: &str) -> Result<Plan> {
        Plan::new(&grid(json), Path::new("g.json"), &TrainConfig::default())
    }

    #[test]
    fn cells_are_the_product_of_the_grid_plus_the_variants() {
        let p = plan(
            r#"{"base": {"max_steps": 3},
                "grid": {"region_weight": [0, 1], "frames": [2, 4]},
                "variants": [{"hard_negative_weight": 0.0}], "seeds": [5, 6]}"#,
        )
        .unwrap();
        let labels: Vec<&str> = p.cells.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "frames=2, region_weight=0",
                "frames=2, region_weight=1",
                "frames=4, region_weight=0",
                "frames=4, region_weight=1",
                "hard_negative_weight=0.0"
            ]
        );
        assert_eq!(p.runs(), 10);
        assert_eq!(
            p.varied,
            ["frames", "region_weight", "hard_negative_weight"]
        );
        let c = &p.configs[&(3, 6)];
        assert_eq!(
            (c.frames, c.region_weight, c.seed, c.max_steps),
            (4, Some(1.0), 6, Some(3))
        );
        let v = &p.configs[&(4, 5)];
        assert_eq!(v.hard_negative_weight, Some(0.0));
        assert_eq!(v.frames, TrainConfig::default().frames);
    }

    #[test]
    fn bad_grids_name_the_key_before_anything_runs() {
        let err = |j: &str| format!("{:#}", plan(j).err().expect("an error"));
        let e = err(r#"{"grid": {"lamda": [0, 1]}}"#);
        assert!(
            e.contains("`lamda` in grid is not a training config key"),
            "{e}"
        );
        let e = err(r#"{"grid": {"region_weight": ["high"]}}"#);
        assert!(e.contains("`region_weight` = \"high\" in grid"), "{e}");
        let e = err(r#"{"grid": {"frames": []}}"#);
        assert!(e.contains("`frames` in grid has no values"), "{e}");
        let e = err(r#"{"grid": {}}"#);
        assert!(e.contains("the grid is empty"), "{e}");
        let e = err(r#"{"variants": [{"frames": 2.5}]}"#);
        assert!(e.contains("`frames` = 2.5 in variant 1"), "{e}");
        let e = err(r#"{"base": {"bogus": 1}, "grid": {"frames": [2]}}"#);
        assert!(e.contains("`bogus` in base"), "{e}");
        let e = err(r#"{"grid": {"seed": [1, 2]}}"#);
        assert!(e.contains("`seeds`"), "{e}");
        let e = err(r#"{"grid": {"frames": [0]}}"#);
        assert!(e.contains("cell `frames=0`"), "{e}");
        let e = err(r#"{"grid": {"frames": [2]}, "seeds": []}"#);
        assert!(e.contains("`seeds` is empty"), "{e}");
    }

    #[test]
    fn the_printed_example_is_a_valid_grid() {
        let g: GridFile = serde_json::from_str(EXAMPLE_GRID).unwrap();
        let p = Plan::new(&g, Path::new("example"), &TrainConfig::default()).unwrap();
        assert_eq!(p.cells.len(), 6);
        assert_eq!(p.runs(), 18);
    }
}
