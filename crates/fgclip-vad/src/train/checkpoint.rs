//! Run checkpoints (written atomically, verified by size and hash, the newest intact one
//! found on resume) and the final HF export.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use fgclip_core::fgclip::FgClip;
use fgclip_core::names::{ParamRef, to_hf_layout};
use serde::Serialize;

use super::config::TrainConfig;
use crate::checkpoint::hf::{FGCLIP_EXTRA, load_fgclip};
use crate::checkpoint::safetensors_io::{Array, write_arrays, write_atomic};
use crate::inference::host_f32;

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
}

fn one_rank() -> usize {
    1
}

fn fnv64(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// The model's weights by HF name. `export`: the layout of `final/`, where a CLIP model
/// leaves its region and hard-negative scales to `fgclip.json` (HF `CLIPModel` has no
/// place for them) and an FG-CLIP v1 model keeps them under FG-CLIP's names.
pub fn model_arrays(model: &FgClip, export: bool) -> Result<BTreeMap<String, Array>> {
    hf_arrays(model, export, |p| {
        match p {
            ParamRef::D1(t) => host_f32(t.val()),
            ParamRef::D2(t) => host_f32(t.val()),
        }
        .map(Some)
    })
}

/// One array per parameter, by HF name and in HF layout, of what `value` reads from it
/// (its weights, or its gradient; None: zeros).
pub(super) fn hf_arrays(
    model: &FgClip,
    export: bool,
    value: impl Fn(ParamRef<'_>) -> Result<Option<Vec<f32>>>,
) -> Result<BTreeMap<String, Array>> {
    let plain_clip = export && !model.clip.config().is_fgclip_v1();
    let mut out = BTreeMap::new();
    for p in model.named_params() {
        if plain_clip
            && (p.name == "logit_scale_region"
                || p.name == fgclip_core::fgclip::HARD_NEGATIVE_SCALE_NAME)
        {
            continue;
        }
        let held = match p.param {
            ParamRef::D1(t) => t.val().dims().to_vec(),
            ParamRef::D2(t) => t.val().dims().to_vec(),
        };
        let values = value(p.param)?.unwrap_or_else(|| vec![0.0; held.iter().product()]);
        let (shape, data) = to_hf_layout(p.layout, &held, &values);
        out.insert(p.name, Array::F32 { shape, data });
    }
    Ok(out)
}

/// HF `config.json` text for a model config.
pub fn hf_config_json(config: &fgclip_core::ClipConfig) -> Result<String> {
    let mut v = serde_json::to_value(config)?;
    if let Some(o) = v.as_object_mut() {
        let architecture = if config.is_fgclip_v1() {
            fgclip_core::config::FGCLIP_V1_ARCHITECTURE
        } else {
            "CLIPModel"
        };
        o.insert("architectures".into(), serde_json::json!([architecture]));
        o.insert("model_type".into(), serde_json::json!("clip"));
        if let Some(t) = o.get_mut("text_config").and_then(|t| t.as_object_mut()) {
            t.insert("model_type".into(), serde_json::json!("clip_text_model"));
        }
        if let Some(t) = o.get_mut("vision_config").and_then(|t| t.as_object_mut()) {
            t.insert("model_type".into(), serde_json::json!("clip_vision_model"));
        }
    }
    Ok(serde_json::to_string_pretty(&v)? + "\n")
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
pub(super) fn save_checkpoint(
    run: &Path,
    model: &FgClip,
    optim: &ModuleOptimizer,
    state: &TrainState,
    keep: usize,
) -> Result<PathBuf> {
    let dir = checkpoints_dir(run);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = format!("step-{:08}", state.step);
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut state = state.clone();
    let config_text = hf_config_json(model.clip.config())?;
    let weights = {
        let arrays = model_arrays(model, false)?;
        let path = tmp.join("model.safetensors");
        write_arrays(&path, &arrays)?;
        std::fs::read(&path)?
    };
    let optim_bytes = optim
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("serialising the optimizer state: {e:?}"))?;
    write_atomic(&tmp.join("optimizer.bpk"), &optim_bytes)?;
    write_atomic(&tmp.join("config.json"), config_text.as_bytes())?;
    state.files.insert(
        "model.safetensors".into(),
        (weights.len() as u64, fnv64(&weights)),
    );
    state.files.insert(
        "optimizer.bpk".into(),
        (optim_bytes.len() as u64, fnv64(&optim_bytes)),
    );
    write_atomic(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(&state)?.as_bytes(),
    )?;
    sync_dir(&tmp);
    let final_dir = dir.join(&name);
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).ok();
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), final_dir.display()))?;
    sync_dir(&dir);
    // Prune: the newest `keep` stay.
    let mut all = list_checkpoints(run);
    while all.len() > keep {
        let (_, old) = all.remove(0);
        std::fs::remove_dir_all(&old).ok();
    }
    Ok(final_dir)
}

/// Checkpoint folders, oldest first.
fn list_checkpoints(run: &Path) -> Vec<(usize, PathBuf)> {
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
        let bytes = std::fs::read(dir.join(name))
            .with_context(|| format!("reading {}", dir.join(name).display()))?;
        if bytes.len() as u64 != *size || fnv64(&bytes) != *hash {
            bail!(
                "{} is damaged ({} bytes, {} expected)",
                dir.join(name).display(),
                bytes.len(),
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
    fresh_optim: impl Fn(&FgClip) -> ModuleOptimizer,
) -> Result<(FgClip, ModuleOptimizer, TrainState)> {
    let state = verify_checkpoint(dir)?;
    let model = load_fgclip(dir, device, false)?;
    let bytes = std::fs::read(dir.join("optimizer.bpk"))?;
    let optim = fresh_optim(&model)
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| anyhow::anyhow!("{}: optimizer state: {e:?}", dir.display()))?;
    Ok((model, optim, state))
}

/// The newest intact checkpoint (damaged ones are reported and passed over).
pub(super) fn load_latest_checkpoint(
    run: &Path,
    device: &Device,
    fresh_optim: impl Fn(&FgClip) -> ModuleOptimizer,
    log: &dyn Fn(&str),
) -> Result<Option<(FgClip, ModuleOptimizer, TrainState)>> {
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
pub(super) fn load_checkpoint_at(
    run: &Path,
    step: usize,
    device: &Device,
    fresh_optim: impl Fn(&FgClip) -> ModuleOptimizer,
) -> Result<(FgClip, ModuleOptimizer, TrainState)> {
    let dir = checkpoints_dir(run).join(format!("step-{step:08}"));
    load_checkpoint(&dir, device, fresh_optim)
        .with_context(|| format!("loading the checkpoint rank 0 chose, {}", dir.display()))
}

/// Copies the tokenizer files found at `src` (a file or a folder) into `dst`.
fn copy_tokenizer(src: &Path, dst: &Path) -> Result<()> {
    if src.as_os_str() == "builtin" {
        return write_atomic(
            &dst.join(crate::checkpoint::hf::BUILTIN_BPE_NAME),
            crate::checkpoint::hf::BUILTIN_BPE,
        );
    }
    let files: Vec<PathBuf> = if src.is_dir() {
        [
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
            "merges.txt",
            "bpe_simple_vocab_16e6.txt.gz",
            "special_tokens_map.json",
        ]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.is_file())
        .collect()
    } else {
        let mut v = vec![src.to_path_buf()];
        let name = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == "vocab.json" {
            v.push(src.with_file_name("merges.txt"));
        } else if name == "merges.txt" {
            v.push(src.with_file_name("vocab.json"));
        }
        v
    };
    for f in files {
        if let Some(name) = f.file_name() {
            std::fs::copy(&f, dst.join(name))
                .with_context(|| format!("copying {}", f.display()))?;
        }
    }
    Ok(())
}

/// Writes `RUN/final/` (see [`export_model`]).
pub fn export_final(
    run: &Path,
    model: &FgClip,
    tokenizer_src: &Path,
    config: &TrainConfig,
) -> Result<PathBuf> {
    let dir = run.join("final");
    export_model(&dir, model, tokenizer_src, Some(config))?;
    Ok(dir)
}

/// Writes an HF model folder: `config.json` + `model.safetensors` + the tokenizer files,
/// and `fgclip.json`. A CLIP model is written as HF `CLIPModel` (transformers loads it)
/// with its region and hard-negative scales in `fgclip.json`; an FG-CLIP v1 model keeps
/// FG-CLIP's names and tensors (`FGCLIPModel`, long position tables,
/// `text_filip_projection`, `logit_scale_finegraind`, `logit_scale_hardneg`), so FG-CLIP's
/// own code loads it again.
pub fn export_model(
    dir: &Path,
    model: &FgClip,
    tokenizer_src: &Path,
    config: Option<&TrainConfig>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_arrays(&dir.join("model.safetensors"), &model_arrays(model, true)?)?;
    write_atomic(
        &dir.join("config.json"),
        hf_config_json(model.clip.config())?.as_bytes(),
    )?;
    let scalar = |t: burn::tensor::Tensor<1>| -> Result<f32> {
        Ok(host_f32(t)?.first().copied().unwrap_or(f32::NAN))
    };
    let mut extra = serde_json::json!({
        "logit_scale_region": scalar(model.logit_scale_region.val())?,
        "logit_scale_hardneg": scalar(model.logit_scale_hardneg.val())?,
        "about": "fgclip: the FG-CLIP region and hard-negative logit scales (an FG-CLIP v1 model also keeps them in model.safetensors)",
    });
    if let (Some(c), Some(o)) = (config, extra.as_object_mut()) {
        o.insert("region_weight".into(), serde_json::json!(c.region_weight));
        o.insert(
            "hard_negative_weight".into(),
            serde_json::json!(c.hard_negative_weight),
        );
    }
    write_atomic(
        &dir.join(FGCLIP_EXTRA),
        (serde_json::to_string_pretty(&extra)? + "\n").as_bytes(),
    )?;
    copy_tokenizer(tokenizer_src, dir)?;
    Ok(())
}
