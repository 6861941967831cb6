//! What `Model`'s image methods read and compute: numpy frames, pixels or `preprocess`'s
//! dict checked and turned into the model's inputs, and the towers run on them (with the
//! GIL released by the caller).

use burn::tensor::{Device, Tensor, TensorData};
use fgclip_core::ClipModel;
use fgclip_vad::data::naflex::{NaflexConfig, preprocess as naflex_preprocess};
use fgclip_vad::data::video::RgbFrame;
use fgclip_vad::inference::embed_images;
use fgclip_vad::inference::fgclip2::{NaflexFile, embed_naflex};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{FgclipError, to_py, value_error};
use crate::model::{Inner, Model};

/// uint8 frames (N, H, W, 3), C-contiguous, as RGB frames.
pub(crate) fn frames_from(array: &PyReadonlyArrayDyn<'_, u8>) -> PyResult<Vec<RgbFrame>> {
    let shape = array.shape().to_vec();
    if shape.len() != 4 || shape[3] != 3 || shape[1] == 0 || shape[2] == 0 {
        return Err(value_error(format!(
            "frames must be uint8 (N, H, W, 3) RGB; got shape {shape:?}"
        )));
    }
    let data = array
        .as_slice()
        .map_err(|_| value_error("frames must be C-contiguous (np.ascontiguousarray(frames))"))?;
    let per = shape[1] * shape[2] * 3;
    Ok(data
        .chunks_exact(per)
        .enumerate()
        .map(|(i, c)| RgbFrame {
            index: i as u64,
            width: shape[2] as u32,
            height: shape[1] as u32,
            data: c.to_vec(),
        })
        .collect())
}

/// An owned `Vec` as a numpy array of `shape`: the one copy is none (numpy takes the Vec).
pub(crate) fn to_numpy<'py, T: numpy::Element>(
    py: Python<'py>,
    data: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, data)
        .reshape(shape.to_vec())?
        .into_any())
}

/// What `embed_images` and `dense` read: uint8 frames, or (CLIP) float32 pixels
/// (N, 3, S, S) as `preprocess` returns them, or (FG-CLIP 2) `preprocess`'s dict.
pub(crate) enum Images {
    Pixels { values: Vec<f32>, n: usize },
    Naflex(NaflexFile),
}

/// L2-normalised pooled embeddings of CLIP pixels (N, 3, S, S), `batch_size` at a time.
pub(crate) fn clip_embeddings(
    model: &ClipModel,
    values: &[f32],
    n: usize,
    batch_size: usize,
    device: &Device,
) -> PyResult<Vec<f32>> {
    let s = model.config().vision_config.image_size;
    let mut embeds = Vec::with_capacity(n * model.config().projection_dim);
    for start in (0..n).step_by(batch_size.max(1)) {
        let b = batch_size.max(1).min(n - start);
        let chunk = values[start * 3 * s * s..(start + b) * 3 * s * s].to_vec();
        let x = Tensor::<4>::from_data(TensorData::new(chunk, [b, 3, s, s]), device);
        let out = model.encode_image(x, false);
        embeds.extend(
            fgclip_vad::device::host_f32(fgclip_core::model::normalize(out.embeds))
                .map_err(to_py)?,
        );
    }
    Ok(embeds)
}

pub(crate) enum DenseOut {
    Grid(Vec<f32>),
    /// (data, h, w) per image.
    PerImage(Vec<(Vec<f32>, usize, usize)>),
}

pub(crate) fn naflex_file(frames: &[RgbFrame], processor: &NaflexConfig) -> PyResult<NaflexFile> {
    let views: Vec<(&[u8], usize, usize)> = frames
        .iter()
        .map(|f| (f.data.as_slice(), f.width as usize, f.height as usize))
        .collect();
    let images = naflex_preprocess(&views, processor).map_err(to_py)?;
    let budget = images
        .first()
        .map_or(processor.max_num_patches, |i| i.max_num_patches);
    let mut pixel_values = Vec::new();
    let mut spatial_shapes = Vec::new();
    for img in images {
        if img.max_num_patches != budget {
            return Err(value_error(
                "these frames get different patch budgets (dynamic budgets): pass frames of one size, or load with max_num_patches",
            ));
        }
        spatial_shapes.push(img.spatial_shape);
        pixel_values.extend(img.pixel_values);
    }
    Ok(NaflexFile {
        n: spatial_shapes.len(),
        budget,
        pixel_values,
        spatial_shapes,
    })
}

impl Model {
    pub(crate) fn images(&self, images: &Bound<'_, PyAny>) -> PyResult<Images> {
        if let Ok(frames) = images.extract::<PyReadonlyArrayDyn<'_, u8>>() {
            let frames = frames_from(&frames)?;
            return match &self.inner {
                Inner::Clip {
                    model, preprocess, ..
                } => {
                    let s = model.config().vision_config.image_size;
                    let mut values = Vec::with_capacity(frames.len() * 3 * s * s);
                    for f in &frames {
                        let small = preprocess.apply(f, s as u32).map_err(to_py)?;
                        values.extend(fgclip_vad::data::batch::normalize(&small.data, s));
                    }
                    Ok(Images::Pixels {
                        values,
                        n: frames.len(),
                    })
                }
                Inner::Fgclip2 { processor, .. } => {
                    Ok(Images::Naflex(naflex_file(&frames, processor)?))
                }
            };
        }
        match &self.inner {
            Inner::Clip { model, .. } => {
                let pixels = images.extract::<PyReadonlyArrayDyn<'_, f32>>().map_err(|_| {
                    value_error("images must be uint8 frames (N, H, W, 3) or float32 pixels (N, 3, S, S)")
                })?;
                let s = model.config().vision_config.image_size;
                let shape = pixels.shape().to_vec();
                if shape.len() != 4 || shape[1] != 3 || shape[2] != s || shape[3] != s {
                    return Err(value_error(format!(
                        "pixels must be float32 (N, 3, {s}, {s}) for this model; got shape {shape:?}"
                    )));
                }
                let values = pixels
                    .as_slice()
                    .map_err(|_| value_error("pixels must be C-contiguous (np.ascontiguousarray)"))?
                    .to_vec();
                Ok(Images::Pixels {
                    values,
                    n: shape[0],
                })
            }
            Inner::Fgclip2 { model, .. } => {
                let d = images.cast::<PyDict>().map_err(|_| {
                    value_error(
                        "images must be uint8 frames (N, H, W, 3) or the dict preprocess() returns",
                    )
                })?;
                let get = |k: &str| -> PyResult<Bound<'_, PyAny>> {
                    d.get_item(k)?
                        .ok_or_else(|| value_error(format!("the dict has no {k:?}")))
                };
                let pv = get("pixel_values")?
                    .extract::<PyReadonlyArrayDyn<'_, f32>>()
                    .map_err(|_| value_error("pixel_values must be float32 (N, P, 768)"))?;
                let ss = get("spatial_shapes")?
                    .extract::<PyReadonlyArrayDyn<'_, i64>>()
                    .map_err(|_| value_error("spatial_shapes must be int64 (N, 2)"))?;
                let (pshape, sshape) = (pv.shape().to_vec(), ss.shape().to_vec());
                let dim = model.config().vision_config.patch_dim();
                if pshape.len() != 3 || pshape[2] != dim || sshape != [pshape[0], 2] {
                    return Err(value_error(format!(
                        "pixel_values {pshape:?} / spatial_shapes {sshape:?}: expected (N, P, {dim}) and (N, 2)"
                    )));
                }
                let shapes: Vec<(usize, usize)> = ss
                    .as_slice()
                    .map_err(|_| value_error("spatial_shapes must be C-contiguous"))?
                    .chunks_exact(2)
                    .map(|c| (c[0].max(0) as usize, c[1].max(0) as usize))
                    .collect();
                if let Some(&(h, w)) = shapes
                    .iter()
                    .find(|&&(h, w)| h * w > pshape[1] || h * w == 0)
                {
                    return Err(value_error(format!(
                        "a spatial shape {h}×{w} does not fit {} patches",
                        pshape[1]
                    )));
                }
                Ok(Images::Naflex(NaflexFile {
                    pixel_values: pv
                        .as_slice()
                        .map_err(|_| value_error("pixel_values must be C-contiguous"))?
                        .to_vec(),
                    n: pshape[0],
                    budget: pshape[1],
                    spatial_shapes: shapes,
                }))
            }
        }
    }

    /// Pooled embeddings, dense features and N (run with the GIL released).
    pub(crate) fn run_images(
        &self,
        images: Images,
        batch_size: usize,
        want_dense: bool,
    ) -> PyResult<(Vec<f32>, DenseOut, usize)> {
        let bar = indicatif::ProgressBar::hidden();
        match (&self.inner, images) {
            (Inner::Clip { model, .. }, Images::Pixels { values, n }) => {
                if !want_dense {
                    // The pooled embeddings alone: no dense grid computed.
                    let embeds = clip_embeddings(model, &values, n, batch_size, &self.device)?;
                    return Ok((embeds, DenseOut::Grid(Vec::new()), n));
                }
                let (embeds, grid) =
                    embed_images(model, &values, n, batch_size, &self.device, &bar)
                        .map_err(to_py)?;
                Ok((embeds, DenseOut::Grid(grid), n))
            }
            (Inner::Fgclip2 { model, .. }, Images::Naflex(file)) => {
                let (embeds, dense) =
                    embed_naflex(model, &file, batch_size, &self.device, &bar).map_err(to_py)?;
                let d = self.embed_dim();
                let rows = file
                    .spatial_shapes
                    .iter()
                    .enumerate()
                    .map(|(k, &(h, w))| {
                        let start = k * file.budget * d;
                        (dense[start..start + h * w * d].to_vec(), h, w)
                    })
                    .collect();
                Ok((embeds, DenseOut::PerImage(rows), file.n))
            }
            _ => Err(FgclipError::new_err("images of another model family")),
        }
    }
}
