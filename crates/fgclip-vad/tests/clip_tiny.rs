//! The CLIP towers against transformers' outputs for the tiny fixture model
//! (tests/fixtures/clip_tiny, from shared/fixtures): every tensor of
//! expected.safetensors within 1e-4.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use fgclip_core::model::normalize;
use fgclip_vad::checkpoint::hf::load_model;
use fgclip_vad::device::host_f32;

const TOL: f32 = 1e-4;

fn data<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    host_f32(t).unwrap()
}

#[test]
fn towers_match_transformers() {
    let device = Device::flex();
    let model = load_model(&fixtures().join("clip_tiny"), &device).unwrap();
    let exp = expected_tiny();

    let (pshape, pixels) = f32s(&exp, "pixel_values");
    let pixels = Tensor::<4>::from_data(
        TensorData::new(pixels, [pshape[0], pshape[1], pshape[2], pshape[3]]),
        &device,
    );
    let (ishape, ids) = i64s(&exp, "input_ids");
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [ishape[0], ishape[1]]), &device);

    // Vision tower.
    let vision = model.vision(pixels.clone(), true);
    assert_close(
        "vision_last_hidden_state",
        &data(vision.last_hidden_state.clone()),
        &f32s(&exp, "vision_last_hidden_state").1,
        TOL,
    );
    assert_close(
        "vision_pooler_output",
        &data(vision.pooler_output.clone()),
        &f32s(&exp, "vision_pooler_output").1,
        TOL,
    );
    // Plain patch tokens through post_layernorm and the projection.
    let [b, n, d] = vision.last_hidden_state.dims();
    let patches = vision.last_hidden_state.slice([0..b, 1..n, 0..d]);
    let projected = model
        .visual_projection
        .forward(model.vision_model.post_layernorm.forward(patches));
    assert_close(
        "patch_embeds_projected",
        &data(projected),
        &f32s(&exp, "patch_embeds_projected").1,
        TOL,
    );

    // Projected embeddings and the FG-CLIP dense grid.
    let image = model.encode_image(pixels, true);
    assert_close(
        "image_embeds_unnormalized",
        &data(image.embeds.clone()),
        &f32s(&exp, "image_embeds_unnormalized").1,
        TOL,
    );
    let grid = image.patch_grid.clone().unwrap();
    assert_eq!(grid.dims(), [2, 4, 4, 32]);
    assert_close(
        "dense_patch_embeds",
        &data(grid),
        &f32s(&exp, "dense_patch_embeds").1,
        TOL,
    );

    // Text tower.
    let text = model.text(ids.clone());
    assert_close(
        "text_last_hidden_state",
        &data(text.last_hidden_state),
        &f32s(&exp, "text_last_hidden_state").1,
        TOL,
    );
    assert_close(
        "text_pooler_output",
        &data(text.pooler_output),
        &f32s(&exp, "text_pooler_output").1,
        TOL,
    );
    let text_embeds = model.encode_text(ids);
    assert_close(
        "text_embeds_unnormalized",
        &data(text_embeds.clone()),
        &f32s(&exp, "text_embeds_unnormalized").1,
        TOL,
    );

    // logits_per_image = exp(logit_scale) · cos; scale 14.28 magnifies the embedding error.
    let logits = model.logits_per_image(image.embeds, text_embeds);
    assert_close(
        "logits_per_image",
        &data(logits),
        &f32s(&exp, "logits_per_image").1,
        TOL * 15.0,
    );
    let scale = data(model.logit_scale.val().exp())[0];
    assert!((scale - 14.284_856).abs() < 1e-4, "{scale}");
}

#[test]
fn normalize_is_unit_length() {
    let device = Device::flex();
    let x = Tensor::<2>::from_data(
        TensorData::new(vec![3.0f32, 4.0, 0.0, 0.0], [2, 2]),
        &device,
    );
    assert_eq!(data(normalize(x)), vec![0.6, 0.8, 0.0, 0.0]);
}

/// Text cut after the batch's last end-of-text: the same embeddings as transformers' on
/// the padded ids (the causal mask hides everything after the pooled token), with fewer
/// positions.
#[test]
fn trimmed_text_gives_the_same_embeddings() {
    use fgclip_core::tokenizer::{TRIM_MULTIPLE, trim_rows, trimmed_length};
    let device = Device::flex();
    let model = load_model(&fixtures().join("clip_tiny"), &device).unwrap();
    let exp = expected_tiny();
    let (s, ids) = i64s(&exp, "input_ids");
    // The first two captions (the third fills all 77 positions).
    let (rows, len) = (2, s[1]);
    let ids = ids[..rows * len].to_vec();
    let keep = trimmed_length(&ids, rows, len, 49407, TRIM_MULTIPLE);
    assert!(
        keep < len && keep.is_multiple_of(TRIM_MULTIPLE),
        "{keep} of {len}"
    );
    let last_eot = (0..rows)
        .map(|r| {
            ids[r * len..(r + 1) * len]
                .iter()
                .position(|&t| t == 49407)
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(keep > last_eot && keep - last_eot <= TRIM_MULTIPLE);
    let short = trim_rows(&ids, rows, len, keep);
    let out = model.encode_text(Tensor::<2, Int>::from_data(
        TensorData::new(short, [rows, keep]),
        &device,
    ));
    assert_close(
        "trimmed text_embeds",
        &data(out),
        &f32s(&exp, "text_embeds_unnormalized").1[..rows * out_dim(&exp)],
        TOL,
    );
    // A row without end-of-text keeps every position.
    let mut no_eot = ids.clone();
    for t in &mut no_eot[..len] {
        if *t == 49407 {
            *t = 1;
        }
    }
    assert_eq!(
        trimmed_length(&no_eot, rows, len, 49407, TRIM_MULTIPLE),
        len
    );
}

fn out_dim(
    exp: &std::collections::BTreeMap<String, fgclip_vad::checkpoint::safetensors_io::Array>,
) -> usize {
    f32s(exp, "text_embeds_unnormalized").0[1]
}
