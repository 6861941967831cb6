//! `fgclip check-loss` on the reference batches (tests/fixtures/fgclip_batch and
//! fgclip_batch_edge, from shared/fixtures): the FG-CLIP losses within 1e-4 and the stored
//! gradients within 1e-3 relative, computed by the float64 reference model of DESIGN.md §4.

mod common;

use std::process::Command;

use common::*;
use fgclip_vad::checkpoint::safetensors_io::read_arrays;

/// Runs `check-loss` with `--grads` on `batch_dir` (batch.safetensors, expected.json) and
/// checks the losses (1e-4) and the stored gradients (1e-3 relative; exactly 0 where the
/// reference is exactly 0). Returns the loss report and the gradients.
fn check_batch(
    model: &std::path::Path,
    batch_dir: &std::path::Path,
    grads: &std::path::Path,
) -> (
    serde_json::Value,
    std::collections::BTreeMap<String, fgclip_vad::checkpoint::safetensors_io::Array>,
) {
    let batch = batch_dir.join("batch.safetensors");
    let run = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(["check-loss", "--model"])
        .arg(model)
        .arg("--batch")
        .arg(&batch)
        .args(["--region-weight", "0.1", "--grads"])
        .arg(grads)
        .output()
        .unwrap();
    assert_success(&run);
    let got: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(batch_dir.join("expected.json")).unwrap())
            .unwrap();
    let what = batch_dir.display();
    for key in ["loss", "loss_global", "loss_region"] {
        let (g, w) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
        assert!((g - w).abs() < 1e-4, "{what}: {key}: {g} vs {w}");
    }
    assert_eq!(got["num_regions"], want["num_regions"], "{what}");

    let reference = read_arrays(&batch).unwrap();
    let ours = read_arrays(grads).unwrap();
    let mut checked = 0;
    for name in reference.keys().filter_map(|k| k.strip_prefix("grad.")) {
        let (rs, r) = f32s(&reference, &format!("grad.{name}"));
        let (gs, g) = f32s(&ours, name);
        assert_eq!(gs, rs, "{what}: {name}: shape");
        let scale = r.iter().fold(0f32, |m, v| m.max(v.abs()));
        if scale == 0.0 {
            assert!(
                g.iter().all(|&v| v == 0.0),
                "{what}: {name}: {g:?} should be 0"
            );
        } else {
            let err = max_abs_diff(&g, &r) / scale;
            assert!(err <= 1e-3, "{what}: {name}: relative error {err}");
        }
        checked += 1;
    }
    assert_eq!(checked, 7, "{what}");
    (got, ours)
}

#[test]
fn check_loss_matches_the_reference_batch() {
    let dir = temp_dir("check-loss");
    let batch = fixtures().join("fgclip_batch/batch.safetensors");
    let grads = dir.join("grads.safetensors");
    let (got, ours) = check_batch(
        &fixtures().join("clip_tiny"),
        &fixtures().join("fgclip_batch"),
        &grads,
    );
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

/// A clip without regions, a batch without any (K = 0: region loss 0 and the region
/// scale's gradient exactly 0), and a model whose logit scale 5.0 is above ln 100 (no clamp
/// in the forward; the region scale starts at the model's own scale).
#[test]
fn check_loss_matches_the_edge_batches() {
    let dir = temp_dir("check-loss-edge");
    let edge = fixtures().join("fgclip_batch_edge");
    let tiny = fixtures().join("clip_tiny");
    for case in ["empty_first", "no_regions"] {
        let (got, grads) = check_batch(&tiny, &edge.join(case), &dir.join(format!("{case}.st")));
        if case == "no_regions" {
            assert_eq!(got["loss_region"], 0.0);
            assert_eq!(f32s(&grads, "logit_scale_region").1, [0.0]);
        }
    }
    // high_scale's model is clip_tiny with logit_scale 5.0 (shared/fixtures keeps the
    // whole folder; here it is made from clip_tiny).
    let model = tiny_with_logit_scale(&dir, 5.0);
    let (_, grads) = check_batch(&model, &edge.join("high_scale"), &dir.join("high.st"));
    // Unclamped: both scales move (a forward clamp would zero these gradients).
    assert!(f32s(&grads, "logit_scale").1[0] != 0.0);
    assert!(f32s(&grads, "logit_scale_region").1[0] != 0.0);
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

    // Against the model: image size, channels, token positions, vocabulary, mask shape.
    let base = read_arrays(&fixtures().join("fgclip_batch/batch.safetensors")).unwrap();
    let with = |name: &str, shape: Vec<usize>, fill: Option<i64>| {
        let mut a = base.clone();
        let arr = match (&base[name], fill) {
            (Array::F32 { .. }, _) => Array::F32 {
                data: vec![0.5; shape.iter().product()],
                shape,
            },
            (Array::I64 { data, shape: old }, Some(v)) if old == &shape => {
                let mut data = data.clone();
                data[1] = v;
                Array::I64 { shape, data }
            }
            (Array::I64 { .. }, _) => Array::I64 {
                data: vec![0; shape.iter().product()],
                shape,
            },
            (Array::U8 { .. }, _) => Array::U8 {
                data: vec![1; shape.iter().product()],
                shape,
            },
        };
        a.insert(name.into(), arr);
        write_arrays(&p, &a).unwrap();
        run(&p)
    };
    // clip_tiny: 3 channels, 64 px, 77 positions, vocabulary 49408; the batch is B 3, T 4, N 4.
    let e = with("pixel_values", vec![3, 4, 3, 32, 32], None);
    assert!(
        e.contains("`pixel_values` has shape [3, 4, 3, 32, 32]")
            && e.contains("[B ≥ 1, T ≥ 1, 3, 64, 64]"),
        "{e}"
    );
    let e = with("pixel_values", vec![3, 4, 1, 64, 64], None);
    assert!(
        e.contains("`pixel_values` has shape [3, 4, 1, 64, 64]"),
        "{e}"
    );
    let e = with("global_input_ids", vec![3, 77], Some(49408));
    assert!(
        e.contains("`global_input_ids` holds token id 49408") && e.contains("49408"),
        "{e}"
    );
    let e = with("region_input_ids", vec![3, 4, 77], Some(-3));
    assert!(e.contains("`region_input_ids` holds token id -3"), "{e}");
    let e = with("global_input_ids", vec![3, 80], None);
    assert!(
        e.contains("80 token positions, the model has 1 to 77"),
        "{e}"
    );
    let e = with("bbox_mask", vec![3, 4, 5], None);
    assert!(
        e.contains("`bbox_mask` has shape [3, 4, 5], expected [3, 4, 4]"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).ok();
}
