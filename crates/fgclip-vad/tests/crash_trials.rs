//! Crash at any instant (issue #16): `fgclip train` SIGKILLed at 10 seeded random
//! instants — one of them while a checkpoint is being written — and resumed after each;
//! the run ends with weights byte-identical to the uninterrupted run, and after every
//! kill each `checkpoints/step-*` folder is complete (every file its `state.json` lists,
//! at the recorded size) and resuming never has to pass over a damaged one.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_success, moving_blocks, temp_dir, train_tiny};

fn train(ann: &Path, dir: &Path, run: &Path, cfg: &Path, resume: bool) -> Command {
    let mut c = train_tiny(ann, dir, run, cfg);
    if resume {
        c.arg("--resume");
    }
    c
}

/// Every checkpoint folder is whole: the files `state.json` lists, at their sizes.
fn assert_checkpoints_whole(run: &Path) {
    let Ok(entries) = std::fs::read_dir(run.join("checkpoints")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("step-") {
            continue; // a temporary folder of a write that was cut short
        }
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(e.path().join("state.json")).unwrap())
                .unwrap_or_else(|err| panic!("{name}/state.json: {err}"));
        let files = state["files"].as_object().unwrap();
        assert!(files.contains_key("model.safetensors") && files.contains_key("optimizer.bpk"));
        for (f, v) in files {
            let size = std::fs::metadata(e.path().join(f))
                .unwrap_or_else(|err| panic!("{name}/{f}: {err}"))
                .len();
            assert_eq!(size, v[0].as_u64().unwrap(), "{name}/{f}");
        }
    }
}

#[test]
fn sigkill_at_ten_random_instants_resumes_to_identical_weights() {
    let dir = temp_dir("crash-trials");
    let ann = moving_blocks(&dir);
    let cfg = dir.join("cfg.json");
    std::fs::write(
        &cfg,
        r#"{"batch_size": 2, "frames": 2, "learning_rate": 0.001, "weight_decay": 0.01,
            "schedule": "cosine", "warmup_steps": 2, "epochs": 100, "max_steps": 24,
            "shuffle": true, "checkpoint_every": 1, "keep_checkpoints": 2, "seed": 11,
            "augment": [{"flip": 0.5}]}"#,
    )
    .unwrap();
    let straight = dir.join("straight");
    let t0 = Instant::now();
    assert_success(&train(&ann, &dir, &straight, &cfg, false).output().unwrap());
    let whole = t0.elapsed();
    let want = std::fs::read(straight.join("final/model.safetensors")).unwrap();

    let run = dir.join("killed");
    let steps_logged =
        || std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count());
    let mut rng = 0x5EED_2026_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut kills, mut target) = (0, 0);
    for trial in 0..10 {
        let mut child = train(&ann, &dir, &run, &cfg, trial > 0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A random instant after a random step: 1–2 steps further each trial (at most 20
        // of 24), then 0–40 ms more; trial 3 instead waits for a checkpoint being
        // written (its temporary folder exists).
        target += 1 + (next() % 2) as usize;
        let start = Instant::now();
        while steps_logged() < target && child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < whole * 20, "no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        if trial == 3 {
            while child.try_wait().unwrap().is_none()
                && !std::fs::read_dir(run.join("checkpoints")).is_ok_and(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().contains(".tmp"))
                })
            {}
        } else {
            std::thread::sleep(Duration::from_millis(next() % 40));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        assert_checkpoints_whole(&run);
    }
    // Finish; no resume may have met a damaged checkpoint.
    let out = train(&ann, &dir, &run, &cfg, true).output().unwrap();
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("skipping checkpoint"), "{err}");
    assert_eq!(kills, 10, "a trial ended before it was killed");
    let leftovers: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary folders left: {leftovers:?}"
    );
    let got = std::fs::read(run.join("final/model.safetensors")).unwrap();
    assert!(
        got == want,
        "weights after {kills} kills differ from the uninterrupted run"
    );
    eprintln!("{kills} kills; the uninterrupted run took {whole:?}");
    std::fs::remove_dir_all(dir).ok();
}
