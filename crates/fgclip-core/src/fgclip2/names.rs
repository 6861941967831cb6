//! Every FG-CLIP 2 parameter under its HF name (`Fgclip2Model` / `FG_CLIP2_Model`'s
//! `state_dict`), for the optimizer's groups, checkpoints and exports. The pooling heads'
//! packed `attention.in_proj_weight` / `in_proj_bias` are held as three parts named
//! `….q`, `….k`, `….v`; [`pack_in_proj`] joins them back for a file.

use std::collections::BTreeMap;

use super::Fgclip2Model;
use super::pooling::AttentionPoolingHead;
use super::video::{Fgclip2Video, HARD_NEGATIVE_SCALE_NAME, REGION_SCALE_NAME};
use crate::names::{Collector, HfLayout, NamedParam, ParamRef};

/// The suffixes of the three parts of a packed `in_proj` tensor, in its row order.
pub const IN_PROJ_PARTS: [&str; 3] = ["q", "k", "v"];

impl<'a> Collector<'a> {
    fn pooling_head(&mut self, prefix: &str, h: &'a AttentionPoolingHead) {
        self.d2(format!("{prefix}.probe"), HfLayout::Unsqueezed, &h.probe);
        for (part, l) in IN_PROJ_PARTS.iter().zip([&h.q_proj, &h.k_proj, &h.v_proj]) {
            self.d2(
                format!("{prefix}.attention.in_proj_weight.{part}"),
                HfLayout::Transposed,
                &l.weight,
            );
            if let Some(b) = &l.bias {
                self.d1(format!("{prefix}.attention.in_proj_bias.{part}"), b);
            }
        }
        self.linear(&format!("{prefix}.attention.out_proj"), &h.out_proj);
        self.norm(&format!("{prefix}.layernorm"), &h.layernorm);
        self.mlp(&format!("{prefix}.mlp"), &h.mlp);
    }
}

impl Fgclip2Model {
    /// Every parameter under its HF name.
    pub fn named_params(&self) -> Vec<NamedParam<'_>> {
        let mut c = Collector::default();
        let v = &self.vision_model;
        c.linear(
            "vision_model.embeddings.patch_embedding",
            &v.embeddings.patch_embedding,
        );
        c.d2(
            "vision_model.embeddings.position_embedding.weight".into(),
            HfLayout::Same,
            &v.embeddings.position_embedding,
        );
        c.encoder("vision_model.encoder", &v.encoder);
        c.norm("vision_model.post_layernorm", &v.post_layernorm);
        c.pooling_head("vision_model.head", &v.head);
        let t = &self.text_model;
        for (name, e) in [
            ("token_embedding", &t.token_embedding),
            ("position_embedding", &t.position_embedding),
            (
                "position_embedding_ori",
                &t.long_positions.position_embedding_ori,
            ),
            (
                "position_embedding_res",
                &t.long_positions.position_embedding_res,
            ),
        ] {
            c.d2(
                format!("text_model.embeddings.{name}.weight"),
                HfLayout::Same,
                &e.weight,
            );
        }
        c.encoder("text_model.encoder", &t.encoder);
        c.norm("text_model.final_layer_norm", &t.final_layer_norm);
        c.linear("text_model.head", &t.head);
        c.pooling_head("dense_feature_head", &self.dense_feature_head);
        c.linear("longtext_head", &self.longtext_head);
        c.linear("boxtext_head", &self.boxtext_head);
        // Shape (1,) in FG-CLIP 2's checkpoints.
        c.d1("logit_scale".into(), &self.logit_scale);
        c.d1("logit_bias".into(), &self.logit_bias);
        c.out
    }
}

impl Fgclip2Video {
    /// The model's parameters, then the two scales FG-CLIP 2's training script adds (shape
    /// `[]`) and the temporal transformer's.
    pub fn named_params(&self) -> Vec<NamedParam<'_>> {
        let mut out = self.model.named_params();
        for (name, p) in [
            (REGION_SCALE_NAME, &self.logit_scale_finegraind),
            (HARD_NEGATIVE_SCALE_NAME, &self.logit_scale_hardneg),
        ] {
            out.push(NamedParam {
                name: name.into(),
                layout: HfLayout::Scalar,
                param: ParamRef::D1(p),
            });
        }
        if let Some(f) = &self.fusion {
            out.extend(f.named_params());
        }
        out
    }
}

/// Joins the `….q`, `….k`, `….v` parts of each packed `in_proj` tensor (HF layout, each
/// (D, D) or (D)) into the packed (3D, D) or (3D) tensor, in place; `(shape, values)`.
pub fn pack_in_proj(arrays: &mut BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    let packed: Vec<String> = arrays
        .keys()
        .filter_map(|k| k.strip_suffix(".q").map(str::to_string))
        .filter(|base| base.ends_with("in_proj_weight") || base.ends_with("in_proj_bias"))
        .collect();
    for base in packed {
        let parts: Vec<_> = IN_PROJ_PARTS
            .iter()
            .filter_map(|p| arrays.remove(&format!("{base}.{p}")))
            .collect();
        let Some((first, _)) = parts.first() else {
            continue;
        };
        let mut shape = first.clone();
        if let Some(rows) = shape.first_mut() {
            *rows *= parts.len();
        }
        let values = parts.into_iter().flat_map(|(_, v)| v).collect();
        arrays.insert(base, (shape, values));
    }
}
