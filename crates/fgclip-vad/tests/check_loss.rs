//! `fgclip check-loss` on the reference batch (tests/fixtures/fgclip_batch, from
//! shared/fixtures): the FG-CLIP losses within 1e-4 and the stored gradients within 1e-3
//! relative, computed by the float64 reference model of DESIGN.md §4.

mod common;

use std::process::Command;

use common::*;
use fgclip_vad::checkpoint::safetensors_io::read_arrays;

#[test]
fn check_loss_matches_the_reference_batch() {
    let dir = temp_dir("check-loss");
    let batch = fixtures().join("fgclip_batch/batch.safetensors");
    let grads = dir.join("grads.safetensors");
    let run = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(["check-loss", "--model"])
        .arg(fixtures().join("clip_tiny"))
        .arg("--batch")
        .arg(&batch)
        .args(["--region-weight", "0.1", "--grads"])
        .arg(&grads)
        .output()
        .unwrap();
    assert_success(&run);
    let got: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("fgclip_batch/expected.json")).unwrap(),
    )
    .unwrap();
    for key in ["loss", "loss_global", "loss_region"] {
        let (g, w) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
        assert!((g - w).abs() < 1e-4, "{key}: {g} vs {w}");
    }
    assert_eq!(got["num_regions"], want["num_regions"]);

    let reference = read_arrays(&batch).unwrap();
    let ours = read_arrays(&grads).unwrap();
    let mut checked = 0;
    for name in reference.keys().filter_map(|k| k.strip_prefix("grad.")) {
        let (rs, r) = f32s(&reference, &format!("grad.{name}"));
        let (gs, g) = f32s(&ours, name);
        assert_eq!(gs, rs, "{name}: shape");
        let scale = r.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{name}: zero reference");
        let err = max_abs_diff(&g, &r) / scale;
        assert!(err <= 1e-3, "{name}: relative error {err}");
        checked += 1;
    }
    assert_eq!(checked, 7);
    // Every parameter of the model has a gradient entry under its HF name.
    assert!(ours.contains_key("text_model.encoder.layers.1.mlp.fc2.bias"));
    assert!(ours.contains_key("logit_scale_region"));

    // Without --grads: the same loss, no file.
    let run = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(["check-loss", "--model"])
        .arg(fixtures().join("clip_tiny"))
        .arg("--batch")
        .arg(&batch)
        .output()
        .unwrap();
    let again: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!((again["loss"].as_f64().unwrap() - got["loss"].as_f64().unwrap()).abs() < 1e-6);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_batches_name_the_field() {
    use fgclip_vad::checkpoint::safetensors_io::{Array, write_arrays};
    let dir = temp_dir("bad-batch");
    let mut a = read_arrays(&fixtures().join("fgclip_batch/batch.safetensors")).unwrap();
    a.remove("bbox_mask");
    let p = dir.join("b.safetensors");
    write_arrays(&p, &a).unwrap();
    let run = |p: &std::path::Path| {
        let r = Command::new(env!("CARGO_BIN_EXE_fgclip"))
            .args(["check-loss", "--model"])
            .arg(fixtures().join("clip_tiny"))
            .arg("--batch")
            .arg(p)
            .output()
            .unwrap();
        assert_eq!(r.status.code(), Some(1));
        String::from_utf8_lossy(&r.stderr).into_owned()
    };
    assert!(run(&p).contains("no tensor `bbox_mask`"));
    let mut a = read_arrays(&fixtures().join("fgclip_batch/batch.safetensors")).unwrap();
    if let Some(Array::F32 { data, .. }) = a.get_mut("boxes") {
        data[3] = f32::NAN;
    }
    write_arrays(&p, &a).unwrap();
    let e = run(&p);
    assert!(e.contains("`boxes`") && e.contains("non-finite"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}
