//! FG-CLIP v1 checkpoints (tests/fixtures/fgclip_v1_tiny, made by FG-CLIP's own v1 code:
//! its make.py): embeddings, the dense grid and ROI features within 1e-5 of FG-CLIP's;
//! FG-CLIP's full loss (global, long, region, hard negatives) from `check-loss` on the same
//! inputs in fgclip's batch layout (tools/convert_fgclip_v1_batch.py); the scales; and a
//! written-back checkpoint that keeps every FG-CLIP key, shape and value.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use fgclip_core::roi::{RoiAlignConfig, roi_align};
use fgclip_vad::checkpoint::hf::{load_fgclip, load_model};
use fgclip_vad::checkpoint::safetensors_io::{Array, read_arrays, write_arrays};

fn fixture() -> std::path::PathBuf {
    fixtures().join("fgclip_v1_tiny")
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn embeddings_dense_grid_and_rois_match_fgclip() {
    let device = Device::flex();
    let model = load_model(&fixture().join("model"), &device).unwrap();
    assert!(model.has_long_text());
    let inputs = read_arrays(&fixture().join("inputs.safetensors")).unwrap();
    let expected = read_arrays(&fixture().join("expected.safetensors")).unwrap();
    let (ps, pixels) = f32s(&inputs, "pixel_values");
    let pixels = Tensor::<4>::from_data(
        TensorData::new(pixels, [ps[0], ps[1], ps[2], ps[3]]),
        &device,
    );
    let ids = |name: &str| {
        let (s, v) = i64s(&inputs, name);
        Tensor::<2, Int>::from_data(TensorData::new(v, [s[0], s[1]]), &device)
    };
    let image = model.encode_image(pixels, true);
    assert_close(
        "image_embeds",
        &host(image.embeds),
        &f32s(&expected, "image_embeds").1,
        1e-5,
    );
    let short = model.encode_text(ids("short_input_ids"));
    assert_close(
        "short_text_embeds",
        &host(short),
        &f32s(&expected, "short_text_embeds").1,
        1e-5,
    );
    // 248 positions: 0–19 from position_embedding_ori, 20–247 from _res, then
    // text_filip_projection. A mix-up of the tables or projections cannot pass: every
    // FG-CLIP-only tensor of the fixture is distinct.
    let long = model.encode_text_long(ids("long_input_ids")).unwrap();
    assert_close(
        "long_text_embeds",
        &host(long),
        &f32s(&expected, "long_text_embeds").1,
        1e-5,
    );
    let grid = image.patch_grid.unwrap();
    let [b, g, _, p] = grid.dims();
    assert_close(
        "dense_patch_embeds",
        &grid
            .clone()
            .reshape([b * g * g, p])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
        &f32s(&expected, "dense_patch_embeds").1,
        1e-5,
    );
    // FG-CLIP's get_image_box_roi_features: boxes[b, :box_nums[b]] × g, in float32.
    let (_, boxes) = f32s(&inputs, "boxes");
    let (_, nums) = i64s(&inputs, "box_nums");
    let (mut rois, mut image_of) = (Vec::new(), Vec::new());
    for (bi, &k) in nums.iter().enumerate() {
        for i in 0..k as usize {
            let o = (bi * 4 + i) * 4;
            let gs = g as f32;
            rois.push([
                boxes[o] * gs,
                boxes[o + 1] * gs,
                boxes[o + 2] * gs,
                boxes[o + 3] * gs,
            ]);
            image_of.push(bi);
        }
    }
    let r = rois.len();
    let out = roi_align(
        grid.permute([0, 3, 1, 2]),
        &rois,
        &image_of,
        &RoiAlignConfig::fgclip(),
    )
    .reshape([r, p]);
    assert_close(
        "roi_embeds",
        &host(out),
        &f32s(&expected, "roi_embeds").1,
        1e-5,
    );
}

/// FG-CLIP's loss (`expected.json`, its own forward) from `check-loss` on the same inputs
/// in fgclip's layout, with FG-CLIP's weights 0.1 and 0.5.
#[test]
fn check_loss_reproduces_fgclip_loss() {
    let out = fgclip(&[
        "check-loss",
        "--model",
        fixture().join("model").to_str().unwrap(),
        "--batch",
        fixture().join("batch.safetensors").to_str().unwrap(),
        "--region-weight",
        "0.1",
        "--hard-negative-weight",
        "0.5",
    ]);
    assert_success(&out);
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
            .unwrap();
    for key in [
        "loss",
        "loss_global",
        "loss_global_long",
        "loss_region",
        "loss_hard_negative",
    ] {
        let (g, w) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
        assert!((g - w).abs() < 1e-5, "{key}: {g} vs FG-CLIP's {w}");
    }
    assert_eq!(got["num_regions"], want["num_regions"]);
    assert_eq!(got["num_long"], 2);
    assert_eq!(got["num_hard_regions"], 3);

    // Without its hard-negative term (μ = 0) the total drops by exactly 0.5 · hard.
    let out = fgclip(&[
        "check-loss",
        "--model",
        fixture().join("model").to_str().unwrap(),
        "--batch",
        fixture().join("batch.safetensors").to_str().unwrap(),
        "--hard-negative-weight",
        "0",
    ]);
    assert_success(&out);
    let no_hard: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let drop = got["loss"].as_f64().unwrap() - no_hard["loss"].as_f64().unwrap();
    let hard = want["loss_hard_negative"].as_f64().unwrap();
    assert!((drop - 0.5 * hard).abs() < 1e-5, "{drop} vs {}", 0.5 * hard);
}

fn scalar(arrays: &std::collections::BTreeMap<String, Array>, name: &str) -> f32 {
    f32s(arrays, name).1[0]
}

/// The checkpoint's own region and hard-negative scales are kept; `reset_region_scales`
/// starts both at `logit_scale`, as FG-CLIP's training script does.
#[test]
fn scales_come_from_the_checkpoint_or_reset_to_logit_scale() {
    let device = Device::flex();
    let dir = fixture().join("model");
    let host1 = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap()[0];
    let kept = load_fgclip(&dir, &device, false).unwrap();
    assert_eq!(host1(kept.clip.logit_scale.val()), 2.3);
    assert_eq!(host1(kept.logit_scale_region.val()), 2.7);
    assert_eq!(host1(kept.logit_scale_hardneg.val()), 3.1);
    let reset = load_fgclip(&dir, &device, true).unwrap();
    assert_eq!(host1(reset.logit_scale_region.val()), 2.3);
    assert_eq!(host1(reset.logit_scale_hardneg.val()), 2.3);
    // A plain CLIP checkpoint starts both at its own logit_scale.
    let plain = load_fgclip(&fixtures().join("clip_tiny"), &device, false).unwrap();
    let s = host1(plain.clip.logit_scale.val());
    assert_eq!(host1(plain.logit_scale_region.val()), s);
    assert_eq!(host1(plain.logit_scale_hardneg.val()), s);
}

/// Written back, an FG-CLIP checkpoint keeps FG-CLIP's names: every key, shape and value
/// of the original, and `FGCLIPModel` in config.json; it loads again.
#[test]
fn written_back_checkpoint_keeps_every_fgclip_tensor() {
    let device = Device::flex();
    let src = fixture().join("model");
    let model = load_fgclip(&src, &device, false).unwrap();
    let tmp = temp_dir("fgclip-v1-export");
    let out = tmp.join("final");
    fgclip_vad::train::export_model(&out, &model, &src, None).unwrap();
    let before = read_arrays(&src.join("model.safetensors")).unwrap();
    let after = read_arrays(&out.join("model.safetensors")).unwrap();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, a) in &before {
        let (sa, va) = f32s(&before, name);
        let (sb, vb) = f32s(&after, name);
        assert_eq!(sa, sb, "{name}: shape");
        assert_eq!(va, vb, "{name}: values");
        assert!(matches!(a, Array::F32 { .. }));
    }
    for key in [
        "logit_scale_finegraind",
        "logit_scale_hardneg",
        "text_filip_projection.weight",
        "text_model.embeddings.position_embedding_res.weight",
        "text_model.embeddings.position_embedding_ori.weight",
    ] {
        assert!(after.contains_key(key), "{key}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"], serde_json::json!(["FGCLIPModel"]));
    let again = load_fgclip(&out, &device, false).unwrap();
    assert!(again.clip.has_long_text());

    // A plain CLIP model is written as HF CLIPModel, its extra scales in fgclip.json.
    let plain = load_fgclip(&fixtures().join("clip_tiny"), &device, false).unwrap();
    let plain_tmp = temp_dir("clip-export");
    let out = plain_tmp.join("final");
    fgclip_vad::train::export_model(&out, &plain, &fixtures().join("clip_tiny"), None).unwrap();
    let weights = read_arrays(&out.join("model.safetensors")).unwrap();
    assert!(
        !weights.keys().any(|k| k.starts_with("logit_scale_")),
        "{:?}",
        weights.keys()
    );
    let extra: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("fgclip.json")).unwrap()).unwrap();
    let s = scalar(&weights, "logit_scale") as f64;
    assert!((extra["logit_scale_region"].as_f64().unwrap() - s).abs() < 1e-6);
    assert!((extra["logit_scale_hardneg"].as_f64().unwrap() - s).abs() < 1e-6);
}

/// FG-CLIP's tensors under a config that does not say FGCLIPModel: an error that says so.
#[test]
fn fgclip_tensors_without_its_architecture_are_explained() {
    let dir = temp_dir("fgclip-v1-arch");
    let src = fixture().join("model");
    for f in ["model.safetensors", "vocab.json", "merges.txt"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["architectures"] = serde_json::json!(["CLIPModel"]);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let e = load_model(&dir, &Device::flex()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("text_filip_projection.weight"), "{msg}");
    assert!(msg.contains("FGCLIPModel"), "{msg}");
    // And a v1 config whose weights lack a long table names the missing tensor.
    let mut weights = read_arrays(&src.join("model.safetensors")).unwrap();
    weights.remove("text_model.embeddings.position_embedding_res.weight");
    write_arrays(&dir.join("model.safetensors"), &weights).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let msg = format!("{:#}", load_model(&dir, &Device::flex()).unwrap_err());
    assert!(msg.contains("position_embedding_res"), "{msg}");
}

/// `embed --texts`: short texts on the 77-position path, `--long` (or a text over 77
/// tokens) on FG-CLIP's long path, each equal to FG-CLIP's embeddings; a plain CLIP model
/// cuts long texts and says how many.
#[test]
fn embed_routes_texts_by_length_or_long_flag() {
    let dir = temp_dir("fgclip-v1-embed");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
            .unwrap();
    let texts = |key: &str| -> Vec<String> {
        want["texts"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    let expected = read_arrays(&fixture().join("expected.safetensors")).unwrap();
    let model = fixture().join("model");
    let run = |name: &str, lines: &[String], extra: &[&str], model: &std::path::Path| {
        let file = dir.join(format!("{name}.txt"));
        std::fs::write(&file, lines.join("\n")).unwrap();
        let out = dir.join(format!("{name}.safetensors"));
        let mut args = vec![
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--texts",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let res = fgclip(&args);
        (res, out)
    };
    let (res, out) = run("short", &texts("short"), &[], &model);
    assert_success(&res);
    let got = read_arrays(&out).unwrap();
    assert_close(
        "short path",
        &f32s(&got, "text_embeds").1,
        &l2_normalize_rows(&f32s(&expected, "short_text_embeds").1, 16),
        1e-5,
    );
    let (res, out) = run("long", &texts("long"), &["--long"], &model);
    assert_success(&res);
    let summary: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(summary["long_texts"], 2);
    let got = read_arrays(&out).unwrap();
    assert_close(
        "long path",
        &f32s(&got, "text_embeds").1,
        &l2_normalize_rows(&f32s(&expected, "long_text_embeds").1, 16),
        1e-5,
    );
    assert_eq!(f32s(&got, "text_embeds").0, [2, 16]);
    assert_eq!(i64s(&got, "input_ids").0, [2, 248]);

    // Over 77 tokens: the long path without --long; a plain CLIP cuts it and says so.
    let very_long = vec![texts("long")[0].repeat(2), texts("short")[0].clone()];
    let (res, out) = run("auto", &very_long, &[], &model);
    assert_success(&res);
    let summary: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(
        (
            summary["long_texts"].as_u64(),
            summary["cut_texts"].as_u64()
        ),
        (Some(1), Some(0))
    );
    let routed = read_arrays(&out).unwrap();
    assert!(matches!(routed.get("long_path"), Some(Array::U8 { data, .. }) if data == &[1, 0]));
    let (res, _) = run("plain", &very_long, &[], &fixtures().join("clip_tiny"));
    assert_success(&res);
    let summary: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    assert_eq!(summary["cut_texts"], 1);
    assert!(String::from_utf8_lossy(&res.stderr).contains("1 text(s) are longer"));
    let (res, _) = run(
        "plain-long",
        &very_long,
        &["--long"],
        &fixtures().join("clip_tiny"),
    );
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("no long-text path"));
}

/// Zero-shot detection and snippet extraction load an FG-CLIP checkpoint as any CLIP
/// folder (its extra scales do not enter zero-shot use).
#[test]
fn detect_and_extract_take_an_fgclip_checkpoint() {
    let dir = temp_dir("fgclip-v1-detect");
    let model = fixture().join("model");
    let videos = fixtures().join("videos");
    let out = fgclip(&[
        "detect",
        "--model",
        model.to_str().unwrap(),
        videos.join("testsrc_h264.mp4").to_str().unwrap(),
        "--out",
        dir.join("det").to_str().unwrap(),
        "--stride",
        "60",
    ]);
    assert_success(&out);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("det/testsrc_h264.json")).unwrap())
            .unwrap();
    assert_eq!(report["snippets"].as_array().map(Vec::len), Some(6));
    assert_eq!(report["frame_scores"].as_array().map(Vec::len), Some(360));
    let list = dir.join("list.txt");
    std::fs::write(&list, "testsrc_h264.mp4\n").unwrap();
    let out = fgclip(&[
        "extract",
        "--model",
        model.to_str().unwrap(),
        "--videos",
        videos.to_str().unwrap(),
        "--list",
        list.to_str().unwrap(),
        "--out",
        dir.join("feats").to_str().unwrap(),
        "--stride",
        "60",
    ]);
    assert_success(&out);
}

/// An empty hard-negative slot is absent, not a zero-similarity candidate: the loss of a
/// batch whose last slot is masked equals that of the same batch cut to H − 1 slots,
/// whatever ids the masked slot holds; a region with every slot masked leaves the term.
#[test]
fn masked_hard_negative_slots_are_absent() {
    use fgclip_core::fgclip::LossWeights;
    let device = Device::flex();
    let model = load_fgclip(&fixture().join("model"), &device, false).unwrap();
    let base = read_arrays(&fixture().join("batch.safetensors")).unwrap();
    let (hs, ids) = i64s(&base, "hard_input_ids");
    let mask = match &base["hard_mask"] {
        Array::U8 { data, .. } => data.clone(),
        other => panic!("{other:?}"),
    };
    let [b, n, h, l] = [hs[0], hs[1], hs[2], hs[3]];
    let dir = temp_dir("fgclip-v1-mask");
    let loss_of = |name: &str, ids: Vec<i64>, mask: Vec<u8>, h: usize| {
        let mut a = base.clone();
        a.insert(
            "hard_input_ids".into(),
            Array::I64 {
                shape: vec![b, n, h, l],
                data: ids,
            },
        );
        a.insert(
            "hard_mask".into(),
            Array::U8 {
                shape: vec![b, n, h],
                data: mask,
            },
        );
        let path = dir.join(format!("{name}.safetensors"));
        write_arrays(&path, &a).unwrap();
        let batch = fgclip_vad::train::read_batch(&path, model.clip.config(), &device).unwrap();
        let weights = LossWeights {
            region: 0.1,
            hard_negative: 0.5,
        };
        fgclip_vad::train::check_loss(&model, &batch, &weights, None).unwrap()
    };
    // Slot h − 1 masked, holding other ids (the first slot's).
    let (mut ids_m, mut mask_m) = (ids.clone(), mask.clone());
    for r in 0..b * n {
        let last = (r * h + h - 1) * l;
        let first = r * h * l;
        let copy: Vec<i64> = ids[first..first + l].to_vec();
        ids_m[last..last + l].copy_from_slice(&copy);
        mask_m[r * h + h - 1] = 0;
    }
    let masked = loss_of("masked", ids_m, mask_m, h);
    // The same batch with only H − 1 slots.
    let mut ids_c = Vec::new();
    let mut mask_c = Vec::new();
    for r in 0..b * n {
        ids_c.extend_from_slice(&ids[r * h * l..(r * h + h - 1) * l]);
        mask_c.extend_from_slice(&mask[r * h..r * h + h - 1]);
    }
    let cut = loss_of("cut", ids_c, mask_c, h - 1);
    assert!((masked.loss_hard_negative - cut.loss_hard_negative).abs() < 1e-6);
    assert_eq!(masked.num_hard_regions, 3);
    let full = loss_of("full", ids.clone(), mask.clone(), h);
    assert!((full.loss_hard_negative - masked.loss_hard_negative).abs() > 1e-4);
    // Every slot of image 1's region masked: two regions keep the term.
    let mut mask_r = mask.clone();
    for v in &mut mask_r[n * h..] {
        *v = 0;
    }
    let fewer = loss_of("fewer", ids, mask_r, h);
    assert_eq!(fewer.num_hard_regions, 2);
    assert!((fewer.loss_global - full.loss_global).abs() < 1e-7);
}
