//! The transformer encoder shared by both CLIP towers (HF `CLIPEncoder`, `CLIPEncoderLayer`,
//! `CLIPAttention`, `CLIPMLP`), plus the value-only attention of FG-CLIP's dense path.

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::gelu;
use burn::tensor::{Bool, Tensor};

use crate::config::Activation;
use crate::error::WeightError;
use crate::precision::{Precision, linear_in};
use crate::weights::Weights;

/// Applies a hidden activation.
pub fn activate<const D: usize>(x: Tensor<D>, act: Activation) -> Tensor<D> {
    match act {
        Activation::QuickGelu => crate::fused::quick_gelu(x),
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => crate::fused::gelu_tanh(x),
    }
}

/// Multi-head self-attention with separate q/k/v projections (HF `CLIPAttention`).
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    #[module(skip)]
    num_heads: usize,
    #[module(skip)]
    precision: Precision,
}

impl Attention {
    pub fn load(w: &Weights, hidden: usize, num_heads: usize) -> Result<Self, WeightError> {
        Ok(Self {
            q_proj: w.linear("q_proj", hidden, hidden, true)?,
            k_proj: w.linear("k_proj", hidden, hidden, true)?,
            v_proj: w.linear("v_proj", hidden, hidden, true)?,
            out_proj: w.linear("out_proj", hidden, hidden, true)?,
            num_heads,
            precision: Precision::F32,
        })
    }

    /// `x`: (B, L, D). `mask`: (B, heads, L, L), true where a key is hidden from a query.
    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4, Bool>>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let h = self.num_heads;
        let split = |t: Tensor<3>| t.reshape([b, l, h, d / h]).swap_dims(1, 2);
        let x = self.precision.enter(x);
        let q = split(linear_in(&self.q_proj, x.clone()));
        let k = split(linear_in(&self.k_proj, x.clone()));
        let v = split(linear_in(&self.v_proj, x));
        // Scale 1/sqrt(head_dim), as CLIPAttention.
        let out = crate::fused::attention(q, k, v, mask)
            .swap_dims(1, 2)
            .reshape([b, l, d]);
        self.precision.leave(linear_in(&self.out_proj, out))
    }

    /// FG-CLIP's dense-path attention: every token attends only to itself, which
    /// reduces to `out_proj(v_proj(x))`.
    pub fn forward_value_only(&self, x: Tensor<3>) -> Tensor<3> {
        let v = linear_in(&self.v_proj, self.precision.enter(x));
        self.precision.leave(linear_in(&self.out_proj, v))
    }
}

/// `fc2(act(fc1(x)))` (HF `CLIPMLP`).
#[derive(Module, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    #[module(skip)]
    act: Activation,
    #[module(skip)]
    precision: Precision,
}

impl Mlp {
    pub fn load(
        w: &Weights,
        hidden: usize,
        intermediate: usize,
        act: Activation,
    ) -> Result<Self, WeightError> {
        Ok(Self {
            fc1: w.linear("fc1", hidden, intermediate, true)?,
            fc2: w.linear("fc2", intermediate, hidden, true)?,
            act,
            precision: Precision::F32,
        })
    }

    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = activate(linear_in(&self.fc1, self.precision.enter(x)), self.act);
        self.precision.leave(linear_in(&self.fc2, h))
    }
}

/// Pre-norm residual block (HF `CLIPEncoderLayer`).
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub self_attn: Attention,
    pub layer_norm1: LayerNorm,
    pub mlp: Mlp,
    pub layer_norm2: LayerNorm,
    /// The norms' ε (burn's `LayerNorm` keeps its own private), for the fused norm.
    #[module(skip)]
    eps: f64,
}

impl EncoderLayer {
    pub fn load(
        w: &Weights,
        hidden: usize,
        intermediate: usize,
        num_heads: usize,
        act: Activation,
        eps: f64,
    ) -> Result<Self, WeightError> {
        Ok(Self {
            self_attn: Attention::load(&w.pp("self_attn"), hidden, num_heads)?,
            layer_norm1: w.layer_norm("layer_norm1", hidden, eps)?,
            mlp: Mlp::load(&w.pp("mlp"), hidden, intermediate, act)?,
            layer_norm2: w.layer_norm("layer_norm2", hidden, eps)?,
            eps,
        })
    }

    fn norm1(&self, x: Tensor<3>) -> Tensor<3> {
        crate::fused::layer_norm(&self.layer_norm1, x, self.eps)
    }

    fn norm2(&self, x: Tensor<3>) -> Tensor<3> {
        crate::fused::layer_norm(&self.layer_norm2, x, self.eps)
    }

    pub fn forward(&self, x: Tensor<3>, mask: Option<Tensor<4, Bool>>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward(self.norm1(x), mask);
        x.clone() + self.mlp.forward(self.norm2(x))
    }

    pub fn set_precision(&mut self, precision: Precision) {
        self.self_attn.precision = precision;
        self.mlp.precision = precision;
    }

    /// The block with its attention replaced by value-only attention (residuals and MLP
    /// kept), as FG-CLIP's dense feature path.
    pub fn forward_value_only(&self, x: Tensor<3>) -> Tensor<3> {
        let x = x.clone() + self.self_attn.forward_value_only(self.norm1(x));
        x.clone() + self.mlp.forward(self.norm2(x))
    }
}

/// A stack of [`EncoderLayer`]s under `encoder.layers.{i}`.
#[derive(Module, Debug)]
pub struct Encoder {
    pub layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn load(
        w: &Weights,
        num_layers: usize,
        hidden: usize,
        intermediate: usize,
        num_heads: usize,
        act: Activation,
        eps: f64,
    ) -> Result<Self, WeightError> {
        let layers = (0..num_layers)
            .map(|i| {
                EncoderLayer::load(
                    &w.pp(format!("layers.{i}")),
                    hidden,
                    intermediate,
                    num_heads,
                    act,
                    eps,
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { layers })
    }

    pub fn set_precision(&mut self, precision: Precision) {
        for layer in &mut self.layers {
            layer.set_precision(precision);
        }
    }

    pub fn forward(&self, mut x: Tensor<3>, mask: Option<Tensor<4, Bool>>) -> Tensor<3> {
        for layer in &self.layers {
            x = layer.forward(x, mask.clone());
        }
        x
    }

    /// Runs all layers but the last and returns that last layer's input
    /// (`hidden_states[-2]` in HF terms). An encoder has at least one layer
    /// (checked by [`crate::ClipConfig::validate`]).
    pub fn forward_to_last_input(
        &self,
        mut x: Tensor<3>,
        mask: Option<Tensor<4, Bool>>,
    ) -> Tensor<3> {
        let n = self.layers.len().saturating_sub(1);
        for layer in &self.layers[..n] {
            x = layer.forward(x, mask.clone());
        }
        x
    }

    pub fn last(&self) -> Option<&EncoderLayer> {
        self.layers.last()
    }
}
