//! `fgclip bench watch`: can one process score N live 640×360 30 fps streams in real time?
//! N `ffmpeg` CLI publishers send copies of a generated video as MPEG-TS over UDP on
//! loopback (each at its own rate, looping); `watch` scores them with random weights of a
//! preset for a while; the report gives each stream's decode rate, snippets scored and
//! dropped, the lag, and the latency from a snippet's last frame arriving to its score.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use burn::tensor::{Device, Distribution, Tensor};
use fgclip_core::zeroshot::ZeroShotHead;
use fgclip_core::{ClipConfig, ClipModel, Precision, RandomInit, Weights};
use serde::Serialize;

use crate::data::live::LiveOptions;
use crate::detect::VideoModel;
use crate::watch::events::EventRules;
use crate::watch::source::SourceSettings;
use crate::watch::status::{Percentiles, SourceStatus};
use crate::watch::{Scoring, WatchOptions, run_id, wall_now, watch};

/// The `ffmpeg` CLI (`program`) publishing `video` in a loop at its own rate, as a camera
/// would, as MPEG-TS to `url` (`udp://host:port`) in datagrams that fit one Ethernet frame.
/// Shared with the watch tests.
pub fn udp_publisher(program: &Path, video: &Path, url: &str) -> std::io::Result<Child> {
    Command::new(program)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
        ])
        .arg(video)
        .args(["-an", "-c:v", "copy", "-f", "mpegts"])
        .arg(format!("{url}?pkt_size=1316"))
        .stdin(Stdio::null())
        .spawn()
}

/// What `bench watch` measured.
#[derive(Debug, Serialize)]
pub struct WatchBench {
    pub streams: usize,
    pub seconds: f64,
    pub stride: u64,
    /// Every stream decoded at ≥ 95 % of 30 fps and no snippet was dropped.
    pub sustained: bool,
    pub decoded_fps: Vec<f64>,
    pub snippets_scored: u64,
    pub snippets_dropped: u64,
    pub tower_calls: u64,
    pub latency_ms: Percentiles,
    pub peak_rss_mib: Option<f64>,
    pub sources: Vec<SourceStatus>,
}

struct Publishers(Vec<Child>);

impl Drop for Publishers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs the benchmark on `video` (640×360 30 fps H.264) for `seconds`.
#[allow(clippy::too_many_arguments)]
pub fn bench_watch(
    config: &ClipConfig,
    video: &Path,
    streams: usize,
    seconds: f64,
    stride: u64,
    batch: usize,
    precision: Precision,
    device: &Device,
) -> Result<WatchBench> {
    let mut clip = ClipModel::load(&Weights::new(&RandomInit::new(config, 0), device), config)?;
    clip.set_precision(precision);
    let model = VideoModel::mean_pooling(clip);
    let p = config.projection_dim;
    let classes: Vec<Tensor<1>> = (0..6)
        .map(|_| Tensor::<1>::random([p], Distribution::Normal(0.0, 1.0), device))
        .collect();
    let head = ZeroShotHead::new(classes, 100.0);
    let names: Vec<String> = ["Normal", "A", "B", "C", "D", "E"]
        .map(String::from)
        .to_vec();
    let mut sources = Vec::new();
    let mut publishers = Publishers(Vec::new());
    for _ in 0..streams {
        let port = free_udp_port()?;
        let url = format!("udp://127.0.0.1:{port}");
        publishers
            .0
            .push(udp_publisher(Path::new("ffmpeg"), video, &url).context(
                "starting the ffmpeg CLI (Debian package ffmpeg; scripts/install-deps)",
            )?);
        sources.push(url);
    }
    let out = std::env::temp_dir().join(format!("fgclip-bench-watch-out-{}", std::process::id()));
    let options = WatchOptions {
        sources,
        source: SourceSettings {
            live: LiveOptions {
                timeout: Duration::from_secs(10),
                ..LiveOptions::default()
            },
            stride,
            per_snippet: 1,
            max_pending: 4,
            backoff: (Duration::from_millis(200), Duration::from_secs(1)),
            max_reconnects: None,
            clips: false,
            clip_width: 320,
            pre_roll_s: 0.0,
            ring_snippets: 0,
            clip_max_s: 0.0,
        },
        rules: EventRules {
            threshold: 1.0,
            min_snippets: 1_000_000,
            smooth: 1,
        },
        batch_size: batch,
        status_every: Duration::from_secs(1),
        pre_roll_s: 0.0,
        post_roll_s: 0.0,
        clips: false,
        thumbnails: false,
        exec: None,
        log_snippets: false,
        duration: Some(Duration::from_secs_f64(seconds)),
        run_id: run_id(wall_now()),
    };
    // One flag per run; a benchmark runs once a process.
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let summary = watch(
        Scoring {
            model: &model,
            head: &head,
            names: &names,
        },
        &options,
        &out,
        device,
        stop,
        Box::new(|_| {}),
    )?;
    drop(publishers);
    let _ = std::fs::remove_dir_all(&out);
    let decoded_fps: Vec<f64> = summary
        .sources
        .iter()
        .map(|s| s.counters.frames_decoded as f64 / summary.seconds)
        .collect();
    let dropped = summary
        .sources
        .iter()
        .map(|s| s.counters.snippets_dropped)
        .sum();
    Ok(WatchBench {
        streams,
        seconds: summary.seconds,
        stride,
        // The first second goes to connecting: 95 % of 30 fps over the run.
        sustained: dropped == 0
            && decoded_fps
                .iter()
                .all(|f| *f >= 0.95 * 30.0 * (1.0 - 1.0 / seconds)),
        decoded_fps,
        snippets_scored: summary.snippets_scored,
        snippets_dropped: dropped,
        tower_calls: summary.tower_calls,
        latency_ms: summary.latency_ms,
        peak_rss_mib: super::peak_rss_mib(),
        sources: summary.sources,
    })
}
