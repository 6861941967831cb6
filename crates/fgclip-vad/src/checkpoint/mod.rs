//! Everything that knows a file format of models and runs: HF model folders, safetensors
//! I/O, the exports of a run and its checkpoint store.

pub mod export;
pub mod fgclip2;
pub mod fusion;
pub mod hf;
pub mod hf_tokenizer;
pub mod preprocessor;
pub mod run_folder;
pub mod safetensors_io;
pub mod store;

use std::path::Path;

use anyhow::Result;
use burn::tensor::Device;

use crate::trainee::Trainee;

/// A model folder (a checkpoint, an export, a published model) as a model to train, by its
/// family. `reset_scales`: start the region and hard-negative scales as each family's
/// training script does, even when the folder has its own.
pub fn load_trainee(dir: &Path, device: &Device, reset_scales: bool) -> Result<Trainee> {
    Ok(match fgclip2::model_kind(dir)? {
        fgclip2::ModelKind::Fgclip2 => {
            Trainee::Fgclip2(fgclip2::load_fgclip2_video(dir, device, reset_scales)?)
        }
        fgclip2::ModelKind::Clip => Trainee::Clip(hf::load_fgclip(dir, device, reset_scales)?),
    })
}
