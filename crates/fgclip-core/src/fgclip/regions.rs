//! Which frames of a clip show each region, and a region's embedding from its frames'
//! ROI features: shared by the FG-CLIP and FG-CLIP 2 video models.

use burn::tensor::{Device, Tensor, TensorData};

use crate::model::normalize;

/// The regions of a batch with at least one valid frame, and their ROI rows.
pub(crate) struct RegionFrames {
    /// One normalised `[x1, y1, x2, y2]` per (region, valid frame).
    pub(crate) boxes: Vec<[f32; 4]>,
    /// The frame (b·T + t) of each box.
    pub(crate) image: Vec<usize>,
    /// (b, i) of each region.
    pub(crate) regions: Vec<(usize, usize)>,
    /// Each region's rows in `boxes`.
    members: Vec<Vec<usize>>,
}

impl RegionFrames {
    /// From `boxes` (B, T, N, 4) and `mask` (B, T, N); None without any valid box.
    pub(crate) fn new(boxes: &[f32], mask: &[u8], [b, t, n]: [usize; 3]) -> Option<Self> {
        let mut out = Self {
            boxes: Vec::new(),
            image: Vec::new(),
            regions: Vec::new(),
            members: Vec::new(),
        };
        for bi in 0..b {
            for i in 0..n {
                let mut rows = Vec::new();
                for ti in 0..t {
                    let k = (bi * t + ti) * n + i;
                    if mask.get(k).is_none_or(|&m| m == 0) {
                        continue;
                    }
                    let Some(bx) = boxes.get(k * 4..k * 4 + 4) else {
                        continue;
                    };
                    out.boxes.push([bx[0], bx[1], bx[2], bx[3]]);
                    out.image.push(bi * t + ti);
                    rows.push(out.boxes.len() - 1);
                }
                if !rows.is_empty() {
                    out.regions.push((bi, i));
                    out.members.push(rows);
                }
            }
        }
        (!out.regions.is_empty()).then_some(out)
    }

    /// Region embeddings (K, D) from the ROI features (R, D) of `boxes`: each row
    /// normalised, averaged over the region's frames, normalised.
    pub(crate) fn embed(&self, rois: Tensor<2>, device: &Device) -> Tensor<2> {
        let rois = normalize(rois);
        let (k, r) = (self.regions.len(), self.boxes.len());
        let mut mean = vec![0f32; k * r];
        for (ki, rows) in self.members.iter().enumerate() {
            for &ri in rows {
                mean[ki * r + ri] = 1.0 / rows.len() as f32;
            }
        }
        let mean = Tensor::<2>::from_data(TensorData::new(mean, [k, r]), device);
        normalize(crate::gemm::matmul(mean, rois))
    }
}
