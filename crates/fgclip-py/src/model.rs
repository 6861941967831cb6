//! `fgclip.load` and `Model`: a CLIP, FG-CLIP v1 or FG-CLIP 2 folder, its tokenizer and
//! preprocessing, with images and texts in as numpy arrays and lists and embeddings out.

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use fgclip_core::fgclip2::{Fgclip2Model, Walk};
use fgclip_core::{ClipModel, HfTokenizer, Precision, Tokenizer};
use fgclip_vad::data::naflex::{NaflexConfig, preprocess as naflex_preprocess};
use fgclip_vad::data::preprocess::Preprocess;
use fgclip_vad::data::video::RgbFrame;
use fgclip_vad::inference::fgclip2::{NaflexFile, embed_captions_fgclip2, embed_naflex};
use fgclip_vad::inference::{embed_captions, embed_images};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::{FgclipError, must_exist, to_py, value_error};

/// What the model is, with what reads its texts and prepares its frames.
enum Inner {
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
    inner: Inner,
    device: Device,
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

/// uint8 frames (N, H, W, 3), C-contiguous, as RGB frames.
fn frames_from(array: &PyReadonlyArrayDyn<'_, u8>) -> PyResult<Vec<RgbFrame>> {
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
fn to_numpy<'py, T: numpy::Element>(
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
enum Images {
    Pixels { values: Vec<f32>, n: usize },
    Naflex(NaflexFile),
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
    fn embed_dim(&self) -> usize {
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

/// L2-normalised pooled embeddings of CLIP pixels (N, 3, S, S), `batch_size` at a time.
fn clip_embeddings(
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

enum DenseOut {
    Grid(Vec<f32>),
    /// (data, h, w) per image.
    PerImage(Vec<(Vec<f32>, usize, usize)>),
}

fn naflex_file(frames: &[RgbFrame], processor: &NaflexConfig) -> PyResult<NaflexFile> {
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
    fn images(&self, images: &Bound<'_, PyAny>) -> PyResult<Images> {
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
    fn run_images(
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
