//! `fgclip check-roi`: ROI Align's outputs and input gradients for the cases of a
//! torchvision fixture (`tests/fixtures/roi_align`), on any device, written for an outside
//! comparison (`tools/gpu/compare.py roi`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use fgclip_core::roi::{RoiAlignConfig, roi_align};

use crate::checkpoint::safetensors_io::{Array, read_arrays};
use crate::device::host_f32;

/// One case of `cases.json`.
#[derive(serde::Deserialize)]
struct Case {
    name: String,
    output_size: usize,
    sampling_ratio: i32,
    aligned: bool,
    spatial_scale: f64,
}

#[derive(serde::Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

fn f32_array<'a>(
    arrays: &'a BTreeMap<String, Array>,
    name: &str,
    file: &Path,
) -> Result<(&'a [usize], &'a [f32])> {
    match arrays.get(name) {
        Some(Array::F32 { shape, data }) => Ok((shape, data)),
        Some(_) => bail!("{}: `{name}` is not a float array", file.display()),
        None => bail!("{}: no array `{name}`", file.display()),
    }
}

/// For every case: `<name>_output` and `<name>_input_grad` (the gradient of
/// `sum(output · <name>_upstream_grad)`), computed on `device`.
pub fn roi_cases(dir: &Path, device: &Device) -> Result<BTreeMap<String, Array>> {
    let file = dir.join("cases.safetensors");
    let arrays = read_arrays(&file)?;
    let json = dir.join("cases.json");
    let text =
        std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    let cases: Cases = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a case list", json.display()))?;
    let (shape, input) = f32_array(&arrays, "input", &file)?;
    let [n, c, h, w] = <[usize; 4]>::try_from(shape).map_err(|_| {
        anyhow::anyhow!(
            "{}: `input` must be (N, C, H, W), is {shape:?}",
            file.display()
        )
    })?;
    let (_, boxes) = f32_array(&arrays, "boxes_normalized", &file)?;
    let batch_index: Vec<usize> = match arrays.get("batch_index") {
        Some(Array::I64 { data, .. }) => data.iter().map(|&i| i.max(0) as usize).collect(),
        _ => bail!("{}: no integer array `batch_index`", file.display()),
    };
    if boxes.len() != batch_index.len() * 4 || batch_index.iter().any(|&i| i >= n) {
        bail!(
            "{}: boxes and batch_index do not match the input",
            file.display()
        );
    }
    // The fixture's boxes are normalised; ROI Align takes feature-map pixels (× W).
    // In float32, as FG-CLIP computes box × g.
    let rois: Vec<[f32; 4]> = boxes
        .chunks(4)
        .map(|b| {
            [
                b[0] * w as f32,
                b[1] * h as f32,
                b[2] * w as f32,
                b[3] * h as f32,
            ]
        })
        .collect();
    let r = rois.len();
    let device = device.clone().autodiff();
    let mut out = BTreeMap::new();
    for case in &cases.cases {
        let o = case.output_size;
        let cfg = RoiAlignConfig {
            output_size: (o, o),
            spatial_scale: case.spatial_scale,
            sampling_ratio: case.sampling_ratio,
            aligned: case.aligned,
        };
        let x = Tensor::<4>::from_data(TensorData::new(input.to_vec(), [n, c, h, w]), &device)
            .require_grad();
        let y = roi_align(x.clone(), &rois, &batch_index, &cfg);
        let (_, up) = f32_array(&arrays, &format!("{}_upstream_grad", case.name), &file)?;
        if up.len() != r * c * o * o {
            bail!(
                "{}: `{}_upstream_grad` has the wrong size",
                file.display(),
                case.name
            );
        }
        let up = Tensor::<4>::from_data(TensorData::new(up.to_vec(), [r, c, o, o]), &device);
        let grads = (y.clone() * up).sum().backward();
        let g = x
            .grad(&grads)
            .context("ROI Align produced no input gradient")?;
        out.insert(
            format!("{}_output", case.name),
            Array::F32 {
                shape: vec![r, c, o, o],
                data: host_f32(y)?,
            },
        );
        out.insert(
            format!("{}_input_grad", case.name),
            Array::F32 {
                shape: vec![n, c, h, w],
                data: host_f32(g)?,
            },
        );
    }
    Ok(out)
}
