//! `fgclip embed` on FG-CLIP 2 folders (tests/fixtures/fgclip2_tiny): image, dense and text
//! embeddings equal FG-CLIP 2's own (normalised) for pixels laid out as its processor lays
//! them out and for the three walks; a float16 checkpoint in two shards loads in `embed`,
//! `detect` and `extract` as the float32 one with the same values does; bad folders are
//! clear errors naming the file and key.

mod common;

use std::path::Path;

use common::{
    assert_close, assert_success, f32s, fgclip, fgclip2_frames, fixtures, i64s, temp_dir,
};
use fgclip_vad::checkpoint::safetensors_io::{Array, read_arrays, write_arrays};
use fgclip_vad::data::naflex::{NaflexConfig, preprocess};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn meta() -> serde_json::Value {
    let path = fixtures().join("fgclip2_tiny/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The three fixture frames at the fixture's fixed budget, 1024 patches, as a pixels file.
fn write_pixels(dir: &Path) -> (std::path::PathBuf, Vec<String>, Vec<(usize, usize)>) {
    let frames = fgclip2_frames();
    let inputs: Vec<(&[u8], usize, usize)> = frames.iter().map(|f| (&f.1[..], f.2, f.3)).collect();
    let cfg = NaflexConfig {
        dynamic_max_patches: false,
        max_num_patches: 1024,
        ..NaflexConfig::default()
    };
    let imgs = preprocess(&inputs, &cfg).unwrap();
    let path = dir.join("pixels.safetensors");
    common::write_naflex_pixels(&path, &imgs);
    (
        path,
        frames.iter().map(|f| f.0.clone()).collect(),
        imgs.iter().map(|i| i.spatial_shape).collect(),
    )
}

fn texts_file(dir: &Path, walk: &str) -> std::path::PathBuf {
    let texts: Vec<String> = meta()["texts"][walk]["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let path = dir.join(format!("{walk}.txt"));
    std::fs::write(&path, texts.join("\n")).unwrap();
    path
}

#[test]
fn embed_equals_fgclip2_for_images_dense_features_and_every_walk() {
    let dir = temp_dir("fgclip2-embed");
    let model = fixtures().join("fgclip2_tiny/model");
    let expected = read_arrays(&fixtures().join("fgclip2_tiny/expected.safetensors")).unwrap();
    let (pixels, crops, shapes) = write_pixels(&dir);
    let out = dir.join("img.safetensors");
    let short = texts_file(&dir, "short");
    assert_success(&fgclip(&[
        "embed",
        "--model",
        s(&model),
        "--pixels",
        s(&pixels),
        "--texts",
        s(&short),
        "--out",
        s(&out),
    ]));
    let got = read_arrays(&out).unwrap();
    let (shape, embeds) = f32s(&got, "image_embeds");
    assert_eq!(shape, [3, 32]);
    let (dshape, dense) = f32s(&got, "dense_embeds");
    assert_eq!(dshape, [3, 1024, 32]);
    for (k, crop) in crops.iter().enumerate() {
        let (_, want) = f32s(&expected, &format!("{crop}_1024.image_embeds"));
        let want = common::l2_normalize_rows(&want, 32);
        assert_close(
            &format!("{crop} image"),
            &embeds[k * 32..(k + 1) * 32],
            &want,
            1e-5,
        );
        let n = shapes[k].0 * shapes[k].1;
        let (_, want) = f32s(&expected, &format!("{crop}_1024.dense"));
        let rows = &dense[k * 1024 * 32..(k * 1024 + n) * 32];
        assert_close(&format!("{crop} dense"), rows, &want, 1e-5);
        assert!(
            dense[(k * 1024 + n) * 32..(k + 1) * 1024 * 32]
                .iter()
                .all(|&v| v == 0.0)
        );
    }
    let (_, ss) = i64s(&got, "spatial_shapes");
    assert_eq!(
        ss,
        shapes
            .iter()
            .flat_map(|&(h, w)| [h as i64, w as i64])
            .collect::<Vec<_>>()
    );
    // Texts: short by default (all are under 64 tokens), ids as transformers' tokenizer.
    let check_texts =
        |got: &std::collections::BTreeMap<String, Array>, walk: &str, width: usize| {
            let (_, emb) = f32s(got, "text_embeds");
            let (_, want) = f32s(&expected, &format!("text.{walk}.embeds"));
            assert_close(walk, &emb, &common::l2_normalize_rows(&want, 32), 1e-5);
            let (ishape, ids) = i64s(got, "input_ids");
            let (wshape, want_ids) = i64s(&expected, &format!("text.{walk}.input_ids"));
            assert_eq!(ishape, [wshape[0], width]);
            for r in 0..wshape[0] {
                assert_eq!(
                    ids[r * width..r * width + wshape[1]],
                    want_ids[r * wshape[1]..(r + 1) * wshape[1]]
                );
            }
        };
    check_texts(&got, "short", 64);
    for walk in ["long", "box"] {
        let out = dir.join(format!("{walk}.safetensors"));
        let texts = texts_file(&dir, walk);
        assert_success(&fgclip(&[
            "embed",
            "--model",
            s(&model),
            "--texts",
            s(&texts),
            "--walk",
            walk,
            "--out",
            s(&out),
        ]));
        let got = read_arrays(&out).unwrap();
        check_texts(&got, walk, if walk == "long" { 196 } else { 64 });
        let Some(Array::U8 { data, .. }) = got.get("walk") else {
            panic!("no walk")
        };
        assert!(
            data.iter()
                .all(|&w| w == if walk == "long" { 1 } else { 2 })
        );
    }
    // Without --walk, a text over 64 tokens takes the long walk by itself.
    let long = texts_file(&dir, "long");
    let out = dir.join("auto.safetensors");
    assert_success(&fgclip(&[
        "embed",
        "--model",
        s(&model),
        "--texts",
        s(&long),
        "--out",
        s(&out),
    ]));
    check_texts(&read_arrays(&out).unwrap(), "long", 196);
}

/// The fixture's weights rounded to float16, written as float16 in two shards with an index,
/// and as float32 in one file: both folders give the same embeddings to the last bit.
#[test]
fn a_float16_checkpoint_in_shards_loads_as_its_float32_values() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = temp_dir("fgclip2-f16");
    let src = fixtures().join("fgclip2_tiny/model");
    let weights = read_arrays(&src.join("model.safetensors")).unwrap();
    let (f16_dir, f32_dir) = (dir.join("f16"), dir.join("f32"));
    for d in [&f16_dir, &f32_dir] {
        std::fs::create_dir_all(d).unwrap();
        for f in [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "preprocessor_config.json",
        ] {
            std::fs::copy(src.join(f), d.join(f)).unwrap();
        }
    }
    let mut rounded = std::collections::BTreeMap::new();
    let mut halves: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, a) in &weights {
        let Array::F32 { shape, data } = a else {
            panic!("{name}")
        };
        let h: Vec<half::f16> = data.iter().map(|&v| half::f16::from_f32(v)).collect();
        rounded.insert(
            name.clone(),
            Array::F32 {
                shape: shape.clone(),
                data: h.iter().map(|v| v.to_f32()).collect(),
            },
        );
        halves.push((
            name.clone(),
            shape.clone(),
            h.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
    }
    write_arrays(&f32_dir.join("model.safetensors"), &rounded).unwrap();
    let mut index = serde_json::Map::new();
    for (i, part) in halves.chunks(halves.len() / 2 + 1).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<(String, TensorView)> = part
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F16, s.clone(), b).unwrap(),
                )
            })
            .collect();
        std::fs::write(
            f16_dir.join(&file),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
        for (n, _, _) in part {
            index.insert(n.clone(), file.clone().into());
        }
    }
    std::fs::write(
        f16_dir.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": index}).to_string(),
    )
    .unwrap();
    let (pixels, _, _) = write_pixels(&dir);
    let texts = texts_file(&dir, "short");
    let mut outs = Vec::new();
    for d in [&f16_dir, &f32_dir] {
        let out = d.join("out.safetensors");
        assert_success(&fgclip(&[
            "embed",
            "--model",
            s(d),
            "--pixels",
            s(&pixels),
            "--texts",
            s(&texts),
            "--out",
            s(&out),
        ]));
        outs.push(read_arrays(&out).unwrap());
    }
    assert_eq!(outs[0], outs[1]);
    // detect (Chinese prompts) and extract read the sharded float16 folder the same way.
    let video = fixtures().join("videos/testsrc_h264.mp4");
    let list = dir.join("list.txt");
    std::fs::write(&list, "testsrc_h264.mp4\n").unwrap();
    let videos = fixtures().join("videos");
    let mut results = Vec::new();
    for d in [&f16_dir, &f32_dir] {
        let det = d.join("det");
        assert_success(&fgclip(&[
            "detect",
            "--model",
            s(d),
            s(&video),
            "--out",
            s(&det),
            "--stride",
            "90",
            "--prompts",
            "ucf-crime.zh",
            "--max-num-patches",
            "128",
        ]));
        let feats = d.join("feats");
        assert_success(&fgclip(&[
            "extract",
            "--model",
            s(d),
            "--videos",
            s(&videos),
            "--list",
            s(&list),
            "--out",
            s(&feats),
            "--stride",
            "90",
            "--max-num-patches",
            "128",
        ]));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(det.join("testsrc_h264.json")).unwrap())
                .unwrap();
        results.push((
            json["snippets"].clone(),
            std::fs::read(feats.join("testsrc_h264.npy")).unwrap(),
        ));
    }
    assert_eq!(results[0], results[1]);
}

#[test]
fn bad_fgclip2_folders_are_clear_errors() {
    let dir = temp_dir("fgclip2-bad");
    let src = fixtures().join("fgclip2_tiny/model");
    let texts = texts_file(&dir, "short");
    let copy = |name: &str| {
        let d = dir.join(name);
        common::copy_dir(&src, &d);
        d
    };
    let err = |d: &Path| {
        let out = fgclip(&[
            "embed",
            "--model",
            s(d),
            "--texts",
            s(&texts),
            "--out",
            s(&dir.join("o.safetensors")),
        ]);
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let no_tok = copy("no-tokenizer");
    std::fs::remove_file(no_tok.join("tokenizer.json")).unwrap();
    let e = err(&no_tok);
    assert!(e.contains("has no tokenizer.json"), "{e}");

    let unknown = copy("unknown-type");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(unknown.join("config.json")).unwrap())
            .unwrap();
    config["model_type"] = "siglip".into();
    std::fs::write(unknown.join("config.json"), config.to_string()).unwrap();
    let e = err(&unknown);
    assert!(
        e.contains("config.json") && e.contains("unknown model_type \"siglip\""),
        "{e}"
    );

    let shape = copy("bad-shape");
    let mut w = read_arrays(&shape.join("model.safetensors")).unwrap();
    w.insert(
        "boxtext_head.weight".into(),
        Array::F32 {
            shape: vec![32, 31],
            data: vec![0.0; 32 * 31],
        },
    );
    write_arrays(&shape.join("model.safetensors"), &w).unwrap();
    let e = err(&shape);
    assert!(
        e.contains("boxtext_head.weight") && e.contains("[32, 31]"),
        "{e}"
    );

    let extra = copy("extra-key");
    let mut w = read_arrays(&extra.join("model.safetensors")).unwrap();
    w.insert(
        "text_projection.weight".into(),
        Array::F32 {
            shape: vec![2, 2],
            data: vec![0.0; 4],
        },
    );
    write_arrays(&extra.join("model.safetensors"), &w).unwrap();
    let e = err(&extra);
    assert!(
        e.contains("text_projection.weight") && e.contains("does not have"),
        "{e}"
    );
}
