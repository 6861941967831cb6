//! Model weights by HF name and the HF folders a run exports (`final/`): CLIP, or
//! FG-CLIP v1 under its own names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use fgclip_core::fgclip::FgClip;
use fgclip_core::names::{ParamRef, to_hf_layout};

use super::hf::{FGCLIP_EXTRA, FUSION_FILE};
use super::safetensors_io::{Array, write_arrays};
use crate::device::host_f32;
use crate::io::write_atomic;
use crate::trainee::Trainee;
use fgclip_core::fgclip2::Fgclip2LossWeights;
use fgclip_core::fusion::{FUSION_PREFIX, TemporalFusion};

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
pub fn hf_arrays(
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
        // An export keeps the temporal transformer in its own file (see `export_model`).
        if export && p.name.starts_with(&format!("{FUSION_PREFIX}.")) {
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

/// The temporal transformer's weights by name (none without one): `fusion.safetensors`.
pub fn fusion_arrays(fusion: Option<&TemporalFusion>) -> Result<Option<BTreeMap<String, Array>>> {
    let Some(f) = fusion else {
        return Ok(None);
    };
    let mut out = BTreeMap::new();
    for p in f.named_params() {
        let (held, values) = match p.param {
            ParamRef::D1(t) => (t.val().dims().to_vec(), host_f32(t.val())?),
            ParamRef::D2(t) => (t.val().dims().to_vec(), host_f32(t.val())?),
        };
        let (shape, data) = to_hf_layout(p.layout, &held, &values);
        out.insert(p.name, Array::F32 { shape, data });
    }
    Ok(Some(out))
}

/// A trained model's weights by HF name, in its family's layout (see [`model_arrays`]
/// and [`super::fgclip2::fgclip2_arrays`]).
pub fn trainee_arrays(model: &Trainee, export: bool) -> Result<BTreeMap<String, Array>> {
    match model {
        Trainee::Clip(m) => model_arrays(m, export),
        Trainee::Fgclip2(m) => super::fgclip2::fgclip2_arrays(m, export),
    }
}

/// `config.json` of a training checkpoint in the family's format.
pub fn checkpoint_config_json(model: &Trainee) -> Result<String> {
    match model {
        Trainee::Clip(m) => hf_config_json(m.clip.config()),
        Trainee::Fgclip2(m) => super::fgclip2::config_json(m.model.config()),
    }
}

/// `fgclip.json` of a training checkpoint: the temporal transformer's config, if any.
pub fn checkpoint_extra_json(model: &Trainee) -> Result<Option<String>> {
    let Some(f) = model.fusion() else {
        return Ok(None);
    };
    let v = serde_json::json!({ "fusion": f.config() });
    Ok(Some(serde_json::to_string_pretty(&v)? + "\n"))
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

/// Copies the tokenizer files found at `src` (a file or a folder) into `dst`.
pub(super) fn copy_tokenizer(src: &Path, dst: &Path) -> Result<()> {
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

/// `fusion.safetensors` of an export: the temporal transformer's weights, or no such file.
pub(super) fn write_fusion(dir: &Path, fusion: Option<&TemporalFusion>) -> Result<()> {
    let fusion_path = dir.join(FUSION_FILE);
    match fusion_arrays(fusion)? {
        Some(arrays) => write_arrays(&fusion_path, &arrays).map(|_| ()),
        // A stale one from an earlier export into the same folder would be loaded.
        None if fusion_path.exists() => std::fs::remove_file(&fusion_path)
            .with_context(|| format!("removing {}", fusion_path.display())),
        None => Ok(()),
    }
}

/// The run an export comes from, as `fgclip.json` records it: the optimizer steps it made,
/// its loss weights (resolved for the model's family) and frames per clip.
pub struct TrainedBy {
    pub step: usize,
    pub weights: Fgclip2LossWeights,
    pub frames: usize,
    /// How its frames became S×S (CLIP and FG-CLIP v1).
    pub preprocess: crate::data::preprocess::Preprocess,
}

/// Writes `RUN/final/` (see [`export_model`]) as a whole: into a temporary folder, then
/// renamed into place, so a failed write (a full disk) or a crash never leaves a
/// half-written `final/`; the checkpoints stay, and `--resume` exports again.
pub fn export_final(
    run: &Path,
    model: &Trainee,
    tokenizer_src: &Path,
    trained: &TrainedBy,
) -> Result<PathBuf> {
    let dir = run.join("final");
    let pid = std::process::id();
    let tmp = run.join(format!(".final.tmp{pid}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    let written = match model {
        Trainee::Clip(m) => export_model(&tmp, m, tokenizer_src, Some(trained)),
        Trainee::Fgclip2(m) => {
            super::fgclip2::export_fgclip2(&tmp, m, tokenizer_src, Some(trained))
        }
    };
    if let Err(e) = written {
        std::fs::remove_dir_all(&tmp).ok();
        return Err(e);
    }
    // An earlier export steps aside first; it is removed once the new one is in place.
    let old = run.join(format!(".final.old{pid}"));
    let had_old = dir.is_dir() && std::fs::rename(&dir, &old).is_ok();
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        std::fs::remove_dir_all(&tmp).ok();
        if had_old {
            std::fs::rename(&old, &dir).ok();
        }
        return Err(e).with_context(|| format!("moving the export into {}", dir.display()));
    }
    if had_old {
        std::fs::remove_dir_all(&old).ok();
    }
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
    trained: Option<&TrainedBy>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_arrays(&dir.join("model.safetensors"), &model_arrays(model, true)?)?;
    write_fusion(dir, model.fusion.as_ref())?;
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
    if let (Some(f), Some(o)) = (&model.fusion, extra.as_object_mut()) {
        o.insert("fusion".into(), serde_json::to_value(f.config())?);
        if let Some(t) = trained {
            o.insert("frames".into(), serde_json::json!(t.frames));
        }
    }
    if let (Some(t), Some(o)) = (trained, extra.as_object_mut()) {
        o.insert("step".into(), serde_json::json!(t.step));
        o.insert("preprocess".into(), serde_json::to_value(t.preprocess)?);
        write_atomic(
            &dir.join("preprocessor_config.json"),
            super::preprocessor::clip_preprocessor_json(
                t.preprocess,
                model.clip.config().vision_config.image_size,
            )?
            .as_bytes(),
        )?;
    }
    if let (Some(t), Some(o)) = (trained, extra.as_object_mut()) {
        o.insert("region_weight".into(), serde_json::json!(t.weights.region));
        o.insert(
            "hard_negative_weight".into(),
            serde_json::json!(t.weights.hard_negative),
        );
    }
    write_atomic(
        &dir.join(FGCLIP_EXTRA),
        (serde_json::to_string_pretty(&extra)? + "\n").as_bytes(),
    )?;
    copy_tokenizer(tokenizer_src, dir)?;
    Ok(())
}
