//! Temporal fusion of a clip's T frame embeddings into one video embedding.
//!
//! `mean`: `normalize(mean_t normalize(e_t))`, as before (DESIGN.md §4).
//! `transformer`: CLIP4Clip's `seqTransf` (Luo et al., 2022, `modules/modeling.py`,
//! `_mean_pooling_for_similarity_visual` after `transformerClip`): frame position
//! embeddings added to the frames, a few pre-norm CLIP encoder layers over the T frames,
//! residual to the frames, then the mean over frames. One change makes a fresh module
//! *exactly* mean pooling: the transformer branch ends in a linear projection
//! (`output`) whose weight and bias start at zero, so
//!
//! `fused = mean_t n_t + mean_t output(encoder(n_t + pos_t))`, `n_t = normalize(e_t)`,
//!
//! equals `mean_t n_t` bit for bit until training moves `output` (its gradient is
//! non-zero from the first step, and the encoder's follow).

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::config::Activation;
use crate::error::{ConfigError, WeightError};
use crate::names::{Collector, NamedParam};
use crate::nn::Encoder;
use crate::weights::{WeightSource, Weights, encoder_init_std, normal_values};

/// HF-style name prefix of the fusion's parameters.
pub const FUSION_PREFIX: &str = "temporal_fusion";

/// Shape of a temporal transformer; saved beside its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionConfig {
    /// Width: the model's `projection_dim`.
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    /// Rows of the frame position table: the most frames a clip may have.
    pub max_frames: usize,
}

impl FusionConfig {
    /// CLIP4Clip's choices for a width: 64-wide heads, a 4× MLP.
    pub fn new(hidden_size: usize, num_layers: usize, max_frames: usize) -> Self {
        Self {
            hidden_size,
            num_layers,
            num_heads: (hidden_size / 64).max(1),
            max_frames,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                reason: reason.to_string(),
            })
        };
        if self.hidden_size == 0 {
            return bad("fusion.hidden_size", "must be at least 1");
        }
        if self.num_layers == 0 {
            return bad("fusion.num_layers", "must be at least 1");
        }
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad("fusion.num_heads", "must divide hidden_size");
        }
        if self.max_frames == 0 {
            return bad("fusion.max_frames", "must be at least 1");
        }
        Ok(())
    }
}

/// The temporal transformer (see the module header).
#[derive(Module, Debug)]
pub struct TemporalFusion {
    /// (max_frames, P), saved as `temporal_fusion.frame_position_embeddings.weight`.
    pub frame_position_embeddings: Param<Tensor<2>>,
    /// `temporal_fusion.encoder.layers.{i}`: CLIP encoder layers, QuickGELU.
    pub encoder: Encoder,
    /// `temporal_fusion.output`: P → P, zero at initialisation.
    pub output: Linear,
    #[module(skip)]
    config: FusionConfig,
}

impl TemporalFusion {
    /// Weights by name under `temporal_fusion.`.
    pub fn load(w: &Weights, config: FusionConfig) -> Result<Self, WeightError> {
        config.validate()?;
        let w = w.pp(FUSION_PREFIX);
        let p = config.hidden_size;
        let pos = w.pp("frame_position_embeddings");
        Ok(Self {
            frame_position_embeddings: pos
                .param("weight", pos.tensor("weight", [config.max_frames, p])?),
            encoder: Encoder::load(
                &w.pp("encoder"),
                config.num_layers,
                p,
                4 * p,
                config.num_heads,
                Activation::QuickGelu,
                1e-5,
            )?,
            output: w.linear("output", p, p, true)?,
            config,
        })
    }

    /// A fresh module: CLIP's initialisation for the encoder (transformers'
    /// `CLIPPreTrainedModel._init_weights` at width P), N(0, 0.02) positions, and a zero
    /// `output` — so it starts as mean pooling. Deterministic for a seed.
    pub fn init(
        config: FusionConfig,
        seed: u64,
        device: &burn::tensor::Device,
    ) -> Result<Self, WeightError> {
        Self::load(&Weights::new(&FusionInit { config, seed }, device), config)
    }

    pub fn config(&self) -> &FusionConfig {
        &self.config
    }

    /// `frames`: (B, T, P) normalised frame embeddings, T ≤ `max_frames` (checked by the
    /// caller: a longer clip is a configuration error, reported before any work).
    /// Returns (B, P), not normalised.
    pub fn forward(&self, frames: Tensor<3>) -> Tensor<2> {
        let [b, t, p] = frames.dims();
        debug_assert!(t <= self.config.max_frames);
        let mean = frames.clone().mean_dim(1).reshape([b, p]);
        let pos = self
            .frame_position_embeddings
            .val()
            .slice([0..t, 0..p])
            .unsqueeze_dim::<3>(0);
        let h = self.encoder.forward(frames + pos, None);
        let out = crate::gemm::linear(
            h,
            self.output.weight.val(),
            self.output.bias.as_ref().map(|b| b.val()),
        );
        let delta = out.mean_dim(1).reshape([b, p]);
        mean + delta
    }

    /// Every parameter under its name (`temporal_fusion.…`).
    pub fn named_params(&self) -> Vec<NamedParam<'_>> {
        let mut c = Collector::default();
        c.d2(
            format!("{FUSION_PREFIX}.frame_position_embeddings.weight"),
            crate::names::HfLayout::Same,
            &self.frame_position_embeddings,
        );
        c.encoder(&format!("{FUSION_PREFIX}.encoder"), &self.encoder);
        c.linear(&format!("{FUSION_PREFIX}.output"), &self.output);
        c.out
    }
}

/// Initial values of a fresh [`TemporalFusion`].
struct FusionInit {
    config: FusionConfig,
    seed: u64,
}

impl WeightSource for FusionInit {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightError> {
        let n: usize = shape.iter().product();
        if name.ends_with(".bias") || name.contains(".output.") {
            return Ok(vec![0.0; n]);
        }
        if name.contains("layer_norm") {
            return Ok(vec![1.0; n]);
        }
        let std = encoder_init_std(name, self.config.hidden_size as f64, self.config.num_layers);
        Ok(normal_values(self.seed, name, n, std))
    }
}
