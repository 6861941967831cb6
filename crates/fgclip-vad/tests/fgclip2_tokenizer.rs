//! FG-CLIP 2's tokenizer (Gemma's format: BPE with byte fallback) through HF's `tokenizers`
//! library: ids equal transformers' `AutoTokenizer` on the fixture's tokenizer
//! (`tools/make_fgclip2_fixture.py`) for English, Chinese and byte-fallback texts, lower-cased,
//! cut and padded to 64 and 196, on the side `tokenizer_config.json` asks for.

mod common;

use common::{fixtures, i64s, temp_dir};
use fgclip_vad::checkpoint::hf_tokenizer::load_hf_tokenizer;
use fgclip_vad::checkpoint::safetensors_io::read_arrays;

fn texts(walk: &str) -> (Vec<String>, usize) {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("fgclip2_tiny/expected.json")).unwrap(),
    )
    .unwrap();
    let t = &meta["texts"][walk];
    let texts = t["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    (texts, t["max_length"].as_u64().unwrap() as usize)
}

#[test]
fn ids_equal_transformers_on_both_padding_sides() {
    let model = fixtures().join("fgclip2_tiny/model");
    let expected = read_arrays(&fixtures().join("fgclip2_tiny/expected.safetensors")).unwrap();
    // The fixture's config names no padding side: Gemma's class default, left.
    let left = load_hf_tokenizer(&model, true).unwrap();
    assert!(left.options().pad_left);
    // The same files with `padding_side: "right"`.
    let dir = temp_dir("fgclip2-tok");
    std::fs::copy(model.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    config["padding_side"] = "right".into();
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let right = load_hf_tokenizer(&dir, true).unwrap();
    for walk in ["short", "long", "box"] {
        let (texts, n) = texts(walk);
        for (tok, suffix) in [(&left, ""), (&right, "_right")] {
            let (shape, want) = i64s(&expected, &format!("text.{walk}.input_ids{suffix}"));
            assert_eq!(shape, [texts.len(), n]);
            let got = tok.tokenize_batch(&texts, n).unwrap();
            assert_eq!(got, want, "{walk}{suffix}");
        }
    }
    // The template transformers rebuilds from add_bos/add_eos: <bos> first, <eos> last.
    let ids = right.tokenize_batch(&["a fire"], 8).unwrap();
    assert_eq!(ids[0], 2);
    assert!(ids.contains(&1));
}

#[test]
fn a_folder_without_tokenizer_json_is_a_clear_error() {
    let dir = temp_dir("fgclip2-notok");
    let e = load_hf_tokenizer(&dir, true).unwrap_err().to_string();
    assert!(e.contains("has no tokenizer.json"), "{e}");
    std::fs::write(dir.join("tokenizer.json"), "{\"model\": 3}").unwrap();
    let e = format!("{:#}", load_hf_tokenizer(&dir, true).unwrap_err());
    assert!(e.contains("tokenizer.json"), "{e}");
}
