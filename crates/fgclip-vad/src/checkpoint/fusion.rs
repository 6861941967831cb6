//! A model's temporal transformer on disk: `fgclip.json`'s `fusion` and `frames`, and its
//! weights (an export's `fusion.safetensors`, or a checkpoint's `model.safetensors`).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use fgclip_core::Weights;
use fgclip_core::fusion::{FusionConfig, TemporalFusion};

use super::hf::{FGCLIP_EXTRA, SafetensorsWeights};

/// An export's temporal transformer weights (a training checkpoint keeps them in its
/// `model.safetensors`).
pub const FUSION_FILE: &str = "fusion.safetensors";

/// Every key of the temporal transformer, for `hf::reject_unused`'s allowed list.
pub(super) const FUSION_KEYS: &str = "temporal_fusion.*";

/// A model's temporal transformer as `fgclip.json` describes it (`fusion`, `frames`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusionInfo {
    pub config: FusionConfig,
    /// Frames per clip it was trained on: `detect`'s default frames per snippet.
    pub frames: Option<usize>,
}

/// `DIR/fgclip.json`'s `fusion` (absent: the model pools frames by their mean).
pub fn read_fusion(dir: &Path) -> Result<Option<FusionInfo>> {
    let path = dir.join(FGCLIP_EXTRA);
    if !path.is_file() {
        return Ok(None);
    }
    let json = crate::io::read_json(&path)?;
    let Some(fusion) = json.get("fusion").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let config: FusionConfig = serde_json::from_value(fusion.clone()).with_context(|| {
        format!(
            "{}: `fusion` is not a temporal transformer config",
            path.display()
        )
    })?;
    config
        .validate()
        .with_context(|| format!("in {}", path.display()))?;
    let frames = match json.get("frames") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(f) if f >= 1 => Some(f as usize),
            _ => bail!("{}: `frames` must be a positive integer", path.display()),
        },
    };
    Ok(Some(FusionInfo { config, frames }))
}

/// The temporal transformer of an HF folder (an export's `fusion.safetensors`, or a
/// checkpoint's `model.safetensors`), if `fgclip.json` declares one.
pub fn load_fusion(dir: &Path, device: &Device) -> Result<Option<(TemporalFusion, FusionInfo)>> {
    let Some(info) = read_fusion(dir)? else {
        return Ok(None);
    };
    let file = dir.join(FUSION_FILE);
    let weights = if file.is_file() {
        SafetensorsWeights::open_files(&[file])?
    } else {
        SafetensorsWeights::open_dir(dir)?
    };
    let fusion = fusion_from(&weights, info.config, device)?;
    Ok(Some((fusion, info)))
}

/// The temporal transformer a folder's `fgclip.json` describes, from `weights`; none
/// without one.
pub(crate) fn fusion_of(
    dir: &Path,
    weights: &SafetensorsWeights,
    device: &Device,
) -> Result<Option<TemporalFusion>> {
    read_fusion(dir)?
        .map(|info| fusion_from(weights, info.config, device))
        .transpose()
}

fn fusion_from(
    weights: &SafetensorsWeights,
    config: FusionConfig,
    device: &Device,
) -> Result<TemporalFusion> {
    TemporalFusion::load(&Weights::new(weights, device), config).with_context(|| {
        format!(
            "loading the temporal transformer from {}",
            weights.describe()
        )
    })
}
