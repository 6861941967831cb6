//! The checkpoint store of a training run: `RUN/checkpoints/step-N/` written atomically
//! (a temporary folder, fsync, rename), verified by size and hash, pruned to the newest
//! few, and the newest intact one found on resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::Serialize;

use super::export::{checkpoint_config_json, trainee_arrays};
use super::safetensors_io::write_arrays;
use crate::io::{digest_file, write_atomic};
use crate::trainee::Trainee;

/// Everything a checkpoint holds besides the weights and the optimizer state.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    /// Where the data order continues.
    pub epoch: u64,
    pub batch: usize,
    pub total_steps: usize,
    pub clips_seen: u64,
    pub clips_skipped: u64,
    pub nonfinite_steps: u64,
    pub consecutive_nonfinite: usize,
    /// Ranks that trained up to this checkpoint (1 in checkpoints from before MPI).
    #[serde(default = "one_rank")]
    pub world_size: usize,
    /// (size, FNV-1a 64) of each file, to detect a damaged checkpoint.
    pub files: BTreeMap<String, (u64, String)>,
    /// FG-CLIP 2's cross-modal rank threshold for the next step (0 for FG-CLIP models and
    /// at the start of a run): restored on resume, so a resumed run is the same run.
    #[serde(default)]
    pub cmr_threshold: f64,
}

fn one_rank() -> usize {
    1
}

fn fnv64(bytes: &[u8]) -> String {
    format!("{:016x}", fgclip_core::weights::fnv1a(bytes))
}

fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Writes `RUN/checkpoints/step-NNNNNNNN/` atomically (a temporary folder, fsync, rename)
/// and keeps the newest `keep`.
pub fn save_checkpoint(
    run: &Path,
    model: &Trainee,
    optim: &ModuleOptimizer,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let dir = checkpoints_dir(run);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = format!("step-{:08}", state.step);
    // Temporary folders of writes cut short (a process killed mid-write) are never
    // checkpoints: clear them, whichever process left them.
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(".step-") && n.contains(".tmp") {
            std::fs::remove_dir_all(e.path()).ok();
        }
    }
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    // A failed write (a full disk) leaves the previous checkpoints as they were and no
    // temporary folder behind.
    if let Err(e) = write_checkpoint_files(&tmp, model, optim, state) {
        std::fs::remove_dir_all(&tmp).ok();
        return Err(e);
    }
    sync_dir(&tmp);
    let final_dir = dir.join(&name);
    if final_dir.exists() {
        discard(&final_dir);
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), final_dir.display()))?;
    sync_dir(&dir);
    // Prune: the newest `keep` stay.
    let mut all = list_checkpoints(run);
    while all.len() > keep {
        let (_, old) = all.remove(0);
        discard(&old);
    }
    Ok(final_dir)
}

/// Removes a checkpoint folder so that no instant leaves a part of it under its own name:
/// first renamed (atomic) to a temporary name, which the next save clears if a kill cuts the
/// removal short, then deleted.
fn discard(checkpoint: &Path) {
    let Some(name) = checkpoint
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return;
    };
    let aside = checkpoint.with_file_name(format!(".{name}.tmp-discard{}", std::process::id()));
    if std::fs::rename(checkpoint, &aside).is_ok() {
        if let Some(parent) = checkpoint.parent() {
            sync_dir(parent);
        }
        std::fs::remove_dir_all(&aside).ok();
    } else {
        std::fs::remove_dir_all(checkpoint).ok();
    }
}

/// The files of one checkpoint, written into the folder `tmp`.
fn write_checkpoint_files(
    tmp: &Path,
    model: &Trainee,
    optim: &ModuleOptimizer,
    state: &TrainState,
) -> Result<()> {
    std::fs::create_dir_all(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut state = state.clone();
    let config_text = checkpoint_config_json(model)?;
    // One host copy of the weights at a time: the arrays, streamed to disk and hashed on the
    // way; then the optimizer's record, which burn's burnpack writer streams to its file
    // (hashed by reading it back in 1 MiB pieces: burn owns that write).
    let weights = write_arrays(
        &tmp.join("model.safetensors"),
        &trainee_arrays(model, false)?,
    )?;
    let optim_path = tmp.join("optimizer.bpk");
    optim
        .to_record()
        .save(&optim_path)
        .map_err(|e| anyhow::anyhow!("writing {}: {e:?}", optim_path.display()))?;
    let optim_digest = digest_file(&optim_path)?;
    write_atomic(&tmp.join("config.json"), config_text.as_bytes())?;
    if let Some(extra) = super::export::checkpoint_extra_json(model)? {
        write_atomic(&tmp.join(super::hf::FGCLIP_EXTRA), extra.as_bytes())?;
        state.files.insert(
            super::hf::FGCLIP_EXTRA.into(),
            (extra.len() as u64, fnv64(extra.as_bytes())),
        );
    }
    state.files.insert(
        "model.safetensors".into(),
        (weights.len, format!("{:016x}", weights.fnv1a)),
    );
    state.files.insert(
        "optimizer.bpk".into(),
        (optim_digest.len, format!("{:016x}", optim_digest.fnv1a)),
    );
    write_atomic(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(&state)?.as_bytes(),
    )?;
    Ok(())
}

/// Checkpoint folders, oldest first.
pub(crate) fn list_checkpoints(run: &Path) -> Vec<(usize, PathBuf)> {
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(checkpoints_dir(run))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse::<usize>().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Reads and verifies one checkpoint's state; the files must have the recorded sizes
/// and hashes.
fn verify_checkpoint(dir: &Path) -> Result<TrainState> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("reading {}", state_path.display()))?;
    let state: TrainState = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged", state_path.display()))?;
    for (name, (size, hash)) in &state.files {
        let d = digest_file(&dir.join(name))?;
        if d.len != *size || format!("{:016x}", d.fnv1a) != *hash {
            bail!(
                "{} is damaged ({} bytes, {} expected)",
                dir.join(name).display(),
                d.len,
                size
            );
        }
    }
    if !state.files.contains_key("model.safetensors") || !state.files.contains_key("optimizer.bpk")
    {
        bail!("{} lists no model or optimizer file", state_path.display());
    }
    Ok(state)
}

/// Loads one checkpoint folder after verifying it.
fn load_checkpoint(
    dir: &Path,
    device: &Device,
    fresh_optim: impl Fn(&Trainee) -> ModuleOptimizer,
) -> Result<(Trainee, ModuleOptimizer, TrainState)> {
    let state = verify_checkpoint(dir)?;
    let model = super::load_trainee(dir, device, false)?;
    let bytes = std::fs::read(dir.join("optimizer.bpk"))?;
    let optim = fresh_optim(&model)
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| anyhow::anyhow!("{}: optimizer state: {e:?}", dir.display()))?;
    Ok((model, optim, state))
}

/// The newest intact checkpoint (damaged ones are reported and passed over).
pub fn load_latest_checkpoint(
    run: &Path,
    device: &Device,
    fresh_optim: impl Fn(&Trainee) -> ModuleOptimizer,
    log: &dyn Fn(&str),
) -> Result<Option<(Trainee, ModuleOptimizer, TrainState)>> {
    for (_, dir) in list_checkpoints(run).into_iter().rev() {
        match load_checkpoint(&dir, device, &fresh_optim) {
            Ok(x) => return Ok(Some(x)),
            Err(e) => log(&format!(
                "warning: skipping checkpoint {}: {e:#}",
                dir.display()
            )),
        }
    }
    Ok(None)
}

/// The checkpoint of `step` (chosen by rank 0), which must verify.
pub fn load_checkpoint_at(
    run: &Path,
    step: usize,
    device: &Device,
    fresh_optim: impl Fn(&Trainee) -> ModuleOptimizer,
) -> Result<(Trainee, ModuleOptimizer, TrainState)> {
    let dir = checkpoints_dir(run).join(format!("step-{step:08}"));
    load_checkpoint(&dir, device, fresh_optim)
        .with_context(|| format!("loading the checkpoint rank 0 chose, {}", dir.display()))
}

/// The step of `path`, which must be one of `run`'s checkpoint folders
/// (`RUN/checkpoints/step-N`).
pub fn checkpoint_step(run: &Path, path: &Path) -> Result<usize> {
    let not_ours = || {
        anyhow::anyhow!(
            "{} is not a checkpoint of the run {} (a folder {}/step-N)",
            path.display(),
            run.display(),
            checkpoints_dir(run).display()
        )
    };
    let step = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("step-"))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|s| path.file_name() == Some(std::ffi::OsStr::new(&format!("step-{s:08}"))))
        .ok_or_else(not_ours)?;
    let parent = path.parent().ok_or_else(not_ours)?;
    let same = match (parent.canonicalize(), checkpoints_dir(run).canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same || !path.is_dir() {
        return Err(not_ours());
    }
    Ok(step)
}
