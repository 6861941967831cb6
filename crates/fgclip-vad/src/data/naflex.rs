//! FG-CLIP 2's image processor (`Fgclip2ImageProcessor`, SigLIP 2's NaFlex layout): each
//! image resized, aspect ratio kept, to the largest multiple of the patch size whose patch
//! count fits the budget; Pillow's bilinear filter; rescaled and normalised with mean and std
//! 0.5; cut into patches laid out row-major (each patch's pixels row by row, channels last);
//! padded with zero patches to the budget, with a mask of the real ones.
//!
//! With `dynamic_max_patches` (on by default) the budget is the largest that any image of
//! the call asks for by its own patch count (`_determine_max_value`): 128, 256, 576, 784 or
//! 1024.

use anyhow::{Result, bail};

use super::resize::{Filter, resize_rgb24_with};

/// The processor's settings (`preprocessor_config.json`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NaflexConfig {
    pub patch_size: usize,
    /// The budget when `dynamic_max_patches` is off.
    pub max_num_patches: usize,
    pub dynamic_max_patches: bool,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for NaflexConfig {
    fn default() -> Self {
        Self {
            patch_size: 16,
            max_num_patches: 256,
            dynamic_max_patches: true,
            mean: [0.5; 3],
            std: [0.5; 3],
        }
    }
}

/// One image as the vision tower takes it.
#[derive(Clone, Debug, PartialEq)]
pub struct NaflexImage {
    /// (budget, patch² · 3) row-major, zero rows past the image's own patches.
    pub pixel_values: Vec<f32>,
    /// (rows, columns) of the image's patch grid; rows · columns ≤ budget.
    pub spatial_shape: (usize, usize),
    pub max_num_patches: usize,
}

impl NaflexImage {
    /// Patches of the image itself (the mask's ones come first).
    pub fn patches(&self) -> usize {
        self.spatial_shape.0 * self.spatial_shape.1
    }

    /// `pixel_attention_mask`: 1 for the image's patches, 0 for the padding.
    pub fn mask(&self) -> Vec<i64> {
        let n = self.patches();
        (0..self.max_num_patches)
            .map(|i| i64::from(i < n))
            .collect()
    }
}

/// `_determine_max_value`: the budget an image of `width`×`height` asks for.
pub fn budget_for(width: usize, height: usize, patch: usize) -> usize {
    match (width / patch) * (height / patch) {
        n if n > 784 => 1024,
        n if n > 576 => 784,
        n if n > 256 => 576,
        n if n > 128 => 256,
        _ => 128,
    }
}

/// `get_image_size_for_max_num_patches`: (height, width) in pixels, both multiples of
/// `patch`, found by the same bisection over the scale in float64 (eps 1e-5).
pub fn size_for_budget(height: usize, width: usize, patch: usize, budget: usize) -> (usize, usize) {
    let scaled = |scale: f64, size: usize| -> usize {
        let s = size as f64 * scale;
        let s = (s / patch as f64).ceil() * patch as f64;
        s.max(patch as f64) as usize
    };
    let eps = 1e-5;
    let (mut lo, mut hi) = (eps / 10.0, 100.0f64);
    while hi - lo >= eps {
        let scale = (lo + hi) / 2.0;
        let (th, tw) = (scaled(scale, height), scaled(scale, width));
        let patches = (th as f64 / patch as f64) * (tw as f64 / patch as f64);
        if patches <= budget as f64 {
            lo = scale;
        } else {
            hi = scale;
        }
    }
    (scaled(lo, height), scaled(lo, width))
}

/// Packed RGB24 frames (data, width, height) through the processor, with one budget for
/// all of them.
pub fn preprocess(
    frames: &[(&[u8], usize, usize)],
    cfg: &NaflexConfig,
) -> Result<Vec<NaflexImage>> {
    let p = cfg.patch_size;
    if p == 0 {
        bail!("the image processor's patch_size must be at least 1");
    }
    let budget = if cfg.dynamic_max_patches {
        frames
            .iter()
            .map(|&(_, w, h)| budget_for(w, h, p))
            .max()
            .unwrap_or(cfg.max_num_patches)
    } else {
        cfg.max_num_patches
    };
    frames
        .iter()
        .map(|&(data, w, h)| {
            if data.len() != w * h * 3 || w == 0 || h == 0 {
                bail!("a frame of {w}×{h} has {} bytes", data.len());
            }
            Ok(one(data, w, h, budget, cfg))
        })
        .collect()
}

fn one(data: &[u8], w: usize, h: usize, budget: usize, cfg: &NaflexConfig) -> NaflexImage {
    let p = cfg.patch_size;
    let (th, tw) = size_for_budget(h, w, p, budget);
    let resized = resize_rgb24_with(data, w, h, tw, th, Filter::Bilinear);
    let (rows, cols) = (th / p, tw / p);
    let dim = p * p * 3;
    let mut pixel_values = vec![0f32; budget * dim];
    // transformers' rescale: float64 product, then float32; normalize in float32.
    let scale = 1.0f64 / 255.0;
    let table: Vec<[f32; 3]> = (0..256u32)
        .map(|u| {
            let x = (f64::from(u) * scale) as f32;
            [0, 1, 2].map(|c| (x - cfg.mean[c]) / cfg.std[c])
        })
        .collect();
    for r in 0..rows {
        for c in 0..cols {
            let patch = &mut pixel_values[(r * cols + c) * dim..][..dim];
            for y in 0..p {
                let src = &resized[((r * p + y) * tw + c * p) * 3..][..p * 3];
                for (x, px) in src.chunks_exact(3).enumerate() {
                    for ch in 0..3 {
                        patch[(y * p + x) * 3 + ch] = table[px[ch] as usize][ch];
                    }
                }
            }
        }
    }
    NaflexImage {
        pixel_values,
        spatial_shape: (rows, cols),
        max_num_patches: budget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_and_sizes_follow_the_processor() {
        // 640×360: 40 × 22 = 880 patches → 1024, as the example says.
        assert_eq!(budget_for(640, 360, 16), 1024);
        assert_eq!(budget_for(320, 240, 16), 576);
        assert_eq!(budget_for(100, 100, 16), 128);
        for (h, w, budget) in [
            (360, 640, 1024),
            (576, 324, 784),
            (47, 61, 128),
            (1, 1000, 256),
        ] {
            let (th, tw) = size_for_budget(h, w, 16, budget);
            assert!(th % 16 == 0 && tw % 16 == 0 && th >= 16 && tw >= 16);
            assert!((th / 16) * (tw / 16) <= budget, "{h}x{w}: {th}x{tw}");
        }
    }

    #[test]
    fn a_constant_frame_is_one_value_in_its_patches_and_zero_in_the_padding() {
        let frame = vec![255u8; 40 * 20 * 3];
        let out = preprocess(&[(&frame, 40, 20)], &NaflexConfig::default()).unwrap();
        let img = &out[0];
        assert_eq!(img.max_num_patches, 128);
        let n = img.patches() * 16 * 16 * 3;
        assert!(img.pixel_values[..n].iter().all(|&v| v == 1.0));
        assert!(img.pixel_values[n..].iter().all(|&v| v == 0.0));
        assert_eq!(img.mask().iter().sum::<i64>() as usize, img.patches());
    }
}
