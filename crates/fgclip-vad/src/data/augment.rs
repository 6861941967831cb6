//! Box-aware augmentation of a training clip (config key `augment`): random resized crop
//! (boxes mapped into the crop and clipped; a box wholly outside makes that frame invalid
//! for its region), horizontal flip (boxes mirrored) and colour jitter (brightness,
//! contrast, saturation). One set of parameters per clip, drawn from (seed, epoch, clip),
//! the same for every frame, so a resumed run sees the same pixels.

use serde::{Deserialize, Serialize};

use super::rng::Rng;
use super::video::{RgbFrame, resize_rgb};
use anyhow::Result;

/// One step of the `augment` pipeline, applied in the order listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AugmentOp {
    /// torchvision's RandomResizedCrop: area fraction in `scale`, aspect ratio in `ratio`.
    Crop {
        scale: [f64; 2],
        #[serde(default = "default_ratio")]
        ratio: [f64; 2],
    },
    /// Mirror left-right with this probability.
    Flip(f64),
    /// Factors drawn from [1 − v, 1 + v] (brightness at least 0), applied in this order.
    Jitter {
        #[serde(default)]
        brightness: f64,
        #[serde(default)]
        contrast: f64,
        #[serde(default)]
        saturation: f64,
    },
}

fn default_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}

/// Checks the pipeline's numbers (the config's `validate`).
pub fn validate(ops: &[AugmentOp]) -> Result<()> {
    for op in ops {
        match op {
            AugmentOp::Crop { scale, ratio } => {
                anyhow::ensure!(
                    0.0 < scale[0] && scale[0] <= scale[1] && scale[1] <= 1.0,
                    "config: augment crop `scale` must be 0 < min ≤ max ≤ 1, got {scale:?}"
                );
                anyhow::ensure!(
                    0.0 < ratio[0] && ratio[0] <= ratio[1] && ratio[1].is_finite(),
                    "config: augment crop `ratio` must be 0 < min ≤ max, got {ratio:?}"
                );
            }
            AugmentOp::Flip(p) => anyhow::ensure!(
                (0.0..=1.0).contains(p),
                "config: augment `flip` is a probability in [0, 1], got {p}"
            ),
            AugmentOp::Jitter {
                brightness,
                contrast,
                saturation,
            } => {
                for (name, v) in [
                    ("brightness", brightness),
                    ("contrast", contrast),
                    ("saturation", saturation),
                ] {
                    anyhow::ensure!(
                        v.is_finite() && *v >= 0.0,
                        "config: augment jitter `{name}` must be ≥ 0, got {v}"
                    );
                }
            }
        }
    }
    Ok(())
}

/// The parameters of one clip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipAugment {
    /// Crop in source pixels: x, y, width, height.
    pub crop: Option<(u32, u32, u32, u32)>,
    pub flip: bool,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
}

impl ClipAugment {
    pub const NONE: Self = Self {
        crop: None,
        flip: false,
        brightness: 1.0,
        contrast: 1.0,
        saturation: 1.0,
    };

    /// Draws the parameters for a `width` × `height` video.
    pub fn draw(ops: &[AugmentOp], width: u32, height: u32, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut uniform = |lo: f64, hi: f64| {
            lo + (hi - lo) * ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
        };
        let mut p = Self::NONE;
        for op in ops {
            match op {
                AugmentOp::Crop { scale, ratio } => {
                    p.crop = Some(crop_params(width, height, *scale, *ratio, &mut uniform));
                }
                AugmentOp::Flip(prob) => p.flip = uniform(0.0, 1.0) < *prob,
                AugmentOp::Jitter {
                    brightness,
                    contrast,
                    saturation,
                } => {
                    let mut factor = |v: f64| uniform((1.0 - v).max(0.0), 1.0 + v) as f32;
                    p.brightness = factor(*brightness);
                    p.contrast = factor(*contrast);
                    p.saturation = factor(*saturation);
                }
            }
        }
        p
    }

    /// The frame cropped, resized to `size` × `size` (Pillow's bicubic, as without
    /// augmentation), mirrored and colour-jittered, as 0..=255 floats (HWC).
    pub fn frame(&self, frame: &RgbFrame, size: u32) -> Result<Vec<f32>> {
        let cropped;
        let src = match self.crop {
            Some((x, y, w, h)) => {
                cropped = crop(frame, x, y, w, h);
                &cropped
            }
            None => frame,
        };
        let small = resize_rgb(src, size)?;
        let s = size as usize;
        let mut px: Vec<f32> = small.data.iter().map(|&v| v as f32).collect();
        if self.flip {
            for row in px.chunks_exact_mut(3 * s) {
                for x in 0..s / 2 {
                    for c in 0..3 {
                        row.swap(3 * x + c, 3 * (s - 1 - x) + c);
                    }
                }
            }
        }
        self.jitter(&mut px);
        Ok(px)
    }

    fn jitter(&self, px: &mut [f32]) {
        let gray = |p: &[f32]| 0.2989 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        if self.brightness != 1.0 {
            px.iter_mut()
                .for_each(|v| *v = (*v * self.brightness).clamp(0.0, 255.0));
        }
        if self.contrast != 1.0 {
            let mean = px.chunks_exact(3).map(gray).sum::<f32>() / (px.len() / 3).max(1) as f32;
            px.iter_mut().for_each(|v| {
                *v = (self.contrast * *v + (1.0 - self.contrast) * mean).clamp(0.0, 255.0)
            });
        }
        if self.saturation != 1.0 {
            for p in px.chunks_exact_mut(3) {
                let g = gray(p);
                for v in p.iter_mut() {
                    *v = (self.saturation * *v + (1.0 - self.saturation) * g).clamp(0.0, 255.0);
                }
            }
        }
    }

    /// A normalised `[x0, y0, x1, y1]` box of a `width` × `height` frame in the augmented
    /// image; None when the crop leaves none of it.
    pub fn bbox(&self, b: [f32; 4], width: u32, height: u32) -> Option<[f32; 4]> {
        let mut b = b;
        if let Some((x, y, w, h)) = self.crop {
            let (fw, fh) = (width as f32, height as f32);
            let map_x = |v: f32| ((v * fw - x as f32) / w as f32).clamp(0.0, 1.0);
            let map_y = |v: f32| ((v * fh - y as f32) / h as f32).clamp(0.0, 1.0);
            b = [map_x(b[0]), map_y(b[1]), map_x(b[2]), map_y(b[3])];
            if b[2] <= b[0] || b[3] <= b[1] {
                return None;
            }
        }
        if self.flip {
            b = [1.0 - b[2], b[1], 1.0 - b[0], b[3]];
        }
        Some(b)
    }
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a random area and aspect
/// ratio, else the largest centred crop within the ratio range.
fn crop_params(
    width: u32,
    height: u32,
    scale: [f64; 2],
    ratio: [f64; 2],
    uniform: &mut dyn FnMut(f64, f64) -> f64,
) -> (u32, u32, u32, u32) {
    let (wf, hf) = (width as f64, height as f64);
    let area = wf * hf;
    for _ in 0..10 {
        let target = area * uniform(scale[0], scale[1]);
        let aspect = uniform(ratio[0].ln(), ratio[1].ln()).exp();
        let w = (target * aspect).sqrt().round();
        let h = (target / aspect).sqrt().round();
        if 0.0 < w && w <= wf && 0.0 < h && h <= hf {
            let x = uniform(0.0, wf - w + 1.0).floor().min(wf - w);
            let y = uniform(0.0, hf - h + 1.0).floor().min(hf - h);
            return (x as u32, y as u32, w as u32, h as u32);
        }
    }
    let in_ratio = wf / hf;
    let (w, h) = if in_ratio < ratio[0] {
        (wf, (wf / ratio[0]).round())
    } else if in_ratio > ratio[1] {
        ((hf * ratio[1]).round(), hf)
    } else {
        (wf, hf)
    };
    let (w, h) = (w.max(1.0), h.max(1.0));
    (
        ((wf - w) / 2.0) as u32,
        ((hf - h) / 2.0) as u32,
        w as u32,
        h as u32,
    )
}

fn crop(frame: &RgbFrame, x: u32, y: u32, w: u32, h: u32) -> RgbFrame {
    let fw = frame.width as usize;
    let (x, y, w, h) = (x as usize, y as usize, w as usize, h as usize);
    let mut data = Vec::with_capacity(w * h * 3);
    for row in y..y + h {
        let start = (row * fw + x) * 3;
        data.extend_from_slice(&frame.data[start..start + w * 3]);
    }
    RgbFrame {
        index: frame.index,
        width: w as u32,
        height: h as u32,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grey frame with a red rectangle over pixels [x0, x1) × [y0, y1).
    fn frame_with_rect(w: u32, h: u32, r: (u32, u32, u32, u32)) -> RgbFrame {
        let mut data = vec![90u8; (w * h * 3) as usize];
        for y in r.1..r.3 {
            for x in r.0..r.2 {
                let i = ((y * w + x) * 3) as usize;
                data[i..i + 3].copy_from_slice(&[230, 20, 20]);
            }
        }
        RgbFrame {
            index: 0,
            width: w,
            height: h,
            data,
        }
    }

    fn is_red(px: &[f32], s: usize, x: usize, y: usize) -> bool {
        let i = (y * s + x) * 3;
        px[i] > 150.0 && px[i + 1] < 90.0
    }

    /// The object's pixels lie inside the mapped box and the box is filled with them.
    fn check_box_covers_object(aug: &ClipAugment, w: u32, h: u32, rect: (u32, u32, u32, u32)) {
        let s = 64usize;
        let f = frame_with_rect(w, h, rect);
        let px = aug.frame(&f, s as u32).unwrap();
        let b = [
            rect.0 as f32 / w as f32,
            rect.1 as f32 / h as f32,
            rect.2 as f32 / w as f32,
            rect.3 as f32 / h as f32,
        ];
        let mapped = aug.bbox(b, w, h).expect("the object is inside the crop");
        let (bx0, by0, bx1, by1) = (
            mapped[0] * s as f32,
            mapped[1] * s as f32,
            mapped[2] * s as f32,
            mapped[3] * s as f32,
        );
        let (mut inside_red, mut inside, mut outside_red) = (0, 0, 0);
        for y in 0..s {
            for x in 0..s {
                let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
                // Skip the resampling fringe, a pixel either side of the edges.
                let near_edge = (cx - bx0).abs() < 1.5
                    || (cx - bx1).abs() < 1.5
                    || (cy - by0).abs() < 1.5
                    || (cy - by1).abs() < 1.5;
                if near_edge {
                    continue;
                }
                let inb = cx > bx0 && cx < bx1 && cy > by0 && cy < by1;
                if inb {
                    inside += 1;
                    inside_red += is_red(&px, s, x, y) as usize;
                } else {
                    outside_red += is_red(&px, s, x, y) as usize;
                }
            }
        }
        assert!(inside > 0, "{aug:?}: the box has an interior");
        assert_eq!(inside_red, inside, "{aug:?}: the box is the object's");
        assert_eq!(outside_red, 0, "{aug:?}: no object pixels outside the box");
    }

    #[test]
    fn boxes_cover_the_same_object_pixels_after_each_transform() {
        let (w, h) = (160, 120);
        let rect = (50, 40, 100, 90);
        let plain = ClipAugment::NONE;
        check_box_covers_object(&plain, w, h, rect);
        let flip = ClipAugment {
            flip: true,
            ..plain
        };
        check_box_covers_object(&flip, w, h, rect);
        let crop = ClipAugment {
            crop: Some((30, 20, 96, 90)),
            ..plain
        };
        check_box_covers_object(&crop, w, h, rect);
        let both = ClipAugment {
            crop: Some((40, 10, 120, 100)),
            flip: true,
            ..plain
        };
        check_box_covers_object(&both, w, h, rect);
        // Drawn parameters, over several seeds, with the object kept inside the crop.
        let ops = vec![
            AugmentOp::Crop {
                scale: [0.6, 1.0],
                ratio: default_ratio(),
            },
            AugmentOp::Flip(0.5),
        ];
        let mut flips = 0;
        for seed in 0..40 {
            let aug = ClipAugment::draw(&ops, w, h, seed);
            let (x, y, cw, ch) = aug.crop.unwrap();
            assert!(x + cw <= w && y + ch <= h && cw > 0 && ch > 0);
            let area = (cw * ch) as f64 / (w * h) as f64;
            assert!((0.55..=1.0).contains(&area), "area {area}");
            flips += aug.flip as usize;
            if x <= rect.0 && y <= rect.1 && x + cw >= rect.2 && y + ch >= rect.3 {
                check_box_covers_object(&aug, w, h, rect);
            }
        }
        assert!((8..=32).contains(&flips), "{flips} flips of 40");
    }

    #[test]
    fn a_box_outside_the_crop_is_dropped_and_a_cut_box_clipped() {
        let aug = ClipAugment {
            crop: Some((0, 0, 80, 60)),
            ..ClipAugment::NONE
        };
        assert_eq!(aug.bbox([0.6, 0.6, 0.9, 0.9], 160, 120), None);
        let cut = aug.bbox([0.25, 0.25, 0.75, 0.75], 160, 120).unwrap();
        assert_eq!(cut, [0.5, 0.5, 1.0, 1.0]);
        // The virtual whole-frame box stays the whole (cropped) image.
        assert_eq!(
            aug.bbox([0.0, 0.0, 1.0, 1.0], 160, 120),
            Some([0.0, 0.0, 1.0, 1.0])
        );
    }

    #[test]
    fn jitter_scales_brightness_and_pulls_to_grey() {
        let f = frame_with_rect(8, 8, (0, 0, 4, 8));
        let bright = ClipAugment {
            brightness: 1.5,
            ..ClipAugment::NONE
        };
        let px = bright.frame(&f, 8).unwrap();
        let plain = ClipAugment::NONE.frame(&f, 8).unwrap();
        for (a, b) in px.iter().zip(&plain) {
            assert!((a - (b * 1.5).min(255.0)).abs() < 1e-3);
        }
        let grey = ClipAugment {
            saturation: 0.0,
            ..ClipAugment::NONE
        };
        let px = grey.frame(&f, 8).unwrap();
        for p in px.chunks_exact(3) {
            assert!((p[0] - p[1]).abs() < 1e-3 && (p[1] - p[2]).abs() < 1e-3);
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_parameters() {
        let ops: Vec<AugmentOp> = serde_json::from_str(
            r#"[{"crop": {"scale": [0.6, 1.0]}}, {"flip": 0.5}, {"jitter": {"brightness": 0.3}}]"#,
        )
        .unwrap();
        assert_eq!(
            ClipAugment::draw(&ops, 320, 240, 9),
            ClipAugment::draw(&ops, 320, 240, 9)
        );
        assert_ne!(
            ClipAugment::draw(&ops, 320, 240, 9),
            ClipAugment::draw(&ops, 320, 240, 10)
        );
        validate(&ops).unwrap();
        assert!(validate(&[AugmentOp::Flip(1.5)]).is_err());
    }
}
