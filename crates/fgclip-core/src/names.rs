//! Every parameter with its HF name and the layout change back to PyTorch's, for
//! exporting weights and reporting gradients by HF name.

use burn::module::Param;
use burn::tensor::Tensor;

use crate::model::ClipModel;
use crate::nn::{Encoder, Mlp};

/// How a burn parameter maps to its HF tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HfLayout {
    /// Same shape and order.
    Same,
    /// A linear weight held `[d_in, d_out]`, stored `[d_out, d_in]`.
    Transposed,
    /// The patch conv held `[C·P·P, D]`, stored `[D, C, P, P]`.
    PatchConv { channels: usize, patch: usize },
    /// A scalar held as `[1]`, stored as `[]`.
    Scalar,
    /// Held without the leading 1 of its stored shape (FG-CLIP 2's `probe`, (1, 1, D)).
    Unsqueezed,
}

/// A reference to a parameter of rank 1 or 2.
#[derive(Clone, Copy, Debug)]
pub enum ParamRef<'a> {
    D1(&'a Param<Tensor<1>>),
    D2(&'a Param<Tensor<2>>),
}

#[derive(Clone, Debug)]
pub struct NamedParam<'a> {
    pub name: String,
    pub layout: HfLayout,
    pub param: ParamRef<'a>,
}

/// Converts row-major values of a parameter held as `held_shape` to HF's layout.
pub fn to_hf_layout(
    layout: HfLayout,
    held_shape: &[usize],
    values: &[f32],
) -> (Vec<usize>, Vec<f32>) {
    let transpose = |rows: usize, cols: usize| {
        let mut t = vec![0f32; values.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = values[r * cols + c];
            }
        }
        t
    };
    match (layout, held_shape) {
        (HfLayout::Transposed, &[r, c]) => (vec![c, r], transpose(r, c)),
        (HfLayout::PatchConv { channels, patch }, &[r, d]) => {
            (vec![d, channels, patch, patch], transpose(r, d))
        }
        (HfLayout::Scalar, _) => (vec![], values.to_vec()),
        (HfLayout::Unsqueezed, _) => (
            std::iter::once(1)
                .chain(held_shape.iter().copied())
                .collect(),
            values.to_vec(),
        ),
        _ => (held_shape.to_vec(), values.to_vec()),
    }
}

#[derive(Default)]
pub(crate) struct Collector<'a> {
    pub(crate) out: Vec<NamedParam<'a>>,
}

impl<'a> Collector<'a> {
    pub(crate) fn d1(&mut self, name: String, p: &'a Param<Tensor<1>>) {
        self.out.push(NamedParam {
            name,
            layout: HfLayout::Same,
            param: ParamRef::D1(p),
        });
    }
    pub(crate) fn d2(&mut self, name: String, layout: HfLayout, p: &'a Param<Tensor<2>>) {
        self.out.push(NamedParam {
            name,
            layout,
            param: ParamRef::D2(p),
        });
    }
    pub(crate) fn linear(&mut self, prefix: &str, l: &'a burn::nn::Linear) {
        self.d2(format!("{prefix}.weight"), HfLayout::Transposed, &l.weight);
        if let Some(b) = &l.bias {
            self.d1(format!("{prefix}.bias"), b);
        }
    }
    pub(crate) fn norm(&mut self, prefix: &str, n: &'a burn::nn::LayerNorm) {
        self.d1(format!("{prefix}.weight"), &n.gamma);
        if let Some(b) = &n.beta {
            self.d1(format!("{prefix}.bias"), b);
        }
    }
    pub(crate) fn mlp(&mut self, prefix: &str, m: &'a Mlp) {
        self.linear(&format!("{prefix}.fc1"), &m.fc1);
        self.linear(&format!("{prefix}.fc2"), &m.fc2);
    }
    pub(crate) fn encoder(&mut self, prefix: &str, e: &'a Encoder) {
        for (i, l) in e.layers.iter().enumerate() {
            let p = format!("{prefix}.layers.{i}");
            for (name, lin) in [
                ("q_proj", &l.self_attn.q_proj),
                ("k_proj", &l.self_attn.k_proj),
                ("v_proj", &l.self_attn.v_proj),
                ("out_proj", &l.self_attn.out_proj),
            ] {
                self.linear(&format!("{p}.self_attn.{name}"), lin);
            }
            self.norm(&format!("{p}.layer_norm1"), &l.layer_norm1);
            self.mlp(&format!("{p}.mlp"), &l.mlp);
            self.norm(&format!("{p}.layer_norm2"), &l.layer_norm2);
        }
    }
}

impl ClipModel {
    /// Every parameter under its HF `CLIPModel` name.
    pub fn named_params(&self) -> Vec<NamedParam<'_>> {
        let mut c = Collector { out: Vec::new() };
        let v = &self.vision_model;
        let vc = v.config();
        c.d1(
            "vision_model.embeddings.class_embedding".into(),
            &v.embeddings.class_embedding,
        );
        c.d2(
            "vision_model.embeddings.patch_embedding.weight".into(),
            HfLayout::PatchConv {
                channels: vc.num_channels,
                patch: vc.patch_size,
            },
            &v.embeddings.patch_embedding,
        );
        c.d2(
            "vision_model.embeddings.position_embedding.weight".into(),
            HfLayout::Same,
            &v.embeddings.position_embedding,
        );
        c.norm("vision_model.pre_layrnorm", &v.pre_layrnorm);
        c.encoder("vision_model.encoder", &v.encoder);
        c.norm("vision_model.post_layernorm", &v.post_layernorm);
        let t = &self.text_model;
        c.d2(
            "text_model.embeddings.token_embedding.weight".into(),
            HfLayout::Same,
            &t.token_embedding.weight,
        );
        c.d2(
            "text_model.embeddings.position_embedding.weight".into(),
            HfLayout::Same,
            &t.position_embedding.weight,
        );
        if let Some(long) = &t.long_positions {
            c.d2(
                "text_model.embeddings.position_embedding_ori.weight".into(),
                HfLayout::Same,
                &long.position_embedding_ori.weight,
            );
            c.d2(
                "text_model.embeddings.position_embedding_res.weight".into(),
                HfLayout::Same,
                &long.position_embedding_res.weight,
            );
        }
        c.encoder("text_model.encoder", &t.encoder);
        c.norm("text_model.final_layer_norm", &t.final_layer_norm);
        c.linear("visual_projection", &self.visual_projection);
        c.linear("text_projection", &self.text_projection);
        if let Some(filip) = &self.text_filip_projection {
            c.linear("text_filip_projection", filip);
        }
        c.out.push(NamedParam {
            name: "logit_scale".into(),
            layout: HfLayout::Scalar,
            param: ParamRef::D1(&self.logit_scale),
        });
        c.out
    }
}
