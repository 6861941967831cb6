//! `fgclip check-loss`: the FG-CLIP loss (and gradients) of one batch file in the layout
//! of DESIGN.md §3 and §7 (long captions and hard negatives optional), checked against the
//! model first; for an FG-CLIP 2 model, FG-CLIP 2's loss on its image layout.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use fgclip_core::fgclip::{FgClip, HardNegatives, LongCaptions, LossWeights, VideoBatch};
use fgclip_core::fgclip2::{
    Fgclip2Config, Fgclip2LossWeights, Fgclip2Video, Fgclip2VideoBatch, NaflexPixels,
};
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

fn f32s(path: &Path, name: &str, arr: Array, rank: usize) -> Result<(Vec<usize>, Vec<f32>)> {
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
}

fn ints(path: &Path, name: &str, arr: Array, rank: usize) -> Result<(Vec<usize>, Vec<i64>)> {
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
}

fn take(a: &mut Arrays, path: &Path, name: &str) -> Result<Array> {
    a.remove(name)
        .with_context(|| format!("{}: no tensor `{name}`", path.display()))
}

type Arrays = std::collections::BTreeMap<String, Array>;

/// What a batch file holds besides the pixels: captions, regions and the optional long
/// captions and hard negatives, checked against B, T and the model's text sizes.
struct Captions {
    global_input_ids: Tensor<2, Int>,
    region_input_ids: Tensor<3, Int>,
    boxes: Vec<f32>,
    bbox_mask: Vec<u8>,
    global_long: Option<LongCaptions>,
    hard_negatives: Option<HardNegatives>,
}

/// The model's text sizes a batch file is checked against.
struct TextSizes {
    vocab: usize,
    positions: usize,
    long_positions: usize,
}

fn read_captions(
    a: &mut Arrays,
    path: &Path,
    (b, t): (usize, usize),
    sizes: &TextSizes,
    device: &Device,
) -> Result<Captions> {
    let (gs, global) = ints(
        path,
        "global_input_ids",
        take(a, path, "global_input_ids")?,
        2,
    )?;
    let (rs, region) = ints(
        path,
        "region_input_ids",
        take(a, path, "region_input_ids")?,
        3,
    )?;
    let (bs, boxes) = f32s(path, "boxes", take(a, path, "boxes")?, 4)?;
    let (ms, mask) = ints(path, "bbox_mask", take(a, path, "bbox_mask")?, 3)?;
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
    let n = rs[1];
    let TextSizes {
        vocab,
        positions,
        long_positions,
    } = *sizes;
    if gs[1] == 0 || gs[1] > positions {
        bail!(
            "{}: `global_input_ids` has shape {gs:?}: {} token positions, the model has 1 to {positions}",
            path.display(),
            gs[1]
        );
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
                "{}: `{name}` has shape {got:?}, expected {want:?} (B {b}, T {t}, N {n})",
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
    check_vocab("global_input_ids", &global)?;
    check_vocab("region_input_ids", &region)?;
    let global_long = match long {
        Some((ids, m)) => {
            let (ls, ids) = ints(path, "global_long_input_ids", ids, 2)?;
            let (lm, m) = ints(path, "global_long_mask", m, 1)?;
            if ls[0] != b || ls[1] == 0 || ls[1] > long_positions || lm != [b] {
                bail!(
                    "{}: `global_long_input_ids` {ls:?} / `global_long_mask` {lm:?}: expected [{b}, 1 to {long_positions}] and [{b}]",
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
            let (hs, ids) = ints(path, "hard_input_ids", ids, 4)?;
            let (hm, m) = ints(path, "hard_mask", m, 3)?;
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
    Ok(Captions {
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

/// Reads a batch file in the layout of DESIGN.md §3 onto `device`, checking every
/// tensor's presence, dtype and shape against the others and against the model's
/// `config` (image size, channels, token positions, vocabulary).
pub fn read_batch(
    path: &Path,
    config: &fgclip_core::ClipConfig,
    device: &Device,
) -> Result<VideoBatch> {
    let mut a = read_arrays(path)?;
    let (ps, pixels) = f32s(path, "pixel_values", take(&mut a, path, "pixel_values")?, 5)?;
    let (b, t) = (ps[0], ps[1]);
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
    let sizes = TextSizes {
        vocab: config.text_config.vocab_size,
        positions: config.text_config.max_position_embeddings,
        long_positions: LONG_CONTEXT,
    };
    let x = read_captions(&mut a, path, (b, t), &sizes, device)?;
    Ok(VideoBatch {
        pixel_values: Tensor::from_data(
            TensorData::new(pixels, [ps[0], ps[1], ps[2], ps[3], ps[4]]),
            device,
        ),
        global_input_ids: x.global_input_ids,
        region_input_ids: x.region_input_ids,
        boxes: x.boxes,
        bbox_mask: x.bbox_mask,
        global_long: x.global_long,
        hard_negatives: x.hard_negatives,
    })
}

/// Reads an FG-CLIP 2 batch file: `pixel_values` (B·T, P, 3·p²) and `spatial_shapes`
/// (B·T, 2) as FG-CLIP 2's image processor lays frames out (clip-major; T from `boxes`),
/// the captions and regions as [`read_batch`] reads them.
pub fn read_fgclip2_batch(
    path: &Path,
    config: &Fgclip2Config,
    device: &Device,
) -> Result<Fgclip2VideoBatch> {
    let mut a = read_arrays(path)?;
    let (ps, pixels) = f32s(path, "pixel_values", take(&mut a, path, "pixel_values")?, 3)?;
    let (ss, shapes) = ints(
        path,
        "spatial_shapes",
        take(&mut a, path, "spatial_shapes")?,
        2,
    )?;
    a.remove("pixel_attention_mask"); // implied by spatial_shapes
    let b = match a.get("global_input_ids").map(Array::shape) {
        Some(s) if s.len() == 2 => s[0],
        _ => bail!("{}: no rank-2 tensor `global_input_ids`", path.display()),
    };
    let t = match a.get("boxes").map(Array::shape) {
        Some(s) if s.len() == 4 => s[1],
        _ => bail!("{}: no rank-4 tensor `boxes`", path.display()),
    };
    let dim = config.vision_config.patch_dim();
    let (p, rows) = (ps[1], ps[0]);
    if b == 0 || t == 0 || rows != b * t || ps[2] != dim || ss != [rows, 2] {
        bail!(
            "{}: `pixel_values` {ps:?} / `spatial_shapes` {ss:?}: expected [B·T = {}, P, {dim}] and [B·T, 2]",
            path.display(),
            b * t
        );
    }
    let spatial_shapes: Vec<(usize, usize)> = shapes
        .chunks(2)
        .map(|s| (s[0].max(0) as usize, s[1].max(0) as usize))
        .collect();
    if let Some(i) = spatial_shapes
        .iter()
        .position(|&(r, c)| r == 0 || c == 0 || r * c > p)
    {
        bail!(
            "{}: `spatial_shapes` row {i} is {:?}: a grid of at least 1×1 and at most {p} patches",
            path.display(),
            spatial_shapes[i]
        );
    }
    let t_cfg = &config.text_config;
    let sizes = TextSizes {
        vocab: t_cfg.vocab_size,
        positions: t_cfg.max_position_embeddings,
        long_positions: t_cfg.longtext_len,
    };
    let x = read_captions(&mut a, path, (b, t), &sizes, device)?;
    Ok(Fgclip2VideoBatch {
        pixels: NaflexPixels {
            pixel_values: Tensor::from_data(TensorData::new(pixels, [rows, p, dim]), device),
            spatial_shapes,
        },
        frames: t,
        global_input_ids: x.global_input_ids,
        region_input_ids: x.region_input_ids,
        boxes: x.boxes,
        bbox_mask: x.bbox_mask,
        global_long: x.global_long,
        hard_negatives: x.hard_negatives,
    })
}

/// What `check-loss` prints for an FG-CLIP 2 model: every term by name, the counts, and
/// the cross-modal rank threshold the forward leaves.
#[derive(Debug, Serialize)]
pub struct Fgclip2LossReport {
    pub loss: f64,
    pub loss_global: f64,
    pub loss_global_long: f64,
    pub loss_region: f64,
    pub loss_region_text: f64,
    pub loss_hard_negative: f64,
    pub num_regions: usize,
    pub num_long: usize,
    pub num_hard_regions: usize,
    /// How many captions each row of the intra-text term sums (min(10, K − 1)).
    pub region_text_top_k: usize,
    pub threshold: f64,
}

/// FG-CLIP 2's loss of one batch from the threshold `threshold` and, with `grads_out`, the
/// gradient of every parameter by HF name (FG-CLIP 2's layout) written there.
pub fn check_loss_fgclip2(
    model: &Fgclip2Video,
    batch: &Fgclip2VideoBatch,
    weights: &Fgclip2LossWeights,
    threshold: f64,
    grads_out: Option<&Path>,
) -> Result<Fgclip2LossReport> {
    let terms = model.loss(batch, weights, threshold);
    if let Some(out) = grads_out {
        let grads = terms.loss.backward();
        let mut values = std::collections::BTreeMap::new();
        for p in model.named_params() {
            let (held, g) = match p.param {
                ParamRef::D1(t) => (t.val().dims().to_vec(), t.val().grad(&grads).map(host_f32)),
                ParamRef::D2(t) => (t.val().dims().to_vec(), t.val().grad(&grads).map(host_f32)),
            };
            // A parameter outside the graph (the dense head's probe) reports zeros.
            let g = g
                .transpose()?
                .unwrap_or_else(|| vec![0.0; held.iter().product()]);
            values.insert(
                p.name,
                fgclip_core::names::to_hf_layout(p.layout, &held, &g),
            );
        }
        fgclip_core::fgclip2::names::pack_in_proj(&mut values);
        let arrays: Arrays = values
            .into_iter()
            .map(|(k, (shape, data))| (k, Array::F32 { shape, data }))
            .collect();
        write_arrays(out, &arrays)?;
    }
    Ok(Fgclip2LossReport {
        loss: scalar(terms.loss)?,
        loss_global: scalar(terms.loss_global)?,
        loss_global_long: scalar(terms.loss_global_long)?,
        loss_region: scalar(terms.loss_region)?,
        loss_region_text: scalar(terms.loss_region_text)?,
        loss_hard_negative: scalar(terms.loss_hard_negative)?,
        num_regions: terms.num_regions,
        num_long: terms.num_long,
        num_hard_regions: terms.num_hard_regions,
        region_text_top_k: terms.region_text_top_k,
        threshold: terms.threshold,
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
