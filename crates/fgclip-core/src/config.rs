//! Model configuration in the layout of HF transformers' `CLIPConfig` (`config.json`).
//!
//! Missing fields take transformers' defaults, so any published CLIP `config.json`
//! (including the old `text_config_dict` / `vision_config_dict` spelling) deserialises.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Hidden activation of the MLP blocks (`hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, OpenAI CLIP.
    QuickGelu,
    /// Exact (erf) GELU.
    Gelu,
    /// tanh-approximated GELU (`gelu_new` / `gelu_pytorch_tanh` in transformers; written
    /// as the latter, which transformers knows, unlike `gelu_tanh`).
    #[serde(rename = "gelu_pytorch_tanh", alias = "gelu_new", alias = "gelu_tanh")]
    GeluTanh,
}

/// The vision tower (`vision_config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl ClipVisionConfig {
    /// Side of the patch grid, g.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens per image: g² patches and the class token.
    pub fn num_positions(&self) -> usize {
        self.grid_size() * self.grid_size() + 1
    }
}

/// The text tower (`text_config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub pad_token_id: i64,
    pub bos_token_id: i64,
    pub eos_token_id: i64,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            pad_token_id: 1,
            bos_token_id: 49406,
            eos_token_id: 49407,
        }
    }
}

/// Whole-model configuration (`CLIPConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    /// `["FGCLIPModel"]` marks an FG-CLIP v1 checkpoint (long-text position tables,
    /// `text_filip_projection`, its own scale names); empty or `["CLIPModel"]` is CLIP.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(alias = "text_config_dict")]
    pub text_config: ClipTextConfig,
    #[serde(alias = "vision_config_dict")]
    pub vision_config: ClipVisionConfig,
    pub projection_dim: usize,
    pub logit_scale_init_value: f64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            architectures: Vec::new(),
            text_config: ClipTextConfig::default(),
            vision_config: ClipVisionConfig::default(),
            projection_dim: 512,
            logit_scale_init_value: 2.6592,
        }
    }
}

/// The architecture name of FG-CLIP v1 checkpoints (qihoo360 fg-clip-base / -large).
pub const FGCLIP_V1_ARCHITECTURE: &str = "FGCLIPModel";

impl ClipConfig {
    /// True for an FG-CLIP v1 checkpoint: its text tower has the 248-position long path
    /// and `text_filip_projection`, and its scales are `logit_scale_finegraind` /
    /// `logit_scale_hardneg` (DESIGN.md §7).
    pub fn is_fgclip_v1(&self) -> bool {
        self.architectures
            .iter()
            .any(|a| a == FGCLIP_V1_ARCHITECTURE)
    }

    /// Checks the geometry before any weight is touched, so a bad `config.json` fails
    /// with the field's name rather than a shape error deep in a forward pass.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let v = &self.vision_config;
        let t = &self.text_config;
        let nonzero = [
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.num_channels", v.num_channels),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.image_size", v.image_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.vocab_size", t.vocab_size),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
            ),
            ("projection_dim", self.projection_dim),
        ];
        for (field, value) in nonzero {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    field,
                    reason: "must be > 0".into(),
                });
            }
        }
        if v.num_hidden_layers == 0 {
            return Err(ConfigError::Invalid {
                field: "vision_config.num_hidden_layers",
                reason: "the dense patch path needs at least one layer".into(),
            });
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return Err(ConfigError::Invalid {
                field: "vision_config.image_size",
                reason: format!(
                    "{} is not a multiple of patch_size {}",
                    v.image_size, v.patch_size
                ),
            });
        }
        for (field, hidden, heads) in [
            (
                "vision_config.num_attention_heads",
                v.hidden_size,
                v.num_attention_heads,
            ),
            (
                "text_config.num_attention_heads",
                t.hidden_size,
                t.num_attention_heads,
            ),
        ] {
            if hidden % heads != 0 {
                return Err(ConfigError::Invalid {
                    field,
                    reason: format!("{heads} heads do not divide hidden_size {hidden}"),
                });
            }
        }
        if !(v.layer_norm_eps > 0.0 && t.layer_norm_eps > 0.0) {
            return Err(ConfigError::Invalid {
                field: "layer_norm_eps",
                reason: "must be > 0".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_openai_config_spelling_and_defaults() {
        // The shape of openai/clip-vit-base-patch32's config.json (trimmed): legacy
        // `*_config_dict` keys, eos_token_id 2, and most fields left to defaults.
        let json = r#"{
            "projection_dim": 512,
            "text_config_dict": {"eos_token_id": 2, "bos_token_id": 0, "hidden_act": "quick_gelu"},
            "vision_config_dict": {"patch_size": 32, "hidden_act": "quick_gelu"}
        }"#;
        let c: ClipConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.text_config.eos_token_id, 2);
        assert_eq!(c.text_config.hidden_size, 512);
        assert_eq!(c.vision_config.grid_size(), 7);
        assert_eq!(c.vision_config.num_positions(), 50);
        c.validate().unwrap();
    }

    #[test]
    fn activation_names() {
        let a: Activation = serde_json::from_str("\"gelu\"").unwrap();
        assert_eq!(a, Activation::Gelu);
        let a: Activation = serde_json::from_str("\"gelu_pytorch_tanh\"").unwrap();
        assert_eq!(a, Activation::GeluTanh);
        assert!(serde_json::from_str::<Activation>("\"relu\"").is_err());
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = ClipConfig::default();
        c.vision_config.image_size = 225;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("vision_config.image_size"), "{e}");
        assert!(e.contains("225"), "{e}");
        let mut c = ClipConfig::default();
        c.text_config.num_attention_heads = 7;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("text_config.num_attention_heads"), "{e}");
    }
}

/// The model families fgclip reads and trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// CLIP and FG-CLIP v1 (`model_type: "clip"`, or none): FG-CLIP's recipe.
    Clip,
    /// FG-CLIP 2 (`model_type: "fgclip2"`): FG-CLIP 2's recipe.
    Fgclip2,
}
