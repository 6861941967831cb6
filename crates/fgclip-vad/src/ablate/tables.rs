//! An ablation's outputs: `results.csv` (one row per run), `table.md` and `table.tex`
//! (booktabs; mean ± std over seeds per cell, the best AUC and AP in bold), one SVG of AUC
//! against each numeric grid key, and `report.html` with all of them.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::{Plan, RunResult};
use crate::io::write_atomic;
use crate::plot::escape_markup as html_escape;

/// Mean and sample standard deviation (n − 1) of the values that exist.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stat {
    fn of(values: impl Iterator<Item = Option<f64>>) -> Option<Self> {
        let v: Vec<f64> = values.flatten().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Self { mean, std, n })
    }
}

/// One cell over its seeds.
#[derive(Clone, Debug)]
pub struct Summary {
    pub cell: usize,
    pub label: String,
    pub keys: serde_json::Map<String, Value>,
    pub seeds: usize,
    pub roc_auc: Option<Stat>,
    pub average_precision: Option<Stat>,
    pub train_seconds: Option<Stat>,
    pub clips_per_s: Option<Stat>,
    pub peak_rss_mb: Option<Stat>,
    pub decode_seconds: Option<Stat>,
    /// Loader decode time per training clip, ms (the cost of the clip's segment).
    pub decode_ms_per_clip: Option<Stat>,
}

/// Per-cell means and spreads, in cell order.
pub fn summarise(plan: &Plan, results: &[RunResult]) -> Vec<Summary> {
    plan.cells
        .iter()
        .map(|c| {
            let rows: Vec<&RunResult> = results.iter().filter(|r| r.cell == c.index).collect();
            let stat = |f: &dyn Fn(&RunResult) -> Option<f64>| Stat::of(rows.iter().map(|r| f(r)));
            Summary {
                cell: c.index,
                label: c.label.clone(),
                keys: c.keys.clone(),
                seeds: rows.len(),
                roc_auc: stat(&|r| r.roc_auc),
                average_precision: stat(&|r| r.average_precision),
                train_seconds: stat(&|r| Some(r.train_seconds)),
                clips_per_s: stat(&|r| Some(r.clips_per_s)),
                peak_rss_mb: stat(&|r| r.peak_rss_mb),
                decode_seconds: stat(&|r| Some(r.decode_seconds)),
                decode_ms_per_clip: stat(&|r| {
                    let clips = r.clips_per_s * r.train_seconds;
                    (clips > 0.5).then(|| 1e3 * r.decode_seconds / clips)
                }),
            }
        })
        .collect()
}

/// A cell's value of `k`; `·` where the cell keeps the base's.
fn key_value(keys: &serde_json::Map<String, Value>, k: &str) -> String {
    keys.get(k).map_or_else(|| "·".into(), super::show)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or(String::new(), |v| format!("{v:.digits$}"))
}

/// `results.csv`: one row per run, every varied key and every metric and cost.
pub fn results_csv(plan: &Plan, results: &[RunResult]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = vec!["run".into(), "seed".into()];
    header.extend(plan.varied.iter().cloned());
    header.extend(
        [
            "roc_auc",
            "average_precision",
            "train_seconds",
            "clips_per_s",
            "peak_rss_mb",
            "decode_seconds",
            "detect_seconds",
            "steps",
            "last_loss",
        ]
        .map(String::from),
    );
    // Writing into memory fails only on a record of another length (none here).
    let _ = w.write_record(&header);
    for r in results {
        let mut row = vec![r.run.clone(), r.seed.to_string()];
        row.extend(
            plan.varied
                .iter()
                .map(|k| r.keys.get(k).map(super::show).unwrap_or_default()),
        );
        row.extend([
            opt(r.roc_auc, 6),
            opt(r.average_precision, 6),
            format!("{:.3}", r.train_seconds),
            format!("{:.4}", r.clips_per_s),
            opt(r.peak_rss_mb, 1),
            format!("{:.3}", r.decode_seconds),
            format!("{:.3}", r.detect_seconds),
            r.steps.to_string(),
            opt(r.last_loss, 6),
        ]);
        let _ = w.write_record(&row);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn best(summaries: &[Summary], f: impl Fn(&Summary) -> Option<Stat>) -> Option<f64> {
    summaries
        .iter()
        .filter_map(|s| f(s).map(|x| x.mean))
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
}

/// The best mean AUC and AP over the cells (bold in every table).
fn bests(summaries: &[Summary]) -> (Option<f64>, Option<f64>) {
    (
        best(summaries, |s| s.roc_auc),
        best(summaries, |s| s.average_precision),
    )
}

fn pm(s: Option<Stat>, digits: usize, sep: &str) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n > 1 => format!("{:.digits$}{sep}{:.digits$}", s.mean, s.std),
        Some(s) => format!("{:.digits$}", s.mean),
    }
}

const COLUMNS: [&str; 8] = [
    "frame AUC",
    "AP",
    "train s",
    "clips/s",
    "peak RSS MiB",
    "decode s",
    "decode ms/clip",
    "seeds",
];

/// The per-cell cells of a table row, best AUC / AP marked with `bold`.
fn row_cells(
    s: &Summary,
    bests: (Option<f64>, Option<f64>),
    sep: &str,
    bold: &dyn Fn(String) -> String,
) -> Vec<String> {
    let mark = |stat: Option<Stat>, best: Option<f64>, digits: usize| {
        let text = pm(stat, digits, sep);
        match (stat, best) {
            (Some(x), Some(b)) if x.mean == b => bold(text),
            _ => text,
        }
    };
    vec![
        mark(s.roc_auc, bests.0, 4),
        mark(s.average_precision, bests.1, 4),
        pm(s.train_seconds, 1, sep),
        pm(s.clips_per_s, 2, sep),
        pm(s.peak_rss_mb, 0, sep),
        pm(s.decode_seconds, 1, sep),
        pm(s.decode_ms_per_clip, 1, sep),
        s.seeds.to_string(),
    ]
}

/// `table.md`: one row per cell, mean ± std over seeds.
pub fn table_md(plan: &Plan, summaries: &[Summary]) -> String {
    let bests = bests(summaries);
    let mut s = String::from("|");
    for k in &plan.varied {
        let _ = write!(s, " {k} |");
    }
    for c in COLUMNS {
        let _ = write!(s, " {c} |");
    }
    s.push_str("\n|");
    for _ in &plan.varied {
        s.push_str(" --- |");
    }
    for _ in COLUMNS {
        s.push_str(" ---: |");
    }
    s.push('\n');
    for sum in summaries {
        s.push('|');
        for k in &plan.varied {
            let _ = write!(s, " {} |", key_value(&sum.keys, k));
        }
        for c in row_cells(sum, bests, " ± ", &|t| format!("**{t}**")) {
            let _ = write!(s, " {c} |");
        }
        s.push('\n');
    }
    s
}

fn tex_escape(s: &str) -> String {
    let mut o = String::new();
    for ch in s.chars() {
        match ch {
            '_' | '%' | '&' | '#' | '$' | '{' | '}' => {
                o.push('\\');
                o.push(ch);
            }
            '·' => o.push_str("--"),
            _ => o.push(ch),
        }
    }
    o
}

/// `table.tex`: a booktabs tabular, best AUC / AP in bold.
pub fn table_tex(plan: &Plan, summaries: &[Summary]) -> String {
    let bests = bests(summaries);
    let mut s = String::from("% fgclip ablate: mean \\pm std over seeds\n\\begin{tabular}{");
    s.push_str(&"l".repeat(plan.varied.len()));
    s.push_str(&"r".repeat(COLUMNS.len()));
    s.push_str("}\n\\toprule\n");
    let head: Vec<String> = plan
        .varied
        .iter()
        .map(|k| tex_escape(k))
        .chain(COLUMNS.iter().map(|c| tex_escape(c)))
        .collect();
    let _ = writeln!(s, "{} \\\\", head.join(" & "));
    s.push_str("\\midrule\n");
    for sum in summaries {
        let cells: Vec<String> = plan
            .varied
            .iter()
            .map(|k| tex_escape(&key_value(&sum.keys, k)))
            .chain(row_cells(sum, bests, " $\\pm$ ", &|t| {
                format!("\\textbf{{{t}}}")
            }))
            .collect();
        let _ = writeln!(s, "{} \\\\", cells.join(" & "));
    }
    s.push_str("\\bottomrule\n\\end{tabular}\n");
    s
}

/// AUC (mean ± std over seeds) against one numeric key, one line per combination of the
/// other keys; None when the key has no numeric values or no AUC exists.
pub fn auc_svg(plan: &Plan, summaries: &[Summary], key: &str) -> Option<String> {
    let mut series: std::collections::BTreeMap<String, Vec<(f64, Stat)>> = Default::default();
    for s in summaries {
        let (Some(x), Some(auc)) = (s.keys.get(key).and_then(Value::as_f64), s.roc_auc) else {
            continue;
        };
        let others: Vec<String> = plan
            .varied
            .iter()
            .filter(|k| k.as_str() != key)
            .filter_map(|k| s.keys.get(k).map(|v| format!("{k}={v}")))
            .collect();
        series.entry(others.join(", ")).or_default().push((x, auc));
    }
    series.retain(|_, v| !v.is_empty());
    if series.is_empty() {
        return None;
    }
    let xs: Vec<f64> = series.values().flatten().map(|p| p.0).collect();
    let (x0, x1) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let ys: Vec<(f64, f64)> = series
        .values()
        .flatten()
        .map(|p| (p.1.mean - p.1.std, p.1.mean + p.1.std))
        .collect();
    let (y0, y1) = ys
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &(l, h)| (a.min(l), b.max(h)));
    let (y0, y1) = ((y0 - 0.02).max(0.0), (y1 + 0.02).min(1.0).max(y0 + 0.05));
    let (w, h, pad) = (560.0, 320.0, 50.0);
    let px = |x: f64| pad + (w - 2.0 * pad) * if x1 > x0 { (x - x0) / (x1 - x0) } else { 0.5 };
    let py = |y: f64| h - pad - (h - 2.0 * pad) * (y - y0) / (y1 - y0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        s,
        "<line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>",
        b = h - pad,
        r = w - pad
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{key}</text><text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">frame AUC</text>",
        w / 2.0,
        h - 12.0,
        h / 2.0,
        h / 2.0
    );
    for i in 0..=4 {
        let y = y0 + (y1 - y0) * i as f64 / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{y:.3}</text>",
            pad - 4.0,
            py(y) + 4.0
        );
    }
    let mut ticks: Vec<f64> = xs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for x in ticks {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{x}</text>",
            px(x),
            h - pad + 16.0
        );
    }
    for (i, (name, mut pts)) in series.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let [r, g, b] = crate::plot::colour(i + 1);
        let colour = format!("rgb({r},{g},{b})");
        let path: Vec<String> = pts
            .iter()
            .map(|(x, st)| format!("{:.1},{:.1}", px(*x), py(st.mean)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for (x, st) in &pts {
            let _ = writeln!(
                s,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"{colour}\"/><circle cx=\"{0:.1}\" cy=\"{3:.1}\" r=\"3\" fill=\"{colour}\"/>",
                px(*x),
                py(st.mean - st.std),
                py(st.mean + st.std),
                py(st.mean)
            );
        }
        if !name.is_empty() {
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{}</text>",
                pad + 8.0,
                pad + 14.0 * (i as f64 + 1.0),
                html_escape(&name)
            );
        }
    }
    s.push_str("</svg>\n");
    Some(s)
}

/// The HTML rendering of the summary table.
fn table_html(plan: &Plan, summaries: &[Summary]) -> String {
    let bests = bests(summaries);
    let mut s = String::from("<table>\n<tr>");
    for k in plan.varied.iter().map(String::as_str).chain(COLUMNS) {
        let _ = write!(s, "<th>{}</th>", html_escape(k));
    }
    s.push_str("</tr>\n");
    for sum in summaries {
        s.push_str("<tr>");
        for k in &plan.varied {
            let _ = write!(s, "<td>{}</td>", html_escape(&key_value(&sum.keys, k)));
        }
        for c in row_cells(sum, bests, " ± ", &|t| format!("<b>{t}</b>")) {
            let _ = write!(s, "<td class=\"n\">{c}</td>");
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    s
}

/// Writes every output of the ablation into `out`.
pub fn write_outputs(
    out: &Path,
    plan: &Plan,
    results: &[RunResult],
    grid_file: &Path,
) -> Result<()> {
    let summaries = summarise(plan, results);
    write_atomic(
        &out.join("results.csv"),
        results_csv(plan, results).as_bytes(),
    )?;
    write_atomic(&out.join("table.md"), table_md(plan, &summaries).as_bytes())?;
    write_atomic(
        &out.join("table.tex"),
        table_tex(plan, &summaries).as_bytes(),
    )?;
    let mut plots = Vec::new();
    for key in &plan.varied {
        if let Some(svg) = auc_svg(plan, &summaries, key) {
            let name = format!("auc_vs_{key}.svg");
            write_atomic(&out.join(&name), svg.as_bytes())?;
            plots.push(name);
        }
    }
    let grid = std::fs::read_to_string(out.join("grid.json")).unwrap_or_default();
    let mut html = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>fgclip ablation</title>\n<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}td,th{border-bottom:1px solid #ccc;padding:4px 10px}td.n{text-align:right}pre{background:#f4f4f4;padding:1em}</style></head><body>\n",
    );
    let _ = writeln!(
        html,
        "<h1>Ablation</h1>\n<p>{} cells × {} seeds = {} runs, from <code>{}</code>. Frame-level ROC AUC and AP on the held-out videos, mean ± sample std over seeds; best in bold. Every run: <a href=\"results.csv\">results.csv</a>; tables: <a href=\"table.md\">table.md</a>, <a href=\"table.tex\">table.tex</a>.</p>",
        plan.cells.len(),
        plan.seeds.len(),
        results.len(),
        html_escape(&grid_file.display().to_string())
    );
    html.push_str(&table_html(plan, &summaries));
    for p in &plots {
        let _ = writeln!(
            html,
            "<h2>{}</h2>\n<img src=\"{p}\" alt=\"{p}\">",
            html_escape(p)
        );
    }
    let _ = writeln!(
        html,
        "<h2>Grid</h2>\n<pre>{}</pre>\n</body></html>",
        html_escape(&grid)
    );
    write_atomic(&out.join("report.html"), html.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_mean_and_sample_std() {
        let s = Stat::of([Some(0.7), Some(0.8), None, Some(0.9)].into_iter()).unwrap();
        assert!((s.mean - 0.8).abs() < 1e-12);
        assert!((s.std - 0.1).abs() < 1e-12);
        assert_eq!(s.n, 3);
        assert_eq!(Stat::of([None].into_iter()), None);
    }

    #[test]
    fn tex_escapes_keys() {
        assert_eq!(tex_escape("region_weight"), "region\\_weight");
        assert_eq!(tex_escape("·"), "--");
    }
}
