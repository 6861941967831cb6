//! FG-CLIP 2's configuration in the layout of its `configuration_fgclip2.py`
//! (`Fgclip2Config` with `text_config` / `vision_config`), transformers' defaults for
//! missing fields.

use serde::{Deserialize, Serialize};

use crate::config::Activation;
use crate::error::ConfigError;

/// `model_type` of FG-CLIP 2's `config.json`.
pub const MODEL_TYPE: &str = "fgclip2";

/// The text tower (`text_config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fgclip2TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Positions of the short and box walks (64).
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// `text_model.head`'s output size; None: `hidden_size`.
    pub projection_size: Option<usize>,
    /// Long-walk positions taken from `position_embedding_ori`; the rest from `_res`.
    pub keep_len: usize,
    /// Positions of the long walk (196).
    pub longtext_len: usize,
}

impl Default for Fgclip2TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 32000,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 64,
            hidden_act: Activation::GeluTanh,
            layer_norm_eps: 1e-6,
            projection_size: None,
            keep_len: 20,
            longtext_len: 196,
        }
    }
}

impl Fgclip2TextConfig {
    pub fn projection(&self) -> usize {
        self.projection_size.unwrap_or(self.hidden_size)
    }
}

/// The NaFlex vision tower (`vision_config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fgclip2VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    /// Entries of the learned position table, a square grid (256: 16 × 16).
    pub num_patches: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for Fgclip2VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            num_patches: 256,
            patch_size: 16,
            hidden_act: Activation::GeluTanh,
            layer_norm_eps: 1e-6,
        }
    }
}

impl Fgclip2VisionConfig {
    /// Side of the position grid.
    pub fn position_grid(&self) -> usize {
        (self.num_patches as f64).sqrt() as usize
    }

    /// Values of one flattened patch (C · P · P).
    pub fn patch_dim(&self) -> usize {
        self.num_channels * self.patch_size * self.patch_size
    }
}

/// The whole model (`config.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fgclip2Config {
    pub text_config: Fgclip2TextConfig,
    pub vision_config: Fgclip2VisionConfig,
}

impl Fgclip2Config {
    /// Checks what the towers rely on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (t, v) = (&self.text_config, &self.vision_config);
        let bad = |field: &'static str, reason: String| Err(ConfigError::Invalid { field, reason });
        for (field, value) in [
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("text_config.vocab_size", t.vocab_size),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
            ),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.num_patches", v.num_patches),
        ] {
            if value == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if t.hidden_size % t.num_attention_heads != 0 {
            return bad(
                "text_config.num_attention_heads",
                format!(
                    "({}) must divide hidden_size ({})",
                    t.num_attention_heads, t.hidden_size
                ),
            );
        }
        if v.hidden_size % v.num_attention_heads != 0 {
            return bad(
                "vision_config.num_attention_heads",
                format!(
                    "({}) must divide hidden_size ({})",
                    v.num_attention_heads, v.hidden_size
                ),
            );
        }
        let g = v.position_grid();
        if g * g != v.num_patches {
            return bad(
                "vision_config.num_patches",
                format!("({}) must be a square (the position grid)", v.num_patches),
            );
        }
        if t.projection() != v.hidden_size {
            return bad(
                "text_config.projection_size",
                format!(
                    "({}) must equal vision_config.hidden_size ({}): both towers' embeddings meet in one space",
                    t.projection(),
                    v.hidden_size
                ),
            );
        }
        if t.keep_len > t.longtext_len {
            return bad(
                "text_config.keep_len",
                format!("({}) exceeds longtext_len ({})", t.keep_len, t.longtext_len),
            );
        }
        Ok(())
    }
}
