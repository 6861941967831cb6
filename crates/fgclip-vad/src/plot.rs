//! Score-over-time plots as PNG (a small raster canvas with a built-in 5×7 font) and SVG,
//! and frame thumbnails with a heat map and a box.

use std::path::Path;

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

/// 5×7 glyphs, one u8 per row (low 5 bits, bit 4 = leftmost column).
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        'A' => [14, 17, 17, 31, 17, 17, 17],
        'B' => [30, 17, 17, 30, 17, 17, 30],
        'C' => [14, 17, 16, 16, 16, 17, 14],
        'D' => [28, 18, 17, 17, 17, 18, 28],
        'E' => [31, 16, 16, 30, 16, 16, 31],
        'F' => [31, 16, 16, 30, 16, 16, 16],
        'G' => [14, 17, 16, 23, 17, 17, 15],
        'H' => [17, 17, 17, 31, 17, 17, 17],
        'I' => [14, 4, 4, 4, 4, 4, 14],
        'J' => [7, 2, 2, 2, 2, 18, 12],
        'K' => [17, 18, 20, 24, 20, 18, 17],
        'L' => [16, 16, 16, 16, 16, 16, 31],
        'M' => [17, 27, 21, 21, 17, 17, 17],
        'N' => [17, 17, 25, 21, 19, 17, 17],
        'O' => [14, 17, 17, 17, 17, 17, 14],
        'P' => [30, 17, 17, 30, 16, 16, 16],
        'Q' => [14, 17, 17, 17, 21, 18, 13],
        'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30],
        'T' => [31, 4, 4, 4, 4, 4, 4],
        'U' => [17, 17, 17, 17, 17, 17, 14],
        'V' => [17, 17, 17, 17, 17, 10, 4],
        'W' => [17, 17, 17, 21, 21, 21, 10],
        'X' => [17, 17, 10, 4, 10, 17, 17],
        'Y' => [17, 17, 17, 10, 4, 4, 4],
        'Z' => [31, 1, 2, 4, 8, 16, 31],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        ',' => [0, 0, 0, 0, 12, 4, 8],
        ':' => [0, 12, 12, 0, 12, 12, 0],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 31],
        '/' => [1, 1, 2, 4, 8, 16, 16],
        '(' => [2, 4, 8, 8, 8, 4, 2],
        ')' => [8, 4, 2, 2, 2, 4, 8],
        '%' => [24, 25, 2, 4, 8, 19, 3],
        '=' => [0, 0, 31, 0, 31, 0, 0],
        _ => [0; 7],
    }
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

    /// Text in the 5×7 font at `scale`× (unknown characters are blank).
    pub fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3], scale: i64) {
        for (i, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            let ox = x + i as i64 * 6 * scale;
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits >> (4 - col) & 1 == 1 {
                        let px = ox + col * scale;
                        let py = y + row as i64 * scale;
                        self.fill_rect(px, py, px + scale, py + scale, c, 1.0);
                    }
                }
            }
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

/// What a score plot shows.
pub struct ScorePlot<'a> {
    pub title: &'a str,
    /// (start_s, end_s, score, class index into `class_names`; 0 = normal) per snippet.
    pub snippets: &'a [(f64, f64, f32, usize)],
    pub class_names: &'a [String],
    /// Ground-truth spans in seconds.
    pub truth: &'a [(f64, f64)],
    pub duration_s: f64,
    pub threshold: f32,
}

const W: usize = 1000;
const H: usize = 320;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 70.0;

impl ScorePlot<'_> {
    fn x(&self, t: f64) -> f64 {
        LEFT + (W as f64 - LEFT - RIGHT) * (t / self.duration_s.max(1e-9))
    }

    fn y(&self, s: f32) -> f64 {
        TOP + (H as f64 - TOP - BOTTOM) * (1.0 - s.clamp(0.0, 1.0) as f64)
    }

    fn ticks(&self) -> Vec<f64> {
        let d = self.duration_s.max(1e-9);
        let raw = d / 8.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(mag * 10.0);
        (0..)
            .map(|i| i as f64 * step)
            .take_while(|t| *t <= d + 1e-9)
            .collect()
    }

    /// Classes that appear above the threshold, for the legend.
    fn shown_classes(&self) -> Vec<usize> {
        let mut c: Vec<usize> = self
            .snippets
            .iter()
            .filter(|s| s.2 >= self.threshold && s.3 > 0)
            .map(|s| s.3)
            .collect();
        c.sort();
        c.dedup();
        c
    }

    pub fn png(&self) -> Canvas {
        let mut cv = Canvas::new(W, H, [255, 255, 255]);
        let (y0, y1) = (self.y(1.0), self.y(0.0));
        for &(s, e) in self.truth {
            cv.fill_rect(
                self.x(s) as i64,
                y0 as i64,
                self.x(e).max(self.x(s) + 1.0) as i64,
                y1 as i64,
                [255, 190, 190],
                0.6,
            );
        }
        // Axes, grid, ticks.
        for v in [0.0f32, 0.25, 0.5, 0.75, 1.0] {
            let y = self.y(v);
            cv.line(LEFT, y, W as f64 - RIGHT, y, [225, 225, 225], 1);
            cv.text(8, y as i64 - 3, &format!("{v:.2}"), [60, 60, 60], 1);
        }
        let yt = self.y(self.threshold);
        cv.line(LEFT, yt, W as f64 - RIGHT, yt, [180, 180, 240], 1);
        cv.line(LEFT, y1, W as f64 - RIGHT, y1, [0, 0, 0], 1);
        cv.line(LEFT, y0, LEFT, y1, [0, 0, 0], 1);
        for t in self.ticks() {
            let x = self.x(t);
            cv.line(x, y1, x, y1 + 4.0, [0, 0, 0], 1);
            cv.text(
                x as i64 - 8,
                y1 as i64 + 8,
                &format_seconds(t),
                [60, 60, 60],
                1,
            );
        }
        // Class band under the axis, and the curve coloured by class.
        for &(s, e, score, class) in self.snippets {
            if score >= self.threshold && class > 0 {
                cv.fill_rect(
                    self.x(s) as i64,
                    y1 as i64 + 20,
                    self.x(e).ceil() as i64,
                    y1 as i64 + 28,
                    colour(class),
                    1.0,
                );
            }
        }
        let mut prev: Option<(f64, f64)> = None;
        for &(s, e, score, class) in self.snippets {
            let (x, y) = (self.x((s + e) / 2.0), self.y(score));
            let c = if score >= self.threshold && class > 0 {
                colour(class)
            } else {
                [40, 40, 40]
            };
            if let Some((px, py)) = prev {
                cv.line(px, py, x, y, c, 2);
            }
            prev = Some((x, y));
        }
        cv.text(LEFT as i64, 12, self.title, [0, 0, 0], 2);
        let mut lx = LEFT as i64;
        let ly = H as i64 - 22;
        for c in self.shown_classes() {
            cv.fill_rect(lx, ly, lx + 10, ly + 8, colour(c), 1.0);
            let name = self.class_names.get(c).map_or("?", String::as_str);
            cv.text(lx + 14, ly, name, [0, 0, 0], 1);
            lx += 14 + 6 * name.len() as i64 + 14;
        }
        if !self.truth.is_empty() {
            cv.fill_rect(lx, ly, lx + 10, ly + 8, [255, 190, 190], 1.0);
            cv.text(lx + 14, ly, "ground truth", [0, 0, 0], 1);
        }
        cv
    }

    pub fn svg(&self) -> String {
        let esc = escape_markup;
        let hex = |c: [u8; 3]| format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2]);
        let (y0, y1) = (self.y(1.0), self.y(0.0));
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{LEFT}\" y=\"24\" font-size=\"15\">{}</text>\n",
            esc(self.title)
        );
        for &(a, b) in self.truth {
            s.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{y0:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#ffbebe\" opacity=\"0.6\"><title>ground truth {a:.2}–{b:.2} s</title></rect>\n",
                self.x(a),
                (self.x(b) - self.x(a)).max(1.0),
                y1 - y0
            ));
        }
        for v in [0.0f32, 0.25, 0.5, 0.75, 1.0] {
            let y = self.y(v);
            s.push_str(&format!(
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e1e1e1\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>\n",
                W as f64 - RIGHT,
                LEFT - 6.0,
                y + 4.0
            ));
        }
        let yt = self.y(self.threshold);
        s.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{yt:.1}\" x2=\"{:.1}\" y2=\"{yt:.1}\" stroke=\"#b4b4f0\" stroke-dasharray=\"4 3\"/>\n",
            W as f64 - RIGHT
        ));
        s.push_str(&format!(
            "<line x1=\"{LEFT}\" y1=\"{y1:.1}\" x2=\"{:.1}\" y2=\"{y1:.1}\" stroke=\"black\"/><line x1=\"{LEFT}\" y1=\"{y0:.1}\" x2=\"{LEFT}\" y2=\"{y1:.1}\" stroke=\"black\"/>\n",
            W as f64 - RIGHT
        ));
        for t in self.ticks() {
            let x = self.x(t);
            s.push_str(&format!(
                "<line x1=\"{x:.1}\" y1=\"{y1:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"black\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                y1 + 4.0,
                y1 + 16.0,
                format_seconds(t)
            ));
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time (s)</text><text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">anomaly score</text>\n",
            (LEFT + W as f64 - RIGHT) / 2.0,
            H as f64 - 36.0,
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0
        ));
        for &(a, b, score, class) in self.snippets {
            if score >= self.threshold && class > 0 {
                let name = self.class_names.get(class).map_or("?", String::as_str);
                s.push_str(&format!(
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\" fill=\"{}\"><title>{} {score:.3}</title></rect>\n",
                    self.x(a),
                    y1 + 20.0,
                    (self.x(b) - self.x(a)).max(1.0),
                    hex(colour(class)),
                    esc(name)
                ));
            }
        }
        let points: Vec<String> = self
            .snippets
            .iter()
            .map(|&(a, b, score, _)| format!("{:.1},{:.1}", self.x((a + b) / 2.0), self.y(score)))
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"#282828\" stroke-width=\"2\" points=\"{}\"/>\n",
            points.join(" ")
        ));
        let mut lx = LEFT;
        let ly = H as f64 - 18.0;
        for c in self.shown_classes() {
            let name = self.class_names.get(c).map_or("?", String::as_str);
            s.push_str(&format!(
                "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"10\" height=\"8\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{ly:.1}\">{}</text>\n",
                ly - 8.0,
                hex(colour(c)),
                lx + 14.0,
                esc(name)
            ));
            lx += 24.0 + 7.0 * name.len() as f64;
        }
        if !self.truth.is_empty() {
            s.push_str(&format!(
                "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"10\" height=\"8\" fill=\"#ffbebe\"/><text x=\"{:.1}\" y=\"{ly:.1}\">ground truth</text>\n",
                ly - 8.0,
                lx + 14.0
            ));
        }
        s.push_str("</svg>\n");
        s
    }
}

fn format_seconds(t: f64) -> String {
    if t >= 60.0 {
        format!(
            "{}:{:02}",
            (t / 60.0).floor() as u64,
            (t % 60.0).round() as u64
        )
    } else if t.fract() == 0.0 {
        format!("{t:.0}")
    } else {
        format!("{t:.1}")
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
