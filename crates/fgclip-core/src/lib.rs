//! fgclip-core: CLIP (Radford et al., 2021) and the FG-CLIP dense patch path (Xie et al.,
//! 2025) on burn, matching HF transformers' `CLIPModel` numerically.
//!
//! Tensors and configs in, tensors out: this crate knows no file format and no CLI.
//! Weights arrive through the [`weights::WeightSource`] trait, keyed by HF names.

pub mod config;
pub mod error;
pub mod fgclip;
pub mod fgclip2;
pub mod fused;
pub mod fusion;
pub mod gather;
pub mod gemm;
pub mod hf_tokenizer;
pub mod loss;
pub mod model;
pub mod names;
pub mod nn;
pub mod precision;
pub mod roi;
pub mod text;
pub mod tokenizer;
pub mod vision;
pub mod weights;
pub mod zeroshot;

pub use burn;
pub use config::{Activation, ClipConfig, ClipTextConfig, ClipVisionConfig, ModelKind};
pub use error::{ConfigError, TokenizerError, WeightError};
pub use hf_tokenizer::{HfTokenizer, HfTokenizerOptions};
pub use model::ClipModel;
pub use precision::Precision;
pub use tokenizer::Tokenizer;
pub use weights::{RandomInit, WeightSource, Weights};
