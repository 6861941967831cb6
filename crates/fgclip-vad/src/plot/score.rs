//! The score-over-time plot of one video: PNG drawn with plotters (text in the font that
//! [`plot_font`] finds, so Chinese class names come out) and SVG written by hand (real text,
//! drawn by whatever shows it).

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::font::plot_font;
use super::{Canvas, colour, escape_markup};

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

    /// The plot as a raster, drawn by plotters with the font [`plot_font`] found (Chinese,
    /// Japanese and Korean class names and titles included); without one, without text.
    pub fn png(&self) -> Result<Canvas> {
        let mut data = vec![255u8; W * H * 3];
        let font = plot_font().is_some();
        draw_png(self, &mut data, font).map_err(|e| anyhow!("drawing the score plot: {e}"))?;
        Ok(Canvas {
            width: W,
            height: H,
            data,
        })
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

type PlotResult = std::result::Result<(), Box<dyn std::error::Error>>;

const TRUTH: RGBColor = RGBColor(255, 190, 190);
/// Where the class band sits under the curve (below score 0).
const BAND: (f64, f64) = (-0.075, -0.035);

fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

fn draw_png(p: &ScorePlot, data: &mut [u8], font: bool) -> PlotResult {
    let root = BitMapBackend::with_buffer(data, (W as u32, H as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    draw_chart(p, &root, font)?;
    root.present()?;
    Ok(())
}

fn draw_chart<DB: DrawingBackend>(
    p: &ScorePlot,
    root: &DrawingArea<DB, Shift>,
    font: bool,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let duration = p.duration_s.max(1e-9);
    let mut builder = ChartBuilder::on(root);
    builder.margin(12).margin_right(RIGHT as u32);
    if font {
        builder
            .caption(p.title, ("sans-serif", 18))
            .x_label_area_size(34)
            .y_label_area_size(52);
    }
    let mut chart = builder.build_cartesian_2d(0f64..duration, -0.1f64..1.0f64)?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225));
    if font {
        mesh.x_desc("time (s)")
            .y_desc("anomaly score")
            .x_label_formatter(&|t| format_seconds(*t))
            .y_labels(12)
            .y_label_formatter(&|v| {
                if *v < -1e-9 {
                    String::new()
                } else {
                    format!("{v:.2}")
                }
            })
            .label_style(("sans-serif", 12));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    if !p.truth.is_empty() {
        let spans = p.truth.iter().map(|&(a, b)| {
            Rectangle::new(
                [(a, 0.0), (b.max(a + duration * 1e-3), 1.0)],
                TRUTH.mix(0.6).filled(),
            )
        });
        chart
            .draw_series(spans)?
            .label("ground truth")
            .legend(|(x, y)| Rectangle::new([(x, y - 4), (x + 10, y + 4)], TRUTH.filled()));
    }
    let th = f64::from(p.threshold.clamp(0.0, 1.0));
    chart.draw_series(LineSeries::new(
        [(0.0, th), (duration, th)],
        RGBColor(180, 180, 240),
    ))?;
    let above = |score: f32, class: usize| score >= p.threshold && class > 0;
    for c in p.shown_classes() {
        let name = p.class_names.get(c).map_or("?", String::as_str);
        let band = p
            .snippets
            .iter()
            .filter(|s| s.3 == c && above(s.2, s.3))
            .map(move |&(a, b, _, _)| {
                Rectangle::new([(a, BAND.0), (b, BAND.1)], rgb(colour(c)).filled())
            });
        chart.draw_series(band)?.label(name).legend(move |(x, y)| {
            Rectangle::new([(x, y - 4), (x + 10, y + 4)], rgb(colour(c)).filled())
        });
    }
    let points: Vec<(f64, f64, RGBColor)> = p
        .snippets
        .iter()
        .map(|&(a, b, score, class)| {
            let c = if above(score, class) {
                rgb(colour(class))
            } else {
                RGBColor(40, 40, 40)
            };
            ((a + b) / 2.0, f64::from(score.clamp(0.0, 1.0)), c)
        })
        .collect();
    chart.draw_series(points.windows(2).map(|w| {
        PathElement::new(
            vec![(w[0].0, w[0].1), (w[1].0, w[1].1)],
            w[1].2.stroke_width(2),
        )
    }))?;
    if font && (!p.truth.is_empty() || !p.shown_classes().is_empty()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot_with(title: &str, class: &str) -> (Canvas, String) {
        let names = vec!["正常".to_string(), class.to_string()];
        let snippets: Vec<(f64, f64, f32, usize)> = (0..20)
            .map(|i| {
                let score = if (8..14).contains(&i) { 0.9 } else { 0.1 };
                (
                    i as f64 * 0.5,
                    i as f64 * 0.5 + 0.5,
                    score,
                    usize::from(score > 0.5),
                )
            })
            .collect();
        let p = ScorePlot {
            title,
            snippets: &snippets,
            class_names: &names,
            truth: &[(4.0, 7.0)],
            duration_s: 10.0,
            threshold: 0.5,
        };
        match p.png() {
            Ok(png) => (png, p.svg()),
            Err(e) => panic!("{e}"),
        }
    }

    fn differing(a: &Canvas, b: &Canvas) -> usize {
        a.data
            .chunks(3)
            .zip(b.data.chunks(3))
            .filter(|(x, y)| x != y)
            .count()
    }

    #[test]
    fn chinese_titles_and_class_names_are_drawn_and_kept() {
        // The font must have CJK glyphs: a Latin-only one draws every Chinese character as the
        // same box, and the two plots below would not differ.
        assert!(
            plot_font().is_some(),
            "no plot font: run scripts/install-deps (fonts-wqy-microhei) or set FGCLIP_FONT"
        );
        let (fight, fight_svg) = plot_with("测试视频：打架", "打架");
        let (fire, fire_svg) = plot_with("测试视频：火灾", "火灾");
        let (again, _) = plot_with("测试视频：打架", "打架");
        assert_eq!(differing(&fight, &again), 0);
        // The title's band (the top 36 rows) has ink …
        let ink = fight.data[..W * 36 * 3]
            .chunks(3)
            .filter(|p| p.iter().all(|&v| v < 128))
            .count();
        assert!(ink > 60, "{ink} dark pixels in the title band");
        // … and two characters of title and legend change the picture where they are drawn.
        let d = differing(&fight, &fire);
        assert!(d > 100, "{d} pixels differ between 打架 and 火灾");
        let title_d = differing(
            &Canvas {
                width: W,
                height: 36,
                data: fight.data[..W * 36 * 3].to_vec(),
            },
            &Canvas {
                width: W,
                height: 36,
                data: fire.data[..W * 36 * 3].to_vec(),
            },
        );
        assert!(
            title_d > 30 && title_d < d,
            "{title_d} of {d} in the title band"
        );
        assert!(fight_svg.contains(">测试视频：打架</text>") && fight_svg.contains(">打架</text>"));
        assert!(fire_svg.contains(">火灾</text>"));
    }
}
