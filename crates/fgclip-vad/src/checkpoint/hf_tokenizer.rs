//! A model folder's `tokenizer.json` + `tokenizer_config.json` as transformers'
//! `AutoTokenizer` reads them, for tokenizers other than CLIP's BPE (FG-CLIP 2's Gemma
//! tokenizer): the padding and truncation sides, the padding token, and Gemma's
//! `<bos>`/`<eos>` flags.

use std::path::Path;

use anyhow::{Context, Result, bail};
use fgclip_core::{HfTokenizer, HfTokenizerOptions};

/// A token in `tokenizer_config.json`: a string, or an `AddedToken` object's `content`.
fn token(config: &serde_json::Value, key: &str) -> Option<String> {
    match config.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        v => v.get("content")?.as_str().map(str::to_string),
    }
}

/// `tokenizer_config.json`'s settings (an absent file: the class defaults of a plain
/// tokenizer). `lowercase` lower-cases every text first.
pub fn options_from_config(
    config: &serde_json::Value,
    path: &Path,
    lowercase: bool,
) -> Result<HfTokenizerOptions> {
    let class = config
        .get("tokenizer_class")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .trim_end_matches("Fast");
    let gemma = class == "GemmaTokenizer";
    let side = |key: &str, default: &str| -> Result<bool> {
        match config.get(key).and_then(|v| v.as_str()).unwrap_or(default) {
            "left" => Ok(true),
            "right" => Ok(false),
            other => bail!(
                "{}: `{key}` must be \"left\" or \"right\", not {other:?}",
                path.display()
            ),
        }
    };
    let flag =
        |key: &str, default: bool| config.get(key).and_then(|v| v.as_bool()).unwrap_or(default);
    Ok(HfTokenizerOptions {
        // GemmaTokenizerFast's class default is left; PreTrainedTokenizerBase's is right.
        pad_left: side("padding_side", if gemma { "left" } else { "right" })?,
        truncate_left: side("truncation_side", "right")?,
        pad_token: token(config, "pad_token").unwrap_or_else(|| "<pad>".into()),
        template: gemma.then(|| {
            (
                token(config, "bos_token").unwrap_or_else(|| "<bos>".into()),
                token(config, "eos_token").unwrap_or_else(|| "<eos>".into()),
                flag("add_bos_token", true),
                flag("add_eos_token", false),
            )
        }),
        lowercase,
    })
}

/// The tokenizer of the folder `dir` (`tokenizer.json`, with `tokenizer_config.json` when
/// present).
pub fn load_hf_tokenizer(dir: &Path, lowercase: bool) -> Result<HfTokenizer> {
    let json_path = dir.join("tokenizer.json");
    if !json_path.is_file() {
        bail!(
            "{} has no tokenizer.json (this model's tokenizer is read from it)",
            dir.display()
        );
    }
    let json = std::fs::read_to_string(&json_path)
        .with_context(|| format!("reading {}", json_path.display()))?;
    let config_path = dir.join("tokenizer_config.json");
    let config = if config_path.is_file() {
        crate::io::read_json(&config_path)?
    } else {
        serde_json::Value::Object(Default::default())
    };
    let options = options_from_config(&config, &config_path, lowercase)?;
    HfTokenizer::from_json(&json, options).with_context(|| format!("in {}", json_path.display()))
}
