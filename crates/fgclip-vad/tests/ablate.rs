//! `fgclip ablate` end to end on the tiny preset: a 2 × 2 grid plus one variant on a
//! synthetic dataset — every run trained, detected and evaluated, the tables with one row
//! per run / cell, a second invocation skipping every finished run — and a bad grid
//! refused before anything runs.

mod common;

use std::path::Path;

use common::{assert_success, copy_dir, fgclip, temp_dir};
use fgclip_vad::synth::{SynthConfig, generate};

fn synth(dir: &Path) -> fgclip_vad::synth::SynthSummary {
    let cfg = SynthConfig {
        train_videos: 4,
        test_videos: 2,
        seconds: 4,
        seed: 5,
    };
    generate(dir, &cfg, &indicatif::ProgressBar::hidden()).unwrap()
}

/// Runs `fgclip ablate` and asserts that it succeeded, skipping `skipped` finished runs.
#[track_caller]
fn assert_runs_skipping(args: &[&str], skipped: usize) {
    let out = fgclip(args);
    assert_success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("done before, skipped").count(),
        skipped,
        "{stderr}"
    );
}

fn ablate_args<'a>(
    data: &'a Path,
    s: &'a fgclip_vad::synth::SynthSummary,
    grid: &'a Path,
    out: &'a Path,
) -> Vec<&'a str> {
    vec![
        "ablate",
        "--grid",
        grid.to_str().unwrap(),
        "--annotations",
        s.annotations.to_str().unwrap(),
        "--videos",
        data.to_str().unwrap(),
        "--test-list",
        s.test_list.to_str().unwrap(),
        "--gt",
        s.test_gt.to_str().unwrap(),
        "--prompts",
        s.prompts.to_str().unwrap(),
        "--preset",
        "tiny",
        "--tokenizer",
        "builtin",
        "--stride",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]
}

#[test]
fn a_two_by_two_grid_runs_end_to_end_and_resumes_by_skipping() {
    let dir = temp_dir("ablate");
    let data = dir.join("data");
    let s = synth(&data);
    let grid = dir.join("grid.json");
    std::fs::write(
        &grid,
        r#"{"base": {"max_steps": 2, "batch_size": 2, "frames": 2, "warmup_steps": 0,
                     "checkpoint_every": 1},
            "grid": {"region_weight": [0.0, 1.0], "hard_negative_weight": [0.0, 0.5]},
            "variants": [{"frames": 3}],
            "seeds": [1]}"#,
    )
    .unwrap();
    let out = dir.join("out");
    let run = fgclip(&ablate_args(&data, &s, &grid, &out));
    assert_success(&run);

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "run,seed,hard_negative_weight,region_weight,frames,roc_auc,average_precision,\
         train_seconds,clips_per_s,peak_rss_mb,decode_seconds,detect_seconds,steps,last_loss"
    );
    assert_eq!(lines.len(), 1 + 5, "{csv}");
    let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split(',').collect()).collect();
    let keys: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[2], r[3], r[4])).collect();
    assert_eq!(
        keys,
        [
            ("0.0", "0.0", ""),
            ("0.0", "1.0", ""),
            ("0.5", "0.0", ""),
            ("0.5", "1.0", ""),
            ("", "", "3")
        ]
    );
    for r in &rows {
        assert_eq!(r[1], "1");
        let auc: f64 = r[5].parse().expect("an AUC");
        assert!((0.0..=1.0).contains(&auc), "{auc}");
        assert!(r[7].parse::<f64>().unwrap() > 0.0);
        assert!(r[10].parse::<f64>().unwrap() > 0.0, "decode time {}", r[10]);
        assert_eq!(r[12], "2", "steps");
        if cfg!(target_os = "linux") {
            assert!(r[9].parse::<f64>().unwrap() > 10.0, "peak RSS {}", r[9]);
        }
    }

    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    let md_rows: Vec<&str> = md.lines().collect();
    assert_eq!(md_rows.len(), 2 + 5, "{md}");
    assert!(
        md_rows[0].starts_with("| hard_negative_weight | region_weight | frames | frame AUC |")
    );
    assert_eq!(md.matches("**").count() % 2, 0);
    assert!(md.contains("**"), "the best AUC is bold: {md}");
    let tex = std::fs::read_to_string(out.join("table.tex")).unwrap();
    assert!(tex.contains("\\toprule") && tex.contains("\\midrule") && tex.contains("\\bottomrule"));
    assert_eq!(tex.matches(" \\\\\n").count(), 1 + 5, "{tex}");
    assert!(tex.contains("hard\\_negative\\_weight") && tex.contains("\\textbf{"));
    assert!(out.join("auc_vs_region_weight.svg").is_file());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("auc_vs_region_weight.svg") && html.contains("<table>"));
    for id in ["c000-s1", "c004-s1"] {
        assert!(
            out.join("runs").join(id).join("train/final").is_dir(),
            "{id}"
        );
        assert!(
            out.join("runs").join(id).join("eval.json").is_file(),
            "{id}"
        );
    }

    // Again: every run is finished, so nothing trains and the results are the same.
    assert_runs_skipping(&ablate_args(&data, &s, &grid, &out), 5);
    assert_eq!(
        std::fs::read_to_string(out.join("results.csv")).unwrap(),
        csv
    );

    // Finished runs copied into another grid's folder under other cells are reused (their
    // configs are those cells'), with that grid's run names and keys in every table.
    let swapped = dir.join("swapped.json");
    std::fs::write(
        &swapped,
        r#"{"base": {"max_steps": 2, "batch_size": 2, "frames": 2, "warmup_steps": 0,
                     "checkpoint_every": 1, "hard_negative_weight": 0.0},
            "grid": {"region_weight": [1.0, 0.0]},
            "seeds": [1]}"#,
    )
    .unwrap();
    let out2 = dir.join("out2");
    for (from, to) in [("c001-s1", "c000-s1"), ("c000-s1", "c001-s1")] {
        copy_dir(&out.join("runs").join(from), &out2.join("runs").join(to));
    }
    assert_runs_skipping(&ablate_args(&data, &s, &swapped, &out2), 2);
    let csv2 = std::fs::read_to_string(out2.join("results.csv")).unwrap();
    let rows2: Vec<Vec<&str>> = csv2
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let auc_of = |rw: &str| {
        rows[rows
            .iter()
            .position(|r| r[2] == "0.0" && r[3] == rw)
            .unwrap()][5]
    };
    assert_eq!(
        rows2.iter().map(|r| (r[0], r[2])).collect::<Vec<_>>(),
        [("c000-s1", "1.0"), ("c001-s1", "0.0")],
        "{csv2}"
    );
    assert_eq!((rows2[0][3], rows2[1][3]), (auc_of("1.0"), auc_of("0.0")));
    let md2 = std::fs::read_to_string(out2.join("table.md")).unwrap();
    assert_eq!(md2.lines().count(), 2 + 2, "{md2}");
    assert!(
        md2.lines().all(|l| !l.ends_with("| 2 |")),
        "one seed a cell: {md2}"
    );

    // An edited grid in the same folder: cell 4 is now another variant, so its old run
    // must not be reused as if it were the new one.
    let edited = dir.join("edited.json");
    std::fs::write(
        &edited,
        std::fs::read_to_string(&grid)
            .unwrap()
            .replace(r#"{"frames": 3}"#, r#"{"fusion": "transformer"}"#),
    )
    .unwrap();
    let refused = fgclip(&ablate_args(&data, &s, &edited, &out));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("c004-s1")
            && stderr.contains("another config")
            && stderr.contains("`fusion`"),
        "{stderr}"
    );
}

#[test]
fn a_bad_grid_is_refused_before_anything_runs() {
    let dir = temp_dir("ablate-bad");
    let data = dir.join("data");
    let s = synth(&data);
    let grid = dir.join("grid.json");
    std::fs::write(&grid, r#"{"grid": {"region_weight": [0.0, "high"]}}"#).unwrap();
    let out = dir.join("out");
    let run = fgclip(&ablate_args(&data, &s, &grid, &out));
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("`region_weight` = \"high\" in grid"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing was written");

    std::fs::write(&grid, r#"{"grid": {"fusion_depth": [1, 2]}}"#).unwrap();
    let run = fgclip(&ablate_args(&data, &s, &grid, &out));
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("`fusion_depth` in grid is not a training config key"),
        "{stderr}"
    );

    // A tokenizer that cannot be read: refused before the first run, too.
    std::fs::write(&grid, r#"{"grid": {"frames": [2]}}"#).unwrap();
    let mut args = ablate_args(&data, &s, &grid, &out);
    let at = args.iter().position(|a| *a == "--tokenizer").unwrap();
    args[at + 1] = "/nonexistent/tokenizer.json";
    let run = fgclip(&args);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("/nonexistent/tokenizer.json"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(!out.exists(), "nothing was written");

    let run = fgclip(&["ablate", "--print-grid"]);
    assert_success(&run);
    let printed: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(printed["grid"]["region_weight"].is_array());
}
