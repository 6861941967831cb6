//! Training: the FG-CLIP loss on batches, and `fgclip check-loss` for one batch file.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use fgclip_core::fgclip::{FgClip, VideoBatch};
use fgclip_core::names::{ParamRef, to_hf_layout};
use serde::Serialize;

use crate::checkpoint::safetensors_io::{Array, read_arrays, write_arrays};
use crate::inference::to_f32;

/// What `check-loss` prints.
#[derive(Debug, Serialize)]
pub struct LossReport {
    pub loss: f64,
    pub loss_global: f64,
    pub loss_region: f64,
    pub num_regions: usize,
}

/// Reads a batch file in the layout of DESIGN.md §3 onto `device`, checking every
/// tensor's presence, dtype and shape against the others.
pub fn read_batch(path: &Path, device: &Device) -> Result<VideoBatch> {
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
    let (b, t, n) = (ps[0], ps[1], rs[1]);
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
    })
}

fn scalar(t: Tensor<1>) -> Result<f64> {
    Ok(to_f32(t.into_data())?.first().copied().unwrap_or(f32::NAN) as f64)
}

/// The loss of one batch and, with `grads_out`, the gradient of every parameter by HF
/// name written there.
pub fn check_loss(
    model: &FgClip,
    batch: &VideoBatch,
    region_weight: f64,
    grads_out: Option<&Path>,
) -> Result<LossReport> {
    let terms = model.loss(batch, region_weight);
    if let Some(out) = grads_out {
        let grads = terms.loss.backward();
        let mut arrays = BTreeMap::new();
        for p in model.named_params() {
            let (held, values) = match p.param {
                ParamRef::D1(t) => {
                    let g = t.val().grad(&grads);
                    (
                        t.val().dims().to_vec(),
                        g.map(|g| to_f32(g.into_data())).transpose()?,
                    )
                }
                ParamRef::D2(t) => {
                    let g = t.val().grad(&grads);
                    (
                        t.val().dims().to_vec(),
                        g.map(|g| to_f32(g.into_data())).transpose()?,
                    )
                }
            };
            let n: usize = held.iter().product();
            let values = values.unwrap_or_else(|| vec![0.0; n]);
            let (shape, data) = to_hf_layout(p.layout, &held, &values);
            arrays.insert(p.name, Array::F32 { shape, data });
        }
        write_arrays(out, &arrays)?;
    }
    Ok(LossReport {
        loss: scalar(terms.loss)?,
        loss_global: scalar(terms.loss_global)?,
        loss_region: scalar(terms.loss_region)?,
        num_regions: terms.num_regions,
    })
}
