//! How a run starts in its folder: a new run (the folder must be new or empty),
//! `--overwrite` (a previous run's entries removed first) or `--resume` (the newest intact
//! checkpoint or a chosen one, with the run's own saved config; only keys that do not
//! change what a step computes may differ).

use std::path::{Path, PathBuf};

use crate::trainee::{Family, Trainee};
use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use super::collective::Collective;
use super::config::{ConfigChange, ConfigRequest, TrainConfig, read_train_config, resume_config};
use crate::checkpoint::run_folder;
use crate::checkpoint::store::{
    TrainState, checkpoint_step, list_checkpoints, load_checkpoint_at, load_latest_checkpoint,
};
use crate::io::write_atomic;

/// What `fgclip train` does with its `--out` folder.
#[derive(Clone, Debug, PartialEq)]
pub enum Start {
    /// A new run: the folder must not exist or be empty.
    New,
    /// A new run that first removes what an earlier run wrote there (`--overwrite`).
    Overwrite,
    /// Continue the run there (`--resume`).
    Resume(ResumeFrom),
}

/// Which checkpoint `--resume` continues from.
#[derive(Clone, Debug, PartialEq)]
pub enum ResumeFrom {
    /// The newest that verifies (`--resume`, `--resume latest`).
    Latest,
    /// This checkpoint folder of the run (`--resume RUN/checkpoints/step-N`).
    Checkpoint(PathBuf),
}

/// A resumed model, its optimizer and the run's state.
pub(super) type Resumed = (Trainee, ModuleOptimizer, TrainState);

/// The run folder opened: the config every rank trains with, and where it continues.
pub(super) struct Opened {
    pub cfg: TrainConfig,
    /// Taken by the trainer; `resumed_step` stays for the records.
    pub resumed: Option<Resumed>,
    resumed_step: Option<usize>,
    /// The run existed and continues (with or without a checkpoint to load).
    continuing: bool,
    changes: Vec<ConfigChange>,
}

/// Opens `run` for `start` on every rank: rank 0 alone checks (and, for `--overwrite`,
/// clears) the folder while the others wait; every rank then reads the same config and
/// checkpoint. Nothing is written yet: [`Opened::record`] does that once the run's length
/// is known.
pub(super) fn open_run(
    run: &Path,
    start: &Start,
    config: &ConfigRequest,
    family: Family,
    device: &Device,
    collective: &dyn Collective,
    log: &dyn Fn(&str),
) -> Result<Opened> {
    let lead = collective.rank() == 0;
    let prepared = if lead {
        prepare_folder(run, start, log)
    } else {
        Ok(())
    };
    // No rank reads the folder while rank 0 may be clearing it. (A failure on rank 0 ends
    // the whole job, so the others never wait on a rank that left.)
    prepared?;
    collective.barrier();
    std::fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
    let config_path = run.join("config.json");
    let continuing = matches!(start, Start::Resume(_)) && config_path.is_file();
    let (cfg, changes) = if continuing {
        // Runs recorded before the families' defaults have null weights: the same values.
        let saved = read_train_config(&config_path)?.with_family_weights(family);
        let asked = config.resolve(&saved)?.with_family_weights(family);
        let changes = resume_config(&saved, &asked, &config_path)?;
        (asked, changes)
    } else {
        (
            config
                .resolve(&TrainConfig::default())?
                .with_family_weights(family),
            Vec::new(),
        )
    };
    cfg.validate()?;
    let resumed = match start {
        Start::Resume(from) if continuing => {
            resume_point(run, from, device, &cfg, collective, log)?
        }
        _ => None,
    };
    // Every rank has read the folder: rank 0 may write into it from here on.
    collective.barrier();
    Ok(Opened {
        cfg,
        resumed_step: resumed.as_ref().map(|(_, _, s)| s.step),
        resumed,
        continuing,
        changes,
    })
}

/// Rank 0's look at the folder before anything is read or written.
fn prepare_folder(run: &Path, start: &Start, log: &dyn Fn(&str)) -> Result<()> {
    match start {
        Start::New => run_folder::refuse_if_used(run),
        Start::Overwrite => {
            if let Some(c) = run_folder::clear_run(run)? {
                log(&format!(
                    "--overwrite: removed the earlier run's {} from {}",
                    c.removed,
                    run.display()
                ));
                if !c.kept.is_empty() {
                    log(&format!(
                        "note: kept {} in {} (not written by a training run)",
                        c.kept.join(", "),
                        run.display()
                    ));
                }
            }
            Ok(())
        }
        Start::Resume(from) => {
            let c = run_folder::contents(run)?;
            if run.join("config.json").is_file() {
                return Ok(());
            }
            if !c.checkpoints.is_empty() {
                bail!(
                    "{} has checkpoints but no config.json: the run's own settings are gone, so it cannot be resumed as the same run",
                    run.display()
                );
            }
            if let ResumeFrom::Checkpoint(p) = from {
                bail!(
                    "--resume {}: {} holds no run to resume",
                    p.display(),
                    run.display()
                );
            }
            // Nothing to resume: a new run, on the same terms as one.
            run_folder::refuse_if_used(run)?;
            log(&format!(
                "no run to resume in {}: starting a new one",
                run.display()
            ));
            Ok(())
        }
    }
}

/// Rank 0 finds the checkpoint to continue from (the newest that verifies, or the chosen
/// one) and every rank loads that one (its step is broadcast); None when there is none.
fn resume_point(
    run: &Path,
    from: &ResumeFrom,
    device: &Device,
    cfg: &TrainConfig,
    collective: &dyn Collective,
    log: &dyn Fn(&str),
) -> Result<Option<Resumed>> {
    let fresh = |m: &Trainee| cfg.optimizer(m).1;
    let found = if collective.rank() == 0 {
        match from {
            ResumeFrom::Latest => load_latest_checkpoint(run, device, fresh, log)?,
            ResumeFrom::Checkpoint(path) => Some(load_chosen(run, path, device, fresh)?),
        }
    } else {
        None
    };
    if found.is_none() && collective.rank() == 0 {
        log("no intact checkpoint to resume from: the run starts again from step 0");
    }
    let mut step = [found.as_ref().map_or(u64::MAX, |(_, _, s)| s.step as u64)];
    collective.broadcast_u64(&mut step);
    match (found, step[0]) {
        (Some(x), _) => Ok(Some(x)),
        (None, u64::MAX) => Ok(None),
        (None, step) => Ok(Some(load_checkpoint_at(run, step as usize, device, fresh)?)),
    }
}

/// `--resume RUN/checkpoints/step-N`: that checkpoint, when nothing of the run's later
/// steps is left in the folder (their checkpoints would be taken for this run's, and
/// `final/` would be the end of the steps being discarded).
fn load_chosen(
    run: &Path,
    path: &Path,
    device: &Device,
    fresh: impl Fn(&Trainee) -> ModuleOptimizer,
) -> Result<Resumed> {
    let step = checkpoint_step(run, path)?;
    let later: Vec<String> = list_checkpoints(run)
        .into_iter()
        .filter(|(s, _)| *s > step)
        .filter_map(|(_, p)| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect();
    if !later.is_empty() {
        bail!(
            "--resume {}: the run has later checkpoints ({}), which a resumed run would mix with its own: move or delete them to go back to step {step}",
            path.display(),
            later.join(", ")
        );
    }
    let final_dir = run.join("final");
    if final_dir.exists() && final_step(&final_dir).is_none_or(|s| s > step) {
        bail!(
            "--resume {}: {} is the export of the run's later steps: move or delete it to go back to step {step}",
            path.display(),
            final_dir.display()
        );
    }
    let loaded = load_checkpoint_at(run, step, device, fresh)?;
    Ok(loaded)
}

/// The step an export was made at (`fgclip.json`'s `step`); None when it does not say.
fn final_step(final_dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(final_dir.join(crate::checkpoint::hf::FGCLIP_EXTRA)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("step")?.as_u64().map(|s| s as usize)
}

impl Opened {
    /// Rank 0's records of how the run started: `config.json` (a new run's settings, or a
    /// resumed run's with its changed keys), and one line of `resumes.jsonl` per resume
    /// (step, checkpoint, ranks, changed keys). Logs the changes.
    pub fn record(&self, run: &Path, world_size: usize, log: &dyn Fn(&str)) -> Result<()> {
        if !self.continuing || !self.changes.is_empty() {
            write_atomic(
                &run.join("config.json"),
                (serde_json::to_string_pretty(&self.cfg)? + "\n").as_bytes(),
            )?;
        }
        if !self.continuing {
            return Ok(());
        }
        for c in &self.changes {
            log(&format!(
                "resuming with `{}` {} (the run had {})",
                c.key, c.asked, c.saved
            ));
        }
        let changed: serde_json::Map<String, serde_json::Value> = self
            .changes
            .iter()
            .map(|c| (c.key.clone(), serde_json::json!([c.saved, c.asked])))
            .collect();
        let line = serde_json::json!({
            "step": self.resumed_step.unwrap_or(0),
            "checkpoint": self.resumed_step.map(|s| format!("step-{s:08}")),
            "world_size": world_size,
            "changed": changed,
        });
        let path = run.join("resumes.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&format!("{line}\n"));
        write_atomic(&path, text.as_bytes())
    }
}
