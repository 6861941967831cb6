//! ROI Align with torchvision's `roi_align` semantics (Mask R-CNN, He et al. 2017;
//! `torchvision/csrc/ops/cpu/roi_align_kernel.cpp`): output size, spatial scale, adaptive
//! or fixed sampling ratio, aligned (half-pixel) or legacy boxes.
//!
//! Boxes are data, not parameters, so the bilinear weights are computed on the host and
//! pooling is a matrix product with the feature map: differentiable with respect to the
//! features through burn's matmul. The box arithmetic is float32, as torchvision runs it on
//! float32 maps (FG-CLIP's case, DESIGN.md §4): the adaptive sampling count
//! `ceil(roi size)` is a step function, so float64 box arithmetic samples about 1 % of boxes
//! differently.

use burn::tensor::{Tensor, TensorData};

/// torchvision's `roi_align` options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoiAlignConfig {
    pub output_size: (usize, usize),
    pub spatial_scale: f64,
    /// Sampling points per bin side; ≤ 0 means adaptive (`ceil(roi_size / output_size)`).
    pub sampling_ratio: i32,
    pub aligned: bool,
}

impl RoiAlignConfig {
    /// FG-CLIP's setting: 1×1 output, scale 1, adaptive sampling, aligned.
    pub fn fgclip() -> Self {
        Self {
            output_size: (1, 1),
            spatial_scale: 1.0,
            sampling_ratio: -1,
            aligned: true,
        }
    }
}

/// Bilinear weights of one sampling point as torchvision computes them, added (scaled by
/// `w`) into `row` (H·W, row-major).
fn add_bilinear(row: &mut [f32], height: usize, width: usize, mut y: f32, mut x: f32, w: f32) {
    let (h, wd) = (height as f32, width as f32);
    if y < -1.0 || y > h || x < -1.0 || x > wd {
        return;
    }
    if y <= 0.0 {
        y = 0.0;
    }
    if x <= 0.0 {
        x = 0.0;
    }
    let mut y_low = y as usize;
    let mut x_low = x as usize;
    let y_high;
    let x_high;
    if y_low >= height - 1 {
        y_low = height - 1;
        y_high = y_low;
        y = y_low as f32;
    } else {
        y_high = y_low + 1;
    }
    if x_low >= width - 1 {
        x_low = width - 1;
        x_high = x_low;
        x = x_low as f32;
    } else {
        x_high = x_low + 1;
    }
    let (ly, lx) = (y - y_low as f32, x - x_low as f32);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    row[y_low * width + x_low] += w * hy * hx;
    row[y_low * width + x_high] += w * hy * lx;
    row[y_high * width + x_low] += w * ly * hx;
    row[y_high * width + x_high] += w * ly * lx;
}

/// The interpolation matrix of one box `[x1, y1, x2, y2]` (input coordinates, before
/// `spatial_scale`) on an `height`×`width` map: (oh·ow) rows of H·W weights.
pub fn roi_weights(b: [f32; 4], height: usize, width: usize, cfg: &RoiAlignConfig) -> Vec<f32> {
    let (oh, ow) = cfg.output_size;
    let mut out = vec![0f32; oh * ow * height * width];
    if height == 0 || width == 0 || oh == 0 || ow == 0 {
        return out;
    }
    let offset = if cfg.aligned { 0.5 } else { 0.0 };
    let s = cfg.spatial_scale as f32;
    let (x1, y1) = (b[0] * s - offset, b[1] * s - offset);
    let (x2, y2) = (b[2] * s - offset, b[3] * s - offset);
    let (mut rw, mut rh) = (x2 - x1, y2 - y1);
    if !cfg.aligned {
        rw = rw.max(1.0);
        rh = rh.max(1.0);
    }
    let (bin_h, bin_w) = (rh / oh as f32, rw / ow as f32);
    let grid_h = if cfg.sampling_ratio > 0 {
        cfg.sampling_ratio as usize
    } else {
        (rh / oh as f32).ceil().max(0.0) as usize
    };
    let grid_w = if cfg.sampling_ratio > 0 {
        cfg.sampling_ratio as usize
    } else {
        (rw / ow as f32).ceil().max(0.0) as usize
    };
    let count = (grid_h * grid_w).max(1) as f32;
    for ph in 0..oh {
        for pw in 0..ow {
            let row =
                &mut out[(ph * ow + pw) * height * width..(ph * ow + pw + 1) * height * width];
            for iy in 0..grid_h {
                let y = y1 + ph as f32 * bin_h + (iy as f32 + 0.5) * bin_h / grid_h as f32;
                for ix in 0..grid_w {
                    let x = x1 + pw as f32 * bin_w + (ix as f32 + 0.5) * bin_w / grid_w as f32;
                    add_bilinear(row, height, width, y, x, 1.0 / count);
                }
            }
        }
    }
    out
}

/// `torchvision.ops.roi_align(features, boxes, ...)`.
///
/// `features`: (N, C, H, W); `boxes[r]` = `[x1, y1, x2, y2]` on image `batch_index[r]`.
/// Returns (R, C, oh, ow).
pub fn roi_align(
    features: Tensor<4>,
    boxes: &[[f32; 4]],
    batch_index: &[usize],
    cfg: &RoiAlignConfig,
) -> Tensor<4> {
    let [n, c, h, w] = features.dims();
    let (oh, ow) = cfg.output_size;
    let r = boxes.len();
    let device = features.device();
    // One matrix over all images: row (roi, bin) has the ROI's weights in its image's block.
    let mut weights = vec![0f32; r * oh * ow * n * h * w];
    for (k, (b, &img)) in boxes.iter().zip(batch_index).enumerate() {
        let local = roi_weights(*b, h, w, cfg);
        for bin in 0..oh * ow {
            let dst = ((k * oh * ow + bin) * n + img.min(n.saturating_sub(1))) * h * w;
            for (d, &v) in weights[dst..dst + h * w]
                .iter_mut()
                .zip(&local[bin * h * w..(bin + 1) * h * w])
            {
                *d = v;
            }
        }
    }
    let weights =
        Tensor::<2>::from_data(TensorData::new(weights, [r * oh * ow, n * h * w]), &device);
    // (N, C, H, W) → (N·H·W, C)
    let flat = features.permute([0, 2, 3, 1]).reshape([n * h * w, c]);
    crate::gemm::matmul(weights, flat)
        .reshape([r, oh, ow, c])
        .permute([0, 3, 1, 2])
}
