//! FG-CLIP 2's NaFlex vision tower (`Fgclip2VisionTransformer` of FG-CLIP 2's
//! `modeling_fgclip2.py`, SigLIP 2's NaFlex variant).
//!
//! Patches arrive flattened, (B, P, C·16·16), P the call's patch budget; a linear layer
//! embeds them; the learned position grid (g × g) is resized to each image's own patch grid
//! (h × w) as PyTorch's `F.interpolate(mode="bilinear", align_corners=False,
//! antialias=True)` does in float32, and the padding rows take the grid's first position;
//! the encoder hides the padding patches from every query; `post_layernorm`; the attention
//! pooling head (`head`) gives the image embedding.

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Bool, Tensor, TensorData};

use super::config::Fgclip2VisionConfig;
use super::pooling::AttentionPoolingHead;
use crate::error::WeightError;
use crate::nn::Encoder;
use crate::precision::{Precision, linear_in};
use crate::weights::Weights;

/// A batch of images as FG-CLIP 2's image processor lays them out.
#[derive(Clone, Debug)]
pub struct NaflexPixels {
    /// (B, P, C·p·p), zero rows past each image's own patches.
    pub pixel_values: Tensor<3>,
    /// Each image's patch grid (rows, columns); rows · columns ≤ P.
    pub spatial_shapes: Vec<(usize, usize)>,
}

impl NaflexPixels {
    /// When every image has the same grid (a video's frames) and there is padding: the
    /// batch cut to the images' own patches, and how many rows were cut. Running on it
    /// needs no mask and no work on padding, and gives the same outputs for the real
    /// patches (padding is hidden from them either way).
    pub fn without_padding(&self) -> Option<(NaflexPixels, usize)> {
        let [b, p, dim] = self.pixel_values.dims();
        let &(h, w) = self.spatial_shapes.first()?;
        if h * w >= p || self.spatial_shapes.iter().any(|&s| s != (h, w)) {
            return None;
        }
        let inner = NaflexPixels {
            pixel_values: self.pixel_values.clone().slice([0..b, 0..h * w, 0..dim]),
            spatial_shapes: self.spatial_shapes.clone(),
        };
        Some((inner, p - h * w))
    }

    /// (B, P) true for padding patches; None when no image has any.
    pub fn padding(&self) -> Option<Tensor<2, Bool>> {
        let [b, p, _] = self.pixel_values.dims();
        if self.spatial_shapes.iter().all(|&(h, w)| h * w == p) {
            return None;
        }
        let mask: Vec<bool> = self
            .spatial_shapes
            .iter()
            .flat_map(|&(h, w)| (0..p).map(move |i| i >= h * w))
            .collect();
        Some(Tensor::from_data(
            TensorData::new(mask, [b, p]),
            &self.pixel_values.device(),
        ))
    }
}

/// PyTorch's antialiased bilinear weights (`_compute_weights_aa`, float32) for resizing an
/// axis of `input` samples to `output`: an (output, input) matrix.
pub fn antialiased_bilinear_matrix(input: usize, output: usize) -> Vec<f32> {
    let scale = input as f32 / output as f32;
    let support = if scale >= 1.0 { scale } else { 1.0 };
    let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    let mut m = vec![0f32; output * input];
    for i in 0..output {
        let center = scale * (i as f32 + 0.5);
        // C++'s int64 cast truncates toward zero.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(input as i64).max(0) as usize;
        let row = &mut m[i * input..(i + 1) * input];
        let mut total = 0f32;
        for (j, v) in row.iter_mut().enumerate().take(xmax).skip(xmin) {
            let x = ((j as f32) - center + 0.5) * invscale;
            *v = (1.0 - x.abs()).max(0.0);
            total += *v;
        }
        if total != 0.0 {
            for v in &mut row[xmin..xmax] {
                *v /= total;
            }
        }
    }
    m
}

/// Patch and position embeddings (`embeddings.*`).
#[derive(Module, Debug)]
pub struct NaflexEmbeddings {
    pub patch_embedding: Linear,
    /// (g², D): the position grid, row-major.
    pub position_embedding: burn::module::Param<Tensor<2>>,
    #[module(skip)]
    grid: usize,
    #[module(skip)]
    precision: Precision,
}

impl NaflexEmbeddings {
    fn load(w: &Weights, c: &Fgclip2VisionConfig) -> Result<Self, WeightError> {
        let d = c.hidden_size;
        Ok(Self {
            patch_embedding: w.linear("patch_embedding", c.patch_dim(), d, true)?,
            position_embedding: w.param(
                "position_embedding.weight",
                w.tensor("position_embedding.weight", [c.num_patches, d])?,
            ),
            grid: c.position_grid(),
            precision: Precision::F32,
        })
    }

    /// The position grid resized to (h, w), padded to `p` rows with its first row, (p, D).
    pub fn positions(&self, (h, w): (usize, usize), p: usize) -> Tensor<2> {
        let g = self.grid;
        let table = self.position_embedding.val();
        let d = table.dims()[1];
        let device = table.device();
        let mat = |n: usize| {
            Tensor::<2>::from_data(
                TensorData::new(antialiased_bilinear_matrix(g, n), [n, g]),
                &device,
            )
        };
        // Columns first, then rows (separable; PyTorch's order up to float rounding).
        let grid = table.reshape([g, g, d]);
        let cols = crate::gemm::matmul(mat(w).unsqueeze::<3>().expand([g, w, g]), grid); // (g, w, D)
        let resized = crate::gemm::matmul(mat(h), cols.reshape([g, w * d])).reshape([h * w, d]);
        if h * w >= p {
            return resized;
        }
        let first = resized.clone().slice([0..1, 0..d]).expand([p - h * w, d]);
        Tensor::cat(vec![resized, first], 0)
    }

    pub fn forward(&self, x: &NaflexPixels) -> Tensor<3> {
        let [_, p, _] = x.pixel_values.dims();
        let patches = self.precision.leave(linear_in(
            &self.patch_embedding,
            self.precision.enter(x.pixel_values.clone()),
        ));
        let positions: Vec<Tensor<3>> = x
            .spatial_shapes
            .iter()
            .map(|&shape| self.positions(shape, p).unsqueeze::<3>())
            .collect();
        patches + Tensor::cat(positions, 0)
    }
}

/// What one vision forward produces.
pub struct NaflexOutput {
    /// After `post_layernorm`, (B, P, D).
    pub last_hidden_state: Tensor<3>,
    /// The attention-pooled embedding, (B, D) (not normalised).
    pub pooler_output: Tensor<2>,
}

/// The image tower (`vision_model.*`).
#[derive(Module, Debug)]
pub struct NaflexVisionTransformer {
    pub embeddings: NaflexEmbeddings,
    pub encoder: Encoder,
    pub post_layernorm: LayerNorm,
    pub head: AttentionPoolingHead,
    #[module(skip)]
    config: Fgclip2VisionConfig,
}

impl NaflexVisionTransformer {
    pub fn load(w: &Weights, c: &Fgclip2VisionConfig) -> Result<Self, WeightError> {
        let d = c.hidden_size;
        Ok(Self {
            embeddings: NaflexEmbeddings::load(&w.pp("embeddings"), c)?,
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
            head: AttentionPoolingHead::load(
                &w.pp("head"),
                d,
                c.intermediate_size,
                c.num_attention_heads,
                c.hidden_act,
                c.layer_norm_eps,
            )?,
            config: c.clone(),
        })
    }

    pub fn config(&self) -> &Fgclip2VisionConfig {
        &self.config
    }

    pub fn set_precision(&mut self, precision: Precision) {
        self.embeddings.precision = precision;
        self.encoder.set_precision(precision);
        self.head.set_precision(precision);
    }

    /// Padding rows of `last_hidden_state` are zero when every image has the same grid
    /// (see [`NaflexPixels::without_padding`]), the encoder's output for them otherwise;
    /// no real patch depends on them.
    pub fn forward(&self, x: &NaflexPixels) -> NaflexOutput {
        if let Some((inner, cut)) = x.without_padding() {
            let out = self.forward(&inner);
            return NaflexOutput {
                last_hidden_state: pad_rows(out.last_hidden_state, cut),
                pooler_output: out.pooler_output,
            };
        }
        let padding = x.padding();
        let tokens = self.embeddings.forward(x);
        let [b, p, _] = tokens.dims();
        let h = self.config.num_attention_heads;
        let mask = padding
            .clone()
            .map(|m| m.reshape([b, 1, 1, p]).expand([b, h, p, p]));
        let hidden = self.encoder.forward(tokens, mask);
        let last_hidden_state = self.post_layernorm.forward(hidden);
        NaflexOutput {
            pooler_output: self.head.pool(last_hidden_state.clone(), padding),
            last_hidden_state,
        }
    }
}

/// `x` (B, L, D) with `n` zero rows appended.
pub fn pad_rows(x: Tensor<3>, n: usize) -> Tensor<3> {
    if n == 0 {
        return x;
    }
    let [b, _, d] = x.dims();
    let zeros = Tensor::<3>::zeros([b, n, d], &x.device());
    Tensor::cat(vec![x, zeros], 1)
}
