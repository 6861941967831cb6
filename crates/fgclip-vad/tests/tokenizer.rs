//! The BPE tokenizer against open_clip's and HF's ids for every case of
//! tests/fixtures/tokenizer/cases.json (Chinese, emoji, whitespace, over-long), loaded
//! from each of the three file layouts.

mod common;

use common::fixtures;
use fgclip_core::Tokenizer;
use fgclip_vad::checkpoint::hf::load_tokenizer;

struct Case {
    text: String,
    ids: Vec<i64>,
    hf_ids: Vec<i64>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("tokenizer/cases.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["context_length"], 77);
    let cases: Vec<Case> = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_string(),
            ids: serde_json::from_value(c["ids"].clone()).unwrap(),
            hf_ids: serde_json::from_value(c["hf_ids"].clone()).unwrap(),
        })
        .collect();
    assert!(cases.len() >= 15);
    cases
}

fn check(tokenizer: &Tokenizer, source: &str) {
    for case in cases() {
        let hf: Vec<i64> = tokenizer
            .encode(&case.text)
            .into_iter()
            .map(i64::from)
            .collect();
        assert_eq!(hf, case.hf_ids, "{source}: HF ids of {:?}", case.text);
        assert_eq!(
            tokenizer.tokenize(&case.text, 77),
            case.ids,
            "{source}: padded ids of {:?}",
            case.text
        );
    }
}

#[test]
fn tokenizer_json() {
    let t = load_tokenizer(&fixtures().join("clip_tiny/tokenizer.json")).unwrap();
    assert_eq!(t.vocab_size(), 49408);
    check(&t, "tokenizer.json");
    // Found in a model folder too.
    check(
        &load_tokenizer(&fixtures().join("clip_tiny")).unwrap(),
        "model folder",
    );
}

#[test]
fn vocab_json_and_merges_txt() {
    let t = load_tokenizer(&fixtures().join("tokenizer/vocab.json")).unwrap();
    check(&t, "vocab.json + merges.txt");
    let t = load_tokenizer(&fixtures().join("tokenizer/merges.txt")).unwrap();
    check(&t, "merges.txt + vocab.json");
}

#[test]
fn open_clip_bpe_file() {
    let t = load_tokenizer(&fixtures().join("../../assets/bpe_simple_vocab_16e6.txt.gz")).unwrap();
    assert_eq!(t.vocab_size(), 49408);
    assert_eq!((t.start_of_text(), t.end_of_text()), (49406, 49407));
    check(&t, "bpe_simple_vocab_16e6.txt.gz");
}

#[test]
fn bad_tokenizer_files_name_the_file() {
    let dir = common::temp_dir("tok");
    let err = load_tokenizer(&dir).unwrap_err();
    assert!(format!("{err:#}").contains("no tokenizer in"), "{err:#}");

    let bad = dir.join("tokenizer.json");
    std::fs::write(
        &bad,
        "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}",
    )
    .unwrap();
    let err = format!("{:#}", load_tokenizer(&bad).unwrap_err());
    assert!(
        err.contains("tokenizer.json") && err.contains("WordPiece"),
        "{err}"
    );

    std::fs::write(&bad, "not json").unwrap();
    let err = format!("{:#}", load_tokenizer(&bad).unwrap_err());
    assert!(err.contains("not valid JSON"), "{err}");

    let gz = dir.join("bpe_simple_vocab_16e6.txt.gz");
    std::fs::write(&gz, b"plain text").unwrap();
    let err = format!("{:#}", load_tokenizer(&gz).unwrap_err());
    assert!(err.contains("gzip"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
