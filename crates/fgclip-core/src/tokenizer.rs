//! CLIP byte-level BPE, giving the ids of HF's `CLIPTokenizerFast` (`tokenizer.json`) and
//! open_clip's fixed-length layout.
//!
//! The pipeline is `tokenizer.json`'s: special tokens split out first, then NFC,
//! whitespace runs → one space, per-character lowercase, CLIP's split regex, byte → unicode
//! mapping, and BPE with the `</w>` end-of-word suffix. [`Tokenizer::tokenize`] then cuts
//! to the context length as open_clip does (the last kept id forced to `<|endoftext|>`)
//! and pads with 0.

use std::collections::HashMap;
use std::sync::Mutex;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use crate::error::TokenizerError;

pub const START_OF_TEXT: &str = "<|startoftext|>";
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// CLIP's text context length.
pub const CONTEXT_LENGTH: usize = 77;

const SPLIT_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
const SUFFIX: &str = "</w>";
/// Words cached by the BPE; a bound keeps memory flat on endless caption streams.
const CACHE_LIMIT: usize = 100_000;

/// Bytes in the order of GPT-2's `bytes_to_unicode()` dict: the printable ones first,
/// then the rest. open_clip's vocabulary starts with the characters in this order.
fn byte_order() -> Vec<u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut order: Vec<u8> = (0..=255).filter(|&b| printable(b)).collect();
    order.extend((0..=255).filter(|&b| !printable(b)));
    order
}

/// GPT-2's reversible byte → printable character table, indexed by byte: a printable
/// byte maps to itself, the n-th other byte to U+0100 + n.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    for (i, b) in byte_order().into_iter().enumerate() {
        let code = if i < 188 {
            u32::from(b)
        } else {
            256 + (i - 188) as u32
        };
        table[b as usize] = char::from_u32(code).unwrap_or('\u{FFFD}');
    }
    table
}

/// A CLIP BPE tokenizer.
pub struct Tokenizer {
    vocab: HashMap<String, u32>,
    ranks: HashMap<(String, String), u32>,
    byte_encoder: [char; 256],
    split: Regex,
    sot: u32,
    eot: u32,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab.len())
            .field("merges", &self.ranks.len())
            .finish()
    }
}

impl Tokenizer {
    /// From a vocabulary (token → id) and merge rules in priority order, as in
    /// `vocab.json` + `merges.txt` or `tokenizer.json`'s `model`.
    pub fn new(
        vocab: HashMap<String, u32>,
        merges: Vec<(String, String)>,
    ) -> Result<Self, TokenizerError> {
        let id = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| TokenizerError::MissingToken {
                    token: token.to_string(),
                })
        };
        let (sot, eot) = (id(START_OF_TEXT)?, id(END_OF_TEXT)?);
        let byte_encoder = bytes_to_unicode();
        for c in byte_encoder {
            let mut s = c.to_string();
            id(&s)?;
            s.push_str(SUFFIX);
            id(&s)?;
        }
        let ranks = merges
            .into_iter()
            .enumerate()
            .map(|(i, pair)| (pair, i as u32))
            .collect();
        let split = Regex::new(SPLIT_PATTERN).map_err(|e| TokenizerError::BadVocab {
            found: vocab.len(),
            reason: format!("split pattern: {e}"),
        })?;
        Ok(Self {
            vocab,
            ranks,
            byte_encoder,
            split,
            sot,
            eot,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// From the text of open_clip's `bpe_simple_vocab_16e6.txt` (one header line, then
    /// merges): the vocabulary is derived as open_clip's `SimpleTokenizer` does.
    pub fn from_open_clip_merges(text: &str) -> Result<Self, TokenizerError> {
        const NUM_MERGES: usize = 49152 - 256 - 2;
        let lines: Vec<&str> = text.split('\n').skip(1).take(NUM_MERGES).collect();
        if lines.len() < NUM_MERGES {
            return Err(TokenizerError::BadVocab {
                found: lines.len(),
                reason: format!(
                    "open_clip's BPE file has {NUM_MERGES} merge lines after the header"
                ),
            });
        }
        let merges = lines
            .iter()
            .enumerate()
            .map(|(i, line)| parse_merge(line, i + 2))
            .collect::<Result<Vec<_>, _>>()?;
        let table = bytes_to_unicode();
        let bytes: Vec<String> = byte_order()
            .into_iter()
            .map(|b| table[b as usize].to_string())
            .collect();
        let mut tokens: Vec<String> = bytes.clone();
        tokens.extend(bytes.iter().map(|b| format!("{b}{SUFFIX}")));
        tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        tokens.push(START_OF_TEXT.to_string());
        tokens.push(END_OF_TEXT.to_string());
        let vocab = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        Self::new(vocab, merges)
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn start_of_text(&self) -> u32 {
        self.sot
    }

    pub fn end_of_text(&self) -> u32 {
        self.eot
    }

    /// Ids with `<|startoftext|>` and `<|endoftext|>`, no truncation: HF's
    /// `CLIPTokenizerFast(text).input_ids`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.sot];
        let mut rest = text;
        // Special tokens are matched in the raw text, before normalisation.
        while !rest.is_empty() {
            let next = [(START_OF_TEXT, self.sot), (END_OF_TEXT, self.eot)]
                .into_iter()
                .filter_map(|(s, id)| rest.find(s).map(|at| (at, s.len(), id)))
                .min_by_key(|&(at, _, _)| at);
            match next {
                Some((at, len, id)) => {
                    self.encode_plain(&rest[..at], &mut ids);
                    ids.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.encode_plain(rest, &mut ids);
                    rest = "";
                }
            }
        }
        ids.push(self.eot);
        ids
    }

    /// Fixed-length ids as open_clip's `tokenize`: cut to `context_length` with the last
    /// kept id forced to `<|endoftext|>`, padded with 0.
    pub fn tokenize(&self, text: &str, context_length: usize) -> Vec<i64> {
        let mut ids: Vec<i64> = self.encode(text).into_iter().map(i64::from).collect();
        if ids.len() > context_length {
            ids.truncate(context_length);
            if let Some(last) = ids.last_mut() {
                *last = i64::from(self.eot);
            }
        }
        ids.resize(context_length, 0);
        ids
    }

    /// [`Self::tokenize`] for many texts, flattened row-major to (texts, context_length).
    pub fn tokenize_batch<S: AsRef<str>>(&self, texts: &[S], context_length: usize) -> Vec<i64> {
        texts
            .iter()
            .flat_map(|t| self.tokenize(t.as_ref(), context_length))
            .collect()
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let nfc: String = text.nfc().collect();
        let mut normalized = String::with_capacity(nfc.len());
        let mut in_space = false;
        for c in nfc.chars() {
            if c.is_whitespace() {
                if !in_space {
                    normalized.push(' ');
                }
                in_space = true;
            } else {
                in_space = false;
                normalized.extend(c.to_lowercase());
            }
        }
        for word in self.split.find_iter(&normalized) {
            let encoded: String = word
                .as_str()
                .bytes()
                .map(|b| self.byte_encoder[b as usize])
                .collect();
            out.extend(self.bpe(&encoded));
        }
    }

    fn bpe(&self, word: &str) -> Vec<u32> {
        if let Ok(cache) = self.cache.lock()
            && let Some(ids) = cache.get(word)
        {
            return ids.clone();
        }
        let mut symbols: Vec<String> = word.chars().map(String::from).collect();
        if let Some(last) = symbols.last_mut() {
            last.push_str(SUFFIX);
        }
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .filter_map(|w| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, (w[0].clone(), w[1].clone())))
                })
                .min_by_key(|(r, _)| *r);
            let Some((_, (first, second))) = best else {
                break;
            };
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == first && symbols[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut symbols[i]));
                    i += 1;
                }
            }
            symbols = merged;
        }
        // Every symbol is a byte character or a merge result, all in the vocabulary
        // (checked in `new` for bytes); an unknown one maps to <|endoftext|> as HF's unk.
        let ids: Vec<u32> = symbols
            .iter()
            .map(|s| self.vocab.get(s).copied().unwrap_or(self.eot))
            .collect();
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(word.to_string(), ids.clone());
        }
        ids
    }
}

/// The positions a batch of padded ids needs: up to the last row's first `eot`, rounded up
/// to a multiple of `multiple` (fewer distinct shapes for GPU kernels), at most `len`.
/// With CLIP's causal mask the pooled output at the first end-of-text token depends on
/// nothing after it, so the text tower on `ids[.., ..n]` gives the same embeddings as on
/// all `len` positions, with less work. A row without `eot` keeps every position.
pub fn trimmed_length(ids: &[i64], rows: usize, len: usize, eot: i64, multiple: usize) -> usize {
    let mut need = 1;
    for r in 0..rows {
        let row = &ids[r * len..(r + 1) * len];
        match row.iter().position(|&t| t == eot) {
            Some(p) => need = need.max(p + 1),
            None => return len,
        }
    }
    (need.div_ceil(multiple.max(1)) * multiple.max(1)).min(len)
}

/// Positions of [`trimmed_length`]'s rounding: few enough shapes for GPU kernel caches.
pub const TRIM_MULTIPLE: usize = 8;

/// The first `n` positions of each of `rows` rows of `len` ids.
pub fn trim_rows(ids: &[i64], rows: usize, len: usize, n: usize) -> Vec<i64> {
    let n = n.min(len);
    (0..rows)
        .flat_map(|r| ids[r * len..r * len + n].iter().copied())
        .collect()
}

/// One merge rule, `a b`; `line` is 1-based, for the error message.
pub fn parse_merge(rule: &str, line: usize) -> Result<(String, String), TokenizerError> {
    let mut parts = rule.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), None) => Ok((a.to_string(), b.to_string())),
        _ => Err(TokenizerError::BadMerge {
            line,
            rule: rule.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Tokenizer {
        let table = bytes_to_unicode();
        let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
        tokens.extend(table.iter().map(|c| format!("{c}{SUFFIX}")));
        let merges = vec![
            ("a".to_string(), "b".to_string()),
            ("ab".to_string(), "c</w>".to_string()),
        ];
        tokens.push("ab".into());
        tokens.push("abc</w>".into());
        tokens.push(START_OF_TEXT.into());
        tokens.push(END_OF_TEXT.into());
        let vocab = tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        Tokenizer::new(vocab, merges).unwrap()
    }

    #[test]
    fn byte_table_is_a_bijection_in_gpt2_order() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'!' as usize], '!');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[0], 'Ā');
        let mut sorted: Vec<char> = t.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }

    #[test]
    fn merges_apply_in_rank_order_and_truncation_keeps_eot() {
        let t = toy();
        let abc = t.vocab["abc</w>"];
        let (sot, eot) = (t.start_of_text(), t.end_of_text());
        assert_eq!(t.encode("ABC"), vec![sot, abc, eot]);
        assert_eq!(t.encode(""), vec![sot, eot]);
        // A literal special token in the text is that token.
        assert_eq!(
            t.encode("abc<|endoftext|>abc"),
            vec![sot, abc, eot, abc, eot]
        );
        let ids = t.tokenize("abc abc abc abc", 4);
        assert_eq!(ids, vec![sot as i64, abc as i64, abc as i64, eot as i64]);
        let ids = t.tokenize("abc", 6);
        assert_eq!(ids, vec![sot as i64, abc as i64, eot as i64, 0, 0, 0]);
    }

    #[test]
    fn missing_special_token_is_named() {
        let e = Tokenizer::new(HashMap::new(), vec![]).unwrap_err();
        assert!(e.to_string().contains("<|startoftext|>"), "{e}");
        assert!(
            parse_merge("a b c", 9)
                .unwrap_err()
                .to_string()
                .contains("9")
        );
    }
}
