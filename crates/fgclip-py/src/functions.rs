//! Module-level functions: `read_frames`, `evaluate`, `validate` and `detect`, each the
//! command of the same name without the files in between. Long work runs with the GIL
//! released.

use std::collections::BTreeMap;
use std::path::PathBuf;

use fgclip_vad::data::preprocess::Preprocess;
use fgclip_vad::eval::{LengthMismatch, Protocol};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{must_exist, to_py, value_error};
use crate::progress::with_progress;

fn json_to_py<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| to_py(e.into()))?;
    py.import("json")?.call_method1("loads", (text,))
}

fn protocol(s: &str) -> PyResult<Protocol> {
    match s {
        "ucf-crime" | "ucf_crime" => Ok(Protocol::UcfCrime),
        "xd-violence" | "xd_violence" => Ok(Protocol::XdViolence),
        other => Err(value_error(format!(
            "protocol must be \"ucf-crime\" or \"xd-violence\", not {other:?}"
        ))),
    }
}

/// Frames of a video as `fgclip frames` takes them (OpenCV's numbering): the segment
/// [start, end] seconds of `timestamps` (else the whole video), `sample` of them at segment
/// centres (else every frame), brought to `size`×`size` by `preprocess` (else native size).
/// Returns (frames uint8 (n, H, W, 3), indices int64 (n,)).
#[pyfunction]
#[pyo3(signature = (video, timestamps = None, sample = None, size = None, preprocess = "squash", progress = None))]
pub fn read_frames<'py>(
    py: Python<'py>,
    video: PathBuf,
    timestamps: Option<(f64, f64)>,
    sample: Option<usize>,
    size: Option<u32>,
    preprocess: &str,
    progress: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    must_exist(&video, "the video")?;
    let mode = match preprocess {
        "squash" => Preprocess::Squash,
        "center_crop" => Preprocess::CenterCrop,
        other => {
            return Err(value_error(format!(
                "preprocess must be \"squash\" or \"center_crop\", not {other:?}"
            )));
        }
    };
    if size == Some(0) {
        return Err(value_error("size must be at least 1"));
    }
    let frames = with_progress(py, progress, |bar| {
        bar.set_message("frames");
        fgclip_vad::data::frames::read_frames(
            &video,
            timestamps,
            sample,
            size.map(|s| (s, mode)),
            bar,
        )
    })?
    .map_err(to_py)?;
    let n = frames.indices.len();
    let shape = [n, frames.height as usize, frames.width as usize, 3];
    let data = PyArray1::from_vec(py, frames.data)
        .reshape(shape)?
        .into_any();
    let indices: Vec<i64> = frames.indices.iter().map(|&i| i as i64).collect();
    Ok((data, PyArray1::from_vec(py, indices).into_any()))
}

/// Frame-level ROC AUC / AP of per-video frame scores against UCF-Crime or XD-Violence
/// ground truth, as `fgclip eval --json` reports them. `scores`: a folder of `detect`'s
/// JSON or `<stem>.npy` files, or a dict {video stem: 1-D array of frame scores}.
#[pyfunction]
#[pyo3(signature = (scores, gt, protocol = "ucf-crime", allow_length_mismatch = None))]
pub fn evaluate<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    gt: PathBuf,
    protocol: &str,
    allow_length_mismatch: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let protocol = self::protocol(protocol)?;
    let mismatch = match allow_length_mismatch {
        None => None,
        Some("cut") => Some(LengthMismatch::Cut),
        Some("pad") => Some(LengthMismatch::Pad),
        Some(other) => {
            return Err(value_error(format!(
                "allow_length_mismatch must be \"cut\" or \"pad\", not {other:?}"
            )));
        }
    };
    must_exist(&gt, "the ground-truth file")?;
    let (by_video, counts) = if let Ok(d) = scores.cast::<PyDict>() {
        let mut by_video = BTreeMap::new();
        for (k, v) in d.iter() {
            let stem: String = k
                .extract()
                .map_err(|_| value_error("the scores dict's keys must be video stems (str)"))?;
            let a = v
                .extract::<PyReadonlyArrayDyn<'_, f64>>()
                .map(|a| (a.shape().to_vec(), a.as_slice().map(<[f64]>::to_vec)))
                .or_else(|_| {
                    v.extract::<PyReadonlyArrayDyn<'_, f32>>().map(|a| {
                        (
                            a.shape().to_vec(),
                            a.as_slice()
                                .map(|s| s.iter().map(|&x| f64::from(x)).collect()),
                        )
                    })
                })
                .map_err(|_| {
                    value_error(format!(
                        "scores[{stem:?}] must be a float32 or float64 array"
                    ))
                })?;
            let (shape, values) = a;
            if shape.len() != 1 {
                return Err(value_error(format!(
                    "scores[{stem:?}] must be 1-D (one score a frame); got shape {shape:?}"
                )));
            }
            let values =
                values.map_err(|_| value_error(format!("scores[{stem:?}] must be contiguous")))?;
            if let Some(i) = values.iter().position(|s| !s.is_finite()) {
                return Err(value_error(format!("scores[{stem:?}][{i}] is not finite")));
            }
            by_video.insert(stem, values);
        }
        (by_video, BTreeMap::new())
    } else {
        let dir: PathBuf = scores
            .extract()
            .map_err(|_| value_error("scores must be a folder path or a dict {stem: array}"))?;
        must_exist(&dir, "the scores folder")?;
        fgclip_vad::eval::read_scores(&dir).map_err(to_py)?
    };
    let report = py
        .detach(|| {
            let truth = fgclip_vad::eval::read_truth(&gt, protocol)?;
            fgclip_vad::eval::evaluate(&truth, &by_video, &counts, protocol, mismatch)
        })
        .map_err(to_py)?;
    json_to_py(py, &report)
}

/// Checks an annotation file (and, with `videos`, its videos) as `fgclip validate --json`
/// does; returns its summary (`errors` counts the problems, `problems` lists them).
#[pyfunction]
#[pyo3(signature = (annotations = None, videos = None, hard_negatives = None, max_anns = 4))]
pub fn validate<'py>(
    py: Python<'py>,
    annotations: Option<PathBuf>,
    videos: Option<PathBuf>,
    hard_negatives: Option<PathBuf>,
    max_anns: usize,
) -> PyResult<Bound<'py, PyAny>> {
    if annotations.is_none() && hard_negatives.is_none() {
        return Err(value_error(
            "nothing to validate: give annotations and/or hard_negatives",
        ));
    }
    for (p, what) in [
        (&annotations, "the annotation file"),
        (&hard_negatives, "the hard-negative file"),
        (&videos, "the video folder"),
    ] {
        if let Some(p) = p {
            must_exist(p, what)?;
        }
    }
    let summary = py
        .detach(|| {
            fgclip_vad::data::validate::validate(
                annotations.as_deref(),
                hard_negatives.as_deref(),
                videos.as_deref(),
                max_anns,
                &indicatif::ProgressBar::hidden(),
            )
        })
        .map_err(to_py)?;
    json_to_py(py, &summary)
}

/// Zero-shot detection of `videos` with the model folder `model`, as `fgclip detect`: writes
/// the command's files into `out` and returns each video's result (the JSON `detect` writes,
/// as a dict), or raises for the first video that fails.
#[pyfunction]
#[pyo3(signature = (videos, model, out, prompts = "ucf-crime", stride = 16, smooth = 1, threshold = 0.5, top = 5, frames_per_snippet = None, batch_size = 32, scale = None, gt = None, protocol = "ucf-crime", preprocess = None, max_num_patches = None, thumbnails = true, progress = None))]
#[allow(clippy::too_many_arguments)]
pub fn detect<'py>(
    py: Python<'py>,
    videos: Vec<PathBuf>,
    model: PathBuf,
    out: PathBuf,
    prompts: &str,
    stride: u64,
    smooth: usize,
    threshold: f32,
    top: usize,
    frames_per_snippet: Option<u64>,
    batch_size: usize,
    scale: Option<f64>,
    gt: Option<PathBuf>,
    protocol: &str,
    preprocess: Option<&str>,
    max_num_patches: Option<usize>,
    thumbnails: bool,
    progress: Option<&Bound<'py, PyAny>>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let protocol = self::protocol(protocol)?;
    must_exist(&model, "the model folder")?;
    for v in &videos {
        must_exist(v, "the video")?;
    }
    if stride == 0 || batch_size == 0 {
        return Err(value_error("stride and batch_size must be at least 1"));
    }
    let preprocess = match preprocess {
        None => None,
        Some("squash") => Some(Preprocess::Squash),
        Some("center_crop") => Some(Preprocess::CenterCrop),
        Some(other) => {
            return Err(value_error(format!(
                "preprocess must be \"squash\" or \"center_crop\", not {other:?}"
            )));
        }
    };
    let prompts = prompts.to_string();
    let results = with_progress(
        py,
        progress,
        |bar| -> anyhow::Result<Vec<fgclip_vad::detect::DetectResult>> {
            let device = fgclip_vad::device::parse_device("cpu")?;
            let model_dir = model;
            let vm = fgclip_vad::detect::VideoModel::load(
                &model_dir,
                &device,
                max_num_patches,
                preprocess,
            )?;
            let set = fgclip_vad::detect::PromptSet::resolve(&prompts)?;
            let head = vm.tower.head(&model_dir, &set, scale, &device)?;
            let names = set.names();
            let truth = match &gt {
                Some(p) => fgclip_vad::eval::read_truth(p, protocol)?,
                None => Vec::new(),
            };
            let opts = fgclip_vad::detect::DetectOptions {
                stride,
                per_snippet: frames_per_snippet,
                smooth,
                threshold,
                top_k: top,
                batch_size,
                thumbnails,
            };
            let mut results = Vec::new();
            for v in &videos {
                let stem = v
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let t = truth.iter().find(|t| t.stem == stem);
                bar.reset();
                bar.set_message(stem.clone());
                results.push(fgclip_vad::detect::detect_video(
                    &vm, &head, &names, v, &out, &opts, t, &device, bar,
                )?);
            }
            Ok(results)
        },
    )?
    .map_err(to_py)?;
    results.iter().map(|r| json_to_py(py, r)).collect()
}

/// One video's stem, its (snippets, D) embeddings row-major, snippets and D.
type VideoFeatures = (String, Vec<f32>, usize, usize);

/// Snippet embeddings of each video, as `fgclip extract` writes them (one (snippets, D)
/// array a video, L2-normalised, one snippet every `stride` frames): a dict {video stem:
/// array}. Raises for the first video that fails, naming it.
#[pyfunction]
#[pyo3(signature = (videos, model, stride = 16, frames_per_snippet = None, batch_size = 32, preprocess = None, max_num_patches = None, progress = None))]
#[allow(clippy::too_many_arguments)]
pub fn extract<'py>(
    py: Python<'py>,
    videos: Vec<PathBuf>,
    model: PathBuf,
    stride: u64,
    frames_per_snippet: Option<u64>,
    batch_size: usize,
    preprocess: Option<&str>,
    max_num_patches: Option<usize>,
    progress: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    must_exist(&model, "the model folder")?;
    for v in &videos {
        must_exist(v, "the video")?;
    }
    if stride == 0 || batch_size == 0 || frames_per_snippet == Some(0) {
        return Err(value_error(
            "stride, batch_size and frames_per_snippet must be at least 1",
        ));
    }
    let preprocess = match preprocess {
        None => None,
        Some("squash") => Some(Preprocess::Squash),
        Some("center_crop") => Some(Preprocess::CenterCrop),
        Some(other) => {
            return Err(value_error(format!(
                "preprocess must be \"squash\" or \"center_crop\", not {other:?}"
            )));
        }
    };
    let features = with_progress(py, progress, |bar| -> anyhow::Result<Vec<VideoFeatures>> {
        let device = fgclip_vad::device::parse_device("cpu")?;
        let vm =
            fgclip_vad::detect::VideoModel::load(&model, &device, max_num_patches, preprocess)?;
        let per = frames_per_snippet.unwrap_or_else(|| vm.default_frames_per_snippet());
        let d = vm.tower.embed_dim();
        let mut out = Vec::new();
        for v in &videos {
            let stem = v
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            bar.reset();
            bar.set_message(stem.clone());
            let (e, n) =
                fgclip_vad::detect::video_features(&vm, v, (stride, per), batch_size, &device, bar)
                    .map_err(|e| e.context(format!("{}", v.display())))?;
            out.push((stem, e, n, d));
        }
        Ok(out)
    })?
    .map_err(to_py)?;
    let dict = PyDict::new(py);
    for (stem, e, n, d) in features {
        dict.set_item(stem, PyArray1::from_vec(py, e).reshape([n, d])?)?;
    }
    Ok(dict)
}
