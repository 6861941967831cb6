//! Run folders that cannot be clobbered: a reused `--out` is refused (the folder left as it
//! was), `--overwrite` replaces only what a run writes, and `--resume` continues with the
//! run's own saved config — refusing settings that change a step, applying those that do
//! not — from the newest checkpoint or a chosen one.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_success, moving_blocks, temp_dir, train_tiny};

/// A tiny run's config: 4 clips, 2 a step, a constant rate (so a run resumed with more
/// steps is the longer run bit for bit), no weight decay (so a resume that fell back to
/// the default 0.1 would show).
fn config(dir: &Path, name: &str, steps: usize, lr: f64) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        serde_json::json!({
            "batch_size": 2, "frames": 2, "learning_rate": lr, "weight_decay": 0.0,
            "schedule": "constant", "epochs": 1000, "max_steps": steps, "shuffle": true,
            "checkpoint_every": 2, "keep_checkpoints": 3, "loader_workers": 1, "seed": 5
        })
        .to_string(),
    )
    .unwrap();
    path
}

fn run(ann: &Path, dir: &Path, out: &Path, cfg: &Path, extra: &[&str]) -> Output {
    train_tiny(ann, dir, out, cfg).args(extra).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` with its bytes (relative paths).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn checkpoints(run: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn final_weights(run: &Path) -> Vec<u8> {
    std::fs::read(run.join("final/model.safetensors")).unwrap()
}

fn metric_steps(run: &Path) -> Vec<u64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn saved_config(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap()
}

/// The scenario: run A (6 steps) in a folder, then run B (2 steps, another rate)
/// into the same folder. Without a flag B is refused and A's folder is left byte for byte;
/// with --overwrite the folder holds B alone — B's config, checkpoints, metrics and a
/// `final/` equal to B trained in a fresh folder, not A's model (whose step is past B's
/// end) — and a file the user put there stays.
#[test]
fn a_reused_out_is_refused_and_overwrite_replaces_only_the_run() {
    let dir = temp_dir("runfolder-overwrite");
    let ann = moving_blocks(&dir);
    let (cfg_a, cfg_b) = (
        config(&dir, "a.json", 6, 5e-4),
        config(&dir, "b.json", 2, 1e-3),
    );
    let out = dir.join("run");
    assert_success(&run(&ann, &dir, &out, &cfg_a, &[]));
    assert_eq!(
        checkpoints(&out),
        ["step-00000002", "step-00000004", "step-00000006"]
    );
    std::fs::write(out.join("notes.txt"), "my notes").unwrap();
    let before = snapshot(&out);

    let refused = run(&ann, &dir, &out, &cfg_b, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let msg = stderr(&refused);
    for needle in [
        "holds a training run",
        "config.json",
        "checkpoints/ (3 of them, step-00000002 … step-00000006)",
        "final/",
        "notes.txt",
        "--resume",
        "--overwrite",
    ] {
        assert!(msg.contains(needle), "`{needle}` not in: {msg}");
    }
    assert!(snapshot(&out) == before, "a refused run changed the folder");

    // A folder with only a stranger's file is refused too, and an empty one is not.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("data.bin"), "x").unwrap();
    let refused = run(&ann, &dir, &other, &cfg_b, &[]);
    assert!(
        stderr(&refused).contains("is not empty (data.bin)"),
        "{}",
        stderr(&refused)
    );

    let replaced = run(&ann, &dir, &out, &cfg_b, &["--overwrite"]);
    assert_success(&replaced);
    assert!(stderr(&replaced).contains("--overwrite: removed the earlier run's"));
    assert_eq!(checkpoints(&out), ["step-00000002"]);
    assert_eq!(metric_steps(&out), [1, 2]);
    assert_eq!(saved_config(&out)["learning_rate"], 1e-3);
    assert_eq!(saved_config(&out)["max_steps"], 2);
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "my notes"
    );
    assert!(!out.join("resumes.jsonl").exists());

    let fresh = dir.join("fresh");
    assert_success(&run(&ann, &dir, &fresh, &cfg_b, &[]));
    assert!(
        final_weights(&out) == final_weights(&fresh),
        "the overwritten folder's final/ is not run B's model"
    );
    assert!(final_weights(&out) != before[Path::new("final/model.safetensors")]);

    // --resume on the replaced run finds B's last checkpoint: nothing left to train.
    let resumed = run(&ann, &dir, &out, &cfg_b, &["--resume"]);
    assert_success(&resumed);
    assert!(final_weights(&out) == final_weights(&fresh));

    // The two start modes exclude each other (a command-line error).
    let both = run(&ann, &dir, &out, &cfg_b, &["--resume", "--overwrite"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
}

/// `--resume` takes the run's saved config: settings that change a step are refused with
/// the keys listed (the folder untouched), `max_steps` is applied, logged and recorded, and
/// the run resumed from 4 to 6 steps with no --config at all (so nothing falls back to a
/// default: the run has weight decay 0, the default is 0.1) equals a 6-step run bit for
/// bit. `--resume CHECKPOINT` goes back to a chosen step once nothing later is left.
#[test]
fn resume_continues_with_the_saved_config_from_the_chosen_checkpoint() {
    let dir = temp_dir("runfolder-resume");
    let ann = moving_blocks(&dir);
    let cfg4 = config(&dir, "four.json", 4, 5e-4);
    let cfg6 = config(&dir, "six.json", 6, 5e-4);
    let other_lr = config(&dir, "other-lr.json", 4, 1e-3);
    let whole = dir.join("whole");
    assert_success(&run(&ann, &dir, &whole, &cfg6, &[]));

    let out = dir.join("run");
    assert_success(&run(&ann, &dir, &out, &cfg4, &[]));
    let before = snapshot(&out);

    // Another learning rate, another precision, another seed: refused, nothing written.
    let refused = run(&ann, &dir, &out, &other_lr, &["--resume"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("`learning_rate`: 0.0005 in the run, 0.001 asked"),
        "{}",
        stderr(&refused)
    );
    let mut c = train_tiny(&ann, &dir, &out, &cfg4);
    let refused = c
        .args(["--resume", "--precision", "bf16", "--seed", "9"])
        .output()
        .unwrap();
    let msg = stderr(&refused);
    assert!(
        msg.contains("2 key(s)") && msg.contains("`precision`") && msg.contains("`seed`"),
        "{msg}"
    );
    assert!(
        snapshot(&out) == before,
        "a refused resume changed the folder"
    );

    // Resumed with no --config, only --max-steps: the saved settings, two more steps.
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fgclip"));
    c.args(["train", "--quiet", "--annotations"])
        .arg(&ann)
        .arg("--videos")
        .arg(&dir)
        .arg("--model")
        .arg(common::fixtures().join("clip_tiny"))
        .arg("--out")
        .arg(&out)
        .args(["--resume", "--max-steps", "6"]);
    let resumed = c.output().unwrap();
    assert_success(&resumed);
    assert!(
        stderr(&resumed).contains("resuming with `max_steps` 6 (the run had 4)"),
        "{}",
        stderr(&resumed)
    );
    assert!(
        final_weights(&out) == final_weights(&whole),
        "resumed run ≠ the 6-step run"
    );
    assert_eq!(saved_config(&out)["max_steps"], 6);
    assert_eq!(saved_config(&out)["weight_decay"], 0.0);
    let record: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(out.join("resumes.jsonl"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(
        record,
        serde_json::json!({"step": 4, "checkpoint": "step-00000004", "world_size": 1,
                           "changed": {"max_steps": [4, 6]}})
    );
    assert_eq!(metric_steps(&out), [1, 2, 3, 4, 5, 6]);

    // Back to step 4: refused while later steps are in the folder, then done.
    let step4 = out.join("checkpoints/step-00000004");
    let back = |out: &Path| {
        run(
            &ann,
            &dir,
            out,
            &cfg6,
            &["--resume", step4.to_str().unwrap()],
        )
    };
    assert_eq!(
        checkpoints(&out),
        ["step-00000002", "step-00000004", "step-00000006"]
    );
    let refused = back(&out);
    assert!(
        stderr(&refused).contains("later checkpoints (step-00000006)"),
        "{}",
        stderr(&refused)
    );
    std::fs::remove_dir_all(out.join("checkpoints/step-00000006")).unwrap();
    let refused = back(&out);
    assert!(
        stderr(&refused).contains("export of the run's later steps"),
        "{}",
        stderr(&refused)
    );
    std::fs::remove_dir_all(out.join("final")).unwrap();
    let again = back(&out);
    assert_success(&again);
    assert!(final_weights(&out) == final_weights(&whole));
    assert_eq!(metric_steps(&out), [1, 2, 3, 4, 5, 6]);

    // A checkpoint of another run, or no checkpoint at all, is not resumed.
    let elsewhere = whole.join("checkpoints/step-00000004");
    let refused = run(
        &ann,
        &dir,
        &out,
        &cfg6,
        &["--resume", elsewhere.to_str().unwrap()],
    );
    assert!(
        stderr(&refused).contains("is not a checkpoint of the run"),
        "{}",
        stderr(&refused)
    );

    // A run killed before its first checkpoint (config.json alone) starts again at step 0.
    let early = dir.join("early");
    std::fs::create_dir_all(&early).unwrap();
    std::fs::copy(whole.join("config.json"), early.join("config.json")).unwrap();
    let restarted = run(&ann, &dir, &early, &cfg6, &["--resume"]);
    assert_success(&restarted);
    assert!(
        stderr(&restarted).contains("starts again from step 0"),
        "{}",
        stderr(&restarted)
    );
    assert!(final_weights(&early) == final_weights(&whole));
}
