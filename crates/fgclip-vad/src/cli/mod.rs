//! The `fgclip` command line (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod bench;
mod check;
mod detect;
mod train;
pub use bench::*;
pub use check::*;
pub use detect::*;
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
    /// Kernels for the matrix products on a CUDA device: cubecl (burn's autotuned matmul,
    /// TF32 for f32), cublas (cuBLAS, TF32 for f32, as PyTorch with allow_tf32) or
    /// cublas-f32 (cuBLAS in exact f32, PyTorch's default); with cuBLAS, bf16 products
    /// accumulate in f32. Other devices ignore it.
    #[arg(long, global = true, default_value = "cubecl", value_parser = ["cubecl", "cublas", "cublas-f32"])]
    pub matmul: String,
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
