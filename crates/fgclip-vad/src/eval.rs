//! Frame-level evaluation (DESIGN.md §5): ground truth in UCF-Crime's and XD-Violence's
//! layouts, scores from `detect` JSON or `.npy`, ROC AUC and average precision with
//! scikit-learn's tie handling, AUC over anomalous videos and per class.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::data::npy;

/// ROC AUC as scikit-learn's `roc_auc_score` (tied scores count half): the
/// Mann–Whitney statistic with average ranks. None without both classes.
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let n = labels.len().min(scores.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels[..n].iter().filter(|&&l| l).count();
    let negatives = n - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    // Sum of the positives' (1-based, tie-averaged) ranks.
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos_in_group = order[i..=j].iter().filter(|&&k| labels[k]).count();
        rank_sum += avg_rank * pos_in_group as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Average precision as scikit-learn's `average_precision_score`: Σ (Rₖ − Rₖ₋₁) Pₖ over
/// distinct thresholds, highest first. None without positives.
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let n = labels.len().min(scores.len());
    let positives = labels[..n].iter().filter(|&&l| l).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut ap, mut prev_recall) = (0usize, 0usize, 0f64, 0f64);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        for &k in &order[i..=j] {
            if labels[k] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        let recall = tp as f64 / positives as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j + 1;
    }
    Some(ap)
}

/// Evaluation protocol (which ground-truth layout, and AUC or AP as the headline).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    UcfCrime,
    XdViolence,
}

/// One test video's ground truth.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoTruth {
    /// File stem, the key that scores are matched by.
    pub stem: String,
    /// UCF-Crime class (`Normal` for normal videos); XD-Violence: `Anomaly` or `Normal`.
    pub class: String,
    /// Inclusive frame spans.
    pub spans: Vec<(u64, u64)>,
}

impl VideoTruth {
    pub fn is_anomalous(&self) -> bool {
        !self.spans.is_empty()
    }

    /// Per-frame labels for `frames` frames.
    pub fn labels(&self, frames: usize) -> Vec<bool> {
        let mut l = vec![false; frames];
        let Some(last) = frames.checked_sub(1) else {
            return l;
        };
        for &(s, e) in &self.spans {
            let s = usize::try_from(s).unwrap_or(usize::MAX);
            let e = usize::try_from(e).unwrap_or(usize::MAX).min(last);
            if s <= e {
                l[s..=e].fill(true);
            }
        }
        l
    }
}

/// The video's key: its file name without a video extension (XD-Violence names contain
/// dots and no extension).
fn stem_of(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    for ext in [
        ".mp4", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".wmv", ".flv",
    ] {
        if base.len() > ext.len() && base.to_ascii_lowercase().ends_with(ext) {
            return base[..base.len() - ext.len()].to_string();
        }
    }
    base.to_string()
}

/// Parses `Temporal_Anomaly_Annotation_for_Testing_Videos.txt`: `name class s1 e1 s2 e2`
/// with −1 for an absent span.
pub fn parse_ucf_crime(text: &str, path: &Path) -> Result<Vec<VideoTruth>> {
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 6 {
            bail!(
                "{}:{}: expected `name class start1 end1 start2 end2`, got {line:?}",
                path.display(),
                no + 1
            );
        }
        let num = |s: &str| -> Result<i64> {
            s.parse::<i64>().with_context(|| {
                format!("{}:{}: `{s}` is not a frame index", path.display(), no + 1)
            })
        };
        let mut spans = Vec::new();
        for pair in [(f[2], f[3]), (f[4], f[5])] {
            let (s, e) = (num(pair.0)?, num(pair.1)?);
            if s < 0 || e < 0 {
                continue;
            }
            if s > e {
                bail!(
                    "{}:{}: span {s}..{e} ends before it starts",
                    path.display(),
                    no + 1
                );
            }
            spans.push((s as u64, e as u64));
        }
        out.push(VideoTruth {
            stem: stem_of(f[0]),
            class: f[1].to_string(),
            spans,
        });
    }
    Ok(out)
}

/// Parses XD-Violence's `annotations.txt`: `name s1 e1 [s2 e2 …]` (anomalous videos
/// only; others are normal).
pub fn parse_xd_violence(text: &str, path: &Path) -> Result<Vec<VideoTruth>> {
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 3 || !(f.len() - 1).is_multiple_of(2) {
            bail!(
                "{}:{}: expected `name start end [start end …]`, got {line:?}",
                path.display(),
                no + 1
            );
        }
        let mut spans = Vec::new();
        for pair in f[1..].chunks(2) {
            let parse = |s: &str| {
                s.parse::<u64>().with_context(|| {
                    format!("{}:{}: `{s}` is not a frame index", path.display(), no + 1)
                })
            };
            let (s, e) = (parse(pair[0])?, parse(pair[1])?);
            if s > e {
                bail!(
                    "{}:{}: span {s}..{e} ends before it starts",
                    path.display(),
                    no + 1
                );
            }
            spans.push((s, e));
        }
        out.push(VideoTruth {
            stem: stem_of(f[0]),
            class: "Anomaly".into(),
            spans,
        });
    }
    Ok(out)
}

/// Reads a ground-truth file in the protocol's layout.
pub fn read_truth(path: &Path, protocol: Protocol) -> Result<Vec<VideoTruth>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match protocol {
        Protocol::UcfCrime => parse_ucf_crime(&text, path).map_err(|e| {
            // XD-Violence's layout (`name start end …`, no class) read as UCF-Crime's.
            if parse_xd_violence(&text, path).is_ok() {
                e.context(format!(
                    "{} is in XD-Violence's layout (name, then start/end pairs): use --protocol xd-violence",
                    path.display()
                ))
            } else {
                e
            }
        }),
        Protocol::XdViolence => parse_xd_violence(&text, path),
    }
}

/// Frame scores by video name.
pub type ScoresByVideo = BTreeMap<String, Vec<f64>>;

/// Frame scores of every video in `dir`: `<stem>.json` from `detect` (`frame_scores`,
/// and its `frame_count`, returned in the second map) or `<stem>.npy` (1-D, or 2-D with
/// one column).
pub fn read_scores(dir: &Path) -> Result<(ScoresByVideo, BTreeMap<String, usize>)> {
    let mut out = BTreeMap::new();
    let mut counts = BTreeMap::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        let Some(ext) = p.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scores: Vec<f64> = match ext {
            "npy" => {
                let (shape, data) = npy::read_f32(&p)?;
                if shape.len() > 2 || (shape.len() == 2 && shape[1] != 1) {
                    bail!(
                        "{}: frame scores must be 1-D, got shape {shape:?}",
                        p.display()
                    );
                }
                data.into_iter().map(f64::from).collect()
            }
            "json" => {
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not valid JSON", p.display()))?;
                let Some(arr) = v.get("frame_scores").and_then(|a| a.as_array()) else {
                    continue; // not a detect output (e.g. a summary file)
                };
                if let Some(n) = v.get("frame_count").and_then(|n| n.as_u64()) {
                    counts.insert(stem.clone(), n as usize);
                }
                arr.iter()
                    .map(|x| {
                        x.as_f64()
                            .with_context(|| format!("{}: `frame_scores` holds {x}", p.display()))
                    })
                    .collect::<Result<_>>()?
            }
            _ => continue,
        };
        if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
            bail!("{}: score {i} is not finite", p.display());
        }
        if out.insert(stem.clone(), scores).is_some() {
            bail!("{}: two score files for the video `{stem}`", dir.display());
        }
    }
    Ok((out, counts))
}

/// What to do when a video's scores and its frame count differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LengthMismatch {
    /// Cut the longer of scores and labels to the shorter.
    Cut,
    /// Pad short scores with their last value, cut long ones.
    Pad,
}

#[derive(Debug, Serialize)]
pub struct ClassAuc {
    pub class: String,
    pub videos: usize,
    pub roc_auc: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub protocol: Protocol,
    pub videos: usize,
    pub anomalous_videos: usize,
    pub frames: usize,
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
    /// AUC over the frames of anomalous videos only.
    pub roc_auc_anomalous_videos: Option<f64>,
    /// Each class's videos together with all normal videos.
    pub per_class: Vec<ClassAuc>,
    /// Videos in the ground truth without scores (left out).
    pub missing_scores: Vec<String>,
    pub length_mismatches: Vec<String>,
}

/// Evaluates `scores` (by stem) against `truth`. The video set is the ground truth's
/// videos that have scores (XD-Violence: plus scored videos absent from it, as normal).
/// `frame_counts` gives each video's frame count when known (else the scores' length).
pub fn evaluate(
    truth: &[VideoTruth],
    scores: &BTreeMap<String, Vec<f64>>,
    frame_counts: &BTreeMap<String, usize>,
    protocol: Protocol,
    mismatch: Option<LengthMismatch>,
) -> Result<EvalReport> {
    let mut videos: Vec<VideoTruth> = truth.to_vec();
    if protocol == Protocol::XdViolence {
        for stem in scores.keys() {
            if !videos.iter().any(|v| &v.stem == stem) {
                videos.push(VideoTruth {
                    stem: stem.clone(),
                    class: "Normal".into(),
                    spans: Vec::new(),
                });
            }
        }
    }
    let mut missing = Vec::new();
    let mut mismatches = Vec::new();
    let mut per_video: Vec<(VideoTruth, Vec<bool>, Vec<f64>)> = Vec::new();
    for v in videos {
        let Some(s) = scores.get(&v.stem) else {
            missing.push(v.stem.clone());
            continue;
        };
        let frames = frame_counts.get(&v.stem).copied().unwrap_or(s.len());
        let last_span = v
            .spans
            .iter()
            .map(|&(_, e)| usize::try_from(e).unwrap_or(usize::MAX).saturating_add(1))
            .max()
            .unwrap_or(0);
        let mut s = s.clone();
        let mut n = frames;
        if s.len() != frames {
            let msg = format!("{}: {} scores for {} frames", v.stem, s.len(), frames);
            match mismatch {
                None => {
                    mismatches.push(msg);
                    continue;
                }
                Some(LengthMismatch::Cut) => n = s.len().min(frames),
                Some(LengthMismatch::Pad) => {
                    let fill = s.last().copied().unwrap_or(0.0);
                    s.resize(frames, fill);
                }
            }
            mismatches.push(msg);
        }
        if last_span > frames {
            let msg = format!(
                "{}: an anomaly span ends at frame {} but the video has {frames} frames",
                v.stem,
                last_span - 1
            );
            if mismatch.is_none() {
                mismatches.push(msg);
                continue;
            }
            mismatches.push(msg);
        }
        s.truncate(n);
        let labels = v.labels(n);
        per_video.push((v, labels, s));
    }
    if mismatch.is_none() && !mismatches.is_empty() {
        bail!(
            "score lengths differ from the frame counts ({}); pass --allow-length-mismatch cut|pad to evaluate anyway:\n  {}",
            mismatches.len(),
            mismatches.join("\n  ")
        );
    }
    if per_video.is_empty() {
        bail!(
            "no video of the ground truth has scores (missing: {})",
            missing.len()
        );
    }
    let gather = |filter: &dyn Fn(&VideoTruth) -> bool| {
        let mut l = Vec::new();
        let mut s = Vec::new();
        for (v, lv, sv) in &per_video {
            if filter(v) {
                l.extend_from_slice(lv);
                s.extend_from_slice(sv);
            }
        }
        (l, s)
    };
    let (l, s) = gather(&|_| true);
    let (la, sa) = gather(&|v| v.is_anomalous());
    let mut classes: Vec<String> = per_video
        .iter()
        .filter(|(v, _, _)| v.is_anomalous())
        .map(|(v, _, _)| v.class.clone())
        .collect();
    classes.sort();
    classes.dedup();
    let per_class = classes
        .into_iter()
        .map(|c| {
            let (lc, sc) = gather(&|v| v.class == c || !v.is_anomalous());
            ClassAuc {
                videos: per_video.iter().filter(|(v, _, _)| v.class == c).count(),
                roc_auc: roc_auc(&lc, &sc),
                class: c,
            }
        })
        .collect();
    Ok(EvalReport {
        protocol,
        videos: per_video.len(),
        anomalous_videos: per_video
            .iter()
            .filter(|(v, _, _)| v.is_anomalous())
            .count(),
        frames: l.len(),
        roc_auc: roc_auc(&l, &s),
        average_precision: average_precision(&l, &s),
        roc_auc_anomalous_videos: roc_auc(&la, &sa),
        per_class,
        missing_scores: missing,
        length_mismatches: mismatches,
    })
}

/// The readable report.
pub fn render(r: &EvalReport) -> String {
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    let mut out = format!(
        "{} videos ({} anomalous), {} frames\nframe-level ROC AUC      {}\naverage precision        {}\nAUC, anomalous videos    {}\n",
        r.videos,
        r.anomalous_videos,
        r.frames,
        f(r.roc_auc),
        f(r.average_precision),
        f(r.roc_auc_anomalous_videos)
    );
    for c in &r.per_class {
        out.push_str(&format!(
            "  {:<16} {:>4} videos  AUC {}\n",
            c.class,
            c.videos,
            f(c.roc_auc)
        ));
    }
    if !r.missing_scores.is_empty() {
        out.push_str(&format!(
            "warning: {} ground-truth videos have no scores\n",
            r.missing_scores.len()
        ));
    }
    for m in &r.length_mismatches {
        out.push_str(&format!("warning: {m}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_ap_on_hand_computed_cases() {
        let l = [true, false, true, false];
        assert_eq!(roc_auc(&l, &[0.9, 0.1, 0.8, 0.2]), Some(1.0));
        assert_eq!(roc_auc(&l, &[0.1, 0.9, 0.2, 0.8]), Some(0.0));
        // All tied: 0.5 AUC; AP = prevalence.
        assert_eq!(roc_auc(&l, &[0.5; 4]), Some(0.5));
        assert_eq!(average_precision(&l, &[0.5; 4]), Some(0.5));
        // sklearn: average_precision_score([1,0,1,0], [0.9,0.8,0.7,0.1]) = (1 + 2/3) / 2.
        let ap = average_precision(&l, &[0.9, 0.8, 0.7, 0.1]).unwrap();
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(average_precision(&[false], &[0.1]), None);
    }

    #[test]
    fn ground_truth_layouts() {
        let p = Path::new("gt.txt");
        let u = parse_ucf_crime(
            "Arrest001_x264.mp4  Arrest  1185  1485  -1  -1\nNormal_Videos_003_x264.mp4 Normal -1 -1 -1 -1\nExplosion004_x264.mp4  Explosion  75  315  1 3\n",
            p,
        )
        .unwrap();
        assert_eq!(u[0].stem, "Arrest001_x264");
        assert_eq!(u[0].spans, vec![(1185, 1485)]);
        assert!(!u[1].is_anomalous());
        assert_eq!(u[2].labels(6), vec![false, true, true, true, false, false]);
        // Spans are cut to the video: one running past its end, one starting after it.
        let t = VideoTruth {
            stem: "v".into(),
            class: "Fire".into(),
            spans: vec![(3, 99), (7, 9)],
        };
        assert_eq!(t.labels(5), vec![false, false, false, true, true]);
        assert!(t.labels(0).is_empty());
        let x = parse_xd_violence(
            "A.Beautiful.Mind.2001__#00-40-52_00-42-01_label_A 10 20 30 35\n",
            p,
        )
        .unwrap();
        assert_eq!(x[0].spans, vec![(10, 20), (30, 35)]);
        assert_eq!(
            x[0].stem,
            "A.Beautiful.Mind.2001__#00-40-52_00-42-01_label_A"
        );
        assert!(
            parse_ucf_crime("a b 1 2 3\n", p)
                .unwrap_err()
                .to_string()
                .contains("gt.txt:1")
        );
        assert!(parse_ucf_crime("a b x 2 3 4\n", p).is_err());
        assert!(parse_xd_violence("a 5 2\n", p).is_err());
        // A span ending at the largest frame number covers the rest of the video.
        let x = parse_xd_violence("big 3 18446744073709551615\n", p).unwrap();
        assert_eq!(x[0].labels(5), vec![false, false, false, true, true]);
        let scores = BTreeMap::from([("big".to_string(), vec![0.1, 0.2, 0.3, 0.9, 0.8])]);
        // … and evaluating it is a clear error (the span ends past the video), no overflow.
        let e = evaluate(&x, &scores, &BTreeMap::new(), Protocol::XdViolence, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ends at frame 18446744073709551614"), "{e}");
    }
}
