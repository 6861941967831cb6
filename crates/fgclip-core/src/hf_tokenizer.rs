//! Tokenizers in HF's `tokenizer.json` format through HF's own `tokenizers` library (the one
//! transformers' fast tokenizers run), for models whose tokenizer is not CLIP's BPE: FG-CLIP
//! 2's Gemma tokenizer (SentencePiece-style BPE with byte fallback).
//!
//! The ids are those of transformers' `tokenizer(texts, max_length=n, padding="max_length",
//! truncation=True)`: truncation to n (specials included), padding to n on the side the
//! tokenizer's config asks for, and, for Gemma's tokenizer class, the `<bos>`/`<eos>`
//! template transformers rebuilds from `add_bos_token`/`add_eos_token`
//! (`GemmaTokenizerFast.update_post_processor`).

use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::error::TokenizerError;

/// How the text is laid out around the tokenizer's own pipeline (what transformers takes from
/// `tokenizer_config.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct HfTokenizerOptions {
    /// Pad on the left (`padding_side: "left"`, Gemma's default) instead of the right.
    pub pad_left: bool,
    /// Cut from the left (`truncation_side: "left"`) instead of the right.
    pub truncate_left: bool,
    /// The padding token (`pad_token`).
    pub pad_token: String,
    /// Replace `tokenizer.json`'s template by `[<bos>] $A [<eos>]` (transformers does for
    /// Gemma's tokenizer class): (bos token, eos token, add bos, add eos).
    pub template: Option<(String, String, bool, bool)>,
    /// Lower-case every text first (FG-CLIP 2's scripts do; SigLIP 2 was trained so).
    pub lowercase: bool,
}

/// A `tokenizer.json` tokenizer with transformers' fixed-length layout.
pub struct HfTokenizer {
    inner: Tokenizer,
    options: HfTokenizerOptions,
    pad_id: u32,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("options", &self.options)
            .finish()
    }
}

fn invalid(reason: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Library(reason.to_string())
}

impl HfTokenizer {
    /// From the text of a `tokenizer.json`.
    pub fn from_json(json: &str, options: HfTokenizerOptions) -> Result<Self, TokenizerError> {
        let mut inner: Tokenizer = json
            .parse()
            .map_err(|e| invalid(format!("not a tokenizer.json: {e}")))?;
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| TokenizerError::MissingToken {
                    token: t.to_string(),
                })
        };
        let pad_id = id(&options.pad_token)?;
        if let Some((bos, eos, add_bos, add_eos)) = &options.template {
            let (bos_id, eos_id) = (id(bos)?, id(eos)?);
            let mut single = Vec::new();
            let mut specials = Vec::new();
            if *add_bos {
                single.push(format!("{bos}:0"));
                specials.push((bos.clone(), bos_id));
            }
            single.push("$A:0".to_string());
            if *add_eos {
                single.push(format!("{eos}:0"));
                specials.push((eos.clone(), eos_id));
            }
            let mut pair = single.clone();
            if *add_bos {
                pair.push(format!("{bos}:1"));
            }
            pair.push("$B:1".to_string());
            if *add_eos {
                pair.push(format!("{eos}:1"));
            }
            let template = TemplateProcessing::builder()
                .try_single(single.join(" "))
                .and_then(|b| b.try_pair(pair.join(" ")))
                .map_err(invalid)?
                .special_tokens(specials)
                .build()
                .map_err(invalid)?;
            inner.with_post_processor(Some(template));
        }
        Ok(Self {
            inner,
            options,
            pad_id,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn options(&self) -> &HfTokenizerOptions {
        &self.options
    }

    /// Tokens of each text with the special tokens, uncut and unpadded (to route long texts).
    pub fn lengths<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<usize>, TokenizerError> {
        let mut t = self.inner.clone();
        t.with_truncation(None).map_err(invalid)?;
        t.with_padding(None);
        texts
            .iter()
            .map(|s| {
                let text = if self.options.lowercase {
                    s.as_ref().to_lowercase()
                } else {
                    s.as_ref().to_string()
                };
                Ok(t.encode(text, true).map_err(invalid)?.get_ids().len())
            })
            .collect()
    }

    /// Row-major (texts.len(), length) ids: each text cut and padded to `length`.
    pub fn tokenize_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        length: usize,
    ) -> Result<Vec<i64>, TokenizerError> {
        let mut t = self.inner.clone();
        t.with_truncation(Some(TruncationParams {
            max_length: length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: if self.options.truncate_left {
                TruncationDirection::Left
            } else {
                TruncationDirection::Right
            },
        }))
        .map_err(invalid)?;
        t.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(length),
            direction: if self.options.pad_left {
                PaddingDirection::Left
            } else {
                PaddingDirection::Right
            },
            pad_to_multiple_of: None,
            pad_id: self.pad_id,
            pad_type_id: 0,
            pad_token: self.options.pad_token.clone(),
        }));
        let texts: Vec<String> = texts
            .iter()
            .map(|s| {
                if self.options.lowercase {
                    s.as_ref().to_lowercase()
                } else {
                    s.as_ref().to_string()
                }
            })
            .collect();
        let encodings = t.encode_batch(texts, true).map_err(invalid)?;
        let mut ids = Vec::with_capacity(encodings.len() * length);
        for e in &encodings {
            // Fixed padding after truncation to the same length: every row is `length` long.
            if e.get_ids().len() != length {
                return Err(invalid(format!(
                    "a text came out {} tokens long, not {length}",
                    e.get_ids().len()
                )));
            }
            ids.extend(e.get_ids().iter().map(|&i| i64::from(i)));
        }
        Ok(ids)
    }
}
