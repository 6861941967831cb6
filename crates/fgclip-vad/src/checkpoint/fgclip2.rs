//! FG-CLIP 2 model folders as published (qihoo360 `fg-clip2-base`, `-large`, `-so400m`) and as
//! FG-CLIP 2's `save_pretrained` writes them: `config.json` with `model_type: "fgclip2"` and
//! its sub-configs, `model.safetensors` (or shards with `model.safetensors.index.json`;
//! float16 / bfloat16 converted to float32), `tokenizer.json` + `tokenizer_config.json`
//! (Gemma's tokenizer), `preprocessor_config.json` (the NaFlex image processor).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use fgclip_core::fgclip2::{Fgclip2Config, Fgclip2Model, MODEL_TYPE};
use fgclip_core::{HfTokenizer, Weights};

use super::hf::SafetensorsWeights;
use crate::data::naflex::NaflexConfig;

/// The model families fgclip reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// CLIP and FG-CLIP v1 (`model_type: "clip"`, or none).
    Clip,
    /// FG-CLIP 2 (`model_type: "fgclip2"`).
    Fgclip2,
}

/// The family of the model folder `dir`, from its `config.json`'s `model_type`.
pub fn model_kind(dir: &Path) -> Result<ModelKind> {
    let path = dir.join("config.json");
    let json = crate::io::read_json(&path)?;
    match json.get("model_type").and_then(|v| v.as_str()) {
        None | Some("clip") => Ok(ModelKind::Clip),
        Some(MODEL_TYPE) => Ok(ModelKind::Fgclip2),
        Some(other) => bail!(
            "{}: unknown model_type {other:?}: fgclip reads CLIP and FG-CLIP v1 (\"clip\") and FG-CLIP 2 (\"{MODEL_TYPE}\")",
            path.display()
        ),
    }
}

/// An error for an FG-CLIP 2 folder given to the trainer (or `check-loss`): its losses are
/// not in fgclip yet.
pub fn refuse_training(dir: &Path) -> Result<()> {
    if model_kind(dir)? == ModelKind::Fgclip2 {
        bail!(
            "{} is an FG-CLIP 2 model: it works in embed, detect and extract; training from FG-CLIP 2 (its own losses) is not in fgclip yet",
            dir.display()
        );
    }
    Ok(())
}

/// `config.json` of an FG-CLIP 2 folder, checked.
pub fn read_config(dir: &Path) -> Result<Fgclip2Config> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let config: Fgclip2Config = serde_json::from_str(&text)
        .with_context(|| format!("{}: not an FG-CLIP 2 config", path.display()))?;
    config
        .validate()
        .with_context(|| format!("in {}", path.display()))?;
    Ok(config)
}

/// The model of an FG-CLIP 2 folder on `device`. Every tensor of the files must be used.
pub fn load_fgclip2(dir: &Path, device: &Device) -> Result<Fgclip2Model> {
    let config = read_config(dir)?;
    let weights = SafetensorsWeights::open_dir(dir)?;
    let model = Fgclip2Model::load(&Weights::new(&weights, device), &config)
        .with_context(|| format!("loading weights from {}", weights.describe()))?;
    let unused = weights.unused();
    if !unused.is_empty() {
        let shown: Vec<&str> = unused.iter().take(10).map(String::as_str).collect();
        bail!(
            "{} has {} weight(s) an FG-CLIP 2 model does not have: {}{}",
            weights.describe(),
            unused.len(),
            shown.join(", "),
            if unused.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    Ok(model)
}

/// The folder's tokenizer, lower-casing as FG-CLIP 2's scripts do.
pub fn load_fgclip2_tokenizer(dir: &Path) -> Result<HfTokenizer> {
    super::hf_tokenizer::load_hf_tokenizer(dir, true)
}

/// `preprocessor_config.json`'s image-processor settings (the processor's defaults where
/// it is absent or silent).
pub fn read_image_processor(dir: &Path) -> Result<NaflexConfig> {
    let path = dir.join("preprocessor_config.json");
    let mut cfg = NaflexConfig::default();
    if !path.is_file() {
        return Ok(cfg);
    }
    let json = crate::io::read_json(&path)?;
    let usize_of = |key: &str| -> Result<Option<usize>> {
        match json.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => Ok(Some(n as usize)),
                _ => bail!("{}: `{key}` must be a positive integer", path.display()),
            },
        }
    };
    let triple = |key: &str| -> Result<Option<[f32; 3]>> {
        match json.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(n)) => Ok(n.as_f64().map(|x| [x as f32; 3])),
            Some(v) => {
                let values: Option<Vec<f32>> = v.as_array().map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_f64().map(|x| x as f32))
                        .collect()
                });
                match values.as_deref() {
                    Some(&[a, b, c]) => Ok(Some([a, b, c])),
                    _ => bail!(
                        "{}: `{key}` must be a number or three numbers",
                        path.display()
                    ),
                }
            }
        }
    };
    // What fgclip's processor does: Pillow's bilinear resize (`resample` 2), rescale by
    // 1/255, normalise. Another setting would silently give other pixels: refuse it.
    if json
        .get("resample")
        .and_then(|v| v.as_u64())
        .is_some_and(|r| r != 2)
    {
        bail!(
            "{}: `resample` {} is not supported (FG-CLIP 2's processor uses bilinear, 2)",
            path.display(),
            json["resample"]
        );
    }
    for key in ["do_resize", "do_rescale", "do_normalize"] {
        if json.get(key).and_then(|v| v.as_bool()) == Some(false) {
            bail!("{}: `{key}: false` is not supported", path.display());
        }
    }
    if let Some(f) = json.get("rescale_factor").and_then(|v| v.as_f64())
        && (f - 1.0 / 255.0).abs() > 1e-12
    {
        bail!(
            "{}: `rescale_factor` {f} is not supported (1/255)",
            path.display()
        );
    }
    if let Some(p) = usize_of("patch_size")? {
        cfg.patch_size = p;
    }
    if let Some(m) = usize_of("max_num_patches")? {
        cfg.max_num_patches = m;
    }
    if let Some(d) = json.get("dynamic_max_patches").and_then(|v| v.as_bool()) {
        cfg.dynamic_max_patches = d;
    }
    if let Some(m) = triple("image_mean")? {
        cfg.mean = m;
    }
    if let Some(s) = triple("image_std")? {
        cfg.std = s;
    }
    if cfg.std.contains(&0.0) {
        bail!("{}: `image_std` must not be 0", path.display());
    }
    Ok(cfg)
}
