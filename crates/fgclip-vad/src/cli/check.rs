//! `fgclip check`: a batch's loss, optimizer steps and ROI Align, for comparison with the
//! reference implementations' fixtures.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum CheckCommand {
    /// The training loss of one batch file and its named terms, as one JSON line (FG-CLIP's
    /// loss, or FG-CLIP 2's for an FG-CLIP 2 model); optionally the gradients.
    #[command(
        after_help = "Example:\n  fgclip check loss --model tests/fixtures/fgclip_v1_tiny/model --batch tests/fixtures/fgclip_v1_tiny/batch.safetensors"
    )]
    Loss(CheckLossArgs),
    /// A few optimizer steps on one batch (the training config's AdamW groups, schedule,
    /// clipping and logit-scale clamp), with the learning rates, losses and watched
    /// parameters after each step as JSON: for comparison with PyTorch.
    Steps(CheckStepsArgs),
    /// ROI Align's outputs and input gradients for a torchvision fixture's cases (a folder
    /// with cases.json and cases.safetensors), written as safetensors for comparison.
    Roi(CheckRoiArgs),
}

#[derive(Debug, Args)]
pub struct CheckStepsArgs {
    /// HF model folder (a plain CLIP, or an fgclip export).
    #[arg(long)]
    pub model: PathBuf,
    /// safetensors batch, used for every step: the tensors `check loss --batch` takes.
    #[arg(long)]
    pub batch: PathBuf,
    /// Training config JSON (see `fgclip train --print-config`); the schedule spans its
    /// `max_steps` (else --steps).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Optimizer steps to run.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// A parameter (HF name) to report after each step; repeat for more.
    #[arg(long)]
    pub watch: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckRoiArgs {
    /// Fixture folder: cases.json and cases.safetensors (tests/fixtures/roi_align).
    #[arg(long)]
    pub cases: PathBuf,
    /// Output safetensors: `<case>_output` and `<case>_input_grad` for every case.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckLossArgs {
    /// HF model folder: a plain CLIP, an FG-CLIP v1 checkpoint, an FG-CLIP 2 model
    /// (FG-CLIP 2's loss), or an fgclip export.
    #[arg(long)]
    pub model: PathBuf,
    /// safetensors batch of B clips × T frames with N region slots: pixel_values
    /// (B, T, 3, S, S) f32 (CLIP-normalised), global_input_ids (B, L) i64, region_input_ids
    /// (B, N, L), boxes (B, T, N, 4) f32 as x0 y0 x1 y1 in [0, 1] of the frame, bbox_mask
    /// (B, T, N) (1: a real region on that frame); optionally global_long_input_ids
    /// (B, ≤ 248) with global_long_mask (B), and hard_input_ids (B, N, K, L) with hard_mask
    /// (B, N, K) for K hard negatives a region. For FG-CLIP 2, pixel_values (B·T, P, 768)
    /// and spatial_shapes (B·T, 2) as its image processor lays frames out, clip-major.
    #[arg(long)]
    pub batch: PathBuf,
    /// λ in loss = loss_global + loss_global_long + λ · loss_region + ν · loss_region_text
    /// + μ · loss_hard_negative [default: FG-CLIP's 0.1, FG-CLIP 2's 0.2].
    #[arg(long)]
    pub region_weight: Option<f64>,
    /// ν, FG-CLIP 2's intra-text term of the region captions [default: 0.1].
    #[arg(long)]
    pub region_text_weight: Option<f64>,
    /// μ, the hard-negative weight [default: 0.5].
    #[arg(long)]
    pub hard_negative_weight: Option<f64>,
    /// FG-CLIP 2: the cross-modal rank threshold the forward starts from (a run's
    /// `cmr_threshold`) [default: 0, a run's start].
    #[arg(long, default_value_t = 0.0)]
    pub threshold: f64,
    /// Also write d(loss)/d(parameter) by HF name to this safetensors file.
    #[arg(long)]
    pub grads: Option<PathBuf>,
}
