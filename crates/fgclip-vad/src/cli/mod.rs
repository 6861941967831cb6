//! The `fgclip` command line (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod train;
pub use train::{HyperArgs, TrainArgs};

const EXAMPLES: &str = "\
Examples:
  fgclip embed --model clip-vit-base-patch32 --texts captions.txt --out emb.safetensors
  fgclip embed --model DIR --pixels frames.safetensors --texts captions.txt --out emb.safetensors
  fgclip bench embed --preset vit-b-32 --batch 16";

#[derive(Debug, Parser)]
#[command(
    name = "fgclip",
    version,
    about = "Fine-grained CLIP for video anomaly detection",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Compute device: cpu, or cuda / cuda:N in builds with the `cuda` feature.
    #[arg(long, global = true, default_value = "cpu")]
    pub device: String,
    /// Compute precision of the model: f32, or bf16 (linear layers and attention in bf16,
    /// f32 parameters, norms and losses; PyTorch autocast's rule). For `train` it replaces
    /// the config's `precision`.
    #[arg(long, global = true, value_parser = ["f32", "bf16"])]
    pub precision: Option<String>,
    /// Folder of the GPU kernel caches (compiled kernels and autotune results), kept
    /// between runs [default: $FGCLIP_KERNEL_CACHE, else $XDG_CACHE_HOME/fgclip/kernels or ~/.cache/fgclip/kernels].
    #[arg(long, global = true)]
    pub kernel_cache: Option<PathBuf>,
    /// Compile GPU kernels afresh in every run (autotune results are still kept).
    #[arg(long, global = true)]
    pub no_kernel_cache: bool,
    /// How hard to search for the fastest GPU kernels the first time a shape is seen:
    /// minimal (fastest start), balanced, extensive or full [default: balanced, or
    /// $CUBECL_AUTOTUNE_LEVEL].
    #[arg(long, global = true, value_parser = ["minimal", "balanced", "extensive", "full"])]
    pub autotune: Option<String>,
    /// Hide progress bars.
    #[arg(long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system on a synthetic dataset: synth → train → detect → eval → HTML report.
    #[command(
        after_help = "Example:\n  fgclip demo --out demo/   # about 7 minutes on 2 CPU cores; prints the report's path and the AUC"
    )]
    Demo(DemoArgs),
    /// Write a synthetic surveillance dataset (videos, annotations, test ground truth).
    Synth(SynthArgs),
    /// Embed images and/or captions with an HF CLIP model folder.
    #[command(
        after_help = "Example:\n  fgclip embed --model DIR --texts captions.txt --out emb.safetensors"
    )]
    Embed(EmbedArgs),
    /// Measure model speed on random weights of a preset.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// List the built-in model presets.
    Presets,
    /// Check an annotation file (and, with --videos, its videos); exit 1 on errors.
    #[command(
        after_help = "Exit status: 0 no error, 1 errors found, 2 the file cannot be read.\nExample:\n  fgclip validate --annotations train.json --videos /data/UCF-Crime --json"
    )]
    Validate(ValidateArgs),
    /// Fine-tune CLIP with FG-CLIP's global + regional contrastive loss on annotated videos.
    #[command(
        after_help = "Examples:\n  fgclip train --print-config > train.json\n  fgclip train --annotations train.json --videos /data/UCF-Crime --model clip-vit-base-patch16 --out runs/a --config train.json\n  fgclip train ... --out runs/a --resume   # continue an interrupted run\n  fgclip train ... --out runs/a --resume runs/a/checkpoints/step-00000400   # go back to step 400\n  fgclip train ... --out runs/a --overwrite   # replace the run in runs/a"
    )]
    Train(TrainArgs),
    /// A grid of training variants, each trained, detected and evaluated on held-out videos
    /// over several seeds: results.csv, table.md/.tex, plots, report.html (resumable).
    #[command(
        after_help = "Examples:\n  fgclip ablate --print-grid > grid.json\n  fgclip ablate --grid grid.json --annotations train.json --videos /data/UCF-Crime --test-list test.txt --gt Temporal_Anomaly_Annotation_for_Testing_Videos.txt --model clip-vit-base-patch16 --out ablations/a\n  (run the same command again to continue an interrupted grid)"
    )]
    Ablate(AblateArgs),
    /// Zero-shot anomaly detection: frame scores, classes, segments, plots, thumbnails.
    #[command(
        after_help = "Example:\n  fgclip detect --model runs/a/final Shooting008_x264.mp4 --out detections/ --gt Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    )]
    Detect(DetectArgs),
    /// Snippet embeddings per video as .npy (snippets, D), for VadCLIP-style pipelines.
    Extract(ExtractArgs),
    /// Frame-level ROC AUC / AP of per-video frame scores against UCF-Crime or XD-Violence
    /// ground truth.
    #[command(
        after_help = "Example:\n  fgclip eval --scores out/ --gt Temporal_Anomaly_Annotation_for_Testing_Videos.txt --json"
    )]
    Eval(EvalArgs),
    /// Checks against reference implementations: a batch's loss, a few optimizer steps,
    /// ROI Align (for comparison with PyTorch fixtures).
    #[command(subcommand)]
    Check(CheckCommand),
    #[command(name = "check-loss", hide = true)]
    CheckLoss(CheckLossArgs),
    #[command(name = "check-steps", hide = true)]
    CheckSteps(CheckStepsArgs),
    #[command(name = "check-roi", hide = true)]
    CheckRoi(CheckRoiArgs),
    /// Print a video's metadata as JSON (fps, frame count, size, duration, codec, rotation).
    Probe(ProbeArgs),
    /// Decode frames of a video (OpenCV's frame numbering) into a uint8 .npy (n, H, W, 3).
    #[command(
        after_help = "Example:\n  fgclip frames video.mp4 --timestamps 4.5 6.25 --sample 8 --size 224 --out frames.npy"
    )]
    Frames(FramesArgs),
    /// Score live cameras (RTSP, HTTP, UDP, SRT, files at their own rate) in real time:
    /// events as JSON lines with clips and thumbnails, status.json, a program per event.
    #[command(
        after_help = "Examples:\n  fgclip watch rtsp://cam1/stream rtsp://cam2/stream --model runs/a/final --out live/\n  fgclip watch udp://127.0.0.1:5000 --model runs/a/final --out live/ --exec ./notify.sh --channel ops\n  fgclip watch replay.mp4 --realtime --model runs/a/final --out replay/\nEvents go to stdout and live/events.jsonl (a line when one opens, one when it closes);\n--exec takes the rest of the command line (or up to a lone ';') as the program and its arguments."
    )]
    Watch(WatchArgs),
    /// Fill the GPU kernel cache for a training shape before the run: the step's pieces
    /// (image and text towers, the whole step, `detect`'s batch) in parallel processes that
    /// share the cache (compilation is single-threaded per process).
    #[command(
        after_help = "Example:\n  fgclip --device cuda warmup --preset vit-b-16 --precision bf16 --batch 8 --frames 8\n  fgclip --device cuda train ... --precision bf16   # finds the kernels compiled"
    )]
    Warmup(WarmupArgs),
}

/// The videos a command processes: paths as arguments and/or a list file; `--videos` is the
/// folder the list's paths are relative to (as in `train`, `ablate` and `validate`).
#[derive(Debug, Args)]
pub struct VideoSelection {
    /// Videos to process (paths as given).
    #[arg(value_name = "VIDEO")]
    pub videos: Vec<PathBuf>,
    /// A text file of videos, one path a line (relative to --videos; blank lines and lines
    /// starting with # skipped), processed after those given as arguments.
    #[arg(long, value_name = "FILE")]
    pub list: Option<PathBuf>,
    /// The folder the --list paths are relative to [default: the current folder].
    #[arg(long = "videos", value_name = "ROOT", requires = "list")]
    pub video_root: Option<PathBuf>,
}

impl VideoSelection {
    /// The selected videos, in order.
    pub fn resolve(&self) -> anyhow::Result<Vec<PathBuf>> {
        crate::data::video_list::select_videos(
            &self.videos,
            self.list.as_deref(),
            self.video_root.as_deref(),
        )
    }
}

#[derive(Debug, Args)]
pub struct AblateArgs {
    /// Print a documented example grid file and exit.
    #[arg(long)]
    pub print_grid: bool,
    /// The grid file: {"base": {...}, "grid": {"key": [values]}, "variants": [{...}], "seeds": [...]}.
    #[arg(long, required_unless_present = "print_grid")]
    pub grid: Option<PathBuf>,
    /// Training annotations (JSON array or JSON Lines).
    #[arg(long, required_unless_present = "print_grid")]
    pub annotations: Option<PathBuf>,
    /// Video root of the annotations and of the test list.
    #[arg(long, required_unless_present = "print_grid")]
    pub videos: Option<PathBuf>,
    /// Held-out videos, one path a line (relative to --videos).
    #[arg(long, required_unless_present = "print_grid")]
    pub test_list: Option<PathBuf>,
    /// Ground truth of the held-out videos (UCF-Crime layout; XD-Violence with --protocol).
    #[arg(long, required_unless_present = "print_grid")]
    pub gt: Option<PathBuf>,
    /// Layout of the ground truth: ucf-crime (Temporal_Anomaly_Annotation_for_Testing_Videos.txt)
    /// or xd-violence (annotations.txt); a file in the other layout is named as such.
    #[arg(long, value_enum, default_value = "ucf-crime")]
    pub protocol: crate::eval::Protocol,
    /// HF CLIP folder every run fine-tunes.
    #[arg(long, conflicts_with = "preset")]
    pub model: Option<PathBuf>,
    /// Train a built-in preset from random weights in every run.
    #[arg(long)]
    pub preset: Option<String>,
    /// Tokenizer of the model (as `train --tokenizer`) [default: the model folder, else the
    /// built-in CLIP BPE].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Training config the grid's `base` and cells go over [default: the defaults].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Prompt set of detection: ucf-crime, xd-violence, or a JSON file.
    #[arg(long, default_value = "ucf-crime")]
    pub prompts: String,
    /// Frames per detection snippet.
    #[arg(long, default_value_t = 16)]
    pub stride: u64,
    /// Moving-average window over snippet scores.
    #[arg(long, default_value_t = 1)]
    pub smooth: usize,
    /// Output folder: grid.json, runs/, results.csv, table.md, table.tex, plots, report.html.
    #[arg(long, required_unless_present = "print_grid")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// HF CLIP folder (or an fgclip export).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub videos: VideoSelection,
    /// Output folder: <stem>.json/.csv/.png/.svg and segment thumbnails.
    #[arg(long)]
    pub out: PathBuf,
    /// Frames per snippet.
    #[arg(long, default_value_t = 16)]
    pub stride: u64,
    /// Frames per snippet, averaged, or fused by the model's temporal transformer
    /// [default: 1 (the centre frame), or the clip length the transformer was trained on]
    #[arg(long)]
    pub frames_per_snippet: Option<u64>,
    /// Prompt set: ucf-crime, xd-violence, their Chinese ucf-crime.zh, xd-violence.zh (for
    /// FG-CLIP 2), or a JSON file (see prompts/).
    #[arg(long, default_value = "ucf-crime")]
    pub prompts: String,
    /// Moving-average window over snippet scores (1: none).
    #[arg(long, default_value_t = 1)]
    pub smooth: usize,
    /// Score at which a snippet counts as anomalous (segments, plot colours).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Logit scale s of the softmax (FG-CLIP 2: of the sigmoid) [default: the model's
    /// exp(logit_scale), for CLIP at most 100].
    #[arg(long)]
    pub scale: Option<f64>,
    /// Ground truth to shade on the plots (UCF-Crime layout; XD-Violence with --protocol).
    #[arg(long)]
    pub gt: Option<PathBuf>,
    /// Layout of the ground truth: ucf-crime (Temporal_Anomaly_Annotation_for_Testing_Videos.txt)
    /// or xd-violence (annotations.txt); a file in the other layout is named as such.
    #[arg(long, value_enum, default_value = "ucf-crime")]
    pub protocol: crate::eval::Protocol,
    /// Top segments reported (with thumbnails).
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Frames per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokenizer [default: the model folder].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// FG-CLIP 2: patches a frame (a fixed budget; the image processor's dynamic budget is
    /// 1024 for a 640×360 frame) [default: the model's preprocessor_config.json].
    #[arg(long)]
    pub max_num_patches: Option<usize>,
    /// CLIP and FG-CLIP v1: how a frame becomes S×S, squash or center_crop (HF
    /// CLIPImageProcessor's) [default: what the model was trained with (an fgclip export's
    /// fgclip.json), else its preprocessor_config.json's do_center_crop, else squash].
    #[arg(long, value_enum)]
    pub preprocess: Option<crate::data::preprocess::Preprocess>,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// HF CLIP or FG-CLIP 2 folder (or an fgclip export).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub videos: VideoSelection,
    /// Output folder of <stem>.npy files (videos whose file exists are skipped).
    #[arg(long)]
    pub out: PathBuf,
    /// Frames per snippet: one embedding every STRIDE frames.
    #[arg(long, default_value_t = 16)]
    pub stride: u64,
    /// Frames per snippet, averaged, or fused by the model's temporal transformer
    /// [default: 1 (the centre frame), or the clip length the transformer was trained on]
    #[arg(long)]
    pub frames_per_snippet: Option<u64>,
    /// Frames per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// FG-CLIP 2: patches a frame (a fixed budget) [default: the model's
    /// preprocessor_config.json].
    #[arg(long)]
    pub max_num_patches: Option<usize>,
    /// CLIP and FG-CLIP v1: how a frame becomes S×S (as `detect --preprocess`) [default:
    /// the model's].
    #[arg(long, value_enum)]
    pub preprocess: Option<crate::data::preprocess::Preprocess>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Folder of `<stem>.json` (from `detect`) or `<stem>.npy` frame scores.
    #[arg(long)]
    pub scores: PathBuf,
    /// Ground truth: UCF-Crime's Temporal_Anomaly_Annotation_for_Testing_Videos.txt or
    /// XD-Violence's annotations.txt.
    #[arg(long)]
    pub gt: PathBuf,
    /// Layout of the ground truth: ucf-crime (Temporal_Anomaly_Annotation_for_Testing_Videos.txt)
    /// or xd-violence (annotations.txt); a file in the other layout is named as such.
    #[arg(long, value_enum, default_value = "ucf-crime")]
    pub protocol: crate::eval::Protocol,
    /// Evaluate although some videos' score counts differ from their frame counts.
    #[arg(long, value_enum)]
    pub allow_length_mismatch: Option<crate::eval::LengthMismatch>,
    /// Print one JSON object instead of the readable report.
    #[arg(long)]
    pub json: bool,
}

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

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// JSON array or JSON Lines file of clips (the layout in README's "Videos and
    /// annotations").
    #[arg(long, required_unless_present = "hard_negatives")]
    pub annotations: Option<PathBuf>,
    /// A hard-negative sidecar (`{"items": [...]}`, VAGTA's layout): checked item by item,
    /// and joined to the annotations when they are given.
    #[arg(long)]
    pub hard_negatives: Option<PathBuf>,
    /// Video root: also probe every video and check timestamps and key frames against it.
    #[arg(long)]
    pub videos: Option<PathBuf>,
    /// Regions per clip kept for training; more give a warning.
    #[arg(long, default_value_t = 4)]
    pub max_anns: usize,
    /// Print one JSON object instead of the readable report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub videos: VideoSelection,
    /// Count the video packets instead of trusting the container's frame count.
    #[arg(long)]
    pub count_packets: bool,
}

#[derive(Debug, Args)]
pub struct FramesArgs {
    #[command(flatten)]
    pub videos: VideoSelection,
    /// Only the segment [START, END] seconds: frames int(START·fps) .. int(END·fps) − 1.
    #[arg(long, num_args = 2, value_names = ["START", "END"], allow_negative_numbers = true)]
    pub timestamps: Option<Vec<f64>>,
    /// Take T frames at the segment centres instead of every frame.
    #[arg(long, value_name = "T")]
    pub sample: Option<usize>,
    /// Bring frames to S×S (see --preprocess) instead of their native size.
    #[arg(long, value_name = "S")]
    pub size: Option<u32>,
    /// How --size brings a frame to S×S: squash (resize, the aspect ratio not kept) or
    /// center_crop (HF CLIPImageProcessor: shortest edge to S, centre crop).
    #[arg(long, value_enum, default_value = "squash", requires = "size")]
    pub preprocess: crate::data::preprocess::Preprocess,
    /// Output .npy file; with several videos, a folder of <stem>.npy files.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output folder (data/, run/, detections/, report.html).
    #[arg(long, default_value = "fgclip-demo")]
    pub out: PathBuf,
    /// A seconds-long configuration (for smoke tests).
    #[arg(long)]
    pub tiny: bool,
    /// Training steps (as `train --max-steps`; `--steps` still works) [default: 1200].
    #[arg(long, alias = "steps")]
    pub max_steps: Option<usize>,
    /// Seed of the training run (data order, frame sampling, initial weights; the
    /// synthetic dataset stays the same, so runs are comparable) [default: 7].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Synthetic training videos [default: 960].
    #[arg(long, alias = "videos")]
    pub num_videos: Option<usize>,
    /// μ, the weight of the hard-negative term (0: train without it, for an ablation).
    #[arg(long)]
    pub hard_negative_weight: Option<f64>,
    /// λ, the weight of the region term (0: global contrast only, for an ablation)
    /// [default: 1.0].
    #[arg(long)]
    pub region_weight: Option<f64>,
    /// Train with box-aware augmentation (random resized crop, flip, colour jitter; off by
    /// default: with 960 training videos it did not help on a validation split).
    #[arg(long)]
    pub augment: bool,
    /// The FG-CLIP 2 demo: a small FG-CLIP-2-shaped model trained with FG-CLIP 2's loss on
    /// the synthetic set's Chinese (`zh`) or English (`en`) captions and detected with the
    /// prompts in that language [default: the CLIP demo, English].
    #[arg(long, value_enum)]
    pub captions: Option<crate::demo::Captions>,
}

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder: videos/, train.json and train_zh.json, prompts, test list and ground truth.
    #[arg(long)]
    pub out: PathBuf,
    /// Training videos (test videos: a third as many, at least 1).
    #[arg(long, alias = "videos", default_value_t = 40)]
    pub num_videos: usize,
    /// Seconds per video.
    #[arg(long, default_value_t = 8)]
    pub seconds: u32,
    /// Every video is drawn in turn from this seed's one stream, training videos first:
    /// two sets of one seed share their first training videos, and a larger set's
    /// training videos include a smaller set's test videos (the normal ones byte for
    /// byte). Validate on the training set's own test split, or on another seed's.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// HF model folder: config.json, model.safetensors (or an index), tokenizer files.
    #[arg(long)]
    pub model: PathBuf,
    /// safetensors file with `pixel_values` (N, 3, S, S) f32, already CLIP-normalised; for
    /// FG-CLIP 2 as its processor returns them: `pixel_values` (N, P, 768) f32,
    /// `spatial_shapes` (N, 2) and optionally `pixel_attention_mask` (N, P).
    #[arg(long)]
    pub pixels: Option<PathBuf>,
    /// UTF-8 text file, one caption a line.
    #[arg(long)]
    pub texts: Option<PathBuf>,
    /// Output safetensors: image_embeds, patch_embeds, text_embeds, input_ids (and
    /// long_path, 1 per text that took the long path); FG-CLIP 2: image_embeds,
    /// dense_embeds (N, P, D), spatial_shapes, text_embeds, input_ids, walk (0 short, 1 long,
    /// 2 box).
    #[arg(long)]
    pub out: PathBuf,
    /// tokenizer.json, vocab.json (+ merges.txt), bpe_simple_vocab_16e6.txt.gz, or a
    /// folder with one of them [default: the model folder].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Images or captions per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Every text through FG-CLIP's long path (248 positions, `text_filip_projection`;
    /// FG-CLIP 2: the long walk); without it only texts over 77 tokens (FG-CLIP 2: 64) take
    /// it, when the model has it.
    #[arg(long)]
    pub long: bool,
    /// How FG-CLIP 2 reads every text: short (captions, prompts: 64 positions, `head`),
    /// long (196 positions, `longtext_head`) or box (region captions, `boxtext_head`)
    /// [default: short, long for texts over 64 tokens]. CLIP models: short or long.
    #[arg(long, value_parser = ["short", "long", "box"], conflicts_with = "long")]
    pub walk: Option<String>,
}

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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// Every visible command and argument says what it is, and no help sends the reader to
    /// a file the repository does not ship.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, bad: &mut Vec<String>) {
            let about = cmd.get_about().map(|h| h.to_string()).unwrap_or_default();
            if path != "fgclip" && about.trim().is_empty() {
                bad.push(format!("{path}: no about"));
            }
            for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    bad.push(format!("{path} {id}: no help"));
                }
                if help.contains("DESIGN.md") {
                    bad.push(format!("{path} {id}: cites DESIGN.md"));
                }
            }
            if about.contains("DESIGN.md") {
                bad.push(format!("{path}: cites DESIGN.md"));
            }
            for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
                walk(sub, &format!("{path} {}", sub.get_name()), bad);
            }
        }
        let mut bad = Vec::new();
        walk(&super::Cli::command(), "fgclip", &mut bad);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn checks_are_one_group_and_the_old_names_still_parse() {
        use clap::Parser;
        for argv in [
            &["fgclip", "check", "roi", "--cases", "c", "--out", "o"][..],
            &["fgclip", "check-roi", "--cases", "c", "--out", "o"],
        ] {
            let parsed = super::Cli::try_parse_from(argv);
            assert!(parsed.is_ok(), "{argv:?}: {parsed:?}");
        }
        let help = super::Cli::command().render_help().to_string();
        assert!(
            help.contains("check ") && !help.contains("check-roi"),
            "{help}"
        );
        // One meaning of --videos: the root of a list (a count is --num-videos).
        let p = super::Cli::try_parse_from(["fgclip", "probe", "--videos", "/data", "a.mp4"]);
        assert!(p.is_err(), "--videos without --list accepted");
        let p = super::Cli::try_parse_from(["fgclip", "synth", "--out", "o", "--num-videos", "9"]);
        assert!(
            matches!(p, Ok(super::Cli { command: super::Command::Synth(ref s), .. }) if s.num_videos == 9)
        );
    }
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Live sources: rtsp://, http(s)://, udp://, srt:// URLs, devices or files.
    #[arg(value_name = "SOURCE", required = true)]
    pub sources: Vec<String>,
    /// HF CLIP, FG-CLIP or FG-CLIP 2 folder (or an fgclip export), as for `detect`.
    #[arg(long)]
    pub model: PathBuf,
    /// Output folder: events.jsonl, status.json, clips/, thumbnails/ (scores.csv with
    /// --log-snippets). An existing folder is added to.
    #[arg(long)]
    pub out: PathBuf,
    /// Prompt set (as for `detect`).
    #[arg(long, default_value = "ucf-crime")]
    pub prompts: String,
    /// Tokenizer [default: the model folder].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Logit scale of the head [default: the model's, as for `detect`].
    #[arg(long)]
    pub scale: Option<f64>,
    /// Frames per snippet: one snippet scored every STRIDE frames.
    #[arg(long, default_value_t = 16)]
    pub stride: u64,
    /// Frames sampled from each snippet [default: 1, or the temporal transformer's clip length].
    #[arg(long)]
    pub frames_per_snippet: Option<u64>,
    /// Trailing moving average over the last N snippet scores (causal).
    #[arg(long, default_value_t = 3)]
    pub smooth: usize,
    /// Smoothed score at or above which a snippet is high, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// High snippets in a row that open an event.
    #[arg(long, default_value_t = 3)]
    pub min_snippets: usize,
    /// Frames a tower call at most (snippets of all sources together).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Play files at their own frame rate, as a camera delivers frames (tests, replays).
    #[arg(long)]
    pub realtime: bool,
    /// RTSP transport.
    #[arg(long, value_parser = ["tcp", "udp"])]
    pub rtsp_transport: Option<String>,
    /// Seconds a connection or a read may wait for data before the source reconnects.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Reconnection backoff in seconds: first wait, doubled after each failure up to MAX.
    #[arg(long, default_value_t = 1.0)]
    pub reconnect_min: f64,
    /// The longest wait between reconnection attempts, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub reconnect_max: f64,
    /// Give a network source up after this many reconnections (0: when its first
    /// connection ends or fails) [default: never]. Watch exits when every source has ended.
    #[arg(long)]
    pub max_reconnects: Option<u64>,
    /// Snippets of a source waiting for the model before the oldest is skipped (catching up
    /// with live instead of growing memory).
    #[arg(long, default_value_t = 4)]
    pub max_pending: usize,
    /// Seconds of video in a clip before the event's first high snippet.
    #[arg(long, default_value_t = 2.0)]
    pub pre_roll: f64,
    /// Seconds of video in a clip after the event's last high snippet.
    #[arg(long, default_value_t = 1.0)]
    pub post_roll: f64,
    /// Longest clip in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub clip_max: f64,
    /// Clip frames at most this many pixels wide.
    #[arg(long, default_value_t = 320)]
    pub clip_width: u32,
    /// No clips.
    #[arg(long)]
    pub no_clips: bool,
    /// No thumbnails.
    #[arg(long)]
    pub no_thumbnails: bool,
    /// Seconds between rewrites of status.json.
    #[arg(long, default_value_t = 2.0)]
    pub status_every: f64,
    /// Write every scored snippet to scores.csv (source, stream times, scores, latency).
    #[arg(long)]
    pub log_snippets: bool,
    /// Stop after this many seconds (default: until SIGINT / SIGTERM, or files end).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds an --exec program may run before it is killed.
    #[arg(long, default_value_t = 10.0)]
    pub exec_timeout: f64,
    /// FG-CLIP 2: patches a frame (as for `detect`).
    #[arg(long)]
    pub max_num_patches: Option<usize>,
    /// CLIP: squash or center_crop (as for `detect`).
    #[arg(long, value_enum)]
    pub preprocess: Option<crate::data::preprocess::Preprocess>,
    /// A program run for every event line, with its JSON on stdin (argv, no shell):
    /// PROGRAM [ARGS...], to the end of the command line or a lone ';'.
    #[arg(long, num_args = 1.., value_terminator = ";", allow_hyphen_values = true, value_name = "PROGRAM")]
    pub exec: Option<Vec<String>>,
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
