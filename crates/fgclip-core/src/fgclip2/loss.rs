//! FG-CLIP 2's loss terms (360CVGroup/FG-CLIP, main branch, `fgclip2/model/strcs/fgclip2.py`:
//! `_loss`, `hard_category_contrastive_loss` with `PNTextLoss`, `hard_contrastive_total_loss`
//! with `hard_contrastive_loss` and `get_cmr_loss`), on normalised embeddings. The pairwise
//! region term is CLIP's ([`crate::loss::contrastive_loss`]).
//!
//! Where fgclip differs from the code, on purpose: the intra-text term takes the top
//! min(10, K − 1) values of a row (the code's `topk(10)` fails below 11 regions), and the
//! hard-negative term masks missing negatives (the code packs exactly 10 a box).

use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Bool, Int, Tensor, TensorData};

/// Masked logits: exp underflows to exactly 0 in f32.
const MASKED_LOGIT: f32 = -1e9;

/// The intra-text term's cut-off: similarities above it count as the same caption.
pub const SAME_TEXT_SIMILARITY: f32 = 0.95;
/// How many of each region caption's most similar captions the intra-text term sums.
pub const REGION_TEXT_TOP_K: usize = 10;
/// Bounds of the cross-modal rank loss's running threshold (`upper_bound` 10, clamp at 0).
pub const THRESHOLD_MAX: f64 = 10.0;

/// `log σ(x)`, stable for either sign: `min(x, 0) − log(1 + e^{−|x|})`.
fn log_sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clone().clamp_max(0.0) - x.abs().neg().exp().log1p()
}

fn eye(n: usize, device: &burn::tensor::Device) -> Tensor<2> {
    let values: Vec<f32> = (0..n * n)
        .map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    Tensor::from_data(TensorData::new(values, [n, n]), device)
}

/// SigLIP's loss (`_loss`): `−Σ log σ(y_ij (s·⟨a_i, b_j⟩ + bias)) / n`, `y` +1 on the
/// diagonal and −1 elsewhere; `a` (n, d), `b` (n, d), `scale` = exp(logit_scale) and
/// `bias` shape [1]. Returns shape [1].
pub fn sigmoid_loss(a: Tensor<2>, b: Tensor<2>, scale: Tensor<1>, bias: Tensor<1>) -> Tensor<1> {
    let [n, _] = a.dims();
    let device = a.device();
    let logits =
        crate::gemm::matmul(a, b.transpose()) * scale.reshape([1, 1]) + bias.reshape([1, 1]);
    let labels = eye(n, &device) * 2.0 - 1.0;
    log_sigmoid(logits * labels).sum().neg() / n as f64
}

/// The region captions' intra-text term (`hard_category_contrastive_loss`): similarities
/// `T·Tᵀ` with the diagonal and every value above [`SAME_TEXT_SIMILARITY`] set to 0 (not
/// dropped), the top min(10, K − 1) of each row, and `PNTextLoss`: the mean over rows of
/// `log Σ exp(values)`, unscaled. None below two captions.
pub fn region_text_loss(texts: Tensor<2>) -> Option<Tensor<1>> {
    let [k, _] = texts.dims();
    if k < 2 {
        return None;
    }
    let device = texts.device();
    let sim = crate::gemm::matmul(texts.clone(), texts.transpose()) * (eye(k, &device).neg() + 1.0);
    // Which entries are zeroed and which are the top ones is host work: neither has a
    // gradient, and ties (zeros) give the same values whichever is picked.
    let host: Vec<f32> = sim
        .clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    let same: Vec<bool> = host.iter().map(|&v| v > SAME_TEXT_SIMILARITY).collect();
    let top = REGION_TEXT_TOP_K.min(k - 1);
    let mut index = Vec::with_capacity(k * top);
    for row in 0..k {
        let value = |j: usize| {
            let v = host.get(row * k + j).copied().unwrap_or(0.0);
            if v > SAME_TEXT_SIMILARITY { 0.0 } else { v }
        };
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&x, &y| value(y).total_cmp(&value(x)));
        index.extend(order[..top].iter().map(|&j| j as i64));
    }
    let same = Tensor::<2, Bool>::from_data(TensorData::new(same, [k, k]), &device);
    let sim = sim.mask_fill(same, 0.0);
    let index = Tensor::<2, Int>::from_data(TensorData::new(index, [k, top]), &device);
    let values = sim.gather(1, index);
    Some(values.exp().sum_dim(1).log().mean().reshape([1]))
}

/// The hard-negative inputs of the regions that have negatives, over all processes.
pub struct HardRows {
    /// (K, D) region embeddings.
    pub regions: Tensor<2>,
    /// (K, D) their captions (the positives).
    pub positives: Tensor<2>,
    /// (K·H, D) their negatives, H slots a region; empty slots are any row (masked).
    pub negatives: Tensor<2>,
    /// (K·H): whether each slot holds a real negative.
    pub real: Vec<bool>,
    /// H.
    pub slots: usize,
}

/// `hard_contrastive_total_loss`'s value, its parts and the threshold it computes.
pub struct HardTerm {
    /// `0.6 · contrastive + 3 · pair + 0.4 · cmr`.
    pub loss: Tensor<1>,
    /// The symmetric cross-entropy of each region over every positive and every negative.
    pub contrastive: Tensor<1>,
    /// `hard_contrastive_loss`: each region over its own positive and negatives.
    pub pair: Tensor<1>,
    /// `get_cmr_loss`: the cross-modal rank loss with the previous threshold.
    pub cmr: Tensor<1>,
    /// The new threshold, before the clamp: mean positive logit minus mean negative logit.
    pub threshold: f64,
}

/// FG-CLIP 2's hard-negative term with `scale` = exp(logit_scale_hardneg) and the running
/// `threshold` of the cross-modal rank loss; missing negatives are masked out of every part
/// (the code has exactly 10 a region). None without a real negative.
pub fn hard_negative_loss(rows: HardRows, scale: Tensor<1>, threshold: f64) -> Option<HardTerm> {
    let HardRows {
        regions,
        positives,
        negatives,
        real,
        slots: h,
    } = rows;
    let [k, d] = regions.dims();
    let m = real.iter().filter(|&&r| r).count();
    if k == 0 || m == 0 || real.len() != k * h {
        return None;
    }
    let device = regions.device();
    let s = scale.reshape([1, 1]);
    let empty = Tensor::<2, Bool>::from_data(
        TensorData::new(real.iter().map(|r| !r).collect::<Vec<_>>(), [1, k * h]),
        &device,
    );
    let labels: Vec<f32> = (0..k * k)
        .map(|i| if i % (k + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let labels = Tensor::<2>::from_data(TensorData::new(labels, [k, k]), &device);
    // Cross-entropy of row i towards column i, averaged over the k rows.
    let ce_diag = |logits: Tensor<2>| -> Tensor<1> {
        (log_softmax(logits, 1).slice([0..k, 0..k]) * labels.clone())
            .sum()
            .neg()
            .div_scalar(k as f64)
    };
    // Each region against every positive and every real negative; each positive against
    // every region.
    let to_positives =
        crate::gemm::matmul(regions.clone(), positives.clone().transpose()) * s.clone();
    let to_negatives = (crate::gemm::matmul(regions.clone(), negatives.clone().transpose())
        * s.clone())
    .mask_fill(empty.clone().expand([k, k * h]), MASKED_LOGIT);
    let per_image = Tensor::cat(vec![to_positives.clone(), to_negatives], 1);
    let per_text = crate::gemm::matmul(positives.clone(), regions.clone().transpose()) * s.clone();
    let contrastive = (ce_diag(per_image) + ce_diag(per_text)) / 2.0;

    // Each region against its own positive and negatives.
    let own = negatives.reshape([k, h, d]);
    let own_dots = (own * regions.clone().reshape([k, 1, d]))
        .sum_dim(2)
        .reshape([k, h])
        * s;
    let own_empty = empty.reshape([k, h]);
    let gt = (to_positives * eye(k, &device)).sum_dim(1); // (k, 1)
    let pair_logits = Tensor::cat(
        vec![
            gt.clone(),
            own_dots.clone().mask_fill(own_empty.clone(), MASKED_LOGIT),
        ],
        1,
    );
    let pair = log_softmax(pair_logits, 1)
        .slice([0..k, 0..1])
        .sum()
        .neg()
        .div_scalar(k as f64);

    // Cross-modal rank loss over the real negatives, with the previous threshold.
    let keep = own_empty.bool_not().float();
    let margin = relu(own_dots.clone() - gt.clone() + threshold) * keep.clone();
    let cmr = margin.sum().div_scalar(m as f64);

    let host = |t: Tensor<2>| -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default()
    };
    let gt_host = host(gt);
    let da_host = host(own_dots * keep);
    let mean_gt = gt_host.iter().map(|&v| v as f64).sum::<f64>() / k as f64;
    let mean_da = da_host.iter().map(|&v| v as f64).sum::<f64>() / m as f64;
    let loss = contrastive.clone() * 0.6 + pair.clone() * 3.0 + cmr.clone() * 0.4;
    Some(HardTerm {
        loss,
        contrastive,
        pair,
        cmr,
        threshold: mean_gt - mean_da,
    })
}

/// The threshold a forward leaves: the new value clamped to [0, [`THRESHOLD_MAX`]].
pub fn next_threshold(computed: f64) -> f64 {
    computed.clamp(0.0, THRESHOLD_MAX)
}
