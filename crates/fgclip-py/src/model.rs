//! `fgclip.load` and `Model`: a CLIP, FG-CLIP v1 or FG-CLIP 2 folder, its tokenizer and
//! preprocessing, with images and texts in as numpy arrays and lists and embeddings out.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use fgclip_core::fgclip2::{Fgclip2Model, Walk};
use fgclip_core::{ClipModel, HfTokenizer, Precision, Tokenizer};
use fgclip_vad::data::naflex::NaflexConfig;
use fgclip_vad::data::preprocess::Preprocess;
use fgclip_vad::inference::embed_captions;
use fgclip_vad::inference::fgclip2::embed_captions_fgclip2;
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::{FgclipError, must_exist, to_py, value_error};
use crate::inputs::{DenseOut, Images, clip_embeddings, frames_from, naflex_file, to_numpy};

/// What the model is, with what reads its texts and prepares its frames.
pub(crate) enum Inner {
    Clip {
        model: Box<ClipModel>,
        tokenizer: Result<Tokenizer, String>,
        preprocess: Preprocess,
    },
    Fgclip2 {
        model: Box<Fgclip2Model>,
        tokenizer: Result<HfTokenizer, String>,
        processor: NaflexConfig,
    },
}

/// A loaded model (see `fgclip.load`).
#[pyclass(module = "fgclip._fgclip")]
pub struct Model {
    pub(crate) inner: Inner,
    pub(crate) device: Device,
    path: PathBuf,
    config_json: String,
}

/// Loads an HF CLIP, FG-CLIP v1 or FG-CLIP 2 folder, or the `final/` of an fgclip run.
#[pyfunction]
#[pyo3(signature = (path, device = "cpu", precision = "f32", preprocess = None, max_num_patches = None))]
pub fn load(
    path: PathBuf,
    device: &str,
    precision: &str,
    preprocess: Option<&str>,
    max_num_patches: Option<usize>,
) -> PyResult<Model> {
    use fgclip_vad::checkpoint::fgclip2 as fg2;
    must_exist(&path, "the model folder")?;
    let device =
        fgclip_vad::device::parse_device(device).map_err(|e| value_error(format!("{e:#}")))?;
    let precision = Precision::parse(precision).map_err(|e| value_error(e.to_string()))?;
    let preprocess = preprocess.map(parse_preprocess).transpose()?;
    let config_json = std::fs::read_to_string(path.join("config.json")).map_err(|e| {
        to_py(
            anyhow::Error::new(e)
                .context(format!("reading {}", path.join("config.json").display())),
        )
    })?;
    let inner = match fg2::model_kind(&path).map_err(to_py)? {
        fg2::ModelKind::Fgclip2 => {
            if preprocess.is_some_and(|p| p != Preprocess::Squash) {
                return Err(value_error(
                    "preprocess is for CLIP and FG-CLIP v1 models; FG-CLIP 2's frames go through its own image processor (max_num_patches)",
                ));
            }
            let mut model = fg2::load_fgclip2(&path, &device).map_err(to_py)?;
            model.set_precision(precision);
            let mut processor = fg2::read_image_processor(&path).map_err(to_py)?;
            if let Some(m) = max_num_patches {
                if m == 0 {
                    return Err(value_error("max_num_patches must be at least 1"));
                }
                processor.max_num_patches = m;
                processor.dynamic_max_patches = false;
            }
            Inner::Fgclip2 {
                model: Box::new(model),
                tokenizer: fg2::load_fgclip2_tokenizer(&path).map_err(|e| format!("{e:#}")),
                processor,
            }
        }
        fg2::ModelKind::Clip => {
            let mut model =
                fgclip_vad::checkpoint::hf::load_model(&path, &device).map_err(to_py)?;
            model.set_precision(precision);
            let preprocess = match preprocess {
                Some(p) => p,
                None => {
                    fgclip_vad::checkpoint::preprocessor::model_preprocess(&path).map_err(to_py)?
                }
            };
            Inner::Clip {
                model: Box::new(model),
                tokenizer: fgclip_vad::checkpoint::hf::load_tokenizer(&path)
                    .map_err(|e| format!("{e:#}")),
                preprocess,
            }
        }
    };
    Ok(Model {
        inner,
        device,
        path,
        config_json,
    })
}

fn parse_preprocess(s: &str) -> PyResult<Preprocess> {
    match s {
        "squash" => Ok(Preprocess::Squash),
        "center_crop" => Ok(Preprocess::CenterCrop),
        other => Err(value_error(format!(
            "preprocess must be \"squash\" or \"center_crop\", not {other:?}"
        ))),
    }
}

#[pymethods]
impl Model {
    /// "clip" (CLIP and FG-CLIP v1) or "fgclip2".
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner {
            Inner::Clip { .. } => "clip",
            Inner::Fgclip2 { .. } => "fgclip2",
        }
    }

    /// The folder it was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The width D of its image and text embeddings.
    #[getter]
    pub(crate) fn embed_dim(&self) -> usize {
        match &self.inner {
            Inner::Clip { model, .. } => model.config().projection_dim,
            Inner::Fgclip2 { model, .. } => model.config().vision_config.hidden_size,
        }
    }

    /// config.json as a dict.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("json")?
            .call_method1("loads", (self.config_json.as_str(),))
    }

    /// How frames become the model's input: "squash" or "center_crop" (CLIP), "naflex"
    /// (FG-CLIP 2's image processor).
    #[getter]
    fn preprocessing(&self) -> &'static str {
        match &self.inner {
            Inner::Clip {
                preprocess: Preprocess::Squash,
                ..
            } => "squash",
            Inner::Clip {
                preprocess: Preprocess::CenterCrop,
                ..
            } => "center_crop",
            Inner::Fgclip2 { .. } => "naflex",
        }
    }

    /// uint8 frames (N, H, W, 3) RGB to the model's inputs as `detect` prepares them:
    /// float32 (N, 3, S, S) for CLIP; for FG-CLIP 2 a dict of `pixel_values` (N, P, 768),
    /// `pixel_attention_mask` (N, P) and `spatial_shapes` (N, 2).
    fn preprocess<'py>(
        &self,
        py: Python<'py>,
        frames: PyReadonlyArrayDyn<'py, u8>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let frames = frames_from(&frames)?;
        match &self.inner {
            Inner::Clip {
                model, preprocess, ..
            } => {
                let s = model.config().vision_config.image_size;
                let mut values = Vec::with_capacity(frames.len() * 3 * s * s);
                for f in &frames {
                    let small = preprocess.apply(f, s as u32).map_err(to_py)?;
                    values.extend(fgclip_vad::data::batch::normalize(&small.data, s));
                }
                to_numpy(py, values, &[frames.len(), 3, s, s])
            }
            Inner::Fgclip2 { processor, .. } => {
                let file = naflex_file(&frames, processor)?;
                let (n, p) = (file.n, file.budget);
                let dim = file.pixel_values.len() / (n * p).max(1);
                let mask: Vec<i32> = file
                    .spatial_shapes
                    .iter()
                    .flat_map(|&(h, w)| (0..p).map(move |k| i32::from(k < h * w)))
                    .collect();
                let shapes: Vec<i64> = file
                    .spatial_shapes
                    .iter()
                    .flat_map(|&(h, w)| [h as i64, w as i64])
                    .collect();
                let d = PyDict::new(py);
                d.set_item(
                    "pixel_values",
                    to_numpy(py, file.pixel_values, &[n, p, dim])?,
                )?;
                d.set_item("pixel_attention_mask", to_numpy(py, mask, &[n, p])?)?;
                d.set_item("spatial_shapes", to_numpy(py, shapes, &[n, 2])?)?;
                Ok(d.into_any())
            }
        }
    }

    /// L2-normalised image embeddings (N, D) of uint8 frames (N, H, W, 3), or of what
    /// `preprocess` returned.
    #[pyo3(signature = (images, batch_size = 32))]
    fn embed_images<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let parsed = self.images(images)?;
        let (embeds, _, n) = py.detach(|| self.run_images(parsed, batch_size, false))?;
        to_numpy(py, embeds, &[n, self.embed_dim()])
    }

    /// Dense patch features: (N, g, g, D) projected patch grids for CLIP-shaped models (FG-CLIP's
    /// dense path), a list of per-image (h, w, D) arrays for FG-CLIP 2 (`dense_feature_head`).
    #[pyo3(signature = (images, batch_size = 32))]
    fn dense<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let parsed = self.images(images)?;
        let (_, dense, n) = py.detach(|| self.run_images(parsed, batch_size, true))?;
        match (&self.inner, dense) {
            (Inner::Clip { model, .. }, DenseOut::Grid(grid)) => {
                let g = model.config().vision_config.grid_size();
                to_numpy(py, grid, &[n, g, g, self.embed_dim()])
            }
            (Inner::Fgclip2 { .. }, DenseOut::PerImage(rows)) => {
                let list = PyList::empty(py);
                for (data, h, w) in rows {
                    list.append(to_numpy(py, data, &[h, w, self.embed_dim()])?)?;
                }
                Ok(list.into_any())
            }
            _ => Err(FgclipError::new_err("the model gave no dense features")),
        }
    }

    /// L2-normalised text embeddings (M, D). `walk`: FG-CLIP 2's "short" (captions,
    /// prompts), "long" or "box" (region captions) [default: short, long for texts over 64
    /// tokens]; CLIP-shaped models take "short" or "long" (FG-CLIP's long path).
    #[pyo3(signature = (texts, walk = None, batch_size = 32))]
    fn embed_texts<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        walk: Option<&str>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let walk = match walk {
            None => None,
            Some("short") => Some(Walk::Short),
            Some("long") => Some(Walk::Long),
            Some("box") => Some(Walk::Box),
            Some(other) => {
                return Err(value_error(format!(
                    "walk must be \"short\", \"long\" or \"box\", not {other:?}"
                )));
            }
        };
        let m = texts.len();
        let embeds = py.detach(|| -> PyResult<Vec<f32>> {
        let bar = indicatif::ProgressBar::hidden();
        Ok(match &self.inner {
            Inner::Clip {
                model, tokenizer, ..
            } => {
                let tokenizer = tokenizer
                    .as_ref()
                    .map_err(|e| FgclipError::new_err(e.clone()))?;
                let long = match walk {
                    None | Some(Walk::Short) => false,
                    Some(Walk::Long) => true,
                    Some(Walk::Box) => {
                        return Err(value_error(
                            "walk \"box\" is FG-CLIP 2's; this is a CLIP-shaped model",
                        ));
                    }
                };
                if long && !model.has_long_text() {
                    return Err(value_error(
                        "walk \"long\": the model has no long-text path (FG-CLIP v1 checkpoints have one; plain CLIP does not)",
                    ));
                }
                embed_captions(
                    model,
                    tokenizer,
                    &texts,
                    long,
                    batch_size,
                    &self.device,
                    &bar,
                )
                .map_err(to_py)?
                .embeds
            }
            Inner::Fgclip2 {
                model, tokenizer, ..
            } => {
                let tokenizer = tokenizer
                    .as_ref()
                    .map_err(|e| FgclipError::new_err(e.clone()))?;
                embed_captions_fgclip2(
                    model,
                    tokenizer,
                    &texts,
                    walk,
                    batch_size,
                    &self.device,
                    &bar,
                )
                .map_err(to_py)?
                .embeds
            }
        })
        })?;
        to_numpy(py, embeds, &[m, self.embed_dim()])
    }

    /// L2-normalised region embeddings (K, D): ROI Align 1×1 of `boxes` (float32 (K, 4),
    /// x1 y1 x2 y2 normalised to the frame) on the dense features of their images, as
    /// FG-CLIP's and FG-CLIP 2's `get_image_box_roi_features`. `image_index` (K,): the image
    /// of each box [default: image 0, for one image].
    #[pyo3(signature = (images, boxes, image_index = None, batch_size = 32))]
    fn regions<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
        boxes: PyReadonlyArrayDyn<'py, f32>,
        image_index: Option<Vec<usize>>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let parsed = self.images(images)?;
        let n = match &parsed {
            Images::Pixels { n, .. } => *n,
            Images::Naflex(f) => f.n,
        };
        let shape = boxes.shape().to_vec();
        if shape.len() != 2 || shape[1] != 4 {
            return Err(value_error(format!(
                "boxes must be float32 (K, 4) as x1 y1 x2 y2 in [0, 1]; got shape {shape:?}"
            )));
        }
        let flat = boxes
            .as_slice()
            .map_err(|_| value_error("boxes must be C-contiguous"))?;
        let k = shape[0];
        let boxes: Vec<[f32; 4]> = flat
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect();
        if let Some(b) = boxes
            .iter()
            .find(|b| !b.iter().all(|v| v.is_finite()) || b[2] < b[0] || b[3] < b[1])
        {
            return Err(value_error(format!(
                "a box {b:?} is not x1 ≤ x2, y1 ≤ y2 (finite, normalised to the frame)"
            )));
        }
        let image = match image_index {
            Some(ix) => {
                if ix.len() != k {
                    return Err(value_error(format!(
                        "image_index has {} entries for {k} boxes",
                        ix.len()
                    )));
                }
                if let Some(&i) = ix.iter().find(|&&i| i >= n) {
                    return Err(value_error(format!("image_index {i} for {n} image(s)")));
                }
                ix
            }
            None if n == 1 => vec![0; k],
            None => {
                return Err(value_error(format!(
                    "{n} images: give image_index, the image of each box"
                )));
            }
        };
        let d = self.embed_dim();
        let out = py.detach(|| -> PyResult<Vec<f32>> {
            let device = &self.device;
            let rois = match (&self.inner, self.run_images(parsed, batch_size, true)?) {
                (Inner::Clip { model, .. }, (_, DenseOut::Grid(grid), n)) => {
                    let g = model.config().vision_config.grid_size();
                    let features =
                        Tensor::<4>::from_data(TensorData::new(grid, [n, g, g, d]), device)
                            .permute([0, 3, 1, 2]);
                    // float32 box × g, as FG-CLIP computes it.
                    let gs = g as f32;
                    let scaled: Vec<[f32; 4]> = boxes.iter().map(|b| b.map(|v| v * gs)).collect();
                    fgclip_core::roi::roi_align(
                        features,
                        &scaled,
                        &image,
                        &fgclip_core::roi::RoiAlignConfig::fgclip(),
                    )
                    .reshape([k, d])
                }
                (Inner::Fgclip2 { .. }, (_, DenseOut::PerImage(rows), _)) => {
                    let p = rows.iter().map(|(_, h, w)| h * w).max().unwrap_or(1).max(1);
                    let mut dense = vec![0f32; rows.len() * p * d];
                    let mut shapes = Vec::with_capacity(rows.len());
                    for (i, (data, h, w)) in rows.iter().enumerate() {
                        dense[i * p * d..i * p * d + data.len()].copy_from_slice(data);
                        shapes.push((*h, *w));
                    }
                    let dense =
                        Tensor::<3>::from_data(TensorData::new(dense, [rows.len(), p, d]), device);
                    fgclip_core::fgclip2::roi_features(dense, &shapes, &boxes, &image)
                }
                _ => return Err(FgclipError::new_err("the model gave no dense features")),
            };
            fgclip_vad::device::host_f32(fgclip_core::model::normalize(rois)).map_err(to_py)
        })?;
        to_numpy(py, out, &[k, d])
    }

    /// Seconds of each of `iters` calls of the Rust code behind `embed_images` on `images`,
    /// timed inside Rust (no Python conversion): the reference of the binding-overhead
    /// benchmark (bench/python_overhead.py).
    #[pyo3(signature = (images, iters, batch_size = 32))]
    fn _time_embed_images_in_rust(
        &self,
        images: &Bound<'_, PyAny>,
        iters: usize,
        batch_size: usize,
    ) -> PyResult<Vec<f64>> {
        let parsed = self.images(images)?;
        let Images::Pixels { values, n } = parsed else {
            return Err(value_error("the benchmark takes CLIP pixels (N, 3, S, S)"));
        };
        let Inner::Clip { model, .. } = &self.inner else {
            return Err(value_error("the benchmark takes a CLIP-shaped model"));
        };
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = std::time::Instant::now();
            let e = clip_embeddings(model, &values, n, batch_size, &self.device)?;
            std::hint::black_box(e);
            times.push(t.elapsed().as_secs_f64());
        }
        Ok(times)
    }

    fn __repr__(&self) -> String {
        format!(
            "fgclip.Model(kind={:?}, path={:?}, embed_dim={})",
            self.kind(),
            self.path.display().to_string(),
            self.embed_dim()
        )
    }
}
