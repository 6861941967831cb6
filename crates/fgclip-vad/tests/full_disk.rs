//! A full disk (issue #16), made real with the file-size limit (`ulimit -f`, SIGXFSZ
//! ignored, so writes past it fail with EFBIG as on a full file system): a checkpoint
//! write that fails reports the error and leaves the earlier checkpoints whole and no
//! temporary folder; `--resume` once space is back ends with the uninterrupted run's
//! weights. `extract` and `detect` leave no truncated `.npy` / JSON behind.

#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{assert_success, fixtures, moving_blocks, temp_dir};

/// `fgclip ARGS`, with files limited to `limit_kib` KiB when given.
fn fgclip_limited(args: &[&str], limit_kib: Option<u64>) -> Command {
    let bin = env!("CARGO_BIN_EXE_fgclip");
    match limit_kib {
        None => {
            let mut c = Command::new(bin);
            c.args(args);
            c
        }
        Some(k) => {
            // bash's `ulimit -f` counts 1024-byte blocks; an ignored signal stays ignored
            // across exec.
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg(format!("trap '' XFSZ; ulimit -f {k}; exec \"$0\" \"$@\""))
                .arg(bin)
                .args(args);
            c
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            for f in std::fs::read_dir(e.path()).unwrap().flatten() {
                let n = format!("{name}/{}", f.file_name().to_string_lossy());
                out.push((n, std::fs::read(f.path()).unwrap()));
            }
        } else {
            out.push((name, std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_failed_checkpoint_write_keeps_the_last_one_and_resume_continues_exactly() {
    let dir = temp_dir("full-disk");
    let ann = moving_blocks(&dir);
    let cfg = dir.join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"batch_size": 2, "frames": 2, "learning_rate": 0.001, "epochs": 100,
            "max_steps": 10, "checkpoint_every": 2, "keep_checkpoints": 5, "seed": 4}"#,
    )
    .unwrap();
    let model = fixtures().join("clip_tiny");
    let args = |run: &Path| -> Vec<String> {
        [
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
            s(run),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let straight = dir.join("straight");
    let a = args(&straight);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    assert_success(&fgclip_limited(&a, None).output().unwrap());
    let want = std::fs::read(straight.join("final/model.safetensors")).unwrap();

    // A run that has written its first checkpoint, stopped there.
    let run = dir.join("run");
    let b = args(&run);
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let mut child = fgclip_limited(&b, None)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !run.join("checkpoints/step-00000002/state.json").is_file() {
        assert!(start.elapsed() < Duration::from_secs(600), "no checkpoint");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let ckpts = run.join("checkpoints");
    let before: Vec<(String, Vec<u8>)> = listing(&ckpts)
        .into_iter()
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();

    // Resumed with "no space" for its 6.9 MB weights: an error naming the write, and the
    // checkpoints exactly as they were.
    let mut resume = b.clone();
    resume.push("--resume");
    let full = fgclip_limited(&resume, Some(2048)).output().unwrap();
    assert_eq!(full.status.code(), Some(1));
    let err = String::from_utf8_lossy(&full.stderr);
    assert!(
        err.contains("model.safetensors") && err.contains("File too large"),
        "{err}"
    );
    assert_eq!(listing(&ckpts), before, "the checkpoints changed");
    assert!(!run.join("final").join("model.safetensors").exists());

    // Space again: resume ends where the uninterrupted run did.
    let ok = fgclip_limited(&resume, None).output().unwrap();
    assert_success(&ok);
    assert!(std::fs::read(run.join("final/model.safetensors")).unwrap() == want);
    std::fs::remove_dir_all(dir).ok();
}

/// `final/` that cannot be written (a file stands in its way): an error, the last
/// checkpoint kept, no half-written `final/`; once the way is clear, `--resume` exports
/// the same weights as a run that never failed.
#[test]
fn a_failed_final_export_is_redone_on_resume() {
    let dir = temp_dir("final-fail");
    let ann = moving_blocks(&dir);
    let cfg = dir.join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"batch_size": 2, "frames": 2, "epochs": 100, "max_steps": 3,
            "checkpoint_every": 100, "seed": 2}"#,
    )
    .unwrap();
    let model = fixtures().join("clip_tiny");
    let train = |run: &Path, resume: bool| {
        let mut a = vec![
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
            s(run),
        ];
        if resume {
            a.push("--resume");
        }
        fgclip_limited(&a, None).output().unwrap()
    };
    let straight = dir.join("straight");
    assert_success(&train(&straight, false));
    // A new run refuses a folder that is not empty, so the obstacle goes into a run
    // that has its config but no checkpoint yet (killed before its first one), resumed.
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::copy(straight.join("config.json"), run.join("config.json")).unwrap();
    std::fs::write(run.join("final"), "in the way").unwrap();
    let failed = train(&run, true);
    assert_eq!(failed.status.code(), Some(1));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("final"), "{err}");
    assert!(run.join("checkpoints/step-00000003/state.json").is_file());
    let stray: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".final"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    std::fs::remove_file(run.join("final")).unwrap();
    assert_success(&train(&run, true));
    for f in [
        "model.safetensors",
        "config.json",
        "fgclip.json",
        "tokenizer.json",
    ] {
        assert!(
            std::fs::read(run.join("final").join(f)).unwrap()
                == std::fs::read(straight.join("final").join(f)).unwrap(),
            "final/{f}"
        );
    }
}

fn assert_no_partial_outputs(out: &Path) {
    for e in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp"), "temporary file left: {name}");
        let bytes = std::fs::read(e.path()).unwrap();
        if name.ends_with(".json") {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .unwrap_or_else(|err| panic!("{name} is truncated: {err}"));
        }
        if name.ends_with(".npy") {
            fgclip_vad::data::npy::parse_f32(&bytes)
                .unwrap_or_else(|err| panic!("{name} is truncated: {err}"));
        }
    }
}

#[test]
fn extract_and_detect_leave_no_truncated_outputs() {
    let dir = temp_dir("full-disk-out");
    moving_blocks(&dir);
    let model = fixtures().join("clip_tiny");
    let list = dir.join("list.txt");
    std::fs::write(&list, "v0.mp4\nv1.mp4\n").unwrap();
    let feats = dir.join("feats");
    // 24 snippets × 32 floats: 3 KiB per .npy, over a 1 KiB limit.
    let out: Output = fgclip_limited(
        &[
            "extract",
            "--quiet",
            "--model",
            s(&model),
            "--videos",
            s(&dir),
            "--list",
            s(&list),
            "--out",
            s(&feats),
            "--stride",
            "1",
        ],
        Some(1),
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("v0.mp4") && err.contains("File too large"),
        "{err}"
    );
    assert_no_partial_outputs(&feats);
    assert!(!feats.join("v0.npy").exists());

    let det = dir.join("det");
    let out = fgclip_limited(
        &[
            "detect",
            "--quiet",
            "--model",
            s(&model),
            "--out",
            s(&det),
            "--stride",
            "1",
            s(&dir.join("v0.mp4")),
        ],
        Some(1),
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("File too large"));
    assert_no_partial_outputs(&det);
    assert!(!det.join("v0.json").exists());
    std::fs::remove_dir_all(dir).ok();
}
