//! `fgclip embed` as a user runs it: on the tiny fixture model it reproduces
//! transformers' embeddings; bad inputs and mismatched checkpoints give named errors.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use fgclip_vad::checkpoint::safetensors_io::{Array, read_arrays, write_arrays};

fn texts_of_fixture(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join(name).join("expected.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(json["texts"].clone()).unwrap()
}

#[test]
fn embed_reproduces_transformers() {
    let dir = temp_dir("embed");
    let exp = expected_tiny();
    let mut pixels = BTreeMap::new();
    pixels.insert("pixel_values".to_string(), exp["pixel_values"].clone());
    let pixels_path = dir.join("pixels.safetensors");
    write_arrays(&pixels_path, &pixels).unwrap();
    let texts_path = dir.join("captions.txt");
    std::fs::write(&texts_path, texts_of_fixture("clip_tiny").join("\n") + "\n").unwrap();
    let out = dir.join("out.safetensors");
    let model = fixtures().join("clip_tiny");

    let run = fgclip(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--pixels",
        pixels_path.to_str().unwrap(),
        "--texts",
        texts_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "1",
    ]);
    assert_success(&run);
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["images"], 2);
    assert_eq!(summary["texts"], 3);

    let got = read_arrays(&out).unwrap();
    let names: Vec<&String> = got.keys().collect();
    assert_eq!(
        names,
        ["image_embeds", "input_ids", "patch_embeds", "text_embeds"]
    );

    let (shape, image) = f32s(&got, "image_embeds");
    assert_eq!(shape, [2, 32]);
    let want = l2_normalize_rows(&f32s(&exp, "image_embeds_unnormalized").1, 32);
    assert_close("image_embeds", &image, &want, 1e-4);

    let (shape, patches) = f32s(&got, "patch_embeds");
    assert_eq!(shape, [2, 4, 4, 32]);
    assert_close(
        "patch_embeds",
        &patches,
        &f32s(&exp, "dense_patch_embeds").1,
        1e-4,
    );

    let (shape, ids) = i64s(&got, "input_ids");
    assert_eq!(shape, [3, 77]);
    assert_eq!(ids, i64s(&exp, "input_ids").1);

    let (shape, text) = f32s(&got, "text_embeds");
    assert_eq!(shape, [3, 32]);
    let want = l2_normalize_rows(&f32s(&exp, "text_embeds_unnormalized").1, 32);
    assert_close("text_embeds", &text, &want, 1e-4);

    // Texts only, with the tokenizer named explicitly in another layout.
    let out2 = dir.join("texts.safetensors");
    let run = fgclip(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--texts",
        texts_path.to_str().unwrap(),
        "--tokenizer",
        fixtures()
            .join("../../assets/bpe_simple_vocab_16e6.txt.gz")
            .to_str()
            .unwrap(),
        "--out",
        out2.to_str().unwrap(),
        // The same chunks as the first run, so the same computation, bit for bit.
        "--batch-size",
        "1",
    ]);
    assert_success(&run);
    let got2 = read_arrays(&out2).unwrap();
    assert!(!got2.contains_key("image_embeds"));
    assert_eq!(f32s(&got2, "text_embeds"), f32s(&got, "text_embeds"));
    std::fs::remove_dir_all(dir).ok();
}

/// A model folder as a user downloads one, with another geometry than clip_tiny: patch
/// 14, 56 px, gelu, 3 heads, legacy eos_token_id 2, f16 weights in two shards with an
/// index, vocab.json + merges.txt (made by tools/make_geometry_fixture.py with
/// transformers).
#[test]
fn embed_other_geometry_sharded_f16() {
    let dir = temp_dir("geom");
    let model = fixtures().join("clip_gelu_p14");
    let exp = read_arrays(&model.join("expected.safetensors")).unwrap();
    let mut pixels = BTreeMap::new();
    pixels.insert("pixel_values".to_string(), exp["pixel_values"].clone());
    let pixels_path = dir.join("pixels.safetensors");
    write_arrays(&pixels_path, &pixels).unwrap();
    let texts_path = dir.join("captions.txt");
    std::fs::write(&texts_path, texts_of_fixture("clip_gelu_p14").join("\r\n")).unwrap();
    let out = dir.join("out.safetensors");
    let run = fgclip(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--pixels",
        pixels_path.to_str().unwrap(),
        "--texts",
        texts_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_success(&run);
    let got = read_arrays(&out).unwrap();
    assert_eq!(i64s(&got, "input_ids"), i64s(&exp, "input_ids"));
    let (shape, image) = f32s(&got, "image_embeds");
    assert_eq!(shape, [3, 16]);
    let want = l2_normalize_rows(&f32s(&exp, "image_embeds_unnormalized").1, 16);
    assert_close("image_embeds", &image, &want, 1e-4);
    let (shape, patches) = f32s(&got, "patch_embeds");
    assert_eq!(shape, [3, 4, 4, 16]);
    assert_close(
        "patch_embeds",
        &patches,
        &f32s(&exp, "dense_patch_embeds").1,
        1e-4,
    );
    let want = l2_normalize_rows(&f32s(&exp, "text_embeds_unnormalized").1, 16);
    assert_close("text_embeds", &f32s(&got, "text_embeds").1, &want, 1e-4);
    std::fs::remove_dir_all(dir).ok();
}

/// A copy of the fixture model folder with its weights changed by `edit`.
fn edited_model(tag: &str, edit: impl FnOnce(&mut BTreeMap<String, Array>)) -> TempDir {
    let src = fixtures().join("clip_tiny");
    let dir = temp_dir(tag);
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut weights = read_arrays(&src.join("model.safetensors")).unwrap();
    edit(&mut weights);
    write_arrays(&dir.join("model.safetensors"), &weights).unwrap();
    dir
}

fn embed_error(model: &Path) -> String {
    let texts = model.join("t.txt");
    std::fs::write(&texts, "a cat\n").unwrap();
    let run = fgclip(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--texts",
        texts.to_str().unwrap(),
        "--out",
        model.join("o.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(!model.join("o.safetensors").exists());
    String::from_utf8_lossy(&run.stderr).into_owned()
}

#[test]
fn mismatched_checkpoints_name_the_key() {
    let key = "vision_model.encoder.layers.1.mlp.fc1.weight";
    let missing = edited_model("missing", |w| {
        w.remove(key);
    });
    let err = embed_error(&missing);
    assert!(err.contains(&format!("missing weight `{key}`")), "{err}");
    assert!(err.contains("[128, 64]"), "{err}");

    let misshaped = edited_model("shape", |w| {
        w.insert(
            key.to_string(),
            Array::F32 {
                shape: vec![64, 128],
                data: vec![0.0; 64 * 128],
            },
        );
    });
    let err = embed_error(&misshaped);
    assert!(
        err.contains(&format!("weight `{key}` has shape [64, 128]")),
        "{err}"
    );
    assert!(err.contains("expects [128, 64]"), "{err}");

    let extra = edited_model("extra", |w| {
        w.insert(
            "vision_model.encoder.layers.2.mlp.fc1.weight".to_string(),
            Array::F32 {
                shape: vec![2],
                data: vec![0.0; 2],
            },
        );
    });
    let err = embed_error(&extra);
    assert!(err.contains("1 unexpected weight(s)"), "{err}");
    assert!(
        err.contains("vision_model.encoder.layers.2.mlp.fc1.weight"),
        "{err}"
    );

    let nan = edited_model("nan", |w| {
        if let Some(Array::F32 { data, .. }) = w.get_mut("text_projection.weight") {
            data[5] = f32::NAN;
        }
    });
    let err = embed_error(&nan);
    assert!(
        err.contains("text_projection.weight") && err.contains("not finite"),
        "{err}"
    );

    for d in [missing, misshaped, extra, nan] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = temp_dir("badin");
    let model = fixtures().join("clip_tiny");
    let out = dir.join("o.safetensors");
    let run = |args: &[&str]| {
        let mut all = vec![
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let r = fgclip(&all);
        assert_eq!(r.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&r.stderr).into_owned()
    };
    assert!(run(&[]).contains("nothing to embed"));

    let pixels = dir.join("p.safetensors");
    let mut arrays = BTreeMap::new();
    arrays.insert(
        "pixel_values".to_string(),
        Array::F32 {
            shape: vec![1, 3, 32, 32],
            data: vec![0.0; 3 * 32 * 32],
        },
    );
    write_arrays(&pixels, &arrays).unwrap();
    let err = run(&["--pixels", pixels.to_str().unwrap()]);
    assert!(
        err.contains("p.safetensors")
            && err.contains("[1, 3, 32, 32]")
            && err.contains("(N, 3, 64, 64)"),
        "{err}"
    );

    arrays.insert(
        "pixel_values".to_string(),
        Array::F32 {
            shape: vec![1, 3, 64, 64],
            data: (0..3 * 64 * 64)
                .map(|i| if i == 100 { f32::NAN } else { 0.0 })
                .collect(),
        },
    );
    write_arrays(&pixels, &arrays).unwrap();
    let err = run(&["--pixels", pixels.to_str().unwrap()]);
    assert!(
        err.contains("non-finite") && err.contains("index 100"),
        "{err}"
    );

    std::fs::write(&pixels, b"garbage").unwrap();
    let err = run(&["--pixels", pixels.to_str().unwrap()]);
    assert!(err.contains("not a valid safetensors file"), "{err}");

    let err = run(&["--texts", dir.join("absent.txt").to_str().unwrap()]);
    assert!(err.contains("absent.txt"), "{err}");

    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9\n").unwrap();
    let err = run(&["--texts", latin1.to_str().unwrap()]);
    assert!(err.contains("not UTF-8"), "{err}");

    let no_model = fgclip(&[
        "embed",
        "--model",
        dir.to_str().unwrap(),
        "--texts",
        latin1.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&no_model.stderr);
    assert!(err.contains("config.json"), "{err}");
    assert!(!out.exists());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn help_and_version() {
    let run = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(run.status.success());
    let help = String::from_utf8_lossy(&run.stdout);
    for word in ["embed", "bench", "presets", "Examples:", "--device"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let run = Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        format!("fgclip {}", env!("CARGO_PKG_VERSION"))
    );
    let run = fgclip(&["presets"]);
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("vit-l-14-336   image 336px patch 14"), "{out}");
}
