//! The two-tower CLIP model (HF `CLIPModel`): towers, projections and `logit_scale`.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Int, Tensor};

use crate::config::ClipConfig;
use crate::error::WeightError;
use crate::precision::{Precision, linear_in};
use crate::text::{TextOutput, TextTransformer};
use crate::vision::{VisionOutput, VisionTransformer};
use crate::weights::Weights;

/// L2-normalise along the last dimension (with torch's `F.normalize` epsilon 1e-12).
pub fn normalize<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let norm = x.clone().square().sum_dim(D - 1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Image-side results of [`ClipModel::encode_image`].
pub struct ImageEmbeddings {
    /// `visual_projection(pooler_output)`, not normalised, (B, P).
    pub embeds: Tensor<2>,
    /// The FG-CLIP dense patch grid, projected, not normalised, (B, g, g, P).
    pub patch_grid: Option<Tensor<4>>,
}

#[derive(Module, Debug)]
pub struct ClipModel {
    pub vision_model: VisionTransformer,
    pub text_model: TextTransformer,
    pub visual_projection: Linear,
    pub text_projection: Linear,
    /// FG-CLIP v1's projection of long texts; `None` for CLIP.
    pub text_filip_projection: Option<Linear>,
    /// Stored with shape `[]` in HF checkpoints, held as `[1]`.
    pub logit_scale: Param<Tensor<1>>,
    #[module(skip)]
    config: ClipConfig,
    #[module(skip)]
    precision: Precision,
}

impl ClipModel {
    /// Builds the model from weights under HF `CLIPModel` names.
    pub fn load(w: &Weights, config: &ClipConfig) -> Result<Self, WeightError> {
        config.validate()?;
        let p = config.projection_dim;
        let v1 = config.is_fgclip_v1();
        let text_filip_projection = if v1 {
            Some(w.linear(
                "text_filip_projection",
                config.text_config.hidden_size,
                p,
                false,
            )?)
        } else {
            None
        };
        Ok(Self {
            vision_model: VisionTransformer::load(&w.pp("vision_model"), &config.vision_config)?,
            text_model: TextTransformer::load(&w.pp("text_model"), &config.text_config, v1)?,
            visual_projection: w.linear(
                "visual_projection",
                config.vision_config.hidden_size,
                p,
                false,
            )?,
            text_projection: w.linear(
                "text_projection",
                config.text_config.hidden_size,
                p,
                false,
            )?,
            text_filip_projection,
            logit_scale: w.param("logit_scale", w.scalar("logit_scale")?),
            config: config.clone(),
            precision: Precision::F32,
        })
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Where the matmul-heavy work computes; parameters stay f32 (see [`Precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        self.vision_model.set_precision(precision);
        self.text_model.set_precision(precision);
        self.precision = precision;
    }

    fn project<const D: usize>(&self, l: &Linear, x: Tensor<D>) -> Tensor<D> {
        self.precision.leave(linear_in(l, self.precision.enter(x)))
    }

    /// The raw vision tower.
    pub fn vision(&self, pixels: Tensor<4>, with_dense: bool) -> VisionOutput {
        self.vision_model.forward(pixels, with_dense)
    }

    /// The raw text tower.
    pub fn text(&self, ids: Tensor<2, Int>) -> TextOutput {
        self.text_model.forward(ids)
    }

    /// Projected image embeddings and, with `with_dense`, the projected dense patch grid.
    pub fn encode_image(&self, pixels: Tensor<4>, with_dense: bool) -> ImageEmbeddings {
        let out = self.vision(pixels, with_dense);
        let g = self.config.vision_config.grid_size();
        let patch_grid = out.dense.map(|tokens| {
            let [b, _, _] = tokens.dims();
            let projected = self.project(&self.visual_projection, tokens);
            let p = projected.dims()[2];
            projected.reshape([b, g, g, p])
        });
        ImageEmbeddings {
            embeds: self.project(&self.visual_projection, out.pooler_output),
            patch_grid,
        }
    }

    /// Projected text embeddings, not normalised, (B, P).
    pub fn encode_text(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        self.project(&self.text_projection, self.text(ids).pooler_output)
    }

    /// True when the model has FG-CLIP's long-text path (an FG-CLIP v1 checkpoint).
    pub fn has_long_text(&self) -> bool {
        self.text_filip_projection.is_some() && self.text_model.long_positions.is_some()
    }

    /// Long-text embeddings through FG-CLIP's long path and `text_filip_projection`, not
    /// normalised, (B, P); `ids` (B, L ≤ 248). `None` for a model without that path.
    pub fn encode_text_long(&self, ids: Tensor<2, Int>) -> Option<Tensor<2>> {
        let projection = self.text_filip_projection.as_ref()?;
        let pooled = self.text_model.forward_long(ids)?.pooler_output;
        Some(self.project(projection, pooled))
    }

    /// `logits_per_image` of HF: `exp(logit_scale) · normalize(img) · normalize(txt)ᵀ`.
    pub fn logits_per_image(&self, image_embeds: Tensor<2>, text_embeds: Tensor<2>) -> Tensor<2> {
        let scale = self.logit_scale.val().exp().reshape([1, 1]);
        crate::gemm::matmul(normalize(image_embeds), normalize(text_embeds).transpose()) * scale
    }
}
