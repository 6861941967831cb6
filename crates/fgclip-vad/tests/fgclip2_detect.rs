//! `fgclip detect` and `fgclip extract` with the tiny FG-CLIP 2 folder (tests/fixtures/
//! fgclip2_tiny) on a real H.264 video at its own aspect ratio, with English and Chinese
//! prompt sets: the sigmoid rule (each class σ(s·cos + b) with the model's logit_scale and
//! logit_bias, the anomaly score the largest anomaly class), recomputed here from `embed`'s
//! outputs (which equal FG-CLIP 2's own); thumbnails with a heat map on the frame's own patch
//! grid; a fixed patch budget; extraction equal to the frames' embeddings.

mod common;

use std::path::Path;

use common::{assert_success, fgclip, fixtures, temp_dir};
use fgclip_vad::checkpoint::safetensors_io::{Array, read_arrays};
use fgclip_vad::data::naflex::{NaflexConfig, preprocess};
use fgclip_vad::data::npy;
use fgclip_vad::data::video::VideoReader;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn video() -> std::path::PathBuf {
    fixtures().join("videos/testsrc_h264.mp4")
}

/// Normalised image embeddings of `frames` of the video through `fgclip embed`.
fn embed_frames(dir: &Path, frames: &[u64], budget: Option<usize>) -> Vec<f32> {
    let mut reader = VideoReader::open(&video()).unwrap();
    let mut decoded = Vec::new();
    reader
        .read_frames(frames, |f| {
            decoded.push(f);
            Ok(())
        })
        .unwrap();
    let cfg = match budget {
        Some(b) => NaflexConfig {
            dynamic_max_patches: false,
            max_num_patches: b,
            ..NaflexConfig::default()
        },
        None => NaflexConfig::default(),
    };
    let inputs: Vec<(&[u8], usize, usize)> = decoded
        .iter()
        .map(|f| (&f.data[..], f.width as usize, f.height as usize))
        .collect();
    let imgs = preprocess(&inputs, &cfg).unwrap();
    let pixels = dir.join("frames.safetensors");
    common::write_naflex_pixels(&pixels, &imgs);
    let out = dir.join("frames_emb.safetensors");
    let model = fixtures().join("fgclip2_tiny/model");
    assert_success(&fgclip(&[
        "embed",
        "--model",
        s(&model),
        "--pixels",
        s(&pixels),
        "--out",
        s(&out),
    ]));
    match read_arrays(&out).unwrap().remove("image_embeds") {
        Some(Array::F32 { data, .. }) => data,
        other => panic!("{other:?}"),
    }
}

/// Class embeddings of a prompt set through `fgclip embed` (short walk), each the
/// normalised mean of its normalised templates.
fn class_embeddings(dir: &Path, prompts: &str) -> Vec<Vec<f32>> {
    let set = fgclip_vad::detect::PromptSet::resolve(prompts).unwrap();
    let model = fixtures().join("fgclip2_tiny/model");
    let mut out = Vec::new();
    for (k, c) in std::iter::once(&set.normal).chain(&set.classes).enumerate() {
        let texts = dir.join(format!("class{k}.txt"));
        std::fs::write(&texts, c.templates.join("\n")).unwrap();
        let emb = dir.join(format!("class{k}.safetensors"));
        assert_success(&fgclip(&[
            "embed",
            "--model",
            s(&model),
            "--texts",
            s(&texts),
            "--walk",
            "short",
            "--out",
            s(&emb),
        ]));
        let Some(Array::F32 { data, .. }) = read_arrays(&emb).unwrap().remove("text_embeds") else {
            panic!("no text_embeds")
        };
        let mut mean = vec![0f32; 32];
        for row in data.chunks(32) {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, v)| *m += v / c.templates.len() as f32);
        }
        out.push(common::l2_normalize_rows(&mean, 32));
    }
    out
}

#[test]
fn detect_scores_with_the_sigmoid_rule_in_english_and_chinese() {
    let dir = temp_dir("fgclip2-detect");
    let model = fixtures().join("fgclip2_tiny/model");
    let (scale, bias) = (2.3f32.exp(), -1.7f32);
    for prompts in ["ucf-crime", "ucf-crime.zh"] {
        let out = dir.join(prompts);
        assert_success(&fgclip(&[
            "detect",
            "--model",
            s(&model),
            s(&video()),
            "--out",
            s(&out),
            "--stride",
            "60",
            "--prompts",
            prompts,
        ]));
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("testsrc_h264.json")).unwrap())
                .unwrap();
        assert_eq!(r["frame_scores"].as_array().unwrap().len(), 360);
        let snippets = r["snippets"].as_array().unwrap();
        assert_eq!(snippets.len(), 6);
        // The centre frame of each 60-frame snippet.
        let frames: Vec<u64> = (0..6).map(|k| k * 60 + 30).collect();
        let emb = embed_frames(&dir, &frames, None);
        let classes = class_embeddings(&dir, prompts);
        for (k, snip) in snippets.iter().enumerate() {
            let e = &emb[k * 32..(k + 1) * 32];
            let want: Vec<f32> = classes
                .iter()
                .map(|c| {
                    let cos: f32 = e.iter().zip(c).map(|(a, b)| a * b).sum();
                    1.0 / (1.0 + (-(scale * cos + bias)).exp())
                })
                .collect();
            let got: Vec<f32> = snip["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 2e-5,
                    "{prompts} snippet {k}: {got:?} vs {want:?}"
                );
            }
            let score = snip["score"].as_f64().unwrap() as f32;
            let top = want[1..].iter().copied().fold(0.0f32, f32::max);
            assert!(
                (score - top).abs() < 2e-5,
                "score {score} vs max anomaly p {top}"
            );
        }
        // The top segment's thumbnail, with a region from the frame's own patch grid.
        let seg = &r["top_segments"][0];
        assert!(out.join(seg["thumbnail"].as_str().unwrap()).is_file());
        assert!(seg["region"].is_array());
    }
}

#[test]
fn extract_with_a_fixed_budget_equals_the_frames_embeddings() {
    let dir = temp_dir("fgclip2-extract");
    let model = fixtures().join("fgclip2_tiny/model");
    let list = dir.join("list.txt");
    std::fs::write(&list, "testsrc_h264.mp4\n").unwrap();
    let out = dir.join("feats");
    let videos = fixtures().join("videos");
    assert_success(&fgclip(&[
        "extract",
        "--model",
        s(&model),
        "--videos",
        s(&videos),
        "--list",
        s(&list),
        "--out",
        s(&out),
        "--stride",
        "90",
        "--max-num-patches",
        "128",
    ]));
    let (shape, feats) = npy::read_f32(&out.join("testsrc_h264.npy")).unwrap();
    assert_eq!(shape, [4, 32]);
    let want = embed_frames(&dir, &[45, 135, 225, 315], Some(128));
    common::assert_close("extract", &feats, &want, 1e-5);
    // Another budget is another input: the features differ.
    let other = embed_frames(&dir, &[45, 135, 225, 315], Some(1024));
    assert!(common::max_abs_diff(&feats, &other) > 1e-3);
}
