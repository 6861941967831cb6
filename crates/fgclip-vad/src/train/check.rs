//! `fgclip check-loss`: the FG-CLIP loss (and gradients) of one batch file in the layout
//! of DESIGN.md §3 and §7 (long captions and hard negatives optional), checked against the
//! model first.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use fgclip_core::fgclip::{FgClip, HardNegatives, LongCaptions, LossWeights, VideoBatch};
use fgclip_core::names::ParamRef;
use fgclip_core::text::LONG_CONTEXT;
use serde::Serialize;

use crate::checkpoint::export::hf_arrays;
use crate::checkpoint::safetensors_io::{Array, read_arrays, write_arrays};
use crate::device::{host_f32, host_scalar as scalar};

/// What `check-loss` prints.
#[derive(Debug, Serialize)]
pub struct LossReport {
    pub loss: f64,
    pub loss_global: f64,
    pub loss_global_long: f64,
    pub loss_region: f64,
    pub loss_hard_negative: f64,
    pub num_regions: usize,
    /// Clips whose long caption entered the loss.
    pub num_long: usize,
    /// Regions of the region loss with at least one hard negative.
    pub num_hard_regions: usize,
}

/// Reads a batch file in the layout of DESIGN.md §3 onto `device`, checking every
/// tensor's presence, dtype and shape against the others and against the model's
/// `config` (image size, channels, token positions, vocabulary).
pub fn read_batch(
    path: &Path,
    config: &fgclip_core::ClipConfig,
    device: &Device,
) -> Result<VideoBatch> {
    let mut a = read_arrays(path)?;
    let mut take = |name: &str| {
        a.remove(name)
            .with_context(|| format!("{}: no tensor `{name}`", path.display()))
    };
    let f32s = |name: &str, arr: Array, rank: usize| -> Result<(Vec<usize>, Vec<f32>)> {
        match arr {
            Array::F32 { shape, data } if shape.len() == rank => {
                if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                    bail!(
                        "{}: `{name}` has a non-finite value at flat index {i}",
                        path.display()
                    );
                }
                Ok((shape, data))
            }
            other => bail!(
                "{}: `{name}` must be a rank-{rank} float tensor, got shape {:?}",
                path.display(),
                other.shape()
            ),
        }
    };
    let ints = |name: &str, arr: Array, rank: usize| -> Result<(Vec<usize>, Vec<i64>)> {
        match arr {
            Array::I64 { shape, data } if shape.len() == rank => Ok((shape, data)),
            Array::U8 { shape, data } if shape.len() == rank => {
                Ok((shape, data.into_iter().map(i64::from).collect()))
            }
            other => bail!(
                "{}: `{name}` must be a rank-{rank} integer tensor, got shape {:?}",
                path.display(),
                other.shape()
            ),
        }
    };
    let (ps, pixels) = f32s("pixel_values", take("pixel_values")?, 5)?;
    let (gs, global) = ints("global_input_ids", take("global_input_ids")?, 2)?;
    let (rs, region) = ints("region_input_ids", take("region_input_ids")?, 3)?;
    let (bs, boxes) = f32s("boxes", take("boxes")?, 4)?;
    let (ms, mask) = ints("bbox_mask", take("bbox_mask")?, 3)?;
    // Optional (DESIGN.md §7): long captions and hard negatives come in pairs.
    let mut pair = |ids: &str, mask: &str| -> Result<Option<(Array, Array)>> {
        match (a.remove(ids), a.remove(mask)) {
            (Some(i), Some(m)) => Ok(Some((i, m))),
            (None, None) => Ok(None),
            (Some(_), None) => bail!("{}: `{ids}` without `{mask}`", path.display()),
            (None, Some(_)) => bail!("{}: `{mask}` without `{ids}`", path.display()),
        }
    };
    let long = pair("global_long_input_ids", "global_long_mask")?;
    let hard = pair("hard_input_ids", "hard_mask")?;
    let (b, t, n) = (ps[0], ps[1], rs[1]);
    let (c, size) = (
        config.vision_config.num_channels,
        config.vision_config.image_size,
    );
    if b == 0 || t == 0 || ps[2..] != [c, size, size] {
        bail!(
            "{}: `pixel_values` has shape {ps:?}, the model expects [B ≥ 1, T ≥ 1, {c}, {size}, {size}]",
            path.display()
        );
    }
    let (vocab, positions) = (
        config.text_config.vocab_size,
        config.text_config.max_position_embeddings,
    );
    if gs[1] == 0 || gs[1] > positions {
        bail!(
            "{}: `global_input_ids` has shape {gs:?}: {} token positions, the model has 1 to {positions}",
            path.display(),
            gs[1]
        );
    }
    for (name, ids) in [("global_input_ids", &global), ("region_input_ids", &region)] {
        if let Some(&id) = ids.iter().find(|&&id| id < 0 || id as u64 >= vocab as u64) {
            bail!(
                "{}: `{name}` holds token id {id}, outside the model's vocabulary of {vocab}",
                path.display()
            );
        }
    }
    let expect = [
        ("global_input_ids", gs.clone(), vec![b, gs[1]]),
        ("region_input_ids", rs.clone(), vec![b, n, gs[1]]),
        ("boxes", bs, vec![b, t, n, 4]),
        ("bbox_mask", ms, vec![b, t, n]),
    ];
    for (name, got, want) in expect {
        if got != want {
            bail!(
                "{}: `{name}` has shape {got:?}, expected {want:?} from pixel_values {ps:?}",
                path.display()
            );
        }
    }
    let check_vocab = |name: &str, ids: &[i64]| -> Result<()> {
        if let Some(&id) = ids.iter().find(|&&id| id < 0 || id as u64 >= vocab as u64) {
            bail!(
                "{}: `{name}` holds token id {id}, outside the model's vocabulary of {vocab}",
                path.display()
            );
        }
        Ok(())
    };
    let global_long = match long {
        Some((ids, m)) => {
            let (ls, ids) = ints("global_long_input_ids", ids, 2)?;
            let (lm, m) = ints("global_long_mask", m, 1)?;
            if ls[0] != b || ls[1] == 0 || ls[1] > LONG_CONTEXT || lm != [b] {
                bail!(
                    "{}: `global_long_input_ids` {ls:?} / `global_long_mask` {lm:?}: expected [{b}, 1 to {LONG_CONTEXT}] and [{b}]",
                    path.display()
                );
            }
            check_vocab("global_long_input_ids", &ids)?;
            Some(LongCaptions {
                input_ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [b, ls[1]]), device),
                mask: m.into_iter().map(|v| u8::from(v != 0)).collect(),
            })
        }
        None => None,
    };
    let hard_negatives = match hard {
        Some((ids, m)) => {
            let (hs, ids) = ints("hard_input_ids", ids, 4)?;
            let (hm, m) = ints("hard_mask", m, 3)?;
            let h = hs[2];
            if hs != [b, n, h, gs[1]] || hm != [b, n, h] {
                bail!(
                    "{}: `hard_input_ids` {hs:?} / `hard_mask` {hm:?}: expected [{b}, {n}, H, {}] and [{b}, {n}, H] (the region captions' B, N and length)",
                    path.display(),
                    gs[1]
                );
            }
            check_vocab("hard_input_ids", &ids)?;
            Some(HardNegatives {
                input_ids: Tensor::<4, Int>::from_data(
                    TensorData::new(ids, [b, n, h, gs[1]]),
                    device,
                ),
                mask: m.into_iter().map(|v| u8::from(v != 0)).collect(),
            })
        }
        None => None,
    };
    if let Some(i) = boxes.iter().position(|v| !(0.0..=1.0).contains(v)) {
        bail!(
            "{}: `boxes` value {} at flat index {i} is outside [0, 1]",
            path.display(),
            boxes[i]
        );
    }
    Ok(VideoBatch {
        pixel_values: Tensor::from_data(
            TensorData::new(pixels, [ps[0], ps[1], ps[2], ps[3], ps[4]]),
            device,
        ),
        global_input_ids: Tensor::<2, Int>::from_data(TensorData::new(global, [b, gs[1]]), device),
        region_input_ids: Tensor::<3, Int>::from_data(
            TensorData::new(region, [b, n, gs[1]]),
            device,
        ),
        boxes,
        bbox_mask: mask.into_iter().map(|m| u8::from(m != 0)).collect(),
        global_long,
        hard_negatives,
    })
}

/// The loss of one batch and, with `grads_out`, the gradient of every parameter by HF
/// name written there.
pub fn check_loss(
    model: &FgClip,
    batch: &VideoBatch,
    weights: &LossWeights,
    grads_out: Option<&Path>,
) -> Result<LossReport> {
    let terms = model.loss(batch, weights);
    if let Some(out) = grads_out {
        let grads = terms.loss.backward();
        // A parameter outside the graph (none today) reports a zero gradient.
        let arrays = hf_arrays(model, false, |p| {
            let (g1, g2) = match p {
                ParamRef::D1(t) => (t.val().grad(&grads).map(host_f32), None),
                ParamRef::D2(t) => (None, t.val().grad(&grads).map(host_f32)),
            };
            g1.or(g2).transpose()
        })?;
        write_arrays(out, &arrays)?;
    }
    Ok(LossReport {
        loss: scalar(terms.loss)?,
        loss_global: scalar(terms.loss_global)?,
        loss_global_long: scalar(terms.loss_global_long)?,
        loss_region: scalar(terms.loss_region)?,
        loss_hard_negative: scalar(terms.loss_hard_negative)?,
        num_regions: terms.num_regions,
        num_long: terms.num_long,
        num_hard_regions: terms.num_hard_regions,
    })
}

// ---------------------------------------------------------------------------------------
// fgclip train
// ---------------------------------------------------------------------------------------
