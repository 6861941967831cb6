//! How a frame becomes the square input of a fixed-size model (CLIP, FG-CLIP v1; FG-CLIP 2
//! has its own processor): `squash` resizes it to S×S (the aspect ratio not kept, every box
//! still inside) or `center_crop` does what HF's `CLIPImageProcessor` does, which users'
//! zero-shot numbers come from: the shortest edge to S with Pillow's bicubic filter, then
//! the centred S×S. Boxes are mapped into the crop; one left with no area drops that frame's
//! region, as augmentation's crops do.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::resize::resize_rgb24;
use super::video::{RgbFrame, resize_rgb};

/// See the module header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Preprocess {
    /// Resize to S×S (boxes near the edges stay in; fgclip's training default).
    #[default]
    Squash,
    /// HF CLIPImageProcessor: shortest edge to S, centre crop S×S.
    CenterCrop,
}

/// The size CLIPImageProcessor resizes a `w`×`h` image to before its crop (transformers'
/// `get_resize_output_image_size` with `default_to_square=False`): the shortest edge
/// `size`, the other `int(size · long / short)` (Python's truncation).
pub fn shortest_edge_size(w: usize, h: usize, size: usize) -> (usize, usize) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let other = ((size * long) as f64 / short.max(1) as f64) as usize;
    if w <= h { (size, other) } else { (other, size) }
}

/// Where the S×S crop of a `rw`×`rh` resized image starts (transformers' `center_crop`:
/// `(orig − crop) // 2`).
fn crop_origin(rw: usize, rh: usize, size: usize) -> (usize, usize) {
    (rw.saturating_sub(size) / 2, rh.saturating_sub(size) / 2)
}

impl Preprocess {
    /// `frame` as the model's `size`×`size` RGB input.
    pub fn apply(self, frame: &RgbFrame, size: u32) -> Result<RgbFrame> {
        match self {
            Self::Squash => resize_rgb(frame, size),
            Self::CenterCrop => {
                let (w, h) = (frame.width as usize, frame.height as usize);
                if frame.data.len() != w * h * 3 || w == 0 || h == 0 {
                    bail!(
                        "frame {}: {} bytes for {w}x{h} RGB",
                        frame.index,
                        frame.data.len()
                    );
                }
                let s = size as usize;
                let (rw, rh) = shortest_edge_size(w, h, s);
                let resized = resize_rgb24(&frame.data, w, h, rw, rh);
                let (x0, y0) = crop_origin(rw, rh, s);
                let mut data = Vec::with_capacity(s * s * 3);
                for row in resized.chunks_exact(rw * 3).skip(y0).take(s) {
                    data.extend_from_slice(&row[x0 * 3..(x0 + s) * 3]);
                }
                Ok(RgbFrame {
                    index: frame.index,
                    width: size,
                    height: size,
                    data,
                })
            }
        }
    }

    /// A box (x0, y0, x1, y1 normalised to a `width`×`height` frame) in the model input's
    /// coordinates; None when nothing of it is left.
    pub fn map_box(self, b: [f32; 4], width: u32, height: u32, size: u32) -> Option<[f32; 4]> {
        match self {
            Self::Squash => Some(b),
            Self::CenterCrop => {
                let s = size as usize;
                let (rw, rh) = shortest_edge_size(width as usize, height as usize, s);
                let (x0, y0) = crop_origin(rw, rh, s);
                let map = |v: f32, full: usize, origin: usize| {
                    ((v * full as f32 - origin as f32) / s as f32).clamp(0.0, 1.0)
                };
                let m = [
                    map(b[0], rw, x0),
                    map(b[1], rh, y0),
                    map(b[2], rw, x0),
                    map(b[3], rh, y0),
                ];
                (m[2] > m[0] && m[3] > m[1]).then_some(m)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::batch::normalize;
    use safetensors::SafeTensors;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/center_crop"
    );

    #[derive(Deserialize)]
    struct Case {
        name: String,
        width: u32,
        height: u32,
        size: u32,
    }

    /// CLIPImageProcessor's pixels on real frames of six shapes (down- and upscaled, 4:3,
    /// 16:9, portrait, square, odd sizes): every value within 1e-6, i.e. the same 8-bit
    /// pixels (one step is 0.015 after normalisation).
    #[test]
    fn center_crop_equals_clip_image_processor() -> Result<()> {
        let cases: Vec<Case> =
            serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/cases.json"))?)?;
        let frames = std::fs::read(format!("{FIXTURE}/frames.safetensors"))?;
        let frames = SafeTensors::deserialize(&frames)?;
        let expected = std::fs::read(format!("{FIXTURE}/expected.safetensors"))?;
        let expected = SafeTensors::deserialize(&expected)?;
        assert_eq!(cases.len(), 6);
        for c in &cases {
            let f = frames.tensor(&format!("frame_{}", c.name))?;
            assert_eq!(f.shape(), [c.height as usize, c.width as usize, 3]);
            let frame = RgbFrame {
                index: 0,
                width: c.width,
                height: c.height,
                data: f.data().to_vec(),
            };
            let got = normalize(
                &Preprocess::CenterCrop.apply(&frame, c.size)?.data,
                c.size as usize,
            );
            let want = crate::checkpoint::safetensors_io::view_to_f32(
                &expected.tensor(&format!("pixel_values_{}", c.name))?,
            )?;
            assert_eq!(got.len(), want.len(), "{}", c.name);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-6, "{}: max difference {worst}", c.name);
        }
        Ok(())
    }

    #[test]
    fn boxes_map_into_the_crop_and_leave_when_outside() {
        // 320×240 to 64: resized 85×64, crop x from 10 to 74.
        let p = Preprocess::CenterCrop;
        assert_eq!(shortest_edge_size(320, 240, 64), (85, 64));
        let Some(b) = p.map_box([0.5, 0.25, 0.75, 0.5], 320, 240, 64) else {
            panic!("centre box dropped")
        };
        let want = [
            (0.5 * 85.0 - 10.0) / 64.0,
            0.25,
            (0.75 * 85.0 - 10.0) / 64.0,
            0.5,
        ];
        for (g, w) in b.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{b:?} vs {want:?}");
        }
        // A box in the cut-off left strip (x < 10/85 of the frame) is gone; one across the
        // edge is clipped to it.
        assert_eq!(p.map_box([0.0, 0.1, 0.1, 0.9], 320, 240, 64), None);
        assert_eq!(
            p.map_box([0.0, 0.1, 0.5, 0.9], 320, 240, 64).map(|b| b[0]),
            Some(0.0)
        );
        assert_eq!(
            Preprocess::Squash.map_box([0.0, 0.1, 0.1, 0.9], 320, 240, 64),
            Some([0.0, 0.1, 0.1, 0.9])
        );
    }
}
