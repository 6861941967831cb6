//! CLIP ViT image tower (HF `CLIPVisionTransformer`), with FG-CLIP's dense patch path.
//!
//! Matches transformers' `modeling_clip.py`: patch conv without bias, class token,
//! learned position embeddings, `pre_layrnorm`, the encoder, and `post_layernorm` on the
//! class token. The dense path follows FG-CLIP (Xie et al., 2025, `fgclip/model`): the
//! last layer is re-run on its input with value-only attention.

use burn::module::{Module, Param};

use burn::nn::LayerNorm;
use burn::tensor::Tensor;

use crate::config::ClipVisionConfig;
use crate::error::WeightError;
use crate::nn::Encoder;
use crate::precision::{Precision, matmul_in};
use crate::weights::Weights;

/// Patch, class and position embeddings (HF `CLIPVisionEmbeddings`).
#[derive(Module, Debug)]
pub struct VisionEmbeddings {
    /// The patch conv as a matrix `[C·P·P, D]` (input order c, y, x): stride = kernel,
    /// so the convolution is exactly a matmul over flattened patches.
    pub patch_embedding: Param<Tensor<2>>,
    pub class_embedding: Param<Tensor<1>>,
    pub position_embedding: Param<Tensor<2>>,
    #[module(skip)]
    patch_size: usize,
    #[module(skip)]
    precision: Precision,
}

impl VisionEmbeddings {
    fn load(w: &Weights, c: &ClipVisionConfig) -> Result<Self, WeightError> {
        let (d, p, ch) = (c.hidden_size, c.patch_size, c.num_channels);
        let conv = w.tensor("patch_embedding.weight", [d, ch, p, p])?;
        Ok(Self {
            patch_embedding: w.param(
                "patch_embedding.weight",
                conv.reshape([d, ch * p * p]).transpose(),
            ),
            class_embedding: w.param("class_embedding", w.tensor("class_embedding", [d])?),
            position_embedding: w.param(
                "position_embedding.weight",
                w.tensor("position_embedding.weight", [c.num_positions(), d])?,
            ),
            patch_size: p,
            precision: Precision::F32,
        })
    }

    /// (B, C, S, S) pixels → (B, 1 + g², D) tokens.
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        let [b, ch, h, w] = pixels.dims();
        let p = self.patch_size;
        let (gh, gw) = (h / p, w / p);
        let patches = pixels
            .reshape([b, ch, gh, p, gw, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b, gh * gw, ch * p * p]);
        let weight = self.patch_embedding.val();
        let d = weight.dims()[1];
        let tokens = self.precision.leave(matmul_in(
            self.precision.enter(patches),
            weight.unsqueeze::<3>(),
        ));
        let cls = self
            .class_embedding
            .val()
            .reshape([1, 1, d])
            .expand([b, 1, d]);
        let x = Tensor::cat(vec![cls, tokens], 1);
        x + self.position_embedding.val().unsqueeze::<3>()
    }
}

/// What one vision forward produces.
pub struct VisionOutput {
    /// Encoder output before `post_layernorm`, (B, 1 + g², D).
    pub last_hidden_state: Tensor<3>,
    /// `post_layernorm` of the class token, (B, D).
    pub pooler_output: Tensor<2>,
    /// FG-CLIP dense tokens after `post_layernorm`, class token dropped, (B, g², D);
    /// present when asked for.
    pub dense: Option<Tensor<3>>,
}

/// The image tower (`vision_model.*`).
#[derive(Module, Debug)]
pub struct VisionTransformer {
    pub embeddings: VisionEmbeddings,
    pub pre_layrnorm: LayerNorm,
    pub encoder: Encoder,
    pub post_layernorm: LayerNorm,
    #[module(skip)]
    config: ClipVisionConfig,
}

impl VisionTransformer {
    pub fn load(w: &Weights, c: &ClipVisionConfig) -> Result<Self, WeightError> {
        let d = c.hidden_size;
        Ok(Self {
            embeddings: VisionEmbeddings::load(&w.pp("embeddings"), c)?,
            pre_layrnorm: w.layer_norm("pre_layrnorm", d, c.layer_norm_eps)?,
            encoder: Encoder::load(
                &w.pp("encoder"),
                c.num_hidden_layers,
                d,
                c.intermediate_size,
                c.num_attention_heads,
                c.hidden_act,
                c.layer_norm_eps,
            )?,
            post_layernorm: w.layer_norm("post_layernorm", d, c.layer_norm_eps)?,
            config: c.clone(),
        })
    }

    pub fn config(&self) -> &ClipVisionConfig {
        &self.config
    }

    /// Where the patch embedding, linear layers and attention compute (see [`Precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        self.embeddings.precision = precision;
        self.encoder.set_precision(precision);
    }

    /// `pixels`: (B, C, S, S), already CLIP-normalised; S must be the config's image size.
    pub fn forward(&self, pixels: Tensor<4>, with_dense: bool) -> VisionOutput {
        let x = self.pre_layrnorm.forward(self.embeddings.forward(pixels));
        let penultimate = self.encoder.forward_to_last_input(x, None);
        let (last_hidden_state, dense) = match self.encoder.last() {
            Some(last) => {
                let dense = with_dense.then(|| {
                    let tokens = last.forward_value_only(penultimate.clone());
                    let [b, n, d] = tokens.dims();
                    self.post_layernorm
                        .forward(tokens.slice([0..b, 1..n, 0..d]))
                });
                (last.forward(penultimate, None), dense)
            }
            None => (penultimate, None),
        };
        let [b, _, d] = last_hidden_state.dims();
        let cls = last_hidden_state
            .clone()
            .slice([0..b, 0..1, 0..d])
            .reshape([b, d]);
        VisionOutput {
            pooler_output: self.post_layernorm.forward(cls),
            last_hidden_state,
            dense,
        }
    }
}
