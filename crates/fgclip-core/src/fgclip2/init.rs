//! Random FG-CLIP 2 weights for presets trained from scratch and for benchmarks: norms at 1,
//! biases at 0, the probe and position tables at N(0, 1/width), attention and MLPs at CLIP's
//! encoder scales, every other matrix (token table, patch embedding, heads) at
//! N(0, 1/fan_in) as SigLIP's `_init_weights` (`default_flax_embed_init`, `lecun_normal_`),
//! `logit_scale` ln 10 and `logit_bias` −10 (SigLIP's start). CLIP's 0.02 token table left
//! the text tower's pooled last position a sixth content: every caption's embedding within
//! cos 0.95 of every other at the start, and the sigmoid loss settled on its bias alone.
//! Deterministic for a seed; each tensor depends only on (seed, name).

use super::config::Fgclip2Config;
use crate::error::WeightError;
use crate::weights::{WeightSource, encoder_init_std, normal_values};

/// See the module header.
pub struct Fgclip2RandomInit {
    config: Fgclip2Config,
    seed: u64,
}

impl Fgclip2RandomInit {
    pub fn new(config: &Fgclip2Config, seed: u64) -> Self {
        Self {
            config: config.clone(),
            seed,
        }
    }
}

impl WeightSource for Fgclip2RandomInit {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightError> {
        let n: usize = shape.iter().product();
        let (t, v) = (&self.config.text_config, &self.config.vision_config);
        match name {
            "logit_scale" => return Ok(vec![10f32.ln(); n]),
            "logit_bias" => return Ok(vec![-10.0; n]),
            _ => {}
        }
        if name.ends_with("bias") {
            return Ok(vec![0.0; n]);
        }
        if ["layer_norm", "layernorm"].iter().any(|k| name.contains(k)) {
            return Ok(vec![1.0; n]);
        }
        let (d, layers) = if name.starts_with("text_model.") {
            (t.hidden_size as f64, t.num_hidden_layers)
        } else {
            (v.hidden_size as f64, v.num_hidden_layers)
        };
        let std = if name.contains("position_embedding") || name.ends_with("probe") {
            d.powf(-0.5)
        } else if name.contains("in_proj") {
            encoder_init_std("q_proj", d, layers)
        } else if ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
            .iter()
            .any(|k| name.contains(k))
        {
            encoder_init_std(name, d, layers)
        } else {
            // PyTorch layout [out, in] (embeddings [rows, width]): fan-in is the last axis.
            (shape.last().copied().unwrap_or(1).max(1) as f64).powf(-0.5)
        };
        Ok(normal_values(self.seed, name, n, std))
    }
}
