//! Training from FG-CLIP 2 (the tiny fixture model and its tokenizer) on Chinese and English
//! video annotations with regions, hard negatives and long captions: every FG-CLIP 2 term is
//! computed and logged, the loss falls, `final/` is an FG-CLIP 2 folder under FG-CLIP 2's
//! names that `embed` loads again, and a run stopped at a checkpoint (or killed with
//! SIGKILL) and resumed, the cross-modal rank threshold restored, ends byte-identical to a
//! run made in one go.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_success, fgclip, fgclip2_clips, fixtures, temp_dir};
use fgclip_vad::checkpoint::safetensors_io::read_arrays;

fn config(dir: &Path, steps: usize) -> PathBuf {
    let path = dir.join(format!("cfg-{steps}.json"));
    std::fs::write(
        &path,
        serde_json::json!({
            "batch_size": 4, "frames": 2, "learning_rate": 0.001, "weight_decay": 0.0,
            "schedule": "constant", "epochs": 1000, "max_steps": steps, "shuffle": false,
            "checkpoint_every": 2, "keep_checkpoints": 2, "loader_workers": 1, "seed": 3,
            "max_num_patches": 12, "dynamic_max_patches": false
        })
        .to_string(),
    )
    .unwrap();
    path
}

fn train(ann: &Path, run: &Path, cfg: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fgclip"));
    c.args(["train", "--quiet", "--annotations"])
        .arg(ann)
        .arg("--videos")
        .arg(ann.parent().unwrap())
        .arg("--model")
        .arg(fixtures().join("fgclip2_tiny/model"))
        .arg("--out")
        .arg(run)
        .arg("--config")
        .arg(cfg);
    c
}

fn rows(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn training_from_fgclip2_computes_every_term_and_exports_fgclip2() {
    let dir = temp_dir("fgclip2-train");
    let ann = fgclip2_clips(&dir);
    let run = dir.join("run");
    let out = train(&ann, &run, &config(&dir, 8)).output().unwrap();
    assert_success(&out);

    // The run recorded FG-CLIP 2's weights, not FG-CLIP's.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["region_weight"], 0.2);
    assert_eq!(saved["region_text_weight"], 0.1);
    assert_eq!(saved["hard_negative_weight"], 0.5);

    let rows = rows(&run);
    assert_eq!(rows.len(), 8);
    for r in &rows {
        for key in [
            "loss_global",
            "loss_global_long",
            "loss_region",
            "loss_region_text",
            "loss_hard_negative",
        ] {
            let v = r[key].as_f64().unwrap();
            assert!(v.is_finite() && v > 0.0, "{key} = {v} in {r}");
        }
        assert_eq!(r["num_regions"], 4);
        assert_eq!(r["num_hard_regions"], 4);
        let total = r["loss"].as_f64().unwrap();
        let parts = r["loss_global"].as_f64().unwrap()
            + r["loss_global_long"].as_f64().unwrap()
            + 0.2 * r["loss_region"].as_f64().unwrap()
            + 0.1 * r["loss_region_text"].as_f64().unwrap()
            + 0.5 * r["loss_hard_negative"].as_f64().unwrap();
        assert!(
            (total - parts).abs() < 1e-4 * total.abs().max(1.0),
            "{total} vs {parts}"
        );
    }
    // The same batch at every step: AdamW lowers its loss.
    let first = rows[0]["loss"].as_f64().unwrap();
    let last = rows[7]["loss"].as_f64().unwrap();
    assert!(last < first, "loss {first} → {last}");

    // final/ is FG-CLIP 2's format: its names, the packed attention of the pooling heads,
    // the two added scales, its config and processor, the tokenizer.
    let fin = run.join("final");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fin.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "fgclip2");
    assert_eq!(cfg["architectures"][0], "FG_CLIP2_Model");
    let arrays = read_arrays(&fin.join("model.safetensors")).unwrap();
    let want = read_arrays(&fixtures().join("fgclip2_tiny/model/model.safetensors")).unwrap();
    for (name, a) in &want {
        let got = arrays
            .get(name)
            .unwrap_or_else(|| panic!("final/ lacks {name}"));
        assert_eq!(got.shape(), a.shape(), "{name}");
    }
    assert_eq!(arrays["logit_scale_finegraind"].shape(), [0usize; 0]);
    assert_eq!(arrays["logit_scale_hardneg"].shape(), [0usize; 0]);
    assert_eq!(arrays.len(), want.len() + 2);
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
    ] {
        assert!(fin.join(f).is_file(), "final/ lacks {f}");
    }
    // It loads again: embed reads it as an FG-CLIP 2 model.
    let texts = dir.join("texts.txt");
    std::fs::write(&texts, "女性倒地\na fire\n").unwrap();
    let emb = dir.join("emb.safetensors");
    let out = fgclip(&[
        "embed",
        "--model",
        fin.to_str().unwrap(),
        "--texts",
        texts.to_str().unwrap(),
        "--out",
        emb.to_str().unwrap(),
    ]);
    assert_success(&out);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_resumed_fgclip2_run_equals_one_made_in_one_go() {
    let dir = temp_dir("fgclip2-resume");
    let ann = fgclip2_clips(&dir);
    let straight = dir.join("straight");
    assert_success(&train(&ann, &straight, &config(&dir, 6)).output().unwrap());

    // The same run stopped after 3 steps (checkpoints at 2 and 3), then resumed to 6.
    let split = dir.join("split");
    assert_success(&train(&ann, &split, &config(&dir, 3)).output().unwrap());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(split.join("checkpoints/step-00000003/state.json")).unwrap(),
    )
    .unwrap();
    assert!(state["cmr_threshold"].as_f64().is_some(), "{state}");
    let out = train(&ann, &split, &config(&dir, 6))
        .arg("--resume")
        .output()
        .unwrap();
    assert_success(&out);
    let strip = |run: &Path| -> Vec<serde_json::Value> {
        rows(run)
            .into_iter()
            .map(|mut r| {
                for k in ["clips_per_s", "elapsed_s"] {
                    r.as_object_mut().unwrap().remove(k);
                }
                r
            })
            .collect()
    };
    assert_eq!(strip(&split), strip(&straight));
    let a = std::fs::read(straight.join("final/model.safetensors")).unwrap();
    let b = std::fs::read(split.join("final/model.safetensors")).unwrap();
    assert!(
        a == b,
        "the resumed run's weights differ from the straight run's"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// SIGKILL as soon as a checkpoint exists, then `--resume`: the same weights and metrics as
/// the run made in one go.
#[test]
fn a_killed_and_resumed_fgclip2_run_equals_one_made_in_one_go() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let dir = temp_dir("fgclip2-kill");
    let ann = fgclip2_clips(&dir);
    let cfg = config(&dir, 40);
    let straight = dir.join("straight");
    assert_success(&train(&ann, &straight, &cfg).output().unwrap());
    let killed = dir.join("killed");
    let mut child = train(&ann, &killed, &cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !std::fs::read_dir(killed.join("checkpoints")).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("step-"))
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !killed.join("final").exists(),
        "the run finished before it was killed"
    );
    let out = train(&ann, &killed, &cfg).arg("--resume").output().unwrap();
    assert_success(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["resumed_from"].as_u64().unwrap() >= 2, "{summary}");
    let a = std::fs::read(straight.join("final/model.safetensors")).unwrap();
    let b = std::fs::read(killed.join("final/model.safetensors")).unwrap();
    assert!(
        a == b,
        "the resumed run's weights differ from the straight run's"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// The text lengths are config keys, bounded by the model's positions; a shorter one trains.
#[test]
fn fgclip2_text_lengths_are_config_keys_within_the_model() {
    let dir = temp_dir("fgclip2-lengths");
    let ann = fgclip2_clips(&dir);
    let with = |extra: serde_json::Value, name: &str| -> PathBuf {
        let mut c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(config(&dir, 2)).unwrap()).unwrap();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let path = dir.join(name);
        std::fs::write(&path, c.to_string()).unwrap();
        path
    };
    let bad = with(serde_json::json!({"text_length": 65}), "bad.json");
    let out = train(&ann, &dir.join("bad"), &bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("`text_length` 65 exceeds the model's 64"), "{e}");
    let short = with(
        serde_json::json!({"text_length": 32, "long_text_length": 100}),
        "short.json",
    );
    assert_success(&train(&ann, &dir.join("short"), &short).output().unwrap());
    std::fs::remove_dir_all(dir).ok();
}
