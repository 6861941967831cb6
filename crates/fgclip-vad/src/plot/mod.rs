//! Plots: score over time (`score`: PNG through plotters, SVG), frame thumbnails with a heat
//! map and a box (the raster [`Canvas`]), and the font of their text (`font`).

use std::path::Path;

mod font;
mod score;

pub use font::plot_font;
pub use score::ScorePlot;

use anyhow::{Context, Result};

/// A class colour palette (index 0 is used for "normal").
pub const PALETTE: [[u8; 3]; 14] = [
    [120, 120, 120],
    [228, 26, 28],
    [55, 126, 184],
    [77, 175, 74],
    [152, 78, 163],
    [255, 127, 0],
    [166, 86, 40],
    [247, 129, 191],
    [0, 150, 150],
    [200, 170, 0],
    [31, 60, 120],
    [140, 200, 60],
    [220, 80, 140],
    [90, 90, 200],
];

pub fn colour(i: usize) -> [u8; 3] {
    PALETTE[i % PALETTE.len()]
}

/// An RGB raster.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, bg: [u8; 3]) -> Self {
        let mut data = vec![0u8; width * height * 3];
        for px in data.chunks_exact_mut(3) {
            px.copy_from_slice(&bg);
        }
        Self {
            width,
            height,
            data,
        }
    }

    pub fn from_rgb(width: usize, height: usize, data: Vec<u8>) -> Self {
        Self {
            width,
            height,
            data,
        }
    }

    pub fn blend(&mut self, x: i64, y: i64, c: [u8; 3], alpha: f32) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        let o = (y as usize * self.width + x as usize) * 3;
        for (px, ck) in self.data[o..o + 3].iter_mut().zip(c) {
            let v = *px as f32 * (1.0 - alpha) + ck as f32 * alpha;
            *px = v.round().clamp(0.0, 255.0) as u8;
        }
    }

    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3], alpha: f32) {
        for y in y0.min(y1)..y0.max(y1) {
            for x in x0.min(x1)..x0.max(x1) {
                self.blend(x, y, c, alpha);
            }
        }
    }

    pub fn rect_outline(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: [u8; 3], t: i64) {
        self.fill_rect(x0, y0, x1, y0 + t, c, 1.0);
        self.fill_rect(x0, y1 - t, x1, y1, c, 1.0);
        self.fill_rect(x0, y0, x0 + t, y1, c, 1.0);
        self.fill_rect(x1 - t, y0, x1, y1, c, 1.0);
    }

    /// A line `t` pixels thick.
    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: [u8; 3], t: i64) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for i in 0..=steps {
            let f = i as f64 / steps as f64;
            let (x, y) = (
                (x0 + (x1 - x0) * f).round() as i64,
                (y0 + (y1 - y0) * f).round() as i64,
            );
            self.fill_rect(x - t / 2, y - t / 2, x - t / 2 + t, y - t / 2 + t, c, 1.0);
        }
    }

    pub fn save_png(&self, path: &Path) -> Result<()> {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().context("PNG header")?;
            w.write_image_data(&self.data).context("PNG data")?;
        }
        crate::io::write_atomic(path, &bytes)
    }
}

/// Overlays a g×g map (values in [0, 1]) on a frame as a red heat map and draws the box
/// of the cells above `box_level`; returns the box in pixels (x0, y0, x1, y1).
pub fn heat_overlay(
    frame: &mut Canvas,
    map: &[f32],
    (rows, cols): (usize, usize),
    box_level: f32,
) -> Option<(usize, usize, usize, usize)> {
    let (w, h) = (frame.width, frame.height);
    if rows == 0 || cols == 0 || map.len() < rows * cols {
        return None;
    }
    for y in 0..h {
        for x in 0..w {
            // Bilinear sample of the grid at the pixel centre.
            let gx =
                ((x as f32 + 0.5) / w as f32 * cols as f32 - 0.5).clamp(0.0, (cols - 1) as f32);
            let gy =
                ((y as f32 + 0.5) / h as f32 * rows as f32 - 0.5).clamp(0.0, (rows - 1) as f32);
            let (x0, y0) = (gx.floor() as usize, gy.floor() as usize);
            let (x1, y1) = ((x0 + 1).min(cols - 1), (y0 + 1).min(rows - 1));
            let (fx, fy) = (gx - x0 as f32, gy - y0 as f32);
            let v = map[y0 * cols + x0] * (1.0 - fx) * (1.0 - fy)
                + map[y0 * cols + x1] * fx * (1.0 - fy)
                + map[y1 * cols + x0] * (1.0 - fx) * fy
                + map[y1 * cols + x1] * fx * fy;
            frame.blend(x as i64, y as i64, [255, 30, 0], 0.55 * v.clamp(0.0, 1.0));
        }
    }
    let cells: Vec<(usize, usize)> = (0..rows * cols)
        .filter(|&i| map[i] >= box_level)
        .map(|i| (i % cols, i / cols))
        .collect();
    let (min_x, max_x) = (
        cells.iter().map(|c| c.0).min()?,
        cells.iter().map(|c| c.0).max()?,
    );
    let (min_y, max_y) = (
        cells.iter().map(|c| c.1).min()?,
        cells.iter().map(|c| c.1).max()?,
    );
    let b = (
        min_x * w / cols,
        min_y * h / rows,
        (max_x + 1) * w / cols,
        (max_y + 1) * h / rows,
    );
    frame.rect_outline(
        b.0 as i64,
        b.1 as i64,
        b.2 as i64,
        b.3 as i64,
        [255, 255, 0],
        2,
    );
    Some(b)
}

pub fn write_svg(path: &Path, svg: &str) -> Result<()> {
    crate::io::write_atomic(path, svg.as_bytes())
}

/// Text for HTML or SVG: `&`, `<` and `>` escaped (the one escape of every report).
pub fn escape_markup(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
