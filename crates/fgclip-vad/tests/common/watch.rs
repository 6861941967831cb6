//! What the `watch` tests share: the synthetic videos, the servers that stream them, the
//! command line and readers of what `watch` writes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::loopback::{Server, which};

pub const FPS: f64 = 10.0;
pub const STRIDE: u64 = 4;
pub const SMOOTH: usize = 2;
pub const MIN_SNIPPETS: usize = 2;

pub fn fgclip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fgclip"))
}

pub fn model() -> PathBuf {
    super::fixtures().join("watch_model")
}

/// Synthetic test videos of 16 s at 10 fps: (fire video, normal video, the fire's first
/// frame from the generator's ground truth).
pub fn synth(dir: &Path) -> (PathBuf, PathBuf, u64) {
    let out = dir.join("synth");
    let run = fgclip()
        .args([
            "synth",
            "--num-videos",
            "6",
            "--seconds",
            "16",
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let gt = std::fs::read_to_string(out.join("test_gt.txt")).unwrap();
    let line = gt
        .lines()
        .find(|l| l.starts_with("test_000_Fire.mp4"))
        .unwrap_or_else(|| panic!("no fire video in {gt}"));
    let first: u64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(gt.contains("test_001_Normal.mp4 Normal"), "{gt}");
    (
        out.join("videos/test_000_Fire.mp4"),
        out.join("videos/test_001_Normal.mp4"),
        first,
    )
}

/// GStreamer's RTSP server serving `video` at rtsp://127.0.0.1:port/stream.
pub fn rtsp_server(video: &Path, port: u16) -> Server {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/rtsp_server.py");
    // Debian's Python: python3-gi is installed for it.
    let python = if Path::new("/usr/bin/python3").is_file() {
        PathBuf::from("/usr/bin/python3")
    } else {
        which("python3")
    };
    let mut child = Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .arg(video)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "ready",
        "the RTSP server did not start (scripts/install-deps installs GStreamer's)"
    );
    Server(child)
}

/// `video` with a key frame every 10 frames (1 s), as a camera sends it: a UDP stream is
/// joined mid-way and decodes from its next key frame (the synthetic videos have one).
pub fn with_key_frames(video: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("gop10.mp4");
    let ok = Command::new(which("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(video)
        .args([
            "-an", "-c:v", "libx264", "-g", "10", "-bf", "0", "-preset", "veryfast",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(ok.success());
    out
}

/// `ffmpeg` publishing `video` in a loop at its own rate as MPEG-TS to udp://127.0.0.1:port
/// (the publisher `bench watch` uses).
pub fn udp_publisher(video: &Path, port: u16) -> Server {
    let url = format!("udp://127.0.0.1:{port}");
    Server(fgclip_vad::bench::watch::udp_publisher(&which("ffmpeg"), video, &url).unwrap())
}

pub fn watch_args(out: &Path) -> Vec<String> {
    let m = model();
    [
        "watch",
        "--model",
        m.to_str().unwrap(),
        "--tokenizer",
        "builtin",
        "--prompts",
        m.join("prompts.json").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--stride",
        &STRIDE.to_string(),
        "--smooth",
        &SMOOTH.to_string(),
        "--min-snippets",
        &MIN_SNIPPETS.to_string(),
        "--log-snippets",
        "--quiet",
        // Room for a busy test machine: scoring lags, nothing is skipped.
        "--max-pending",
        "64",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn check(run: &Output) {
    assert!(
        run.status.success(),
        "watch failed ({:?}):\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}

pub fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (source, connection, start_s, end_s, score) of scores.csv.
pub fn scores(out: &Path) -> Vec<(String, u64, f64, f64, f64)> {
    let mut r = csv::Reader::from_path(out.join("scores.csv")).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (
                rec[0].to_string(),
                rec[1].parse().unwrap(),
                rec[2].parse().unwrap(),
                rec[3].parse().unwrap(),
                rec[4].parse().unwrap(),
            )
        })
        .collect()
}

pub fn status(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("status.json")).unwrap()).unwrap()
}
