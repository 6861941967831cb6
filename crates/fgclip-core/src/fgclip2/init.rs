//! Random FG-CLIP 2 weights for presets trained from scratch and for benchmarks: norms at 1,
//! biases at 0, the probe and position tables at N(0, 1/width), projections and MLPs at
//! CLIP's encoder scales, `logit_scale` ln 10 and `logit_bias` −10 (SigLIP's start).
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
        } else {
            encoder_init_std(name, d, layers)
        };
        Ok(normal_values(self.seed, name, n, std))
    }
}
