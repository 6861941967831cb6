//! FG-CLIP 2's training loss against FG-CLIP 2's own forward (tests/fixtures/fgclip2_tiny/loss.*,
//! made by tools/make_fgclip2_loss_fixture.py in float64 with its ROI casts patched): every term
//! and the total within 1e-5 (relative above 1), the cross-modal rank threshold it leaves (from 0.5, then from
//! the clamped update), and the gradients of 13 parameters within 1e-4 relative.

mod common;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{f32s, fixtures, i64s};
use fgclip_core::Weights;
use fgclip_core::fgclip::{HardNegatives, LongCaptions, ScaleInit};
use fgclip_core::fgclip2::{
    Fgclip2Config, Fgclip2LossTerms, Fgclip2LossWeights, Fgclip2Video, Fgclip2VideoBatch,
    NaflexPixels,
};
use fgclip_vad::checkpoint::hf::SafetensorsWeights;
use fgclip_vad::checkpoint::safetensors_io::{Array, read_arrays};
use fgclip_vad::device::{host_f32, host_scalar};
use std::collections::BTreeMap;

fn loss_meta() -> serde_json::Value {
    let path = fixtures().join("fgclip2_tiny/loss.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn model(device: &Device, arrays: &BTreeMap<String, Array>) -> Fgclip2Video {
    let dir = fixtures().join("fgclip2_tiny/model");
    let config: Fgclip2Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let source = SafetensorsWeights::open_dir(&dir).unwrap();
    let meta = loss_meta();
    let scale = |k: &str| ScaleInit::Value(meta["scales"][k].as_f64().unwrap() as f32);
    let mut m = Fgclip2Video::load(
        &Weights::new(&source, device),
        &config,
        scale("logit_scale_finegraind"),
        scale("logit_scale_hardneg"),
    )
    .unwrap();
    // The fixture's replacement boxtext_head (HF [out, in]; burn holds [in, out]).
    let (ws, w) = f32s(arrays, "model.boxtext_head.weight");
    let (_, bias) = f32s(arrays, "model.boxtext_head.bias");
    let d = ws[0];
    m.model.boxtext_head = Linear {
        weight: Param::from_tensor(
            Tensor::<2>::from_data(TensorData::new(w, [d, d]), device).transpose(),
        ),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [d]),
            device,
        ))),
    };
    m
}

/// The fixture's batch: 4 one-frame clips of different patch grids, pixels from the
/// script's formula.
fn batch(device: &Device, arrays: &BTreeMap<String, Array>) -> Fgclip2VideoBatch {
    let (_, shapes) = i64s(arrays, "batch.spatial_shapes");
    let shapes: Vec<(usize, usize)> = shapes
        .chunks(2)
        .map(|s| (s[0] as usize, s[1] as usize))
        .collect();
    let (b, p, c) = (shapes.len(), 32usize, 768usize);
    let mut pv = vec![0f32; b * p * c];
    for (bi, &(h, w)) in shapes.iter().enumerate() {
        for r in 0..h * w {
            for col in 0..c {
                let v = (bi * 7919 + r * 1031 + col * 97 + (r * col) % 13) % 64;
                pv[(bi * p + r) * c + col] = v as f32 / 32.0 - 1.0;
            }
        }
    }
    let ints = |name: &str| -> (Vec<usize>, Vec<i64>) { i64s(arrays, name) };
    let (ss, short) = ints("batch.short_ids");
    let (ls, long) = ints("batch.long_ids");
    let (rs, region) = ints("batch.region_ids");
    let (hs, hard) = ints("batch.hard_ids");
    let (_, hard_mask) = ints("batch.hard_mask");
    let (_, box_nums) = ints("batch.box_nums");
    let (_, boxes) = f32s(arrays, "batch.boxes");
    let n = rs[1];
    let bbox_mask: Vec<u8> = (0..b * n)
        .map(|k| u8::from(((k % n) as i64) < box_nums[k / n]))
        .collect();
    Fgclip2VideoBatch {
        pixels: NaflexPixels {
            pixel_values: Tensor::from_data(TensorData::new(pv, [b, p, c]), device),
            spatial_shapes: shapes,
        },
        frames: 1,
        global_input_ids: Tensor::<2, Int>::from_data(
            TensorData::new(short, [ss[0], ss[1]]),
            device,
        ),
        region_input_ids: Tensor::<3, Int>::from_data(
            TensorData::new(region, [rs[0], rs[1], rs[2]]),
            device,
        ),
        boxes,
        bbox_mask,
        global_long: Some(LongCaptions {
            input_ids: Tensor::<2, Int>::from_data(TensorData::new(long, [ls[0], ls[1]]), device),
            mask: vec![1; b],
        }),
        hard_negatives: Some(HardNegatives {
            input_ids: Tensor::<4, Int>::from_data(
                TensorData::new(hard, [hs[0], hs[1], hs[2], hs[3]]),
                device,
            ),
            mask: hard_mask.iter().map(|&m| u8::from(m != 0)).collect(),
        }),
    }
}

fn check_terms(step: &str, terms: &Fgclip2LossTerms) {
    let want = &loss_meta()[step];
    let pairs = [
        ("loss", terms.loss.clone()),
        ("loss_global", terms.loss_global.clone()),
        ("loss_global_long", terms.loss_global_long.clone()),
        ("loss_region", terms.loss_region.clone()),
        ("loss_region_text", terms.loss_region_text.clone()),
        ("loss_hard_negative", terms.loss_hard_negative.clone()),
    ];
    for (name, got) in pairs {
        let got = host_scalar(got).unwrap();
        let w = want[name].as_f64().unwrap();
        // 1e-5, relative above 1: the reference runs in float64, fgclip in float32, and the
        // hard term (22 here) multiplies its logits' rounding by e^3 and its weight 3.
        assert!(
            (got - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{step} {name}: fgclip {got}, FG-CLIP 2 {w}"
        );
    }
    let thr = want["threshold_after"].as_f64().unwrap();
    assert!(
        (terms.threshold - thr).abs() <= 1e-5,
        "{step} threshold: fgclip {}, FG-CLIP 2 {thr}",
        terms.threshold
    );
    assert_eq!(terms.num_regions, 12);
    assert_eq!(terms.num_long, 4);
    assert_eq!(terms.num_hard_regions, 7);
    assert_eq!(terms.region_text_top_k, 10);
}

fn max_rel(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    common::max_abs_diff(got, want) / scale
}

fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

#[test]
fn loss_terms_threshold_and_gradients_equal_fgclip2() {
    let device = Device::flex().autodiff();
    let arrays = read_arrays(&fixtures().join("fgclip2_tiny/loss.safetensors")).unwrap();
    let m = model(&device, &arrays);
    let b = batch(&device, &arrays);
    let weights = Fgclip2LossWeights::default();
    let meta = loss_meta();
    let start = meta["step1"]["threshold_before"].as_f64().unwrap();
    let terms = m.loss(&b, &weights, start);
    check_terms("step1", &terms);
    let next = terms.threshold;
    let grads = terms.loss.backward();

    // HF name → this model's gradient in HF's layout.
    let d2 = |p: &Param<Tensor<2>>| -> (Vec<usize>, Vec<f32>) {
        let g = p.val().grad(&grads).expect("a gradient");
        let [r, c] = g.dims();
        (vec![c, r], transpose(&host_f32(g).unwrap(), r, c))
    };
    let d1 = |p: &Param<Tensor<1>>| host_f32(p.val().grad(&grads).expect("a gradient")).unwrap();
    let v = &m.model.vision_model;
    let t = &m.model.text_model;
    let dense = &m.model.dense_feature_head;
    for name in meta["grad_names"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let (_, want) = f32s(&arrays, &format!("grad.{name}"));
        let got: Vec<f32> = match name {
            "logit_scale" => d1(&m.model.logit_scale),
            "logit_bias" => d1(&m.model.logit_bias),
            "logit_scale_finegraind" => d1(&m.logit_scale_finegraind),
            "logit_scale_hardneg" => d1(&m.logit_scale_hardneg),
            "text_model.head.weight" => d2(&t.head.weight).1,
            "longtext_head.weight" => d2(&m.model.longtext_head.weight).1,
            "boxtext_head.weight" => d2(&m.model.boxtext_head.weight).1,
            "dense_feature_head.attention.in_proj_weight" => [
                &dense.q_proj.weight,
                &dense.k_proj.weight,
                &dense.v_proj.weight,
            ]
            .into_iter()
            .flat_map(|p| d2(p).1)
            .collect(),
            "dense_feature_head.mlp.fc2.weight" => d2(&dense.mlp.fc2.weight).1,
            "vision_model.head.probe" => {
                host_f32(v.head.probe.val().grad(&grads).expect("a gradient")).unwrap()
            }
            "vision_model.embeddings.patch_embedding.weight" => {
                d2(&v.embeddings.patch_embedding.weight).1
            }
            "vision_model.encoder.layers.0.self_attn.q_proj.weight" => {
                d2(&v.encoder.layers[0].self_attn.q_proj.weight).1
            }
            "text_model.encoder.layers.1.mlp.fc1.weight" => {
                d2(&t.encoder.layers[1].mlp.fc1.weight).1
            }
            other => panic!("the fixture names a gradient this test does not know: {other}"),
        };
        let rel = max_rel(&got, &want);
        assert!(
            rel <= 1e-4,
            "gradient of {name}: max relative difference {rel}"
        );
    }

    // A second forward from the threshold the first left (weights unchanged).
    let want_before = meta["step2"]["threshold_before"].as_f64().unwrap();
    assert!((next - want_before).abs() <= 1e-5);
    let terms = m.loss(&b, &weights, next);
    check_terms("step2", &terms);
}

#[test]
fn region_text_term_takes_at_most_k_minus_one_and_needs_two_regions() {
    use fgclip_core::fgclip2::loss::region_text_loss;
    let device = Device::flex();
    let one = Tensor::<2>::from_data(TensorData::new(vec![1f32, 0.0], [1, 2]), &device);
    assert!(region_text_loss(one).is_none());
    // Three captions: each row sums its top 2 (K − 1) of the off-diagonal similarities;
    // rows 0 and 1 are the same caption (similarity 1 > 0.95: zeroed).
    let s = std::f32::consts::FRAC_1_SQRT_2;
    let t = Tensor::<2>::from_data(
        TensorData::new(vec![1.0, 0.0, 1.0, 0.0, s, s], [3, 2]),
        &device,
    );
    let got = host_scalar(region_text_loss(t).unwrap()).unwrap();
    // Row 0: {0 (same caption), s}; row 1 alike; row 2: {s, s}.
    let sf = s as f64;
    let row01 = (1.0 + sf.exp()).ln();
    let row2 = (2.0 * sf.exp()).ln();
    let want = (2.0 * row01 + row2) / 3.0;
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
}

/// `fgclip check-loss` on an FG-CLIP 2 folder: the same batch as a file (FG-CLIP 2's image
/// layout), the fixture's replaced head and scales in the folder's weights; every term
/// under its name, the threshold, and `--grads` in FG-CLIP 2's layout (packed `in_proj`).
#[test]
fn check_loss_cli_prints_every_fgclip2_term_and_writes_its_gradients() {
    use fgclip_vad::checkpoint::safetensors_io::write_arrays;
    let dir = common::temp_dir("fgclip2-check-loss");
    let arrays = read_arrays(&fixtures().join("fgclip2_tiny/loss.safetensors")).unwrap();
    let meta = loss_meta();
    // The model folder with the fixture's boxtext_head and scales in its weights.
    let model = dir.join("model");
    common::copy_dir(&fixtures().join("fgclip2_tiny/model"), &model);
    let mut w = read_arrays(&model.join("model.safetensors")).unwrap();
    for k in ["weight", "bias"] {
        w.insert(
            format!("boxtext_head.{k}"),
            arrays[&format!("model.boxtext_head.{k}")].clone(),
        );
    }
    for k in ["logit_scale_finegraind", "logit_scale_hardneg"] {
        let v = meta["scales"][k].as_f64().unwrap() as f32;
        w.insert(
            k.into(),
            Array::F32 {
                shape: vec![],
                data: vec![v],
            },
        );
    }
    write_arrays(&model.join("model.safetensors"), &w).unwrap();
    // The batch file.
    let device = Device::flex();
    let b = batch(&device, &arrays);
    let (rows, p, dim) = {
        let [r, p, d] = b.pixels.pixel_values.dims();
        (r, p, d)
    };
    let mut file = BTreeMap::new();
    file.insert(
        "pixel_values".to_string(),
        Array::F32 {
            shape: vec![rows, p, dim],
            data: host_f32(b.pixels.pixel_values.clone()).unwrap(),
        },
    );
    file.insert(
        "spatial_shapes".into(),
        Array::I64 {
            shape: vec![rows, 2],
            data: b
                .pixels
                .spatial_shapes
                .iter()
                .flat_map(|&(r, c)| [r as i64, c as i64])
                .collect(),
        },
    );
    let int = |name: &str| arrays[name].clone();
    file.insert("global_input_ids".into(), int("batch.short_ids"));
    file.insert("global_long_input_ids".into(), int("batch.long_ids"));
    file.insert(
        "global_long_mask".into(),
        Array::U8 {
            shape: vec![rows],
            data: vec![1; rows],
        },
    );
    file.insert("region_input_ids".into(), int("batch.region_ids"));
    let (bs, boxes) = f32s(&arrays, "batch.boxes");
    file.insert(
        "boxes".into(),
        Array::F32 {
            shape: vec![bs[0], 1, bs[1], 4],
            data: boxes,
        },
    );
    file.insert(
        "bbox_mask".into(),
        Array::U8 {
            shape: vec![bs[0], 1, bs[1]],
            data: b.bbox_mask.clone(),
        },
    );
    file.insert("hard_input_ids".into(), int("batch.hard_ids"));
    file.insert("hard_mask".into(), int("batch.hard_mask"));
    let batch_path = dir.join("batch.safetensors");
    write_arrays(&batch_path, &file).unwrap();
    let grads = dir.join("grads.safetensors");
    let out = common::fgclip(&[
        "check-loss",
        "--model",
        model.to_str().unwrap(),
        "--batch",
        batch_path.to_str().unwrap(),
        "--threshold",
        "0.5",
        "--grads",
        grads.to_str().unwrap(),
    ]);
    common::assert_success(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = &meta["step1"];
    for key in [
        "loss",
        "loss_global",
        "loss_global_long",
        "loss_region",
        "loss_region_text",
        "loss_hard_negative",
    ] {
        let (g, w) = (report[key].as_f64().unwrap(), want[key].as_f64().unwrap());
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{key}: {g} vs {w}"
        );
    }
    assert_eq!(
        report["threshold"].as_f64().unwrap(),
        want["threshold_after"].as_f64().unwrap()
    );
    assert_eq!(report["region_text_top_k"], 10);
    let g = read_arrays(&grads).unwrap();
    for name in meta["grad_names"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let (ws, wv) = f32s(&arrays, &format!("grad.{name}"));
        let (gs, gv) = f32s(&g, name);
        // The added scales are `[]` in FG-CLIP 2's state dict (the fixture stores [1]).
        if ws.len() > 1 {
            assert_eq!(gs, ws, "{name}");
        }
        let rel = max_rel(&gv, &wv);
        assert!(rel <= 1e-4, "{name}: {rel}");
    }
    std::fs::remove_dir_all(&*dir).ok();
}
