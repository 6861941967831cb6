//! Building modules from named weights, in the manner of candle's `VarBuilder`.
//!
//! A [`WeightSource`] hands out f32 values by HF parameter name (PyTorch layout); the
//! [`Weights`] builder adds the name prefix, checks shapes and converts to burn's layout
//! (linear weights are stored transposed, `[d_in, d_out]`).

use burn::module::{Param, ParamId};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::config::ClipConfig;
use crate::error::WeightError;

/// Where weights come from: a checkpoint on disk (implemented by the application), or
/// [`RandomInit`].
pub trait WeightSource {
    /// The values of `name` in row-major order. `shape` is what the model expects in
    /// PyTorch's layout; a source holding another shape returns [`WeightError::Shape`].
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightError>;
}

/// A prefix-scoped view of a [`WeightSource`] that builds burn modules.
#[derive(Clone)]
pub struct Weights<'a> {
    source: &'a dyn WeightSource,
    prefix: String,
    device: Device,
}

impl<'a> Weights<'a> {
    pub fn new(source: &'a dyn WeightSource, device: &Device) -> Self {
        Self {
            source,
            prefix: String::new(),
            device: device.clone(),
        }
    }

    /// The same source under `prefix.name`.
    pub fn pp(&self, name: impl AsRef<str>) -> Self {
        Self {
            source: self.source,
            prefix: self.full_name(name.as_ref()),
            device: self.device.clone(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightError> {
        let full = self.full_name(name);
        let values = self.source.get(&full, shape)?;
        let expected: usize = shape.iter().product();
        if values.len() != expected {
            return Err(WeightError::Shape {
                name: full,
                expected: shape.to_vec(),
                found: vec![values.len()],
            });
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(WeightError::Invalid {
                name: full,
                reason: format!("value {} at flat index {i} is not finite", values[i]),
            });
        }
        Ok(values)
    }

    /// A tensor in the stored layout.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, WeightError> {
        let values = self.values(name, &shape)?;
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    /// A 2-D weight stored as PyTorch `[rows, cols]`, returned transposed `[cols, rows]`.
    pub fn tensor_transposed(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Tensor<2>, WeightError> {
        let values = self.values(name, &[rows, cols])?;
        let mut t = vec![0f32; values.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = values[r * cols + c];
            }
        }
        Ok(Tensor::from_data(
            TensorData::new(t, [cols, rows]),
            &self.device,
        ))
    }

    /// A trainable parameter for the tensor of `name`. Its id is derived from the full HF
    /// name, so optimizer state saved by one process matches the same parameter when the
    /// model is rebuilt in another (exact resume).
    pub fn param<const D: usize>(&self, name: &str, tensor: Tensor<D>) -> Param<Tensor<D>> {
        named_param(&self.full_name(name), tensor)
    }

    /// A scalar parameter stored with shape `[]`, held as a 1-element tensor.
    pub fn scalar(&self, name: &str) -> Result<Tensor<1>, WeightError> {
        let values = self.values(name, &[])?;
        Ok(Tensor::from_data(
            TensorData::new(values, [1]),
            &self.device,
        ))
    }

    /// `nn.Linear(d_in, d_out)` under `name` (`name.weight`, `name.bias`).
    pub fn linear(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear, WeightError> {
        let w = self.pp(name);
        let weight = w.param("weight", w.tensor_transposed("weight", d_out, d_in)?);
        let bias = if bias {
            Some(w.param("bias", w.tensor("bias", [d_out])?))
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// `nn.LayerNorm(d, eps)` under `name`.
    pub fn layer_norm(&self, name: &str, d: usize, eps: f64) -> Result<LayerNorm, WeightError> {
        let w = self.pp(name);
        let mut norm = LayerNormConfig::new(d).with_epsilon(eps).init(&self.device);
        norm.gamma = w.param("weight", w.tensor("weight", [d])?);
        norm.beta = Some(w.param("bias", w.tensor("bias", [d])?));
        Ok(norm)
    }

    /// `nn.Embedding(n, d)` under `name`.
    pub fn embedding(&self, name: &str, n: usize, d: usize) -> Result<Embedding, WeightError> {
        let w = self.pp(name);
        let weight = w.param("weight", w.tensor("weight", [n, d])?);
        Ok(Embedding { weight })
    }
}

/// Random weights with transformers' `CLIPPreTrainedModel._init_weights` scheme, for
/// training from scratch and for benchmarks. Deterministic for a seed, and each tensor
/// depends only on (seed, name), so the order in which modules are built is irrelevant.
pub struct RandomInit {
    config: ClipConfig,
    seed: u64,
}

impl RandomInit {
    pub fn new(config: &ClipConfig, seed: u64) -> Self {
        Self {
            config: config.clone(),
            seed,
        }
    }

    fn std_for(&self, name: &str) -> f64 {
        let (hidden, layers) = if name.starts_with("text_model.") {
            (
                self.config.text_config.hidden_size,
                self.config.text_config.num_hidden_layers,
            )
        } else {
            (
                self.config.vision_config.hidden_size,
                self.config.vision_config.num_hidden_layers,
            )
        };
        let d = hidden as f64;
        if name.ends_with("class_embedding") {
            d.powf(-0.5)
        } else if name.starts_with("text_projection") || name.starts_with("text_filip_projection") {
            (self.config.text_config.hidden_size as f64).powf(-0.5)
        } else if name.starts_with("visual_projection") {
            (self.config.vision_config.hidden_size as f64).powf(-0.5)
        } else {
            encoder_init_std(name, d, layers)
        }
    }
}

/// transformers' `CLIPPreTrainedModel._init_weights` standard deviation for a parameter of
/// a CLIP encoder of width `d` and `layers` layers (0.02 for anything else).
pub(crate) fn encoder_init_std(name: &str, d: f64, layers: usize) -> f64 {
    let in_proj = d.powf(-0.5) * (2.0 * layers.max(1) as f64).powf(-0.5);
    if name.contains("q_proj") || name.contains("k_proj") || name.contains("v_proj") {
        in_proj
    } else if name.contains("out_proj") {
        d.powf(-0.5)
    } else if name.contains("fc1") {
        (2.0 * d).powf(-0.5)
    } else if name.contains("fc2") {
        in_proj
    } else {
        0.02
    }
}

impl WeightSource for RandomInit {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightError> {
        let n: usize = shape.iter().product();
        let is_norm = ["layer_norm", "layrnorm", "layernorm"]
            .iter()
            .any(|k| name.contains(k));
        if name.starts_with("logit_scale") {
            return Ok(vec![self.config.logit_scale_init_value as f32; n]);
        }
        if name.ends_with(".bias") {
            return Ok(vec![0.0; n]);
        }
        if is_norm {
            return Ok(vec![1.0; n]);
        }
        Ok(normal_values(self.seed, name, n, self.std_for(name)))
    }
}

/// `n` draws of N(0, std²) for the tensor `name`: one SplitMix64 stream per (seed, name).
pub(crate) fn normal_values(seed: u64, name: &str, n: usize, std: f64) -> Vec<f32> {
    let seed = seed ^ fnv1a(name.as_bytes());
    // Drawn in parallel: SplitMix64's state advances by a constant, so each chunk starts
    // where the sequential draw would be (2 draws a value).
    let mut values = vec![0f32; n];
    values
        .par_chunks_mut(INIT_CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let mut rng = SplitMix64::after(seed, 2 * (c * INIT_CHUNK) as u64);
            chunk
                .iter_mut()
                .for_each(|v| *v = (rng.normal() * std) as f32);
        });
    values
}

/// A trainable parameter whose id is a hash of its full name (see [`Weights::param`]).
pub fn named_param<const D: usize>(full_name: &str, tensor: Tensor<D>) -> Param<Tensor<D>> {
    let mut p = Param::from_tensor(tensor);
    p.id = ParamId::from(fnv1a(full_name.as_bytes()));
    p
}

/// FNV-1a, 64 bits: parameter ids here, checkpoint file checks in the application.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_update(FNV1A_START, bytes)
}

/// FNV-1a's starting state, for [`fnv1a_update`].
pub const FNV1A_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a continued over `bytes` from state `h`: hashing a stream piece by piece gives
/// [`fnv1a`] of the whole.
pub fn fnv1a_update(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64 (Steele et al., 2014): a small, portable generator, so random weights and the
/// application's sampling are identical on every platform and dependency version.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

/// Random values per parallel task of [`RandomInit`].
const INIT_CHUNK: usize = 1 << 16;

impl SplitMix64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    /// The generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The generator seeded with `seed` after `draws` calls of `next_u64`.
    pub fn after(seed: u64, draws: u64) -> Self {
        Self(seed.wrapping_add(Self::GAMMA.wrapping_mul(draws)))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        // 53 random bits in (0, 1]: never 0, so ln() below is finite.
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_init_is_deterministic_and_scaled() {
        let c = ClipConfig::default();
        let a = RandomInit::new(&c, 7);
        let x = a
            .get("vision_model.encoder.layers.0.mlp.fc1.weight", &[3072, 768])
            .unwrap();
        let y = RandomInit::new(&c, 7)
            .get("vision_model.encoder.layers.0.mlp.fc1.weight", &[3072, 768])
            .unwrap();
        assert_eq!(x, y);
        let z = RandomInit::new(&c, 8)
            .get("vision_model.encoder.layers.0.mlp.fc1.weight", &[3072, 768])
            .unwrap();
        assert_ne!(x, z);
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let expected = (2.0 * 768f64).powf(-0.5);
        assert!(mean.abs() < 1e-3, "{mean}");
        assert!((var.sqrt() / expected - 1.0).abs() < 0.01, "{}", var.sqrt());
        assert_eq!(
            a.get("vision_model.post_layernorm.weight", &[4]).unwrap(),
            vec![1.0; 4]
        );
        assert_eq!(
            a.get("vision_model.post_layernorm.bias", &[4]).unwrap(),
            vec![0.0; 4]
        );
        assert_eq!(a.get("logit_scale", &[]).unwrap(), vec![2.6592f32]);
    }

    #[test]
    fn splitmix64_matches_the_reference_stream_and_jumps_ahead() {
        // Vigna's splitmix64.c seeded with 1234567 (its widely quoted first outputs).
        let mut rng = SplitMix64::after(1_234_567, 0);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
        // `after` = that many draws, so parallel chunks continue the one stream.
        let mut stepped = SplitMix64::after(99, 0);
        (0..1000).for_each(|_| {
            stepped.next_u64();
        });
        assert_eq!(SplitMix64::after(99, 1000).next_u64(), stepped.next_u64());
        // A tensor spanning several chunks equals the one sequential draw.
        let c = ClipConfig::default();
        let name = "vision_model.encoder.layers.0.mlp.fc1.weight";
        let n = 2 * INIT_CHUNK + 123;
        let got = RandomInit::new(&c, 5).get(name, &[n]).unwrap();
        let std = RandomInit::new(&c, 5).std_for(name);
        let mut seq = SplitMix64::after(5 ^ fnv1a(name.as_bytes()), 0);
        let want: Vec<f32> = (0..n).map(|_| (seq.normal() * std) as f32).collect();
        assert_eq!(got, want);
    }
}
