//! CLIP text tower (HF `CLIPTextTransformer`).
//!
//! Token + position embeddings, a causal encoder with a key-padding mask,
//! `final_layer_norm`, and pooling at the first `<|endoftext|>` (or, when the config's
//! `eos_token_id` is 2 as in old OpenAI configs, at the highest id: transformers' legacy
//! argmax rule, which finds the same token for CLIP vocabularies).
//!
//! FG-CLIP v1 checkpoints add a long-text path (FG-CLIP `modeling_clip.CLIPTextEmbeddings`
//! with `walk_short_pos=False`): up to 248 positions, the first 20 from
//! `position_embedding_ori` and the rest from `position_embedding_res`.

use burn::module::Module;
use burn::nn::{Embedding, LayerNorm};
use burn::tensor::{Bool, Int, Tensor};

use crate::config::ClipTextConfig;
use crate::error::WeightError;
use crate::nn::Encoder;
use crate::precision::Precision;
use crate::weights::Weights;

/// What one text forward produces.
pub struct TextOutput {
    /// After `final_layer_norm`, (B, L, D).
    pub last_hidden_state: Tensor<3>,
    /// The row of `last_hidden_state` at the pooling token, (B, D).
    pub pooler_output: Tensor<2>,
}

/// Positions of FG-CLIP's long-text path (its captions are padded to this length).
pub const LONG_CONTEXT: usize = 248;
/// Long-path positions below this come from `position_embedding_ori`, the rest from
/// `position_embedding_res` (FG-CLIP's `mask1` / `mask2`).
pub const LONG_KEEP: usize = 20;

/// FG-CLIP v1's two 248-entry position tables.
#[derive(Module, Debug)]
pub struct LongPositions {
    pub position_embedding_ori: Embedding,
    pub position_embedding_res: Embedding,
}

impl LongPositions {
    /// The position rows of the first `l` long-path positions, (1, l, D).
    fn table(&self, l: usize) -> Tensor<3> {
        self.table_keeping(l, LONG_KEEP)
    }

    /// The first `l` long-path positions, the first `keep` of them from
    /// `position_embedding_ori` (FG-CLIP 2's `keep_len` is a setting), (1, l, D).
    pub fn table_keeping(&self, l: usize, keep: usize) -> Tensor<3> {
        let ori = self.position_embedding_ori.weight.val();
        let d = ori.dims()[1];
        let keep = keep.min(l);
        let mut parts = vec![ori.slice([0..keep, 0..d])];
        if l > keep {
            parts.push(
                self.position_embedding_res
                    .weight
                    .val()
                    .slice([keep..l, 0..d]),
            );
        }
        Tensor::cat(parts, 0).reshape([1, l, d])
    }
}

/// The text tower (`text_model.*`).
#[derive(Module, Debug)]
pub struct TextTransformer {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
    /// FG-CLIP v1's long-text tables; `None` for CLIP.
    pub long_positions: Option<LongPositions>,
    pub encoder: Encoder,
    pub final_layer_norm: LayerNorm,
    #[module(skip)]
    config: ClipTextConfig,
}

impl TextTransformer {
    /// `long`: load FG-CLIP v1's long-text tables (`position_embedding_ori` / `_res`).
    pub fn load(w: &Weights, c: &ClipTextConfig, long: bool) -> Result<Self, WeightError> {
        let d = c.hidden_size;
        let e = w.pp("embeddings");
        let long_positions = if long {
            Some(LongPositions {
                position_embedding_ori: e.embedding("position_embedding_ori", LONG_CONTEXT, d)?,
                position_embedding_res: e.embedding("position_embedding_res", LONG_CONTEXT, d)?,
            })
        } else {
            None
        };
        Ok(Self {
            token_embedding: e.embedding("token_embedding", c.vocab_size, d)?,
            position_embedding: e.embedding("position_embedding", c.max_position_embeddings, d)?,
            long_positions,
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
            config: c.clone(),
        })
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// Where the linear layers and attention compute (see [`Precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        self.encoder.set_precision(precision);
    }

    /// Position of the pooling token in each row, (B).
    pub fn pool_positions(&self, ids: Tensor<2, Int>) -> Tensor<1, Int> {
        let [b, l] = ids.dims();
        let device = ids.device();
        // Descending position weights make every argmax unique and pick the first hit,
        // as torch's argmax does on ties.
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device);
        // Backends may hold ids as i64 and indices as i32: work in the index dtype.
        let dtype = positions.dtype();
        let ids = ids.cast(dtype);
        let first_wins = positions
            .neg()
            .add_scalar(l as i64 - 1)
            .reshape([1, l])
            .expand([b, l]);
        let score = if self.config.eos_token_id == 2 {
            ids.mul_scalar(l as i64) + first_wins
        } else {
            ids.equal_elem(self.config.eos_token_id)
                .int()
                .cast(dtype)
                .mul_scalar(l as i64)
                + first_wins
        };
        score.argmax(1).reshape([b]).cast(dtype)
    }

    /// `ids`: (B, L) with L ≤ max_position_embeddings, padded after `<|endoftext|>`.
    ///
    /// Keys after the pooling token are masked as padding. For ids padded with 0 this is
    /// DESIGN.md's `ids ≠ 0` mask; unlike it, a real `!` (id 0) inside a caption stays
    /// visible, as in open_clip and HF's own tokenizer output.
    pub fn forward(&self, ids: Tensor<2, Int>) -> TextOutput {
        let l = ids.dims()[1];
        let positions = Tensor::<1, Int>::arange(0..l as i64, &ids.device());
        let table = self.position_embedding.forward(positions.reshape([1, l]));
        self.forward_with_positions(ids, table)
    }

    /// FG-CLIP's long path for `ids` (B, L), L ≤ [`LONG_CONTEXT`] (FG-CLIP pads to 248);
    /// `None` when the tower has no long tables (plain CLIP).
    pub fn forward_long(&self, ids: Tensor<2, Int>) -> Option<TextOutput> {
        let table = self.long_positions.as_ref()?.table(ids.dims()[1]);
        Some(self.forward_with_positions(ids, table))
    }

    fn forward_with_positions(&self, ids: Tensor<2, Int>, table: Tensor<3>) -> TextOutput {
        let [b, l] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device);
        let ids = ids.cast(positions.dtype());
        let pool = self.pool_positions(ids.clone());
        let x = self.token_embedding.forward(ids) + table;
        let heads = self.config.num_attention_heads;
        let mask = attention_mask(pool.clone(), l, heads);
        let hidden = self
            .final_layer_norm
            .forward(self.encoder.forward(x, Some(mask)));
        let d = hidden.dims()[2];
        let flat_index = pool + Tensor::<1, Int>::arange(0..b as i64, &device).mul_scalar(l as i64);
        let pooler_output = hidden.clone().reshape([b * l, d]).select(0, flat_index);
        TextOutput {
            last_hidden_state: hidden,
            pooler_output,
        }
    }
}

/// (B, heads, L, L), true where key j is hidden from query i: j > i (causal) or j past
/// the row's pooling token (padding).
fn attention_mask(pool: Tensor<1, Int>, l: usize, heads: usize) -> Tensor<4, Bool> {
    let [b] = pool.dims();
    let device = pool.device();
    let pos = Tensor::<1, Int>::arange(0..l as i64, &device);
    // Comparisons do not broadcast: both sides are expanded.
    let causal = pos
        .clone()
        .reshape([1, l])
        .expand([l, l])
        .greater(pos.clone().reshape([l, 1]).expand([l, l]))
        .reshape([1, l, l])
        .expand([b, l, l]);
    let padding = pos
        .reshape([1, l])
        .expand([b, l])
        .greater(pool.reshape([b, 1]).expand([b, l]))
        .reshape([b, 1, l])
        .expand([b, l, l]);
    causal
        .bool_or(padding)
        .reshape([b, 1, l, l])
        .expand([b, heads, l, l])
}
