//! `fgclip detect` and `fgclip extract` with the tiny fixture model on a video the test
//! encodes: lengths, files, valid PNG/SVG, resumable extraction, and detect's JSON read
//! back by `fgclip eval`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_success, fgclip, fixtures, temp_dir};
use fgclip_vad::data::encode::{Codec, EncodeOptions, VideoWriter};
use fgclip_vad::data::npy;

fn make_video(path: &Path, frames: usize) {
    let opts = EncodeOptions {
        codec: Codec::H264,
        fps: 25,
        gop: 25,
        b_frames: 2,
        crf: 20,
    };
    let mut w = VideoWriter::create(path, 96, 64, opts).unwrap();
    for i in 0..frames {
        let mut f = vec![90u8; 96 * 64 * 3];
        for y in 10..40 {
            for x in (i % 60)..(i % 60 + 30) {
                f[(y * 96 + x) * 3..(y * 96 + x) * 3 + 3].copy_from_slice(&[230, 80, 20]);
            }
        }
        w.write_rgb(&f).unwrap();
    }
    w.finish().unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn detect_writes_scores_plots_and_thumbnails() {
    let dir = temp_dir("detect");
    let video = dir.join("Fighting042_x264.mp4");
    make_video(&video, 100);
    let gt = dir.join("gt.txt");
    std::fs::write(&gt, "Fighting042_x264.mp4 Fighting 30 59 -1 -1\n").unwrap();
    let out = dir.join("out");
    let model = fixtures().join("clip_tiny");
    let run = fgclip(&[
        "detect",
        "--model",
        s(&model),
        s(&video),
        "--out",
        s(&out),
        "--gt",
        s(&gt),
        "--stride",
        "16",
    ]);
    assert_success(&run);
    let line: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(line["frames"], 100);

    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("Fighting042_x264.json")).unwrap())
            .unwrap();
    assert_eq!(r["frame_count"], 100);
    assert_eq!(r["classes"].as_array().unwrap().len(), 14);
    assert_eq!(r["classes"][0], "Normal");
    let frame_scores: Vec<f64> = r["frame_scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(frame_scores.len(), 100);
    let snippets = r["snippets"].as_array().unwrap();
    assert_eq!(snippets.len(), 7); // ceil(100 / 16)
    for (k, sn) in snippets.iter().enumerate() {
        let p: Vec<f64> = sn["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        let score = sn["score"].as_f64().unwrap();
        assert!((score - (1.0 - p[0])).abs() < 1e-5);
        // Each snippet's score covers its 16 frames (the last one is cut to the video).
        let (a, b) = (
            sn["start_frame"].as_u64().unwrap() as usize,
            sn["end_frame"].as_u64().unwrap() as usize,
        );
        assert_eq!((a, b), (k * 16, (k * 16 + 15).min(99)));
        assert!(
            frame_scores[a..=b]
                .iter()
                .all(|&f| (f - score).abs() < 1e-6)
        );
    }
    let segs = r["top_segments"].as_array().unwrap();
    assert!(!segs.is_empty() && segs.len() <= 5);
    let thumb = out.join(segs[0]["thumbnail"].as_str().unwrap());
    let region = segs[0]["region"].as_array().unwrap();
    assert_eq!(region.len(), 4);

    // CSV: header + one row per snippet.
    let csv = std::fs::read_to_string(out.join("Fighting042_x264.csv")).unwrap();
    assert!(
        csv.starts_with("snippet,start_frame,end_frame,start_s,end_s,score,class,p_Normal,p_Abuse")
    );
    assert_eq!(csv.lines().count(), 8);
    // PNG plot and thumbnail decode; the SVG has the curve and the shaded truth.
    for (png, w) in [(out.join("Fighting042_x264.png"), 1000), (thumb, 96)] {
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().width, w, "{}", png.display());
    }
    let svg = std::fs::read_to_string(out.join("Fighting042_x264.svg")).unwrap();
    assert!(
        svg.starts_with("<svg")
            && svg.contains("<polyline")
            && svg.contains("ground truth 1.20–2.40 s")
    );
    assert!(svg.trim_end().ends_with("</svg>"));

    // detect's JSON is what eval reads.
    let run = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(["eval", "--scores", s(&out), "--gt", s(&gt), "--json"])
        .output()
        .unwrap();
    assert_success(&run);
    let e: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(e["frames"], 100);
    assert!(e["roc_auc"].as_f64().is_some());

    // A missing video is an error for that video only.
    let run = fgclip(&[
        "detect",
        "--model",
        s(&model),
        s(&dir.join("none.mp4")),
        "--out",
        s(&out),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("none.mp4"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn extract_writes_normalised_features_and_resumes() {
    let dir = temp_dir("extract");
    make_video(&dir.join("a.mp4"), 40);
    make_video(&dir.join("b.mp4"), 70);
    let list = dir.join("list.txt");
    std::fs::write(&list, "a.mp4\nmissing.mp4\n\nb.mp4\n").unwrap();
    let out = dir.join("feats");
    let model = fixtures().join("clip_tiny");
    let args = [
        "extract",
        "--model",
        s(&model),
        "--videos",
        s(&dir),
        "--list",
        s(&list),
        "--out",
        s(&out),
    ];
    let run = fgclip(&args);
    assert_eq!(run.status.code(), Some(1), "one video is missing");
    let r: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        (r["extracted"].as_u64(), r["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("missing.mp4"));
    let (shape, data) = npy::read_f32(&out.join("b.npy")).unwrap();
    assert_eq!(shape, [5, 32]); // ceil(70 / 16) snippets × embed dim
    for row in data.chunks(32) {
        let n: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "{n}");
    }
    let before: PathBuf = out.join("a.npy");
    let t0 = std::fs::metadata(&before).unwrap().modified().unwrap();
    let run = fgclip(&args);
    let r: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        (r["extracted"].as_u64(), r["skipped_existing"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(std::fs::metadata(&before).unwrap().modified().unwrap(), t0);
    std::fs::remove_dir_all(dir).ok();
}

/// `detect --precision bf16` predicts the classes f32 does on the fixture videos, with
/// frame scores within bf16's rounding.
#[test]
fn bf16_detect_predicts_the_f32_classes_on_the_fixture_videos() {
    let dir = temp_dir("detect-bf16");
    let model = fixtures().join("clip_tiny");
    for video in ["videos/testsrc_h264.mp4", "videos/vtest.avi"] {
        let video = fixtures().join(video);
        let stem = video.file_stem().unwrap().to_string_lossy().into_owned();
        let mut results = Vec::new();
        for precision in ["f32", "bf16"] {
            let out = dir.join(precision);
            let run = fgclip(&[
                "detect",
                "--model",
                s(&model),
                s(&video),
                "--out",
                s(&out),
                "--stride",
                "32",
                "--precision",
                precision,
            ]);
            assert_success(&run);
            let r: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(out.join(format!("{stem}.json"))).unwrap(),
            )
            .unwrap();
            results.push(r);
        }
        let (a, b) = (&results[0], &results[1]);
        assert_eq!(a["predicted_class"], b["predicted_class"], "{stem}");
        let scores = |r: &serde_json::Value| -> Vec<f64> {
            r["frame_scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let (sa, sb) = (scores(a), scores(b));
        assert_eq!(sa.len(), sb.len());
        let worst = sa
            .iter()
            .zip(&sb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(worst > 0.0, "{stem}: bf16 gave the f32 scores exactly");
        assert!(worst < 0.02, "{stem}: frame scores differ by {worst}");
    }
    std::fs::remove_dir_all(dir).ok();
}
