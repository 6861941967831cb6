//! A bad-input corpus made by the test (issue #16): damaged copies of videos it encodes —
//! truncated, bit-flipped, zeroed, spliced, with random headers; seeded — through
//! `probe`, `frames`, `detect` and `train`. Never a panic; exit codes as documented
//! (0: done, 1: an error or some inputs failed, 2: bad command line); `detect` scores
//! the good videos beside the bad ones, `train` skips and counts the clips it cannot read.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_success, fixtures, temp_dir};
use fgclip_vad::data::encode::{Codec, EncodeOptions, VideoWriter};

/// xorshift64*: the damage is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn encode(path: &Path, codec: Codec, shade: u8) {
    let opts = EncodeOptions {
        codec,
        fps: 10,
        gop: 8,
        b_frames: if codec == Codec::H264 { 2 } else { 0 },
        crf: 18,
    };
    let mut w = VideoWriter::create(path, 64, 64, opts).unwrap();
    for i in 0..40usize {
        let mut f = vec![shade; 64 * 64 * 3];
        let x0 = i % 40;
        for y in 16..40 {
            for x in x0..(x0 + 20).min(64) {
                f[(y * 64 + x) * 3] = 230;
            }
        }
        w.write_rgb(&f).unwrap();
    }
    w.finish().unwrap();
}

/// The damaged copies of `good` (and of `other`, for splices), named by kind.
fn damage(dir: &Path, good: &Path, other: &Path, seed: u64) -> Vec<PathBuf> {
    let bytes = std::fs::read(good).unwrap();
    let second = std::fs::read(other).unwrap();
    let ext = good.extension().unwrap().to_string_lossy().into_owned();
    let stem = good.file_stem().unwrap().to_string_lossy().into_owned();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let n = bytes.len();
    let mut out = Vec::new();
    let mut put = |kind: &str, data: Vec<u8>| {
        let p = dir.join(format!("{stem}-{kind}-{seed}.{ext}"));
        std::fs::write(&p, data).unwrap();
        out.push(p);
    };
    put("truncated", bytes[..rng.below(n)].to_vec());
    let mut flipped = bytes.clone();
    for _ in 0..64 {
        let i = rng.below(n);
        flipped[i] ^= 1 << rng.below(8);
    }
    put("bitflip", flipped);
    let mut zeroed = bytes.clone();
    let at = rng.below(n);
    let len = rng.below(n / 4);
    zeroed[at..(at + len).min(n)].fill(0);
    put("zeroed", zeroed);
    let cut_a = rng.below(n);
    let cut_b = rng.below(second.len());
    put("spliced", [&bytes[..cut_a], &second[cut_b..]].concat());
    let mut header = bytes.clone();
    for b in header.iter_mut().take(256) {
        *b = rng.next() as u8;
    }
    put("header", header);
    out
}

/// Runs fgclip; asserts that it exited normally with an allowed code and did not panic.
#[track_caller]
fn run(args: &[&str], allowed: &[i32]) -> Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    let code = out.status.code();
    assert!(
        code.is_some_and(|c| allowed.contains(&c)),
        "{args:?}: exit {code:?}, allowed {allowed:?}\n{stderr}"
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn damaged_videos_never_panic_and_good_ones_still_work() {
    let dir = temp_dir("bad-inputs");
    let mut good = Vec::new();
    for (i, (name, codec)) in [
        ("g0.mp4", Codec::H264),
        ("g1.mkv", Codec::H264),
        ("g2.avi", Codec::Mpeg4),
        ("g3.mp4", Codec::H264),
    ]
    .into_iter()
    .enumerate()
    {
        let p = dir.join(name);
        encode(&p, codec, 60 + 40 * i as u8);
        good.push(p);
    }
    let mut bad = Vec::new();
    for seed in 1..=2 {
        for (i, g) in good.iter().take(3).enumerate() {
            bad.extend(damage(&dir, g, &good[(i + 1) % 3], seed));
        }
    }
    assert_eq!(bad.len(), 30);

    // probe and frames: a result or an error naming the file.
    let (mut probe_errors, mut frame_errors) = (0, 0);
    for b in &bad {
        let p = run(&["probe", s(b)], &[0, 1]);
        if !p.status.success() {
            probe_errors += 1;
            let err = String::from_utf8_lossy(&p.stderr);
            assert!(
                err.contains(b.file_name().unwrap().to_str().unwrap()),
                "{err}"
            );
        }
        let f = run(
            &[
                "frames",
                s(b),
                "--sample",
                "4",
                "--out",
                s(&dir.join("f.npy")),
            ],
            &[0, 1],
        );
        if !f.status.success() {
            frame_errors += 1;
        }
    }
    // The corpus really is damaged: the random headers and early truncations fail.
    assert!(probe_errors >= 4, "{probe_errors} probe errors");
    assert!(frame_errors >= probe_errors, "{frame_errors} frame errors");

    // detect: exit 1 for the failures, every good video still scored.
    let det = dir.join("det");
    let mut args: Vec<&str> = vec!["detect", "--quiet", "--model"];
    let model = fixtures().join("clip_tiny");
    args.push(s(&model));
    args.extend(["--stride", "8", "--out", s(&det)]);
    args.push(s(&good[3]));
    args.extend(bad.iter().map(|b| s(b)));
    args.push(s(&good[0]));
    let d = run(&args, &[1]);
    for g in [&good[0], &good[3]] {
        let stem = g.file_stem().unwrap().to_str().unwrap();
        assert!(
            det.join(format!("{stem}.json")).is_file(),
            "{stem} not scored"
        );
    }
    let failed = String::from_utf8_lossy(&d.stderr).matches("error:").count();
    assert!(failed >= probe_errors, "{failed} detect errors");

    // train: clips on damaged videos among good ones are skipped and counted.
    let mut clips: Vec<serde_json::Value> = good
        .iter()
        .map(|g| {
            serde_json::json!({"video": g.file_name().unwrap().to_str().unwrap(),
                               "global_caption": format!("a red bar on {}", g.display())})
        })
        .collect();
    for b in bad
        .iter()
        .filter(|b| s(b).contains("header") || s(b).contains("truncated"))
    {
        clips.push(
            serde_json::json!({"video": b.file_name().unwrap().to_str().unwrap(),
                                      "global_caption": "a damaged clip"}),
        );
    }
    let ann = dir.join("train.json");
    std::fs::write(&ann, serde_json::Value::Array(clips).to_string()).unwrap();
    let cfg = dir.join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"batch_size": 2, "frames": 2, "epochs": 1, "shuffle": false, "drop_last": false,
            "checkpoint_every": 100, "warmup_steps": 0}"#,
    )
    .unwrap();
    let t = run(
        &[
            "train",
            "--quiet",
            "--annotations",
            s(&ann),
            "--videos",
            s(&dir),
            "--model",
            s(&model),
            "--config",
            s(&cfg),
            "--out",
            s(&dir.join("run")),
        ],
        &[0],
    );
    assert_success(&t);
    let summary: serde_json::Value = serde_json::from_slice(&t.stdout).unwrap();
    let skipped = summary["clips_skipped"].as_u64().unwrap();
    let seen = summary["clips_seen"].as_u64().unwrap();
    eprintln!(
        "{} damaged videos: probe failed on {probe_errors}, frames on {frame_errors}, detect on {failed}; train skipped {skipped} clips, trained {seen}",
        bad.len()
    );
    assert!(skipped >= 4, "{summary}");
    assert!(seen >= 4, "the good clips trained: {summary}");
    std::fs::remove_dir_all(dir).ok();
}

/// A bad command line is exit code 2, as clap reports it.
#[test]
fn a_bad_command_line_exits_with_2() {
    run(&["detect", "--no-such-flag"], &[2]);
    run(&["train"], &[2]);
}
