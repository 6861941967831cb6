//! `fgclip eval`: metrics equal to scikit-learn's on the fixture (ties included), and the
//! UCF-Crime and XD-Violence protocols on constructed ground truth with known results.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fixtures, temp_dir};
use fgclip_vad::data::npy;
use fgclip_vad::eval::{average_precision, roc_auc};

#[test]
fn metrics_equal_scikit_learn_with_ties() {
    let text = std::fs::read_to_string(fixtures().join("metrics/auc_ap.json")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let labels: Vec<bool> = j["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64() == Some(1))
        .collect();
    let scores: Vec<f64> = j["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(labels.len(), 20_000);
    let auc = roc_auc(&labels, &scores).unwrap();
    let ap = average_precision(&labels, &scores).unwrap();
    assert!((auc - j["roc_auc"].as_f64().unwrap()).abs() < 1e-9, "{auc}");
    assert!(
        (ap - j["average_precision"].as_f64().unwrap()).abs() < 1e-9,
        "{ap}"
    );
}

/// Scores = the labels, except that 10 frames of the normal video score 1 too.
fn write_scores(dir: &Path) {
    let mut abuse = vec![0f32; 100];
    abuse[20..40].iter_mut().for_each(|s| *s = 1.0);
    npy::write_f32(&dir.join("Abuse001_x264.npy"), &[100], &abuse).unwrap();
    let mut normal = vec![0f64; 50];
    normal[5..15].iter_mut().for_each(|s| *s = 1.0);
    // The normal video's scores come as detect's JSON.
    std::fs::write(
        dir.join("Normal_Videos_001_x264.json"),
        serde_json::json!({"frame_scores": normal, "frame_count": 50}).to_string(),
    )
    .unwrap();
    let mut arrest = vec![0f32; 80];
    arrest[10..20].iter_mut().for_each(|s| *s = 1.0);
    arrest[60..70].iter_mut().for_each(|s| *s = 1.0);
    npy::write_f32(&dir.join("Arrest002_x264.npy"), &[80], &arrest).unwrap();
}

fn eval(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .arg("eval")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn close(v: &serde_json::Value, want: f64) {
    let got = v.as_f64().unwrap_or(f64::NAN);
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[test]
fn ucf_crime_protocol() {
    let dir = temp_dir("eval-ucf");
    write_scores(&dir);
    let gt = dir.join("Temporal_Anomaly_Annotation_for_Testing_Videos.txt");
    std::fs::write(
        &gt,
        "Abuse001_x264.mp4  Abuse  20  39  -1  -1\nArrest002_x264.mp4  Arrest  10  19  60  69\nNormal_Videos_001_x264.mp4  Normal  -1  -1  -1  -1\nBurglary009_x264.mp4  Burglary  5  9  -1  -1\n",
    )
    .unwrap();
    let (code, out, err) = eval(&[
        "--scores",
        dir.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["videos"], 3);
    assert_eq!(r["frames"], 230);
    // 40 positives at 1; 190 negatives, 10 of them tied at 1.
    close(&r["roc_auc"], 185.0 / 190.0);
    close(&r["average_precision"], 0.8);
    close(&r["roc_auc_anomalous_videos"], 1.0);
    let classes = r["per_class"].as_array().unwrap();
    assert_eq!(classes[0]["class"], "Abuse");
    close(&classes[0]["roc_auc"], 125.0 / 130.0);
    assert_eq!(classes[1]["class"], "Arrest");
    close(&classes[1]["roc_auc"], 105.0 / 110.0);
    assert_eq!(r["missing_scores"], serde_json::json!(["Burglary009_x264"]));
    // The readable report.
    let (_, text, _) = eval(&[
        "--scores",
        dir.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
    ]);
    assert!(text.contains("frame-level ROC AUC      0.9737"), "{text}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn xd_violence_protocol_and_length_mismatch() {
    let dir = temp_dir("eval-xd");
    write_scores(&dir);
    let gt = dir.join("annotations.txt");
    // Normal videos are not listed in XD-Violence's annotations.
    std::fs::write(&gt, "Abuse001_x264 20 39\nArrest002_x264 10 19 60 69\n").unwrap();
    let (code, out, err) = eval(&[
        "--scores",
        dir.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
        "--protocol",
        "xd-violence",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["videos"], 3);
    close(&r["average_precision"], 0.8);
    // The same file under the default (UCF-Crime) protocol: an error that names the fix.
    let (code, _, err) = eval(&[
        "--scores",
        dir.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("use --protocol xd-violence"), "{err}");
    close(&r["roc_auc"], 185.0 / 190.0);

    // A span past the scored frames: an error naming the video, unless allowed.
    std::fs::write(&gt, "Abuse001_x264 20 39\nArrest002_x264 70 89\n").unwrap();
    let args = [
        "--scores",
        dir.to_str().unwrap(),
        "--gt",
        gt.to_str().unwrap(),
        "--protocol",
        "xd-violence",
    ];
    let (code, _, err) = eval(&args);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Arrest002_x264") && err.contains("--allow-length-mismatch"),
        "{err}"
    );
    let mut allowed = args.to_vec();
    allowed.extend(["--allow-length-mismatch", "cut", "--json"]);
    let (code, out, err) = eval(&allowed);
    assert_eq!(code, Some(0), "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["length_mismatches"].as_array().unwrap().len(), 1);

    // Scores of the wrong length for detect's frame count.
    std::fs::write(
        dir.join("Normal_Videos_001_x264.json"),
        serde_json::json!({"frame_scores": vec![0.0; 40], "frame_count": 50}).to_string(),
    )
    .unwrap();
    std::fs::write(&gt, "Abuse001_x264 20 39\n").unwrap();
    let (code, _, err) = eval(&args);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Normal_Videos_001_x264: 40 scores for 50 frames"),
        "{err}"
    );
    let mut padded = args.to_vec();
    padded.extend(["--allow-length-mismatch", "pad", "--json"]);
    let (code, out, _) = eval(&padded);
    assert_eq!(code, Some(0));
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["frames"], 230);
    std::fs::remove_dir_all(dir).ok();
}
