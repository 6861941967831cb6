//! The full FG-CLIP recipe end to end (DESIGN.md §7): hard negatives inline or from a
//! VAGTA sidecar, long captions, training from an FG-CLIP v1 checkpoint, and `validate`
//! on sidecars (the published VAGTA file too, where `../shared` exists).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_success, fgclip, fixtures, temp_dir};
use fgclip_vad::checkpoint::safetensors_io::read_arrays;
use fgclip_vad::data::encode::{Codec, EncodeOptions, VideoWriter};

const SCENES: [([u8; 3], &str, &str); 4] = [
    (
        [220, 40, 40],
        "a red man hits a window",
        "a red man waits by a window",
    ),
    (
        [40, 200, 60],
        "a green car crashes into a pole",
        "a green car parks by a pole",
    ),
    (
        [40, 60, 220],
        "a blue person steals a bag",
        "a blue person carries a bag",
    ),
    (
        [230, 220, 40],
        "a yellow fire starts in a shop",
        "a yellow lamp shines in a shop",
    ),
];

/// Four short 48×48 videos and their clips: one region each, a long caption on clips 0
/// and 2, and each region's hard negative (the same scene with a normal action) returned
/// apart, so a test can put it inline or in a sidecar.
fn make_data(dir: &Path) -> (Vec<serde_json::Value>, Vec<Vec<String>>) {
    let mut clips = Vec::new();
    let mut negatives = Vec::new();
    for (k, (rgb, caption, negative)) in SCENES.iter().enumerate() {
        let name = format!("s{k}.mp4");
        let opts = EncodeOptions {
            codec: Codec::H264,
            fps: 10,
            gop: 10,
            b_frames: 0,
            crf: 18,
        };
        let mut w = VideoWriter::create(&dir.join(&name), 48, 48, opts).unwrap();
        for i in 0..12usize {
            let mut f = vec![100u8; 48 * 48 * 3];
            for y in 12..36 {
                for x in (i + k * 4) % 24..(i + k * 4) % 24 + 20 {
                    f[(y * 48 + x) * 3..(y * 48 + x) * 3 + 3].copy_from_slice(rgb);
                }
            }
            w.write_rgb(&f).unwrap();
        }
        w.finish().unwrap();
        let mut clip = serde_json::json!({
            "video": name,
            "global_caption": caption,
            "region_captions": [format!("the {}", caption.split(' ').skip(1).take(2).collect::<Vec<_>>().join(" "))],
            "box_infos": [[{"frame": 5, "bbox": [0.2, 0.25, 0.7, 0.75]}]],
            "timestamps": if k == 3 { serde_json::json!([0.1, 1.1]) } else { serde_json::Value::Null }
        });
        if k % 2 == 0 {
            clip["long_caption"] = serde_json::json!(format!(
                "{caption}. The camera looks down on a quiet street; the scene is lit evenly and nothing else moves while it happens."
            ));
        }
        clips.push(clip);
        negatives.push(vec![
            negative.to_string(),
            format!("nothing happens near the {k} door"),
        ]);
    }
    (clips, negatives)
}

fn write_json(path: &Path, v: &serde_json::Value) -> PathBuf {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
    path.to_path_buf()
}

fn sidecar(clips: &[serde_json::Value], negatives: &[Vec<String>]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = clips
        .iter()
        .zip(negatives)
        .map(|(c, n)| {
            serde_json::json!({"video": c["video"], "region_index": 0, "timestamps": c["timestamps"],
                               "region_caption": c["region_captions"][0], "hard_negative": n})
        })
        .collect();
    serde_json::json!({ "items": items })
}

fn train(dir: &Path, ann: &Path, model: &Path, run: &str, extra: &[&str]) -> (PathBuf, String) {
    let cfg = write_json(
        &dir.join(format!("{run}.cfg.json")),
        &serde_json::json!({"batch_size": 4, "frames": 2, "learning_rate": 0.001, "epochs": 3,
                            "schedule": "constant", "shuffle": false, "loader_workers": 1, "seed": 5}),
    );
    let out = dir.join(run);
    let res = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(["train", "--annotations"])
        .arg(ann)
        .arg("--videos")
        .arg(dir)
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(&out)
        .arg("--config")
        .arg(cfg)
        .args(extra)
        .output()
        .unwrap();
    assert_success(&res);
    (out, String::from_utf8_lossy(&res.stderr).into_owned())
}

fn rows(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// From FG-CLIP's own checkpoint, with long captions and sidecar negatives: every term is
/// live, the total is their weighted sum, inline negatives train exactly as the sidecar's,
/// and `final/` keeps FG-CLIP's names and loads again.
#[test]
fn trains_from_fgclip_with_long_captions_and_hard_negatives() {
    let dir = temp_dir("hard-neg-train");
    let (clips, negatives) = make_data(&dir);
    let model = fixtures().join("fgclip_v1_tiny/model");
    let ann = write_json(&dir.join("train.json"), &serde_json::json!(clips));
    let side = write_json(&dir.join("side.json"), &sidecar(&clips, &negatives));
    let (run, log) = train(
        &dir,
        &ann,
        &model,
        "sidecar",
        &["--hard-negatives", side.to_str().unwrap()],
    );
    assert!(log.contains("4 of 4 item(s)"), "{log}");
    let r = rows(&run);
    assert_eq!(r.len(), 3);
    for row in &r {
        let f = |k: &str| row[k].as_f64().unwrap();
        assert!(f("loss_hard_negative") > 0.0, "{row}");
        assert!(f("loss_global_long") > 0.0, "{row}");
        assert_eq!(row["num_hard_regions"], 4);
        let sum = f("loss_global")
            + f("loss_global_long")
            + 0.1 * f("loss_region")
            + 0.5 * f("loss_hard_negative");
        assert!((sum - f("loss")).abs() < 1e-5 * f("loss"), "{row}");
    }
    // The same negatives inline in the annotations: the same training, bit for bit.
    let inline: Vec<serde_json::Value> = clips
        .iter()
        .zip(&negatives)
        .map(|(c, n)| {
            let mut c = c.clone();
            c["hard_negatives"] = serde_json::json!([n]);
            c
        })
        .collect();
    let ann_inline = write_json(&dir.join("inline.json"), &serde_json::json!(inline));
    let (run_inline, _) = train(&dir, &ann_inline, &model, "inline", &[]);
    let losses = |r: &[serde_json::Value]| {
        r.iter()
            .map(|x| (x["loss"].clone(), x["loss_hard_negative"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&r), losses(&rows(&run_inline)));

    // final/ keeps FG-CLIP's tensors, trained.
    let before = read_arrays(&model.join("model.safetensors")).unwrap();
    let after = read_arrays(&run.join("final/model.safetensors")).unwrap();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for key in [
        "logit_scale_hardneg",
        "logit_scale_finegraind",
        "text_filip_projection.weight",
    ] {
        assert_ne!(before[key], after[key], "{key} did not train");
    }
    let config = std::fs::read_to_string(run.join("final/config.json")).unwrap();
    assert!(config.contains("FGCLIPModel"), "{config}");
    let check = fgclip(&[
        "check-loss",
        "--model",
        run.join("final").to_str().unwrap(),
        "--batch",
        fixtures()
            .join("fgclip_v1_tiny/batch.safetensors")
            .to_str()
            .unwrap(),
    ]);
    assert_success(&check);

    // Without hard negatives (μ = 0) the term is 0 and H = 0: no negative is encoded.
    let zero = write_json(
        &dir.join("mu0.cfg.json"),
        &serde_json::json!({"batch_size": 4, "frames": 2, "epochs": 1, "loader_workers": 1,
                            "hard_negative_weight": 0.0}),
    );
    let res = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(["train", "--quiet", "--annotations"])
        .arg(&ann_inline)
        .arg("--videos")
        .arg(&dir)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(dir.join("mu0"))
        .arg("--config")
        .arg(zero)
        .output()
        .unwrap();
    assert_success(&res);
    let r0 = rows(&dir.join("mu0"));
    assert_eq!(r0[0]["loss_hard_negative"], 0.0);
    assert_eq!(r0[0]["num_hard_regions"], 0);
}

/// A plain CLIP model cannot take long captions: one warning, and the term stays 0.
#[test]
fn plain_clip_ignores_long_captions_with_one_warning() {
    let dir = temp_dir("hard-neg-plain");
    let (mut clips, _) = make_data(&dir);
    // One global caption over 77 tokens: cut, and counted once.
    clips[1]["global_caption"] =
        serde_json::json!("a green car crashes into a pole again and again ".repeat(8));
    let ann = write_json(&dir.join("train.json"), &serde_json::json!(clips));
    let (run, log) = train(&dir, &ann, &fixtures().join("clip_tiny"), "plain", &[]);
    assert_eq!(
        log.matches("are longer than their path").count(),
        1,
        "{log}"
    );
    assert!(log.contains("note: 1 caption(s)"), "{log}");
    assert_eq!(log.matches("long captions are ignored").count(), 1, "{log}");
    assert!(log.contains("2 clip(s) have a long_caption"), "{log}");
    for row in rows(&run) {
        assert_eq!(row["loss_global_long"], 0.0);
        assert_eq!(row["loss_hard_negative"], 0.0);
    }
    // The export stays HF CLIPModel, the extra scales in fgclip.json.
    let extra: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("final/fgclip.json")).unwrap())
            .unwrap();
    assert!(extra["logit_scale_hardneg"].is_number());
}

/// A sidecar with a bad item stops training with the file, item and field; `validate`
/// reports items, negatives, empties, matched regions and unmatched items.
#[test]
fn sidecar_problems_and_validate_counts() {
    let dir = temp_dir("hard-neg-validate");
    let (clips, negatives) = make_data(&dir);
    let ann = write_json(&dir.join("train.json"), &serde_json::json!(clips));
    let mut side = sidecar(&clips, &negatives);
    let items = side["items"].as_array_mut().unwrap();
    items[1]["hard_negative"] = serde_json::json!([]);
    items.push(serde_json::json!({"video": "s0.mp4", "region_index": 3, "timestamps": null, "hard_negative": ["x"]}));
    items.push(serde_json::json!({"video": "nope.mp4", "region_index": 0, "hard_negative": ["y"]}));
    let good = write_json(&dir.join("good.json"), &side);
    let out = fgclip(&[
        "validate",
        "--annotations",
        ann.to_str().unwrap(),
        "--hard-negatives",
        good.to_str().unwrap(),
        "--json",
    ]);
    assert_success(&out);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["hard_negative_items"], 6);
    // The file's own count, as without annotations; 3 regions × 2 joined (the unmatched and
    // the empty item add none).
    assert_eq!(s["hard_negatives"], 8);
    assert_eq!(s["hard_negatives_joined"], 6);
    assert_eq!(s["hard_negative_empty"], 1);
    assert_eq!(s["hard_negative_regions"], 3);
    assert_eq!(s["hard_negative_unmatched"], 2);
    assert_eq!(s["errors"], 0);
    assert_eq!(s["warnings"], 2);
    assert_eq!(s["long_captions"], 2);
    // The sidecar alone: its own counts, the join's are null.
    let out = fgclip(&[
        "validate",
        "--hard-negatives",
        good.to_str().unwrap(),
        "--json",
    ]);
    assert_success(&out);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["hard_negatives"], 8);
    assert!(s["hard_negatives_joined"].is_null());
    assert!(s["hard_negative_regions"].is_null() && s["hard_negative_unmatched"].is_null());
    assert!(s.get("clips").is_none());

    // A negative that is not a string: an error in validate (exit 1) and in train.
    let mut bad = sidecar(&clips, &negatives);
    bad["items"][2]["hard_negative"][1] = serde_json::json!(7);
    let bad = write_json(&dir.join("bad.json"), &bad);
    let out = fgclip(&["validate", "--hard-negatives", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("hard-negative item 2 hard_negative[1]"),
        "{text}"
    );
    let res = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(["train", "--quiet", "--annotations"])
        .arg(&ann)
        .arg("--videos")
        .arg(&dir)
        .arg("--model")
        .arg(fixtures().join("clip_tiny"))
        .arg("--out")
        .arg(dir.join("bad-run"))
        .arg("--hard-negatives")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("bad.json: item 2 `hard_negative[1]`"), "{err}");
    // Not JSON at all: exit 2 naming the file.
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{ items: ").unwrap();
    let out = fgclip(&["validate", "--hard-negatives", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.json"));
    // Inline negatives that are not a list of strings: the clip's error, by field.
    let mut inline = clips.clone();
    inline[1]["hard_negatives"] = serde_json::json!([["ok", 3]]);
    let ann_bad = write_json(&dir.join("inline-bad.json"), &serde_json::json!(inline));
    let out = fgclip(&["validate", "--annotations", ann_bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("clip 1 hard_negatives[0][1]"), "{text}");
}

/// VAGTA's published sidecar, which is not in the repository (no licence): run it where
/// `../shared` exists with `cargo test --release -- --ignored published_vagta`. Ignored, not
/// skipped: CI reports it as not run, and run without the file it fails.
#[test]
#[ignore = "needs ../shared/fixtures (VAGTA's published sidecar, not redistributable)"]
fn published_vagta_sidecar_validates() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/annotations/vagta_hard_negatives_train.json");
    assert!(path.is_file(), "{} is not here", path.display());
    let out = fgclip(&[
        "validate",
        "--hard-negatives",
        path.to_str().unwrap(),
        "--json",
    ]);
    assert_success(&out);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["hard_negative_items"], 3726);
    assert_eq!(s["hard_negatives"], 11175);
    assert_eq!(s["hard_negative_empty"], 1);
    assert_eq!(s["errors"], 0);
}
