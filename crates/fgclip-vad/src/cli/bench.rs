//! `fgclip bench` (model and pipeline timings on random weights) and `fgclip warmup`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Forward time of the image and text towers.
    Embed(BenchEmbedArgs),
    /// One FG-CLIP training step (loss, backward, AdamW) on a synthetic batch.
    Train(BenchTrainArgs),
    /// Detection throughput (video seconds per second) and peak memory on a video.
    Detect(BenchDetectArgs),
    /// Video decoding: whole-video decode + resize frames/s, and T frames from a segment.
    Decode(BenchDecodeArgs),
    /// The memory a training checkpoint write takes (Linux): a preset's model makes one
    /// AdamW step, then is checkpointed; resident memory before and peak during the write.
    Checkpoint(BenchCheckpointArgs),
    /// Live streams one process scores in real time: N UDP streams of a 640×360 30 fps
    /// video published on loopback by the ffmpeg CLI; decode rates, drops, latency.
    Watch(BenchWatchArgs),
    /// The collectives of one data-parallel training step (run under `mpirun -np W`): the
    /// gradient all-reduce and the embedding gathers, at a preset's size.
    Collective(BenchCollectiveArgs),
}

#[derive(Debug, Args)]
pub struct BenchCheckpointArgs {
    /// A built-in preset or a config.json path (random weights).
    #[arg(long, default_value = "vit-b-32")]
    pub preset: String,
    /// The run folder to write the checkpoint into (must not exist; removed afterwards
    /// unless --keep).
    #[arg(long)]
    pub out: PathBuf,
    /// Keep the checkpoint written.
    #[arg(long)]
    pub keep: bool,
    /// Print JSON instead of a line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchCollectiveArgs {
    /// A built-in preset: the parameter and embedding sizes to move.
    #[arg(long, default_value = "vit-b-32")]
    pub preset: String,
    /// Rows per rank in each gather (clips or regions).
    #[arg(long, default_value_t = 16)]
    pub rows: usize,
    /// Timed rounds; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// A built-in preset or a config.json path.
    #[arg(long, default_value = "vit-b-32")]
    pub preset: String,
    /// Clips per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Frames per clip.
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Untimed steps first, the first of them reported apart (kernel compilation).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed steps; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Hard negatives per boxed region (the FG-CLIP hard-negative term; 0: none).
    #[arg(long, default_value_t = 0)]
    pub hard_negatives: usize,
    /// Pad captions to the context length (77, PyTorch's layout) instead of cutting them
    /// after their end-of-text as `fgclip train` does (same loss and gradients).
    #[arg(long)]
    pub pad_text: bool,
    /// FG-CLIP 2 presets: patches a frame (a square grid, no padding).
    #[arg(long, default_value_t = 256)]
    pub patches: usize,
    /// Print JSON instead of a line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchDetectArgs {
    /// The video; without one, a synthetic 640×360 H.264 video of --seconds is written to
    /// --keep (or a temporary folder).
    pub video: Option<PathBuf>,
    /// A built-in preset (random weights) or a config.json path.
    #[arg(long, default_value = "vit-b-32")]
    pub preset: String,
    /// Frames per snippet (one embedding every STRIDE frames).
    #[arg(long, default_value_t = 16)]
    pub stride: u64,
    /// Frames per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Length of the synthetic video.
    #[arg(long, default_value_t = 180)]
    pub seconds: u32,
    /// Where to write (and keep) the synthetic video.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Print JSON instead of a line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchDecodeArgs {
    /// Videos to measure; without any, a synthetic 90 s 640×360 H.264 video (GOP 250)
    /// is written to --keep (or a temporary folder) and measured.
    pub videos: Vec<PathBuf>,
    /// Where to keep the synthetic video (to measure other tools on the same file).
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Resize target.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Frames taken from the segment.
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// The segment, in seconds.
    #[arg(long, num_args = 2, value_names = ["START", "END"], default_values_t = [10.0, 70.0])]
    pub segment: Vec<f64>,
    /// Timed runs of the segment sampling; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
}

#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// A built-in preset (see `fgclip presets`) or a config.json path.
    #[arg(long, default_value = "vit-b-32")]
    pub preset: String,
    /// Batch size of both towers.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// FG-CLIP 2 presets: patch budgets to time the image tower at (square grids: 256 is
    /// 16 × 16, 1024 is 32 × 32).
    #[arg(long, value_delimiter = ',', default_value = "256,1024")]
    pub patches: Vec<usize>,
}

#[derive(Debug, Args)]
pub struct BenchWatchArgs {
    /// A built-in preset (random weights) or a config.json path.
    #[arg(long, default_value = "vit-b-32")]
    pub preset: String,
    /// Streams published and watched at once.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Seconds to watch.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Frames per snippet.
    #[arg(long, default_value_t = 16)]
    pub stride: u64,
    /// Frames per tower call at most.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Where to write (and keep) the generated 640×360 video.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Print JSON instead of a line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WarmupArgs {
    /// A built-in preset or a config.json path (the model the run trains).
    #[arg(long, default_value = "vit-b-32")]
    pub preset: String,
    /// Clips a step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Frames a clip.
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Hard negatives a region (0: none).
    #[arg(long, default_value_t = 0)]
    pub hard_negatives: usize,
    /// `detect`'s frames a forward pass (0: skip detect's shape).
    #[arg(long, default_value_t = 32)]
    pub detect_batch: usize,
    /// Processes at once [default: one per job].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Seconds a job may run before it is stopped (its kernels compiled so far are kept).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}
