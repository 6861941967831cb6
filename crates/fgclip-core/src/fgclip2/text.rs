//! FG-CLIP 2's text tower (`Fgclip2TextTransformer` of FG-CLIP 2's `modeling_fgclip2.py`).
//!
//! Token + position embeddings, a bidirectional encoder (no causal mask; FG-CLIP 2 passes no
//! attention mask either, so padding is attended as its code does), `final_layer_norm`, and
//! the row at the **last** position, which may be padding. Three walks: `short` (the
//! 64-entry `position_embedding`, then `head`), `box` (the same positions, no head here:
//! the model applies `boxtext_head`) and `long` (196 positions, the first `keep_len` from
//! `position_embedding_ori` and the rest from `position_embedding_res`; the model applies
//! `longtext_head`).

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Int, Tensor};

use super::config::Fgclip2TextConfig;
use crate::error::WeightError;
use crate::nn::Encoder;
use crate::precision::{Precision, linear_in};
use crate::text::LongPositions;
use crate::weights::Weights;

/// How a text is read (`walk_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Walk {
    /// Captions and prompts: up to 64 positions, `text_model.head`.
    Short,
    /// Long captions: up to 196 positions, `longtext_head`.
    Long,
    /// Region captions: the short positions, `boxtext_head`.
    Box,
}

impl Walk {
    pub fn name(self) -> &'static str {
        match self {
            Walk::Short => "short",
            Walk::Long => "long",
            Walk::Box => "box",
        }
    }
}

/// The text tower (`text_model.*`).
#[derive(Module, Debug)]
pub struct Fgclip2TextTransformer {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
    pub long_positions: LongPositions,
    pub encoder: Encoder,
    pub final_layer_norm: LayerNorm,
    pub head: Linear,
    #[module(skip)]
    config: Fgclip2TextConfig,
}

impl Fgclip2TextTransformer {
    pub fn load(w: &Weights, c: &Fgclip2TextConfig) -> Result<Self, WeightError> {
        let d = c.hidden_size;
        let e = w.pp("embeddings");
        Ok(Self {
            token_embedding: e.embedding("token_embedding", c.vocab_size, d)?,
            position_embedding: e.embedding("position_embedding", c.max_position_embeddings, d)?,
            long_positions: LongPositions {
                position_embedding_ori: e.embedding("position_embedding_ori", c.longtext_len, d)?,
                position_embedding_res: e.embedding("position_embedding_res", c.longtext_len, d)?,
            },
            encoder: Encoder::load(
                &w.pp("encoder"),
                c.num_hidden_layers,
                d,
                c.intermediate_size,
                c.num_attention_heads,
                c.hidden_act,
                c.layer_norm_eps,
            )?,
            final_layer_norm: w.layer_norm("final_layer_norm", d, c.layer_norm_eps)?,
            head: w.linear("head", d, c.projection(), true)?,
            config: c.clone(),
        })
    }

    pub fn config(&self) -> &Fgclip2TextConfig {
        &self.config
    }

    pub fn set_precision(&mut self, precision: Precision) {
        self.encoder.set_precision(precision);
    }

    /// Positions a walk reads at most.
    pub fn max_length(&self, walk: Walk) -> usize {
        match walk {
            Walk::Short | Walk::Box => self.config.max_position_embeddings,
            Walk::Long => self.config.longtext_len,
        }
    }

    /// `ids` (B, L), L ≤ [`Self::max_length`] of the walk: the last position's row after
    /// `final_layer_norm`, through `head` for the short walk (the box and long walks' heads
    /// belong to the model), (B, D).
    pub fn forward(&self, ids: Tensor<2, Int>, walk: Walk) -> Tensor<2> {
        let [b, l] = ids.dims();
        let table = match walk {
            Walk::Short | Walk::Box => {
                let positions = Tensor::<1, Int>::arange(0..l as i64, &ids.device());
                self.position_embedding.forward(positions.reshape([1, l]))
            }
            Walk::Long => self.long_positions.table_keeping(l, self.config.keep_len),
        };
        let x = self.token_embedding.forward(ids) + table;
        let hidden = self.final_layer_norm.forward(self.encoder.forward(x, None));
        let d = hidden.dims()[2];
        let last = hidden.slice([0..b, l - 1..l, 0..d]).reshape([b, d]);
        match walk {
            Walk::Short => linear_in(&self.head, last),
            Walk::Long | Walk::Box => last,
        }
    }
}
