//! `fgclip warmup` (#30): the step's pieces as separate `fgclip` processes at once, with the
//! global options passed on. On the CPU there is no kernel to compile; what is tested here
//! is the orchestration (the GPU effect is measured by tools/gpu/check.sh's `parwarm`).

use std::process::Command;

fn warmup(args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), v)
}

fn job<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == name)
        .unwrap_or_else(|| panic!("no job {name}: {v}"))
}

fn args(j: &serde_json::Value) -> Vec<String> {
    j["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_step_s_pieces_run_side_by_side_with_the_global_options() {
    let (code, v) = warmup(&[
        "--precision",
        "bf16",
        "--matmul",
        "cublas-f32",
        "warmup",
        "--preset",
        "tiny",
        "--batch",
        "2",
        "--frames",
        "3",
        "--detect-batch",
        "4",
        "--json",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["parallel"], 3);
    assert_eq!(v["precision"], "bf16");
    let global = v["global"].as_array().unwrap();
    assert!(
        global
            .windows(2)
            .any(|w| w[0] == "--matmul" && w[1] == "cublas-f32"),
        "{v}"
    );
    for name in ["step", "image-tower", "detect-batch"] {
        let j = job(&v, name);
        assert_eq!(j["status"], 0, "{j}");
        let a = args(j);
        assert_eq!(a[..2], ["--precision", "bf16"], "{a:?}");
    }
    let step = args(job(&v, "step")).join(" ");
    assert!(
        step.contains("bench train --preset tiny --batch 2 --frames 3"),
        "{step}"
    );
    // The image tower at the step's frame batch (2 clips × 3 frames) and at detect's.
    assert!(args(job(&v, "image-tower")).join(" ").contains("--batch 6"));
    assert!(
        args(job(&v, "detect-batch"))
            .join(" ")
            .contains("--batch 4")
    );
}

#[test]
fn jobs_past_the_time_limit_are_stopped_and_reported() {
    let (code, v) = warmup(&[
        "warmup",
        "--preset",
        "tiny",
        "--batch",
        "2",
        "--frames",
        "2",
        "--jobs",
        "1",
        "--timeout",
        "0",
        "--json",
    ]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["parallel"], 1);
    for j in v["jobs"].as_array().unwrap() {
        assert!(j["status"].is_null(), "{j}");
    }
}
