//! `fgclip train`'s arguments: the run (data, model, folder, start mode) and the settings
//! people change most, as flags over the config.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Print the training config (defaults, or --config resolved) as JSON and exit; with
    /// --model or --preset, the loss weights left null are that model family's (FG-CLIP:
    /// region 0.1, hard negatives 0.5; FG-CLIP 2: 0.2, region text 0.1, 0.5).
    #[arg(long)]
    pub print_config: bool,
    /// Annotation file (JSON array or JSON Lines).
    #[arg(long, required_unless_present = "print_config")]
    pub annotations: Option<PathBuf>,
    /// Video root the annotations' paths are relative to.
    #[arg(long, required_unless_present = "print_config")]
    pub videos: Option<PathBuf>,
    /// Model folder to fine-tune: HF CLIP, FG-CLIP v1 or FG-CLIP 2 (`model_type: fgclip2`,
    /// trained with FG-CLIP 2's loss), or a run's `final/`.
    #[arg(long, conflicts_with = "preset", required_unless_present_any = ["preset", "print_config"])]
    pub model: Option<PathBuf>,
    /// Train a built-in preset (see `fgclip presets`) from random weights.
    #[arg(long)]
    pub preset: Option<String>,
    /// Tokenizer (file or folder; `builtin`: CLIP's BPE, compiled in) [default: the model
    /// folder's tokenizer files, else CLIP's BPE (always for a CLIP --preset)]. FG-CLIP 2
    /// models read a folder with tokenizer.json.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Run folder: config.json, metrics, checkpoints/, final/. It must be new or empty
    /// unless --resume or --overwrite is given.
    #[arg(long, required_unless_present = "print_config")]
    pub out: Option<PathBuf>,
    /// Training config JSON (see --print-config); missing keys take the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in --out with its own saved config.json: from its newest intact
    /// checkpoint (`--resume`, or `--resume latest`) or from one of its checkpoints
    /// (`--resume RUN/checkpoints/step-N`). Only max_steps, epochs, checkpoint_every,
    /// keep_checkpoints, loader_workers and max_nonfinite_steps may differ from the saved
    /// config (a --config or flag that changes any other key is refused).
    #[arg(
        long,
        value_name = "latest|CHECKPOINT",
        num_args = 0..=1,
        default_missing_value = "latest",
        conflicts_with = "overwrite"
    )]
    pub resume: Option<PathBuf>,
    /// Start a new run in an --out that holds one: remove what a run writes there first
    /// (config.json, param_groups.json, metrics, resumes.jsonl, checkpoints/, final/);
    /// other files stay. Without it (or --resume), a non-empty --out is refused.
    #[arg(long)]
    pub overwrite: bool,
    /// A VAGTA hard-negative sidecar joined to the annotations (config key
    /// `hard_negatives_file`).
    #[arg(long)]
    pub hard_negatives: Option<PathBuf>,
    #[command(flatten)]
    pub hyper: HyperArgs,
}

/// The settings people change most, as flags over `--config` (each sets one config key,
/// and the run's config.json records it).
#[derive(Debug, Default, Args)]
pub struct HyperArgs {
    /// Peak learning rate (config `learning_rate`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Clips per optimizer step over all ranks: the global batch (config `batch_size`).
    /// With MPI each of W ranks takes batch_size / W clips of it.
    #[arg(long, conflicts_with = "batch_size_per_rank")]
    pub batch_size: Option<usize>,
    /// Clips per step on each rank: the global batch is this × the number of ranks.
    #[arg(long)]
    pub batch_size_per_rank: Option<usize>,
    /// Passes over the training clips (config `epochs`).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many optimizer steps (config `max_steps`).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Linear warm-up steps (config `warmup_steps`).
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// AdamW's decoupled weight decay (config `weight_decay`).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Seeds the data order, frame sampling and a preset's initial weights (config `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// λ, the region term's weight (config `region_weight`) [default: FG-CLIP's 0.1, FG-CLIP
    /// 2's 0.2].
    #[arg(long)]
    pub region_weight: Option<f64>,
    /// ν, FG-CLIP 2's intra-text term of the region captions (config
    /// `region_text_weight`) [default: 0.1].
    #[arg(long)]
    pub region_text_weight: Option<f64>,
    /// μ, the hard-negative term's weight (config `hard_negative_weight`) [default: 0.5].
    #[arg(long)]
    pub hard_negative_weight: Option<f64>,
    /// FG-CLIP 2: the patch budget of a frame (config `max_num_patches`) [default: the model
    /// folder's preprocessor_config.json].
    #[arg(long)]
    pub max_num_patches: Option<usize>,
}

impl HyperArgs {
    /// The config keys these flags set (`--batch-size-per-rank` needs the rank count, so
    /// the caller turns it into `batch_size`).
    pub fn config_keys(&self) -> Vec<(&'static str, serde_json::Value)> {
        use serde_json::json;
        let mut keys = Vec::new();
        let mut put = |k: &'static str, v: Option<serde_json::Value>| {
            if let Some(v) = v {
                keys.push((k, v));
            }
        };
        put("learning_rate", self.lr.map(|v| json!(v)));
        put("batch_size", self.batch_size.map(|v| json!(v)));
        put("epochs", self.epochs.map(|v| json!(v)));
        put("max_steps", self.max_steps.map(|v| json!(v)));
        put("warmup_steps", self.warmup_steps.map(|v| json!(v)));
        put("weight_decay", self.weight_decay.map(|v| json!(v)));
        put("seed", self.seed.map(|v| json!(v)));
        put("region_weight", self.region_weight.map(|v| json!(v)));
        put(
            "region_text_weight",
            self.region_text_weight.map(|v| json!(v)),
        );
        put("max_num_patches", self.max_num_patches.map(|v| json!(v)));
        put(
            "hard_negative_weight",
            self.hard_negative_weight.map(|v| json!(v)),
        );
        keys
    }
}
