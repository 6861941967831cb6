//! FG-CLIP 2's image processor on real frames: testsrc_h264.mp4 frame 150 decoded by fgclip
//! (its MD5 checked against OpenCV's) and its 16:9 and portrait crops, at the dynamic budget
//! (576, 256, 128 patches) and at 1024 (an upscale), and the three in one call: the float32 pixel values are bit for bit those of
//! `Fgclip2ImageProcessor` (their SHA-256), and so are the spatial shapes, masks and budgets
//! (tests/fixtures/fgclip2_tiny, tools/make_fgclip2_fixture.py).

mod common;

use common::{fgclip2_frames as frames, fixtures, i64s};
use fgclip_vad::checkpoint::safetensors_io::read_arrays;
use fgclip_vad::data::naflex::{NaflexConfig, NaflexImage, preprocess};
use sha2::{Digest, Sha256};

fn meta() -> serde_json::Value {
    let path = fixtures().join("fgclip2_tiny/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn sha(img: &NaflexImage) -> String {
    let mut h = Sha256::new();
    for v in &img.pixel_values {
        h.update(v.to_le_bytes());
    }
    format!("{:x}", h.finalize())
}

#[test]
fn pixels_masks_and_shapes_equal_the_image_processor() {
    let meta = meta();
    let expected = read_arrays(&fixtures().join("fgclip2_tiny/expected.safetensors")).unwrap();
    let frames = frames();
    let find = |crop: &str| frames.iter().find(|f| f.0 == crop).unwrap();
    for case in meta["images"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (_, data, w, h) = find(case["crop"].as_str().unwrap());
        let cfg = match case["budget"].as_u64() {
            Some(b) => NaflexConfig {
                dynamic_max_patches: false,
                max_num_patches: b as usize,
                ..NaflexConfig::default()
            },
            None => NaflexConfig::default(),
        };
        let img = preprocess(&[(data, *w, *h)], &cfg).unwrap().remove(0);
        assert_eq!(
            img.max_num_patches as u64,
            case["max_num_patches"].as_u64().unwrap(),
            "{name}"
        );
        let (_, shape) = i64s(&expected, &format!("{name}.spatial_shapes"));
        assert_eq!(
            [img.spatial_shape.0 as i64, img.spatial_shape.1 as i64],
            shape[..],
            "{name}"
        );
        let (_, mask) = i64s(&expected, &format!("{name}.pixel_attention_mask"));
        assert_eq!(img.mask(), mask, "{name}");
        assert_eq!(sha(&img), case["pixel_sha256"].as_str().unwrap(), "{name}");
    }
    // One call with the three frames: one budget, the largest asked for.
    let batch = &meta["batch"];
    let inputs: Vec<(&[u8], usize, usize)> = batch["crops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let f = find(c.as_str().unwrap());
            (&f.1[..], f.2, f.3)
        })
        .collect();
    let out = preprocess(&inputs, &NaflexConfig::default()).unwrap();
    let (_, shapes) = i64s(&expected, "batch.spatial_shapes");
    for (i, img) in out.iter().enumerate() {
        assert_eq!(
            img.max_num_patches as u64,
            batch["max_num_patches"].as_u64().unwrap()
        );
        assert_eq!(
            [img.spatial_shape.0 as i64, img.spatial_shape.1 as i64],
            shapes[i * 2..i * 2 + 2]
        );
        assert_eq!(sha(img), batch["pixel_sha256"][i].as_str().unwrap());
    }
}
