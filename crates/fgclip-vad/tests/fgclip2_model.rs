//! FG-CLIP 2's towers against FG-CLIP 2's own code (tests/fixtures/fgclip2_tiny, made by
//! tools/make_fgclip2_fixture.py): the NaFlex image tower's pooled embedding, the dense
//! features of `dense_feature_head` and ROI features on each frame's own patch grid, for
//! frames of three aspect ratios at two patch budgets (one an upscale to 1024 patches, so
//! padding rows and every position resize are exercised); and the short, long and box walks'
//! text embeddings of English, Chinese and byte-fallback texts, padded left and right.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{assert_close, f32s, fixtures, i64s};
use fgclip_core::Weights;
use fgclip_core::fgclip2::{Fgclip2Config, Fgclip2Model, NaflexPixels, Walk, roi_features};
use fgclip_vad::checkpoint::hf::SafetensorsWeights;
use fgclip_vad::checkpoint::safetensors_io::read_arrays;
use fgclip_vad::data::naflex::{NaflexConfig, preprocess};
use fgclip_vad::device::host_f32;

fn model(device: &Device) -> Fgclip2Model {
    let dir = fixtures().join("fgclip2_tiny/model");
    let config: Fgclip2Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let source = SafetensorsWeights::open_dir(&dir).unwrap();
    Fgclip2Model::load(&Weights::new(&source, device), &config).unwrap()
}

fn meta() -> serde_json::Value {
    let path = fixtures().join("fgclip2_tiny/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn l2(rows: &[f32], d: usize) -> Vec<f32> {
    common::l2_normalize_rows(rows, d)
}

#[test]
fn image_dense_and_roi_features_equal_fgclip2() {
    let device = Device::flex();
    let m = model(&device);
    let meta = meta();
    let expected = read_arrays(&fixtures().join("fgclip2_tiny/expected.safetensors")).unwrap();
    let frames = common::fgclip2_frames();
    let boxes: Vec<[f32; 4]> = meta["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| std::array::from_fn(|i| b[i].as_f64().unwrap() as f32))
        .collect();
    for case in meta["images"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let f = frames
            .iter()
            .find(|f| f.0 == case["crop"].as_str().unwrap())
            .unwrap();
        let cfg = match case["budget"].as_u64() {
            Some(b) => NaflexConfig {
                dynamic_max_patches: false,
                max_num_patches: b as usize,
                ..NaflexConfig::default()
            },
            None => NaflexConfig::default(),
        };
        let img = preprocess(&[(&f.1, f.2, f.3)], &cfg).unwrap().remove(0);
        let p = img.max_num_patches;
        let x = NaflexPixels {
            pixel_values: Tensor::from_data(
                TensorData::new(img.pixel_values.clone(), [1, p, 768]),
                &device,
            ),
            spatial_shapes: vec![img.spatial_shape],
        };
        let (pooled, dense) = m.image_and_dense_features(&x);
        let (_, want) = f32s(&expected, &format!("{name}.image_embeds"));
        assert_close(
            &format!("{name} image"),
            &host_f32(pooled).unwrap(),
            &want,
            1e-5,
        );
        let n = img.patches();
        let (_, want) = f32s(&expected, &format!("{name}.dense"));
        let got = host_f32(dense.clone().slice([0..1, 0..n, 0..32])).unwrap();
        assert_close(&format!("{name} dense"), &got, &want, 1e-5);
        let rois = roi_features(dense, &x.spatial_shapes, &boxes, &vec![0; boxes.len()]);
        let (_, want) = f32s(&expected, &format!("{name}.roi"));
        assert_close(
            &format!("{name} roi"),
            &l2(&host_f32(rois).unwrap(), 32),
            &want,
            1e-5,
        );
    }
}

#[test]
fn two_images_of_different_grids_in_one_batch_equal_each_alone() {
    // The padded rows of the smaller image must not leak into its embedding.
    let device = Device::flex();
    let m = model(&device);
    let frames = common::fgclip2_frames();
    let inputs: Vec<(&[u8], usize, usize)> = frames.iter().map(|f| (&f.1[..], f.2, f.3)).collect();
    let imgs = preprocess(&inputs, &NaflexConfig::default()).unwrap();
    let p = imgs[0].max_num_patches;
    let all: Vec<f32> = imgs.iter().flat_map(|i| i.pixel_values.clone()).collect();
    let x = NaflexPixels {
        pixel_values: Tensor::from_data(TensorData::new(all, [imgs.len(), p, 768]), &device),
        spatial_shapes: imgs.iter().map(|i| i.spatial_shape).collect(),
    };
    let batch = host_f32(m.image_features(&x)).unwrap();
    for (k, img) in imgs.iter().enumerate() {
        let one = NaflexPixels {
            pixel_values: Tensor::from_data(
                TensorData::new(img.pixel_values.clone(), [1, p, 768]),
                &device,
            ),
            spatial_shapes: vec![img.spatial_shape],
        };
        let alone = host_f32(m.image_features(&one)).unwrap();
        assert_close(
            "batched vs alone",
            &batch[k * 32..(k + 1) * 32],
            &alone,
            1e-5,
        );
    }
}

#[test]
fn text_walks_equal_fgclip2() {
    let device = Device::flex();
    let m = model(&device);
    let expected = read_arrays(&fixtures().join("fgclip2_tiny/expected.safetensors")).unwrap();
    for (walk, name) in [
        (Walk::Short, "short"),
        (Walk::Long, "long"),
        (Walk::Box, "box"),
    ] {
        for suffix in ["", "_right"] {
            let (shape, ids) = i64s(&expected, &format!("text.{name}.input_ids{suffix}"));
            let ids =
                Tensor::<2, Int>::from_data(TensorData::new(ids, [shape[0], shape[1]]), &device);
            let got = host_f32(m.text_features(ids, walk)).unwrap();
            let (_, want) = f32s(&expected, &format!("text.{name}.embeds{suffix}"));
            assert_close(&format!("{name}{suffix}"), &got, &want, 1e-5);
        }
    }
}
