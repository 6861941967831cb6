//! The videos a command takes, and the commands that score them: `detect`, `extract`,
//! `eval`, and `watch` on live sources.

use std::path::PathBuf;

use clap::Args;

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
