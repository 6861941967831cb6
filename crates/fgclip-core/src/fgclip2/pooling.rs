//! FG-CLIP 2's multi-head attention pooling head (`Fgclip2MultiheadAttentionPoolingHead`,
//! SigLIP's MAP head): a learned probe attends over the tokens through PyTorch's
//! `nn.MultiheadAttention` (one `in_proj` for q, k, v), then a pre-norm MLP with a residual.
//! The same module as `dense_feature_head` runs every token as its own query
//! (`FG_CLIP2_Model.get_dense_feature`), giving one feature per patch.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Bool, Tensor};

use crate::config::Activation;
use crate::error::WeightError;
use crate::nn::Mlp;
use crate::precision::{Precision, linear_in};
use crate::weights::Weights;

/// The head's weights (`probe`, `attention.*`, `layernorm`, `mlp`).
#[derive(Module, Debug)]
pub struct AttentionPoolingHead {
    /// (1, D); stored (1, 1, D).
    pub probe: Param<Tensor<2>>,
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub layernorm: LayerNorm,
    pub mlp: Mlp,
    #[module(skip)]
    num_heads: usize,
    #[module(skip)]
    precision: Precision,
}

/// `nn.MultiheadAttention`'s packed `in_proj_weight` (3D, D) / `in_proj_bias` (3D) as three
/// linear layers, each parameter named after the packed tensor and its part.
fn split_in_proj(w: &Weights, d: usize) -> Result<[Linear; 3], WeightError> {
    let weight = w.tensor_transposed("in_proj_weight", 3 * d, d)?; // [d, 3d]
    let bias = w.tensor("in_proj_bias", [3 * d])?;
    let part = |i: usize, name: &str| Linear {
        weight: w.param(
            &format!("in_proj_weight.{name}"),
            weight.clone().slice([0..d, i * d..(i + 1) * d]),
        ),
        bias: Some(w.param(
            &format!("in_proj_bias.{name}"),
            bias.clone().narrow(0, i * d, d),
        )),
    };
    Ok([part(0, "q"), part(1, "k"), part(2, "v")])
}

impl AttentionPoolingHead {
    pub fn load(
        w: &Weights,
        d: usize,
        intermediate: usize,
        num_heads: usize,
        act: Activation,
        eps: f64,
    ) -> Result<Self, WeightError> {
        let a = w.pp("attention");
        let [q_proj, k_proj, v_proj] = split_in_proj(&a, d)?;
        Ok(Self {
            probe: w.param("probe", w.tensor::<3>("probe", [1, 1, d])?.reshape([1, d])),
            q_proj,
            k_proj,
            v_proj,
            out_proj: a.linear("out_proj", d, d, true)?,
            layernorm: w.layer_norm("layernorm", d, eps)?,
            mlp: Mlp::load(&w.pp("mlp"), d, intermediate, act)?,
            num_heads,
            precision: Precision::F32,
        })
    }

    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
        self.mlp.set_precision(precision);
    }

    /// `query` (B, Lq, D) attends over `tokens` (B, L, D); `hidden`: (B, L) true for keys
    /// to leave out (the padding patches). Then the residual MLP. Returns (B, Lq, D).
    fn attend(
        &self,
        query: Tensor<3>,
        tokens: Tensor<3>,
        hidden: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let [b, lq, d] = query.dims();
        let l = tokens.dims()[1];
        let h = self.num_heads;
        let p = self.precision;
        let q = linear_in(&self.q_proj, p.enter(query))
            .reshape([b, lq, h, d / h])
            .swap_dims(1, 2);
        let tokens = p.enter(tokens);
        let k = linear_in(&self.k_proj, tokens.clone())
            .reshape([b, l, h, d / h])
            .swap_dims(1, 2);
        let v = linear_in(&self.v_proj, tokens)
            .reshape([b, l, h, d / h])
            .swap_dims(1, 2);
        let mask = hidden.map(|m| m.reshape([b, 1, 1, l]).expand([b, h, lq, l]));
        let out = crate::fused::attention(q, k, v, mask)
            .swap_dims(1, 2)
            .reshape([b, lq, d]);
        let x = p.leave(linear_in(&self.out_proj, out));
        x.clone() + self.mlp.forward(self.layernorm.forward(x))
    }

    /// The pooled embedding of each sequence, (B, D).
    pub fn pool(&self, tokens: Tensor<3>, hidden: Option<Tensor<2, Bool>>) -> Tensor<2> {
        let [b, _, d] = tokens.dims();
        let probe = self.probe.val().reshape([1, 1, d]).expand([b, 1, d]);
        self.attend(probe, tokens, hidden).reshape([b, d])
    }

    /// Every token as its own query (`get_dense_feature`), (B, L, D).
    pub fn dense(&self, tokens: Tensor<3>, hidden: Option<Tensor<2, Bool>>) -> Tensor<3> {
        self.attend(tokens.clone(), tokens, hidden)
    }
}
