//! ROI Align against torchvision and the contrastive loss against open_clip, outputs and
//! gradients (tests/fixtures/roi_align and loss, from shared/fixtures).

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use fgclip_core::loss::contrastive_loss;
use fgclip_core::model::normalize;
use fgclip_core::roi::{RoiAlignConfig, roi_align};
use fgclip_vad::checkpoint::safetensors_io::read_arrays;
use fgclip_vad::device::host_f32;

#[test]
fn roi_align_matches_torchvision_outputs_and_gradients() {
    let dir = fixtures().join("roi_align");
    let a = read_arrays(&dir.join("cases.safetensors")).unwrap();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let (shape, input) = f32s(&a, "input");
    assert_eq!(shape, [3, 8, 7, 7]);
    let (_, boxes_n) = f32s(&a, "boxes_normalized");
    let boxes: Vec<[f32; 4]> = boxes_n
        .chunks(4)
        .map(|b| [b[0] * 7.0, b[1] * 7.0, b[2] * 7.0, b[3] * 7.0])
        .collect();
    let batch_index: Vec<usize> = i64s(&a, "batch_index")
        .1
        .iter()
        .map(|&i| i as usize)
        .collect();
    let device = Device::flex().autodiff();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let o = case["output_size"].as_u64().unwrap() as usize;
        let cfg = RoiAlignConfig {
            output_size: (o, o),
            spatial_scale: case["spatial_scale"].as_f64().unwrap(),
            sampling_ratio: case["sampling_ratio"].as_i64().unwrap() as i32,
            aligned: case["aligned"].as_bool().unwrap(),
        };
        let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [3, 8, 7, 7]), &device)
            .require_grad();
        let out = roi_align(x.clone(), &boxes, &batch_index, &cfg);
        assert_eq!(out.dims(), [6, 8, o, o]);
        let (_, up) = f32s(&a, &format!("{name}_upstream_grad"));
        let up = Tensor::<4>::from_data(TensorData::new(up, [6, 8, o, o]), &device);
        let loss = (out.clone() * up).sum();
        let grads = loss.backward();
        let got = host_f32(out).unwrap();
        assert_close(
            &format!("{name} output"),
            &got,
            &f32s(&a, &format!("{name}_output")).1,
            1e-5,
        );
        let g = host_f32(x.grad(&grads).unwrap()).unwrap();
        assert_close(
            &format!("{name} input grad"),
            &g,
            &f32s(&a, &format!("{name}_input_grad")).1,
            1e-5,
        );
    }
}

/// torchvision's float32 arithmetic (tests/fixtures/roi_align/f32_edges, from
/// shared/fixtures): boxes × g in float32, including boxes whose adaptive sampling count
/// differs from float64's, on grids 6, 7, 14 and 16.
#[test]
fn roi_align_follows_torchvision_float32_on_edge_boxes() {
    let dir = fixtures().join("roi_align");
    let a = read_arrays(&dir.join("f32_edges.safetensors")).unwrap();
    let about: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("f32_edges.json")).unwrap())
            .unwrap();
    let device = Device::flex().autodiff();
    let mut edges_seen = 0;
    for grid in about["grids"].as_array().unwrap() {
        let g = grid["grid"].as_u64().unwrap() as usize;
        let (shape, input) = f32s(&a, &format!("g{g}_input"));
        assert_eq!(shape, [1, 8, g, g]);
        let boxes: Vec<[f32; 4]> = f32s(&a, &format!("g{g}_boxes_normalized"))
            .1
            .chunks(4)
            .map(|b| {
                [
                    b[0] * g as f32,
                    b[1] * g as f32,
                    b[2] * g as f32,
                    b[3] * g as f32,
                ]
            })
            .collect();
        let r = boxes.len();
        let x =
            Tensor::<4>::from_data(TensorData::new(input, [1, 8, g, g]), &device).require_grad();
        let out = roi_align(x.clone(), &boxes, &vec![0; r], &RoiAlignConfig::fgclip());
        let (_, up) = f32s(&a, &format!("g{g}_upstream_grad"));
        let up = Tensor::<4>::from_data(TensorData::new(up, [r, 8, 1, 1]), &device);
        let grads = (out.clone() * up).sum().backward();
        let got = host_f32(out).unwrap();
        assert_close(
            &format!("g{g} output"),
            &got,
            &f32s(&a, &format!("g{g}_output")).1,
            1e-5,
        );
        let gi = host_f32(x.grad(&grads).unwrap()).unwrap();
        assert_close(
            &format!("g{g} input grad"),
            &gi,
            &f32s(&a, &format!("g{g}_input_grad")).1,
            1e-5,
        );
        // The edge boxes come first: float64 box arithmetic would be visibly off there.
        let f64_way = f32s(&a, &format!("g{g}_output_if_float64")).1;
        for k in 0..grid["edge_boxes"].as_u64().unwrap() as usize {
            let row = k * 8..(k + 1) * 8;
            assert!(
                max_abs_diff(&got[row.clone()], &f64_way[row]) > 1e-4,
                "g{g} box {k}"
            );
            edges_seen += 1;
        }
    }
    assert_eq!(edges_seen, 8);
}

#[test]
fn contrastive_loss_matches_open_clip() {
    let dir = fixtures().join("loss");
    let a = read_arrays(&dir.join("cases.safetensors")).unwrap();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let device = Device::flex().autodiff();
    for case in cases["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (shape, img) = f32s(&a, &format!("{name}_image"));
        let (_, txt) = f32s(&a, &format!("{name}_text"));
        let dims = [shape[0], shape[1]];
        let i = Tensor::<2>::from_data(TensorData::new(img, dims), &device).require_grad();
        let t = Tensor::<2>::from_data(TensorData::new(txt, dims), &device).require_grad();
        let scale = Tensor::<1>::from_data(
            TensorData::new(vec![case["logit_scale"].as_f64().unwrap() as f32], [1]),
            &device,
        );
        let loss = contrastive_loss(normalize(i.clone()), normalize(t.clone()), scale);
        let grads = loss.backward();
        let value = host_f32(loss).unwrap()[0] as f64;
        let want = case["loss"].as_f64().unwrap();
        assert!((value - want).abs() < 1e-5, "{name}: {value} vs {want}");
        let gi = host_f32(i.grad(&grads).unwrap()).unwrap();
        assert_close(
            &format!("{name} image grad"),
            &gi,
            &f32s(&a, &format!("{name}_image_grad")).1,
            1e-5,
        );
        let gt = host_f32(t.grad(&grads).unwrap()).unwrap();
        assert_close(
            &format!("{name} text grad"),
            &gt,
            &f32s(&a, &format!("{name}_text_grad")).1,
            1e-5,
        );
    }
}

#[test]
fn check_roi_command_writes_torchvision_outputs_and_gradients() {
    let dir = temp_dir("check-roi");
    let out = dir.join("roi.safetensors");
    let cases = fixtures().join("roi_align");
    let run = fgclip(&[
        "check-roi",
        "--cases",
        cases.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_success(&run);
    let want = read_arrays(&cases.join("cases.safetensors")).unwrap();
    let got = read_arrays(&out).unwrap();
    // 12 cases, an output and an input gradient each.
    assert_eq!(got.len(), 24);
    for (name, a) in &got {
        let (shape, g) = f32s(&got, name);
        assert_eq!(&shape, a.shape());
        let (wshape, w) = f32s(&want, name);
        assert_eq!(shape, wshape, "{name}");
        assert_close(name, &g, &w, 1e-5);
    }
}

#[test]
fn check_roi_names_a_missing_fixture() {
    let dir = temp_dir("check-roi-missing");
    let run = fgclip(&[
        "check-roi",
        "--cases",
        dir.to_str().unwrap(),
        "--out",
        dir.join("x.safetensors").to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("cases.safetensors"), "{err}");
}
