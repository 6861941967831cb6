//! FG-CLIP's hard-negative term (`hard_contrastive_loss`): which regions of a region loss
//! have negatives, and the cross-entropy of each such region against its own negatives.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use super::HardNegatives;

/// Masked-out hard-negative logits: exp underflows to exactly 0 in f32.
const MASKED_LOGIT: f32 = -1e9;

/// The hard negatives of the regions of a region loss: which regions have any, and the
/// ids of their negatives in order.
pub(crate) struct HardSelection {
    /// Positions in the region loss's K regions that have at least one negative.
    pub(crate) regions: Vec<usize>,
    /// (M, L): every real negative of those regions.
    pub(crate) ids: Tensor<2, Int>,
    pub(crate) num_negatives: usize,
    /// (regions.len() · H): the row of each (region, slot) in `ids`, or M for an empty slot.
    pub(crate) slots: Vec<i64>,
    pub(crate) h: usize,
}

impl HardSelection {
    pub(crate) fn new(
        hard: &HardNegatives,
        which: &[(usize, usize)],
        n: usize,
        l: usize,
    ) -> Option<Self> {
        let [b, n_h, h, l_h] = hard.input_ids.dims();
        if h == 0 || n_h != n || l_h != l {
            return None;
        }
        let mut regions = Vec::new();
        let mut rows = Vec::new();
        let mut slot_rows: Vec<Option<usize>> = Vec::new();
        for (ki, &(bi, i)) in which.iter().enumerate() {
            let base = (bi * n + i) * h;
            if !(0..h).any(|j| hard.mask.get(base + j).is_some_and(|&m| m != 0)) {
                continue;
            }
            regions.push(ki);
            for j in 0..h {
                if hard.mask.get(base + j).is_some_and(|&m| m != 0) {
                    slot_rows.push(Some(rows.len()));
                    rows.push((base + j) as i64);
                } else {
                    slot_rows.push(None);
                }
            }
        }
        if regions.is_empty() {
            return None;
        }
        let m = rows.len();
        let device = hard.input_ids.device();
        let index = Tensor::<1, Int>::from_data(TensorData::new(rows, [m]), &device);
        let ids = hard
            .input_ids
            .clone()
            .reshape([b * n * h, l])
            .select(0, index);
        let slots = slot_rows
            .into_iter()
            .map(|r| r.map_or(m as i64, |r| r as i64))
            .collect();
        Some(Self {
            regions,
            ids,
            num_negatives: m,
            slots,
            h,
        })
    }

    /// CE over `s_h · [⟨r, t_pos⟩, ⟨r, t_1⟩ … ⟨r, t_H⟩]` with target 0, empty slots masked,
    /// summed over the regions that have negatives (the caller divides by their count over
    /// all processes). All embeddings normalised.
    pub(super) fn loss_sum(
        &self,
        regions: Tensor<2>,
        region_text: Tensor<2>,
        negatives: Tensor<2>,
        s_h: Tensor<1>,
    ) -> Tensor<1> {
        let device = regions.device();
        let (kh, h, m) = (self.regions.len(), self.h, self.num_negatives);
        let p = regions.dims()[1];
        let pick = Tensor::<1, Int>::from_data(
            TensorData::new(
                self.regions.iter().map(|&k| k as i64).collect::<Vec<_>>(),
                [kh],
            ),
            &device,
        );
        let r = regions.select(0, pick.clone());
        let positive = (r.clone() * region_text.select(0, pick))
            .sum_dim(1)
            .reshape([kh, 1]);
        // An extra zero row stands for the empty slots, masked below.
        let table = Tensor::cat(vec![negatives, Tensor::zeros([1, p], &device)], 0);
        let slots =
            Tensor::<1, Int>::from_data(TensorData::new(self.slots.clone(), [kh * h]), &device);
        let negs = table.select(0, slots).reshape([kh, h, p]);
        let dots = (negs * r.reshape([kh, 1, p])).sum_dim(2).reshape([kh, h]);
        let empty: Vec<bool> = self.slots.iter().map(|&s| s == m as i64).collect();
        let empty =
            Tensor::<2, burn::tensor::Bool>::from_data(TensorData::new(empty, [kh, h]), &device);
        let dots = dots.mask_fill(empty, MASKED_LOGIT);
        let logits = Tensor::cat(vec![positive, dots], 1) * s_h.reshape([1, 1]);
        log_softmax(logits, 1).slice([0..kh, 0..1]).sum().neg()
    }
}
