//! `fgclip.train`: the run `fgclip train` makes (same folder, metrics, checkpoints, export),
//! with a Python callback after every step and Ctrl-C stopping at a step boundary.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fgclip_vad::train::{
    ConfigRequest, Interrupted, ModelSource, ResumeFrom, Start, StepControl, StepHook, TrainConfig,
    TrainRequest,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{must_exist, to_py, value_error};

/// Trains as `fgclip train` does and returns its summary (a dict). `config`: a dict of
/// training settings (missing keys take their defaults, as in a config file) or a path to
/// one. `model`: a model folder to fine-tune, or `preset`: a built-in geometry from random
/// weights. `resume`: True (the newest checkpoint) or a checkpoint folder. `on_step(metrics)`
/// is called after every step with its metrics row; an exception in it, or Ctrl-C, stops
/// the run at that step boundary with its checkpoint written (`resume=True` continues it to
/// the same weights) and is raised.
#[pyfunction]
#[pyo3(signature = (annotations, videos, out, config = None, model = None, preset = None, tokenizer = None, resume = None, overwrite = false, on_step = None, device = "cpu", progress = false))]
#[allow(clippy::too_many_arguments)]
pub fn train<'py>(
    py: Python<'py>,
    annotations: PathBuf,
    videos: PathBuf,
    out: PathBuf,
    config: Option<&Bound<'py, PyAny>>,
    model: Option<PathBuf>,
    preset: Option<String>,
    tokenizer: Option<PathBuf>,
    resume: Option<&Bound<'py, PyAny>>,
    overwrite: bool,
    on_step: Option<Py<PyAny>>,
    device: &str,
    progress: bool,
) -> PyResult<Bound<'py, PyAny>> {
    must_exist(&annotations, "the annotation file")?;
    must_exist(&videos, "the video folder")?;
    let source = match (model, preset) {
        (Some(dir), None) => {
            must_exist(&dir, "the model folder")?;
            ModelSource::Dir(dir)
        }
        (None, Some(p)) => ModelSource::Preset(p),
        _ => {
            return Err(value_error(
                "give one of model= (a folder) or preset= (a built-in geometry)",
            ));
        }
    };
    let file = match config {
        None => None,
        Some(c) if c.is_instance_of::<PyDict>() => {
            let text: String = py.import("json")?.call_method1("dumps", (c,))?.extract()?;
            let cfg: TrainConfig =
                serde_json::from_str(&text).map_err(|e| value_error(format!("config: {e}")))?;
            cfg.validate().map_err(|e| value_error(format!("{e:#}")))?;
            Some(cfg)
        }
        Some(c) => {
            let path: PathBuf = c
                .extract()
                .map_err(|_| value_error("config must be a dict or a path to a config file"))?;
            must_exist(&path, "the config file")?;
            Some(fgclip_vad::train::read_train_config(&path).map_err(to_py)?)
        }
    };
    let start = match resume {
        None => {
            if overwrite {
                Start::Overwrite
            } else {
                Start::New
            }
        }
        Some(r) if overwrite && !r.is_none() => {
            return Err(value_error("resume and overwrite exclude each other"));
        }
        Some(r) => match r.extract::<bool>() {
            Ok(true) => Start::Resume(ResumeFrom::Latest),
            Ok(false) if overwrite => Start::Overwrite,
            Ok(false) => Start::New,
            Err(_) => {
                let p: PathBuf = r.extract().map_err(|_| {
                    value_error("resume must be True, False or a checkpoint folder")
                })?;
                Start::Resume(ResumeFrom::Checkpoint(p))
            }
        },
    };
    let device =
        fgclip_vad::device::parse_device(device).map_err(|e| value_error(format!("{e:#}")))?;
    // The first Python exception the hook meets (the callback's, or KeyboardInterrupt).
    let raised: Arc<Mutex<Option<PyErr>>> = Arc::default();
    let slot = raised.clone();
    let hook = StepHook(Arc::new(move |row: &serde_json::Value| -> StepControl {
        Python::attach(|py| {
            let outcome = (|| -> PyResult<()> {
                if let Some(cb) = &on_step {
                    let text = row.to_string();
                    let row = py.import("json")?.call_method1("loads", (text,))?;
                    cb.call1(py, (row,))?;
                }
                py.check_signals()
            })();
            match outcome {
                Ok(()) => StepControl::Continue,
                Err(e) => {
                    if let Ok(mut s) = slot.lock() {
                        s.get_or_insert(e);
                    }
                    StepControl::Stop
                }
            }
        })
    }));
    let req = TrainRequest {
        annotations,
        videos,
        model: source,
        tokenizer,
        out,
        config: ConfigRequest {
            file,
            set: serde_json::Map::new(),
        },
        start,
        progress,
        on_step: Some(hook),
    };
    let result = py.detach(|| -> anyhow::Result<fgclip_vad::train::TrainSummary> {
        let collective = fgclip_vad::train::collective::open()?;
        fgclip_vad::train::run_train_on(&req, &device, collective.as_ref(), &|m| eprintln!("{m}"))
    });
    match result {
        Ok(summary) => {
            let text = serde_json::to_string(&summary).map_err(|e| to_py(e.into()))?;
            py.import("json")?.call_method1("loads", (text,))
        }
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            let stored = raised.lock().ok().and_then(|mut s| s.take());
            Err(stored.unwrap_or_else(|| to_py(e)))
        }
        Err(e) => Err(to_py(e)),
    }
}
