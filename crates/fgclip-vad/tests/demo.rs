//! `fgclip synth` and `fgclip demo`: the generated annotations validate, boxes lie on the
//! objects they name, generation is deterministic for a seed, and a tiny demo runs end to
//! end (synth → train → detect → eval → report).

mod common;

use std::path::Path;

use common::{assert_success, fgclip, temp_dir};
use fgclip_vad::data::annotations::load;
use fgclip_vad::data::video::VideoReader;
use fgclip_vad::synth::{SynthConfig, generate};

fn synth(dir: &Path, seed: u64) {
    let cfg = SynthConfig {
        train_videos: 6,
        test_videos: 2,
        seconds: 4,
        seed,
    };
    generate(dir, &cfg, &indicatif::ProgressBar::hidden()).unwrap();
}

#[test]
fn synthetic_annotations_validate_and_boxes_lie_on_their_objects() {
    let dir = temp_dir("synth");
    synth(&dir, 11);
    for ann in ["train.json", "train_zh.json"] {
        let run = fgclip(&[
            "validate",
            "--annotations",
            dir.join(ann).to_str().unwrap(),
            "--videos",
            dir.to_str().unwrap(),
            "--json",
        ]);
        let s: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(run.status.code(), Some(0), "{ann}: {s}");
        assert_eq!(s["errors"], 0);
        assert!(s["anomaly_clips"].as_u64().unwrap() >= 3);
        // Two hard negatives on every region (DESIGN.md §7).
        assert_eq!(s["hard_negative_regions"], s["regions"], "{ann}");
        assert_eq!(
            s["hard_negatives"].as_u64(),
            s["regions"].as_u64().map(|r| 2 * r)
        );
        assert_eq!(s["hard_negatives_joined"], s["hard_negatives"]);
    }
    let zh = std::fs::read_to_string(dir.join("train_zh.json")).unwrap();
    assert!(zh.contains("打架") || zh.contains("摔倒") || zh.contains("火灾"));

    // Every event box on a key frame covers pixels of its object's colours.
    let d = load(&dir.join("train.json"), 4).unwrap();
    let mut checked = 0;
    for clip in &d.clips {
        let class = clip
            .video
            .rsplit('_')
            .next()
            .unwrap()
            .trim_end_matches(".mp4")
            .to_string();
        if class == "Normal" || clip.global_caption.starts_with("people walk") {
            continue;
        }
        let region = &clip.regions[0];
        let frames: Vec<u64> = region.boxes.iter().map(|b| b.frame).collect();
        let mut reader = VideoReader::open(&dir.join(&clip.video)).unwrap();
        let mut decoded = Vec::new();
        reader
            .read_frames(&frames, |f| {
                decoded.push(f);
                Ok(())
            })
            .unwrap();
        for (b, f) in region.boxes.iter().zip(&decoded) {
            let (w, h) = (f.width as usize, f.height as usize);
            let px = |x: usize, y: usize| {
                let o = (y * w + x) * 3;
                [f.data[o] as i32, f.data[o + 1] as i32, f.data[o + 2] as i32]
            };
            let near = |p: [i32; 3], c: [i32; 3]| (0..3).all(|k| (p[k] - c[k]).abs() < 45);
            let (x0, y0) = (
                (b.bbox[0] * w as f32) as usize,
                (b.bbox[1] * h as f32) as usize,
            );
            let (x1, y1) = (
                (b.bbox[2] * w as f32).ceil() as usize,
                (b.bbox[3] * h as f32).ceil() as usize,
            );
            let inside: Vec<[i32; 3]> = (y0..y1.min(h))
                .flat_map(|y| (x0..x1.min(w)).map(move |x| (x, y)))
                .map(|(x, y)| px(x, y))
                .collect();
            // The figures show their pose at the demo model's resolution (a person 24 px
            // tall, a lying one 24 px long): 12 px patches see its shape.
            let (bw, bh) = (x1 - x0, y1 - y0);
            match class.as_str() {
                "Falling" => assert!(bw >= 2 * bh && bw >= 22, "{}: lying {bw}x{bh}", clip.video),
                "Fighting" => assert!(bh >= 23 && bw >= 12, "{}: {bw}x{bh}", clip.video),
                // (The thief may be running out of the frame: only the height is sure.)
                "Theft" => assert!(bh >= 23, "{}: {bw}x{bh}", clip.video),
                _ => {}
            }
            let found = match class.as_str() {
                "Fire" => inside
                    .iter()
                    .any(|&p| p[0] > 200 && p[1] > 90 && p[2] < 120),
                "RoadAccident" => {
                    inside.iter().any(|&p| near(p, [180, 30, 30]))
                        && inside.iter().any(|&p| near(p, [30, 60, 160]))
                }
                // People: skin of the head.
                _ => inside.iter().any(|&p| near(p, [230, 190, 160])),
            };
            assert!(
                found,
                "{}: no {class} pixels in the box {:?} on frame {}",
                clip.video, b.bbox, f.index
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked} boxes checked");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn synthesis_is_deterministic_for_a_seed() {
    let (a, b, c) = (
        temp_dir("synth-a"),
        temp_dir("synth-b"),
        temp_dir("synth-c"),
    );
    synth(&a, 5);
    synth(&b, 5);
    synth(&c, 6);
    let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert_eq!(read(&a, "train.json"), read(&b, "train.json"));
    assert_eq!(read(&a, "test_gt.txt"), read(&b, "test_gt.txt"));
    let video = std::fs::read_dir(a.join("videos"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name();
    let v = Path::new("videos").join(video);
    assert_eq!(read(&a, v.to_str().unwrap()), read(&b, v.to_str().unwrap()));
    assert_ne!(read(&a, "train.json"), read(&c, "train.json"));
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn tiny_demo_runs_end_to_end() {
    let dir = temp_dir("demo");
    let out = dir.join("demo");
    let run = fgclip(&["demo", "--tiny", "--out", out.to_str().unwrap()]);
    assert_success(&run);
    let s: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    // The tiny demo (4 steps of a tiny model) learns nothing useful (what a short run
    // learns is `a_short_demo_learns_fire`), but it is deterministic: a second run gives
    // the same AUC and the same weights, byte for byte.
    let auc = s["roc_auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc), "tiny demo AUC {auc}");
    assert_eq!(s["train_steps"], 4);
    let again = dir.join("again");
    let run2 = fgclip(&["demo", "--tiny", "--out", again.to_str().unwrap()]);
    assert_success(&run2);
    let s2: serde_json::Value = serde_json::from_slice(&run2.stdout).unwrap();
    assert_eq!(s2["roc_auc"], s["roc_auc"]);
    assert!(
        std::fs::read(again.join("run/final/model.safetensors")).unwrap()
            == std::fs::read(out.join("run/final/model.safetensors")).unwrap(),
        "two tiny demos trained different weights"
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("held-out frame-level ROC AUC"), "{stderr}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("frame-level ROC AUC")
            && html.contains("<polyline")
            && html.contains("detections/")
            && html.contains("Hard negatives")
    );
    // The report says what was trained: preset, λ, μ, steps, videos.
    assert!(
        html.contains("(λ = 1)") && html.contains("(μ = 0.1)"),
        "{html}"
    );
    assert!(html.contains("for 4 steps on 5 synthetic"), "{html}");
    // The hard-negative term is in every step.
    let metrics = std::fs::read_to_string(out.join("run/metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(row["loss_hard_negative"].as_f64().unwrap() > 0.0, "{row}");
    }
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(eval["roc_auc"].as_f64(), Some(auc));
    assert!(out.join("run/final/model.safetensors").is_file());
    assert!(out.join("run/final/bpe_simple_vocab_16e6.txt.gz").is_file());
    std::fs::remove_dir_all(dir).ok();
}

/// A property a broken pipeline fails: a minute's demo (120 training videos, 200 steps of the
/// demo's model; about 65 s on 2 cores) scores the held-out Fire videos (orange flames, the
/// easiest class to see) clearly above chance. Measured when written: Fire 0.959, all
/// classes 0.88; the bounds (0.80 and 0.70) leave room for another float summation order,
/// and constant or shuffled scores give 0.5.
#[test]
fn a_short_demo_learns_fire() {
    let dir = temp_dir("demo-fire");
    let out = dir.join("demo");
    let run = fgclip(&[
        "demo",
        "--videos",
        "120",
        "--max-steps",
        "200",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_success(&run);
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    let fire = eval["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "Fire")
        .and_then(|c| c["roc_auc"].as_f64())
        .unwrap();
    assert!(fire >= 0.80, "Fire AUC {fire}");
    let all = eval["roc_auc"].as_f64().unwrap();
    assert!(all >= 0.70, "AUC {all}");
    std::fs::remove_dir_all(dir).ok();
}

/// `demo --tiny --captions zh`: the FG-CLIP 2 path end to end on the Chinese captions
/// (FG-CLIP-2-shaped tiny preset, the built-in small tokenizer, FG-CLIP 2's loss, the
/// Chinese prompts with the sigmoid head); `final/` is an FG-CLIP 2 folder.
#[test]
fn tiny_fgclip2_demo_runs_in_chinese() {
    let dir = temp_dir("demo-zh");
    let out = dir.join("demo");
    let run = fgclip(&[
        "demo",
        "--tiny",
        "--captions",
        "zh",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_success(&run);
    let s: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(
        s["roc_auc"]
            .as_f64()
            .is_some_and(|a| (0.0..=1.0).contains(&a))
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run/final/config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["model_type"], "fgclip2");
    assert!(out.join("run/final/tokenizer.json").is_file());
    let metrics = std::fs::read_to_string(out.join("run/metrics.jsonl")).unwrap();
    for line in metrics.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(row["loss_region_text"].as_f64().unwrap() > 0.0, "{row}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("with Chinese captions") && html.contains("Chinese prompts"),
        "{html}"
    );
    // The prompts were the Chinese ones.
    let prompts = std::fs::read_to_string(out.join("data/prompts_zh.json")).unwrap();
    assert!(prompts.contains("两个人在街上打架"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn demo_rejects_a_bad_weight_before_synthesising() {
    let dir = temp_dir("demo-bad");
    let out = dir.join("demo");
    let run = fgclip(&[
        "demo",
        "--tiny",
        "--region-weight=-1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("`region_weight` must be ≥ 0"), "{stderr}");
    assert!(!out.join("data").exists(), "synthesised before the check");
    std::fs::remove_dir_all(dir).ok();
}
