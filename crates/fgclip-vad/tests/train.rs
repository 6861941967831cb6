//! `fgclip train` end to end on videos the test encodes itself: the loss goes down, a run
//! killed with SIGKILL and resumed ends with bit-identical weights, a damaged checkpoint
//! is passed over, and the export loads in `fgclip embed`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_success, fixtures, temp_dir, train_tiny};
use fgclip_vad::data::encode::{Codec, EncodeOptions, VideoWriter};

const COLOURS: [([u8; 3], &str); 6] = [
    ([220, 40, 40], "a red square moves across a grey street"),
    ([40, 200, 60], "a green car drives past the shop"),
    ([40, 60, 220], "a blue truck stops at the crossing"),
    ([230, 220, 40], "a yellow fire grows in the corner"),
    ([200, 60, 200], "a purple figure falls to the ground"),
    ([40, 210, 210], "two cyan people fight near the door"),
];

/// Six 64×64 clips, each a coloured block moving on grey, with a box on one key frame.
fn make_dataset(dir: &Path) -> PathBuf {
    make_dataset_n(dir, 6)
}

/// `n` clips over the six videos (clip k shows video k mod 6; captions differ by k).
fn make_dataset_n(dir: &Path, n: usize) -> PathBuf {
    let mut boxes = Vec::new();
    for (k, (rgb, caption)) in COLOURS.iter().enumerate() {
        let name = format!("v{k}.mp4");
        let opts = EncodeOptions {
            codec: Codec::H264,
            fps: 10,
            gop: 10,
            b_frames: 2,
            crf: 16,
        };
        let mut w = VideoWriter::create(&dir.join(&name), 64, 64, opts).unwrap();
        for i in 0..30usize {
            let mut f = vec![110u8; 64 * 64 * 3];
            let x0 = (i + k * 5) % 40;
            for y in 20..44 {
                for x in x0..x0 + 24 {
                    f[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3].copy_from_slice(rgb);
                }
            }
            w.write_rgb(&f).unwrap();
        }
        w.finish().unwrap();
        let x0 = ((12 + k * 5) % 40) as f64 / 64.0;
        boxes.push((name, *caption, x0));
    }
    let clips: Vec<serde_json::Value> = (0..n)
        .map(|k| {
            let (name, caption, x0) = &boxes[k % 6];
            let caption = if k < 6 {
                caption.to_string()
            } else {
                format!("{caption}, again ({k})")
            };
            serde_json::json!({
                "video": name,
                "global_caption": caption,
                "region_captions": [format!("the {} block", caption.split(' ').nth(1).unwrap())],
                "box_infos": [[{"frame": 12, "bbox": [x0, 20.0 / 64.0, x0 + 24.0 / 64.0, 44.0 / 64.0]}]],
                "timestamps": null
            })
        })
        .collect();
    let ann = dir.join("train.json");
    std::fs::write(&ann, serde_json::to_string_pretty(&clips).unwrap()).unwrap();
    ann
}

fn config(dir: &Path, steps: usize, every: usize) -> PathBuf {
    let path = dir.join(format!("cfg-{steps}-{every}.json"));
    std::fs::write(
        &path,
        serde_json::json!({
            "batch_size": 3, "frames": 2, "learning_rate": 0.0005, "weight_decay": 0.0,
            "schedule": "constant", "epochs": 1000, "max_steps": steps, "shuffle": false,
            "checkpoint_every": every, "keep_checkpoints": 2, "loader_workers": 2, "seed": 3
        })
        .to_string(),
    )
    .unwrap();
    path
}

fn train_cmd(ann: &Path, videos: &Path, run: &Path, cfg: &Path) -> Command {
    train_tiny(ann, videos, run, cfg)
}

/// SIGKILLs `child` as soon as `ready()` holds (a checkpoint has appeared); the bound is
/// a safety net only.
fn kill_when(child: &mut std::process::Child, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn training_lowers_the_loss_and_exports_a_model() {
    let dir = temp_dir("train");
    let ann = make_dataset(&dir);
    let run = dir.join("run");
    let out = train_cmd(&ann, &dir, &run, &config(&dir, 32, 8))
        .output()
        .unwrap();
    assert_success(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["steps"], 32);
    assert_eq!(summary["clips_seen"], 96);
    let l = losses(&run);
    assert_eq!(l.len(), 32);
    let first: f64 = l[..4].iter().sum::<f64>() / 4.0;
    let last: f64 = l[28..].iter().sum::<f64>() / 4.0;
    assert!(
        last < 0.5 * first,
        "loss did not go down: {first} → {last} ({l:?})"
    );
    // The global gradient norm before clipping is logged with every step.
    let norms: Vec<f64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["grad_norm"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(norms.iter().all(|n| n.is_finite() && *n > 0.0), "{norms:?}");
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(csv.starts_with("step,epoch,loss,loss_global,loss_region,grad_norm"));
    assert_eq!(csv.lines().count(), 33);
    // Resolved config, checkpoints (the newest 2), the export.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(saved["max_steps"], 32);
    assert_eq!(saved["adam_beta2"], 0.98);
    let mut ckpts: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ckpts.sort();
    assert_eq!(ckpts, ["step-00000024", "step-00000032"]);
    // The optimizer groups by HF name: FG-CLIP's rule by default.
    let groups: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("param_groups.json")).unwrap())
            .unwrap();
    assert_eq!(groups["weight_decay_rule"], "fgclip");
    let no_decay: Vec<&str> = groups["no_decay"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(no_decay.contains(&"vision_model.pre_layrnorm.weight"));
    assert!(!no_decay.contains(&"logit_scale"));
    let final_dir = run.join("final");
    for f in [
        "config.json",
        "model.safetensors",
        "fgclip.json",
        "tokenizer.json",
        "preprocessor_config.json",
    ] {
        assert!(final_dir.join(f).is_file(), "final/{f}");
    }
    // It says how its frames were prepared, for fgclip (fgclip.json) and for HF's
    // CLIPImageProcessor (a resize to S×S without crop: the default `squash`).
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(final_dir.join(f)).unwrap()).unwrap()
    };
    assert_eq!(read("fgclip.json")["preprocess"], "squash");
    let p = read("preprocessor_config.json");
    assert_eq!(p["do_center_crop"], false);
    assert_eq!(p["size"]["height"], p["size"]["width"]);
    // The export is a plain HF CLIP folder that `embed` reads.
    let texts = dir.join("t.txt");
    std::fs::write(&texts, "a red square\n").unwrap();
    let emb = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(["embed", "--quiet", "--model"])
        .arg(&final_dir)
        .arg("--texts")
        .arg(&texts)
        .arg("--out")
        .arg(dir.join("e.safetensors"))
        .output()
        .unwrap();
    assert_success(&emb);
    std::fs::remove_dir_all(dir).ok();
}

/// bf16 (autocast-style, f32 master weights) follows the f32 run: FG-CLIP trains in bf16.
#[test]
fn bf16_training_follows_f32_within_tolerance() {
    let dir = temp_dir("train-bf16");
    let ann = make_dataset(&dir);
    let cfg = config(&dir, 20, 100);
    let f32_run = dir.join("f32");
    assert_success(&train_cmd(&ann, &dir, &f32_run, &cfg).output().unwrap());
    let bf16_run = dir.join("bf16");
    let out = train_cmd(&ann, &dir, &bf16_run, &cfg)
        .args(["--precision", "bf16"])
        .output()
        .unwrap();
    assert_success(&out);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bf16_run.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(saved["precision"], "bf16");
    let (a, b) = (losses(&f32_run), losses(&bf16_run));
    assert_eq!((a.len(), b.len()), (20, 20));
    // bf16 really computes in bf16: the very first loss already differs …
    assert!(
        (a[0] - b[0]).abs() > 1e-6,
        "bf16 gave the f32 loss: {}",
        a[0]
    );
    // … by bf16's rounding only (8 mantissa bits: ~0.4% per operand) …
    assert!(
        (a[0] - b[0]).abs() < 0.02 * a[0],
        "step 1: {} vs {}",
        a[0],
        b[0]
    );
    // … and after 20 steps the loss is within 5% of f32's (both fall from ~1.6 to ~0.3).
    let (fa, fb) = (a[19], b[19]);
    assert!(
        (fa - fb).abs() <= 0.05 * fa.max(0.05),
        "loss after 20 steps: f32 {fa}, bf16 {fb}\nf32 {a:?}\nbf16 {b:?}"
    );
    assert!(fb < 0.7 * b[0], "bf16 loss did not go down: {b:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn sigkill_and_resume_is_bit_identical_and_damaged_checkpoints_are_skipped() {
    let dir = temp_dir("resume");
    let ann = make_dataset(&dir);
    let cfg = config(&dir, 40, 2);

    let straight = dir.join("straight");
    let out = train_cmd(&ann, &dir, &straight, &cfg).output().unwrap();
    assert_success(&out);
    let want = std::fs::read(straight.join("final/model.safetensors")).unwrap();

    // Kill the second run as soon as it has written a checkpoint.
    let killed = dir.join("killed");
    let mut child = train_cmd(&ann, &dir, &killed, &cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    kill_when(&mut child, || {
        std::fs::read_dir(killed.join("checkpoints")).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("step-"))
        })
    });
    assert!(
        !killed.join("final").exists(),
        "the run finished before it was killed"
    );
    let steps_done = losses(&killed).len();
    assert!(steps_done < 40, "{steps_done}");

    let out = train_cmd(&ann, &dir, &killed, &cfg)
        .arg("--resume")
        .output()
        .unwrap();
    assert_success(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["resumed_from"].as_u64().unwrap() >= 2);
    assert_eq!(summary["steps"], 40);
    let got = std::fs::read(killed.join("final/model.safetensors")).unwrap();
    assert!(
        got == want,
        "resumed weights differ from the uninterrupted run"
    );
    assert_eq!(losses(&killed), losses(&straight));

    // Damage the newest checkpoint: resume passes it over and redoes the last steps.
    let newest = killed.join("checkpoints/step-00000040/model.safetensors");
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let out = train_cmd(&ann, &dir, &killed, &cfg)
        .arg("--resume")
        .output()
        .unwrap();
    assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipping checkpoint") && err.contains("damaged"),
        "{err}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["resumed_from"], 38);
    assert!(std::fs::read(killed.join("final/model.safetensors")).unwrap() == want);
    std::fs::remove_dir_all(dir).ok();
}

/// Every metrics row without its timings, as text (the rows' values, digit for digit).
fn rows_without_timings(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("clips_per_s");
            o.remove("elapsed_s");
            serde_json::to_string(o).unwrap()
        })
        .collect()
}

/// The hard case: 10 clips in batches of 3 (3 steps an epoch, the short batch dropped),
/// shuffled, augmented (crop, flip, jitter drawn per (seed, epoch, clip)), cosine schedule
/// with warm-up, a checkpoint every 2 steps; the run is
/// SIGKILLed once its second checkpoint (step 4: mid-epoch, mid-schedule) is there, and
/// resumed. Final weights are byte-identical to an uninterrupted run and every step's
/// logged values are identical; the rows before the checkpoint stay byte for byte.
#[test]
fn sigkill_mid_epoch_and_mid_schedule_resumes_exactly() {
    let dir = temp_dir("resume-hard");
    let ann = make_dataset_n(&dir, 10);
    let cfg = dir.join("hard.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "batch_size": 3, "frames": 2, "learning_rate": 0.0005, "weight_decay": 0.1,
            "schedule": "cosine", "warmup_steps": 2, "epochs": 4, "shuffle": true,
            "checkpoint_every": 2, "keep_checkpoints": 10, "loader_workers": 2, "seed": 11,
            "augment": [{"crop": {"scale": [0.6, 1.0]}}, {"flip": 0.5},
                        {"jitter": {"brightness": 0.3, "contrast": 0.2, "saturation": 0.2}}]
        })
        .to_string(),
    )
    .unwrap();
    let straight = dir.join("straight");
    let out = train_cmd(&ann, &dir, &straight, &cfg).output().unwrap();
    assert_success(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["steps"], 12,
        "3 steps an epoch (drop_last) × 4 epochs"
    );
    assert_eq!(summary["clips_seen"], 36);
    let want = std::fs::read(straight.join("final/model.safetensors")).unwrap();

    let killed = dir.join("killed");
    let mut child = train_cmd(&ann, &dir, &killed, &cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let second = killed.join("checkpoints/step-00000004/state.json");
    kill_when(&mut child, || second.is_file());
    assert!(!killed.join("final").exists(), "finished before the kill");
    let before: Vec<String> = std::fs::read_to_string(killed.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();

    let out = train_cmd(&ann, &dir, &killed, &cfg)
        .arg("--resume")
        .output()
        .unwrap();
    assert_success(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let from = summary["resumed_from"].as_u64().unwrap();
    assert!(
        from >= 4 && from.is_multiple_of(2) && from < 12,
        "resumed from {from}"
    );
    assert_eq!(summary["steps"], 12);
    let got = std::fs::read(killed.join("final/model.safetensors")).unwrap();
    assert!(
        got == want,
        "resumed weights differ from the uninterrupted run"
    );
    assert_eq!(
        rows_without_timings(&killed),
        rows_without_timings(&straight)
    );
    // The rows up to the checkpoint are the killed run's own lines, byte for byte.
    let after = std::fs::read_to_string(killed.join("metrics.jsonl")).unwrap();
    for (k, line) in after.lines().take(from as usize).enumerate() {
        assert_eq!(line, before[k], "row {k}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn frozen_towers_keep_their_weights() {
    use fgclip_vad::checkpoint::safetensors_io::{Array, read_arrays};
    let dir = temp_dir("freeze");
    let ann = make_dataset(&dir);
    let cfg = dir.join("freeze.json");
    std::fs::write(
        &cfg,
        r#"{"batch_size": 3, "frames": 2, "learning_rate": 0.0005, "max_steps": 2, "epochs": 10, "freeze": ["vision"]}"#,
    )
    .unwrap();
    let run = dir.join("r");
    let out = train_cmd(&ann, &dir, &run, &cfg).output().unwrap();
    assert_success(&out);
    let before = read_arrays(&fixtures().join("clip_tiny/model.safetensors")).unwrap();
    let after = read_arrays(&run.join("final/model.safetensors")).unwrap();
    let (mut same, mut changed) = (0, 0);
    for (name, a) in &after {
        let (Array::F32 { data: x, .. }, Some(Array::F32 { data: y, .. })) = (a, before.get(name))
        else {
            panic!("{name}");
        };
        let frozen = name.starts_with("vision_model.") || name.starts_with("visual_projection");
        if frozen {
            assert_eq!(x, y, "{name} changed although the vision tower is frozen");
            same += 1;
        } else if x != y {
            changed += 1;
        }
    }
    assert!(
        same > 10 && changed > 10,
        "{same} frozen, {changed} trained"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_configs_and_inputs_are_clear_errors() {
    let dir = temp_dir("train-bad");
    let ann = make_dataset(&dir);
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"batch_sise": 4}"#).unwrap();
    let out = train_cmd(&ann, &dir, &dir.join("r"), &bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("batch_sise"),
        "{err}"
    );
    std::fs::write(&bad, r#"{"learning_rate": -1}"#).unwrap();
    let out = train_cmd(&ann, &dir, &dir.join("r"), &bad)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("learning_rate"));
    // An unknown precision names the field and the choices.
    std::fs::write(&bad, r#"{"precision": "fp8"}"#).unwrap();
    let out = train_cmd(&ann, &dir, &dir.join("r"), &bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("fp8") && err.contains("bf16"),
        "{err}"
    );
    // Diverging: non-finite losses skip steps, then stop the run.
    std::fs::write(
        &bad,
        r#"{"batch_size": 3, "frames": 2, "learning_rate": 1e30, "grad_clip_norm": null, "max_steps": 10, "epochs": 100, "max_nonfinite_steps": 3}"#,
    )
    .unwrap();
    let out = train_cmd(&ann, &dir, &dir.join("r3"), &bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("non-finite loss at step") && err.contains("3 consecutive non-finite losses"),
        "{err}"
    );
    // A clip whose video is missing is skipped and counted; training goes on.
    let mut clips: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&ann).unwrap()).unwrap();
    // First, so that it falls in a batch that drop_last keeps.
    clips.insert(
        0,
        serde_json::json!({"video": "gone.mp4", "global_caption": "lost", "region_captions": []}),
    );
    let ann2 = dir.join("with-missing.json");
    std::fs::write(&ann2, serde_json::to_string(&clips).unwrap()).unwrap();
    let out = train_cmd(&ann2, &dir, &dir.join("r4"), &config(&dir, 4, 4))
        .output()
        .unwrap();
    assert_success(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipping clip 0"));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["steps"], 4);
    assert!(summary["clips_skipped"].as_u64().unwrap() >= 1, "{summary}");
    // Every clip skipped (--videos one folder off): an error with the count and reasons,
    // no final/ folder.
    let wrong = dir.join("nested");
    std::fs::create_dir_all(&wrong).unwrap();
    let out = train_cmd(&ann, &wrong, &dir.join("r5"), &config(&dir, 4, 4))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no training step was made in epoch 1: 6 clip(s) skipped")
            && err.contains("clip 0:"),
        "{err}"
    );
    assert!(!dir.join("r5/final").exists());
    // A preset from scratch without --tokenizer: CLIP's built-in BPE, exported with the model.
    let out = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(["train", "--quiet", "--preset", "tiny", "--annotations"])
        .arg(&ann)
        .arg("--videos")
        .arg(&dir)
        .arg("--out")
        .arg(dir.join("r2"))
        .args(["--max-steps", "1", "--batch-size", "2", "--epochs", "5"])
        .output()
        .unwrap();
    assert_success(&out);
    let exported = dir.join("r2/final");
    let builtin = fgclip_vad::checkpoint::hf::builtin_tokenizer().unwrap();
    let saved = fgclip_vad::checkpoint::hf::load_tokenizer(&exported).unwrap();
    assert_eq!(saved.encode("a man runs"), builtin.encode("a man runs"));
    std::fs::remove_dir_all(dir).ok();
}
