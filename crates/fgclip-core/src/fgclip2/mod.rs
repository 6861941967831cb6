//! FG-CLIP 2 (Xie et al., 2025; 360CVGroup/FG-CLIP, main branch, `fgclip2/`): the bilingual
//! successor of FG-CLIP on SigLIP 2's towers. `Fgclip2Model` of FG-CLIP 2's
//! `modeling_fgclip2.py` and the feature paths of its `fgclip2.py` (`FG_CLIP2_Model`):
//! the NaFlex image tower and its attention-pooled embedding, the dense features of
//! `dense_feature_head`, ROI features on each image's own patch grid, the text tower's three
//! walks with `head` / `longtext_head` / `boxtext_head`, and the sigmoid logits'
//! `logit_scale` and `logit_bias`.

pub mod config;
pub mod init;
pub mod loss;
pub mod names;
pub mod pooling;
pub mod text;
pub mod video;
pub mod vision;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Int, Tensor, TensorData};

pub use config::{Fgclip2Config, Fgclip2TextConfig, Fgclip2VisionConfig, MODEL_TYPE};
pub use init::Fgclip2RandomInit;
pub use text::{Fgclip2TextTransformer, Walk};
pub use video::{Fgclip2LossTerms, Fgclip2LossWeights, Fgclip2Video, Fgclip2VideoBatch};
pub use vision::{NaflexPixels, NaflexVisionTransformer};

use crate::error::WeightError;
use crate::precision::{Precision, linear_in};
use crate::roi::{RoiAlignConfig, roi_weights};
use crate::weights::Weights;
use pooling::AttentionPoolingHead;

/// The whole model, under HF names.
#[derive(Module, Debug)]
pub struct Fgclip2Model {
    pub vision_model: NaflexVisionTransformer,
    pub text_model: Fgclip2TextTransformer,
    pub dense_feature_head: AttentionPoolingHead,
    pub longtext_head: Linear,
    pub boxtext_head: Linear,
    pub logit_scale: Param<Tensor<1>>,
    pub logit_bias: Param<Tensor<1>>,
    #[module(skip)]
    config: Fgclip2Config,
}

impl Fgclip2Model {
    pub fn load(w: &Weights, config: &Fgclip2Config) -> Result<Self, WeightError> {
        config.validate()?;
        let v = &config.vision_config;
        let d = config.text_config.hidden_size;
        let scalar = |name: &str| -> Result<Param<Tensor<1>>, WeightError> {
            Ok(w.param(name, w.tensor(name, [1])?))
        };
        Ok(Self {
            vision_model: NaflexVisionTransformer::load(&w.pp("vision_model"), v)?,
            text_model: Fgclip2TextTransformer::load(&w.pp("text_model"), &config.text_config)?,
            dense_feature_head: AttentionPoolingHead::load(
                &w.pp("dense_feature_head"),
                v.hidden_size,
                v.intermediate_size,
                v.num_attention_heads,
                v.hidden_act,
                v.layer_norm_eps,
            )?,
            longtext_head: w.linear("longtext_head", d, d, true)?,
            boxtext_head: w.linear("boxtext_head", d, d, true)?,
            logit_scale: scalar("logit_scale")?,
            logit_bias: scalar("logit_bias")?,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &Fgclip2Config {
        &self.config
    }

    pub fn set_precision(&mut self, precision: Precision) {
        self.vision_model.set_precision(precision);
        self.text_model.set_precision(precision);
        self.dense_feature_head.set_precision(precision);
    }

    /// The image embeddings (`get_image_features`), (B, D), not normalised.
    pub fn image_features(&self, x: &NaflexPixels) -> Tensor<2> {
        self.vision_model.forward(x).pooler_output
    }

    /// The image embeddings and the dense features of every patch row
    /// (`get_image_features(need_densefeature=True)`): (B, D) and (B, P, D); an image's own
    /// patches are its first rows · columns rows, row-major.
    /// Padding rows of the dense features carry no meaning (zero when every image has the
    /// same grid).
    pub fn image_and_dense_features(&self, x: &NaflexPixels) -> (Tensor<2>, Tensor<3>) {
        if let Some((inner, cut)) = x.without_padding() {
            let (pooled, dense) = self.image_and_dense_features(&inner);
            return (pooled, vision::pad_rows(dense, cut));
        }
        let out = self.vision_model.forward(x);
        let dense = self
            .dense_feature_head
            .dense(out.last_hidden_state, x.padding());
        (out.pooler_output, dense)
    }

    /// The text embeddings of a walk (`get_text_features(walk_type=…)`), (B, D), not
    /// normalised.
    pub fn text_features(&self, ids: Tensor<2, Int>, walk: Walk) -> Tensor<2> {
        let pooled = self.text_model.forward(ids, walk);
        match walk {
            Walk::Short => pooled,
            Walk::Box => linear_in(&self.boxtext_head, pooled),
            Walk::Long => linear_in(&self.longtext_head, pooled),
        }
    }
}

/// ROI Align 1×1 (FG-CLIP's setting) of boxes on each image's own patch grid
/// (`get_image_box_roi_features` before its normalisation): `dense` (B, P, D) with image b's
/// grid in its first h·w rows; `boxes[r]` normalised `[x1, y1, x2, y2]` on image
/// `image[r]`, scaled by its grid (w, h) in float32 as FG-CLIP 2's `_denormalize_boxes`.
/// Returns (R, D).
pub fn roi_features(
    dense: Tensor<3>,
    spatial_shapes: &[(usize, usize)],
    boxes: &[[f32; 4]],
    image: &[usize],
) -> Tensor<2> {
    let [b, p, d] = dense.dims();
    let cfg = RoiAlignConfig::fgclip();
    let mut weights = vec![0f32; boxes.len() * b * p];
    for (r, (bx, &i)) in boxes.iter().zip(image).enumerate() {
        let Some(&(h, w)) = spatial_shapes.get(i) else {
            continue;
        };
        let (wf, hf) = (w as f32, h as f32);
        let grid_box = [bx[0] * wf, bx[1] * hf, bx[2] * wf, bx[3] * hf];
        let local = roi_weights(grid_box, h, w, &cfg);
        let dst = (r * b + i) * p;
        weights[dst..dst + h * w].copy_from_slice(&local[..h * w]);
    }
    let weights = Tensor::<2>::from_data(
        TensorData::new(weights, [boxes.len(), b * p]),
        &dense.device(),
    );
    crate::gemm::matmul(weights, dense.reshape([b * p, d]))
}
