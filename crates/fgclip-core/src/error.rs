//! Errors of the library. Each quotes the offending input: a config field, a weight
//! name with both shapes, a token file line.

use thiserror::Error;

/// A `config.json` whose values cannot describe a CLIP model.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("invalid config: `{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// A weight that cannot be used to build the model.
#[derive(Debug, Error)]
pub enum WeightError {
    #[error("missing weight `{name}` (expected shape {expected:?})")]
    Missing { name: String, expected: Vec<usize> },
    #[error("weight `{name}` has shape {found:?}, the model expects {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("weight `{name}`: {reason}")]
    Invalid { name: String, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Vocabulary or merges that do not make a CLIP BPE tokenizer.
#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error("token `{token}` is missing from the vocabulary")]
    MissingToken { token: String },
    #[error("merge rule {line}: `{rule}` is not two space-separated symbols")]
    BadMerge { line: usize, rule: String },
    #[error("the vocabulary has {found} entries; {reason}")]
    BadVocab { found: usize, reason: String },
    /// A `tokenizer.json` the `tokenizers` library cannot load or run.
    #[error("{0}")]
    Library(String),
}
