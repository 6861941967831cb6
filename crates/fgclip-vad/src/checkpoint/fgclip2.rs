//! FG-CLIP 2 model folders as published (qihoo360 `fg-clip2-base`, `-large`, `-so400m`) and as
//! FG-CLIP 2's `save_pretrained` writes them: `config.json` with `model_type: "fgclip2"` and
//! its sub-configs, `model.safetensors` (or shards with `model.safetensors.index.json`;
//! float16 / bfloat16 converted to float32), `tokenizer.json` + `tokenizer_config.json`
//! (Gemma's tokenizer), `preprocessor_config.json` (the NaFlex image processor).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use fgclip_core::fgclip2::{Fgclip2Config, Fgclip2Model, Fgclip2Video, MODEL_TYPE};
use fgclip_core::{HfTokenizer, Weights};

use super::hf::SafetensorsWeights;
use super::safetensors_io::{Array, write_arrays};
use crate::data::naflex::NaflexConfig;
use crate::device::host_f32;
use crate::io::write_atomic;

pub use fgclip_core::ModelKind;

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
    // The two scales FG-CLIP 2's training script adds are in trained models; inference
    // does not use them.
    use fgclip_core::fgclip2::video::{HARD_NEGATIVE_SCALE_NAME, REGION_SCALE_NAME};
    let unused: Vec<String> = weights
        .unused()
        .into_iter()
        .filter(|n| n != REGION_SCALE_NAME && n != HARD_NEGATIVE_SCALE_NAME)
        .collect();
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

/// An FG-CLIP 2 folder as a model to train: the two scales FG-CLIP 2's training script
/// adds from the weights when they are there (a run's own checkpoint), else at 4.6052 as
/// the script starts them (or always, with `reset_scales`); its temporal transformer when the
/// folder has one.
pub fn load_fgclip2_video(dir: &Path, device: &Device, reset_scales: bool) -> Result<Fgclip2Video> {
    use fgclip_core::fgclip::ScaleInit;
    use fgclip_core::fgclip2::video::{HARD_NEGATIVE_SCALE_NAME, REGION_SCALE_NAME, SCALE_INIT};
    let config = read_config(dir)?;
    let weights = SafetensorsWeights::open_dir_with_fusion(dir)?;
    let init = |name: &str| {
        if !reset_scales && weights.names().any(|n| n == name) {
            ScaleInit::FromWeights
        } else {
            ScaleInit::Value(SCALE_INIT)
        }
    };
    let (region, hard) = (init(REGION_SCALE_NAME), init(HARD_NEGATIVE_SCALE_NAME));
    let fusion = super::fusion::fusion_of(dir, &weights, device)?;
    let model = Fgclip2Video::load(&Weights::new(&weights, device), &config, region, hard)
        .with_context(|| format!("loading weights from {}", weights.describe()))?
        .with_fusion(fusion);
    let unused: Vec<String> = weights
        .unused()
        .into_iter()
        .filter(|n| !(reset_scales && (n == REGION_SCALE_NAME || n == HARD_NEGATIVE_SCALE_NAME)))
        .collect();
    if let Some(first) = unused.first() {
        bail!(
            "{} has {} weight(s) an FG-CLIP 2 model does not have, e.g. {first}",
            weights.describe(),
            unused.len()
        );
    }
    Ok(model)
}

/// The small Gemma-format tokenizer built into fgclip (`assets/fgclip2-tokenizer`, made by
/// tools/make_fgclip2_fixture.py: 616 entries, byte fallback, Chinese and English): what
/// `--tokenizer builtin` and the FG-CLIP 2 presets read.
pub const BUILTIN_TOKENIZER: [(&str, &str); 2] = [
    (
        "tokenizer.json",
        include_str!("../../../../assets/fgclip2-tokenizer/tokenizer.json"),
    ),
    (
        "tokenizer_config.json",
        include_str!("../../../../assets/fgclip2-tokenizer/tokenizer_config.json"),
    ),
];

/// The built-in small tokenizer ([`BUILTIN_TOKENIZER`]), lower-casing.
pub fn builtin_tokenizer() -> Result<HfTokenizer> {
    let [(_, json), (name, config)] = BUILTIN_TOKENIZER;
    let config: serde_json::Value = serde_json::from_str(config)?;
    let options = super::hf_tokenizer::options_from_config(&config, Path::new(name), true)?;
    Ok(HfTokenizer::from_json(json, options)?)
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

/// The weights of an FG-CLIP 2 model being trained, by HF name in FG-CLIP 2's layout (the
/// pooling heads' `in_proj` packed again), the two added scales included (shape `[]`, as
/// FG-CLIP 2's training script holds them). `export`: without the temporal transformer,
/// which an export keeps in its own file.
pub fn fgclip2_arrays(model: &Fgclip2Video, export: bool) -> Result<BTreeMap<String, Array>> {
    use fgclip_core::names::{ParamRef, to_hf_layout};
    let mut values = BTreeMap::new();
    for p in model.named_params() {
        if export
            && p.name
                .starts_with(&format!("{}.", fgclip_core::fusion::FUSION_PREFIX))
        {
            continue;
        }
        let (held, data) = match p.param {
            ParamRef::D1(t) => (t.val().dims().to_vec(), host_f32(t.val())?),
            ParamRef::D2(t) => (t.val().dims().to_vec(), host_f32(t.val())?),
        };
        values.insert(p.name, to_hf_layout(p.layout, &held, &data));
    }
    fgclip_core::fgclip2::names::pack_in_proj(&mut values);
    Ok(values
        .into_iter()
        .map(|(name, (shape, data))| (name, Array::F32 { shape, data }))
        .collect())
}

/// `config.json` in FG-CLIP 2's format (`FG_CLIP2_Model`, `model_type: "fgclip2"`).
pub fn config_json(config: &Fgclip2Config) -> Result<String> {
    let mut v = serde_json::to_value(config)?;
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "architectures".into(),
            serde_json::json!(["FG_CLIP2_Model"]),
        );
        o.insert("model_type".into(), serde_json::json!(MODEL_TYPE));
        for (key, kind) in [
            ("text_config", "fgclip2_text_model"),
            ("vision_config", "fgclip2_vision_model"),
        ] {
            if let Some(t) = o.get_mut(key).and_then(|t| t.as_object_mut()) {
                t.insert("model_type".into(), serde_json::json!(kind));
            }
        }
    }
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

/// `preprocessor_config.json` of FG-CLIP 2's image processor with `cfg`'s settings.
pub fn image_processor_json(cfg: &NaflexConfig) -> Result<String> {
    let v = serde_json::json!({
        "image_processor_type": "Fgclip2ImageProcessor",
        "do_resize": true,
        "resample": 2,
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": cfg.mean,
        "image_std": cfg.std,
        "patch_size": cfg.patch_size,
        "max_num_patches": cfg.max_num_patches,
        "dynamic_max_patches": cfg.dynamic_max_patches,
    });
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

/// Writes an FG-CLIP 2 folder FG-CLIP 2's own code loads (`FG_CLIP2_Model.from_pretrained`):
/// `config.json`, `model.safetensors` under its names (with the two added scales, as its
/// training script's models have them), the tokenizer files and `preprocessor_config.json`
/// (the source folder's, else the processor's defaults), `fusion.safetensors` with a
/// temporal transformer, and `fgclip.json` (the run's step and loss weights).
pub fn export_fgclip2(
    dir: &Path,
    model: &Fgclip2Video,
    tokenizer_src: &Path,
    trained: Option<&super::export::TrainedBy>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_arrays(
        &dir.join("model.safetensors"),
        &fgclip2_arrays(model, true)?,
    )?;
    super::export::write_fusion(dir, model.fusion.as_ref())?;
    write_atomic(
        &dir.join("config.json"),
        config_json(model.model.config())?.as_bytes(),
    )?;
    if tokenizer_src.as_os_str() == "builtin" {
        for (name, text) in BUILTIN_TOKENIZER {
            write_atomic(&dir.join(name), text.as_bytes())?;
        }
    } else {
        super::export::copy_tokenizer(tokenizer_src, dir)?;
    }
    let processor = if tokenizer_src.is_dir() {
        read_image_processor(tokenizer_src)?
    } else {
        NaflexConfig::default()
    };
    write_atomic(
        &dir.join("preprocessor_config.json"),
        image_processor_json(&processor)?.as_bytes(),
    )?;
    let mut extra = serde_json::json!({
        "about": "fgclip: how this FG-CLIP 2 model was trained (its weights and config are FG-CLIP 2's own format)",
    });
    if let Some(o) = extra.as_object_mut() {
        if let Some(f) = &model.fusion {
            o.insert("fusion".into(), serde_json::to_value(f.config())?);
        }
        if let Some(t) = trained {
            o.insert("step".into(), serde_json::json!(t.step));
            let w = t.weights;
            o.insert("region_weight".into(), serde_json::json!(w.region));
            o.insert(
                "region_text_weight".into(),
                serde_json::json!(w.region_text),
            );
            o.insert(
                "hard_negative_weight".into(),
                serde_json::json!(w.hard_negative),
            );
            if model.fusion.is_some() {
                o.insert("frames".into(), serde_json::json!(t.frames));
            }
        }
    }
    write_atomic(
        &dir.join(super::hf::FGCLIP_EXTRA),
        (serde_json::to_string_pretty(&extra)? + "\n").as_bytes(),
    )
}
