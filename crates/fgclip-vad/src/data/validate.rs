//! `fgclip validate`: counts and every problem of an annotation file, optionally checked
//! against the videos themselves, and of a hard-negative sidecar (alone, or joined to the
//! annotations).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use indicatif::ProgressBar;
use serde::Serialize;

use super::annotations::{Dataset, Problem, Severity, load};
use super::hard_negatives::{self, ItemProblem};
use super::sampling::extent;
use super::video::{VideoInfo, probe};

/// Counts of an annotation file.
#[derive(Debug, Serialize)]
pub struct AnnotationStats {
    pub file: String,
    pub clips: usize,
    pub anomaly_clips: usize,
    pub normal_clips: usize,
    pub regions: usize,
    pub key_frames: usize,
    pub disabled_boxes: usize,
    pub with_timestamps: usize,
    /// Clips with a `long_caption`.
    pub long_captions: usize,
    pub videos_checked: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    /// Absent when only a sidecar was validated.
    #[serde(flatten)]
    pub annotations: Option<AnnotationStats>,
    pub hard_negative_file: Option<String>,
    /// Sidecar items read (null without a sidecar).
    pub hard_negative_items: Option<usize>,
    /// Negative captions in the files: the sidecar's usable items' and the annotations'
    /// inline ones.
    pub hard_negatives: usize,
    /// Negative captions on the annotations' regions once the sidecar is joined (inline and
    /// joined; null without annotations).
    pub hard_negatives_joined: Option<usize>,
    /// Sidecar items with an empty list.
    pub hard_negative_empty: Option<usize>,
    /// Regions of the annotations with at least one negative (null without annotations).
    pub hard_negative_regions: Option<usize>,
    /// Sidecar items whose clip or region is not in the annotations (null without them).
    pub hard_negative_unmatched: Option<usize>,
    pub errors: usize,
    pub warnings: usize,
    pub problems: Vec<Problem>,
    /// The sidecar's problems, by item; unmatched items are warnings here.
    pub hard_negative_problems: Vec<ItemProblem>,
}

fn push(
    problems: &mut Vec<Problem>,
    clip: usize,
    field: String,
    severity: Severity,
    message: String,
) {
    problems.push(Problem {
        clip,
        field,
        severity,
        message,
    });
}

/// Checks every clip against its video: present and decodable, timestamps inside it,
/// key frames inside the clip.
pub fn check_videos(d: &Dataset, root: &Path, progress: &ProgressBar) -> (usize, Vec<Problem>) {
    let mut infos: BTreeMap<&str, Result<VideoInfo, String>> = BTreeMap::new();
    let distinct: std::collections::BTreeSet<&str> = d
        .clips
        .iter()
        .map(|c| c.video.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    progress.set_length(distinct.len() as u64);
    for v in &distinct {
        let path = root.join(v);
        let info = if path.is_file() {
            probe(&path, false).map_err(|e| format!("{e:#}"))
        } else {
            Err(format!("{}: not found", path.display()))
        };
        infos.insert(v, info);
        progress.inc(1);
    }
    let mut problems = Vec::new();
    for clip in &d.clips {
        let Some(info) = infos.get(clip.video.as_str()) else {
            continue;
        };
        let info = match info {
            Ok(i) => i,
            Err(msg) => {
                push(
                    &mut problems,
                    clip.index,
                    "video".into(),
                    Severity::Error,
                    msg.clone(),
                );
                continue;
            }
        };
        let Some(ext) = extent(clip.timestamps, info.fps, info.frame_count) else {
            push(
                &mut problems,
                clip.index,
                "timestamps".into(),
                Severity::Error,
                format!(
                    "{:?} holds no frame of the video ({} frames at {} fps, {:.2} s)",
                    clip.timestamps, info.frame_count, info.fps, info.duration_s
                ),
            );
            continue;
        };
        if let Some((_, end)) = clip.timestamps
            && info.duration_s > 0.0
            && end > info.duration_s + 1.0 / info.fps
        {
            push(
                &mut problems,
                clip.index,
                "timestamps".into(),
                Severity::Warning,
                format!(
                    "end {end} s is past the video's end ({:.3} s): cut to it",
                    info.duration_s
                ),
            );
        }
        for (i, region) in clip.regions.iter().enumerate() {
            let enabled: Vec<u64> = region
                .boxes
                .iter()
                .filter(|b| b.enabled)
                .map(|b| b.frame)
                .collect();
            let outside: Vec<u64> = enabled
                .iter()
                .copied()
                .filter(|&f| !ext.contains(f))
                .collect();
            if outside.is_empty() {
                continue;
            }
            let shown: Vec<String> = outside.iter().take(5).map(u64::to_string).collect();
            let all_out = outside.len() == enabled.len();
            push(
                &mut problems,
                clip.index,
                format!("box_infos[{i}]"),
                Severity::Warning,
                format!(
                    "{} key frame(s) outside the clip's frames {}..={} ({}{}){}",
                    outside.len(),
                    ext.first,
                    ext.last,
                    shown.join(", "),
                    if outside.len() > 5 { ", …" } else { "" },
                    if all_out {
                        ": the region takes no part in the region loss"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
    (distinct.len(), problems)
}

/// Loads `annotations` and/or a hard-negative sidecar and gathers the summary. Errs only
/// when a file is unreadable (or neither is given).
pub fn validate(
    annotations: Option<&Path>,
    hard_negatives_file: Option<&Path>,
    videos: Option<&Path>,
    max_anns: usize,
    progress: &ProgressBar,
) -> Result<Summary> {
    if annotations.is_none() && hard_negatives_file.is_none() {
        anyhow::bail!("nothing to validate: give --annotations and/or --hard-negatives");
    }
    let mut dataset = match annotations {
        Some(path) => Some(load(path, max_anns)?),
        None => None,
    };
    let sidecar = match hard_negatives_file {
        Some(path) => Some(hard_negatives::load(path)?),
        None => None,
    };
    let mut side_problems = sidecar
        .as_ref()
        .map(|s| s.problems.clone())
        .unwrap_or_default();
    // The annotations' own (inline) negatives, before the sidecar's are joined to them.
    let inline = dataset.as_ref().map_or(0, |d| {
        d.clips
            .iter()
            .flat_map(|c| c.regions.iter())
            .map(|r| r.hard_negatives.len())
            .sum::<usize>()
    });
    let mut unmatched = None;
    if let (Some(d), Some(side)) = (dataset.as_mut(), sidecar.as_ref()) {
        let report = hard_negatives::join(&mut d.clips, side);
        unmatched = Some(report.unmatched.len());
        side_problems.extend(report.unmatched.into_iter().map(|(item, why)| ItemProblem {
            item,
            field: "video".into(),
            severity: Severity::Warning,
            message: why,
        }));
        side_problems.sort_by_key(|p| p.item);
    }
    let mut stats = None;
    let (mut errors, mut warnings, mut problems) = (0, 0, Vec::new());
    let mut joined = None;
    let mut regions_with = None;
    if let Some(mut d) = dataset {
        let mut videos_checked = None;
        if let Some(root) = videos {
            let (n, more) = check_videos(&d, root, progress);
            videos_checked = Some(n);
            d.problems.extend(more);
            d.problems.sort_by_key(|a| (a.clip, a.severity));
        }
        let regions = || d.clips.iter().flat_map(|c| c.regions.iter());
        let boxes = || regions().flat_map(|r| r.boxes.iter());
        let anomaly_clips = d.clips.iter().filter(|c| c.has_boxes()).count();
        joined = Some(regions().map(|r| r.hard_negatives.len()).sum::<usize>());
        regions_with = Some(regions().filter(|r| !r.hard_negatives.is_empty()).count());
        stats = Some(AnnotationStats {
            file: d.path.display().to_string(),
            clips: d.clips.len() + d.problems.iter().filter(|p| p.field.is_empty()).count(),
            anomaly_clips,
            normal_clips: d.clips.len() - anomaly_clips,
            regions: regions().count(),
            key_frames: boxes().filter(|b| b.enabled).count(),
            disabled_boxes: boxes().filter(|b| !b.enabled).count(),
            with_timestamps: d.clips.iter().filter(|c| c.timestamps.is_some()).count(),
            long_captions: d.clips.iter().filter(|c| c.long_caption.is_some()).count(),
            videos_checked,
        });
        errors += d.errors();
        warnings += d.warnings();
        problems = d.problems;
    }
    // One meaning each: the files' own negatives, and those on the regions after the join.
    let hard_negatives = sidecar.as_ref().map_or(0, |s| s.negatives()) + inline;
    errors += side_problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    warnings += side_problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .count();
    Ok(Summary {
        annotations: stats,
        hard_negative_file: hard_negatives_file.map(|p| p.display().to_string()),
        hard_negative_items: sidecar.as_ref().map(|s| s.items_read),
        hard_negatives,
        hard_negatives_joined: joined,
        hard_negative_empty: sidecar.as_ref().map(|s| s.empty_items()),
        hard_negative_regions: regions_with,
        hard_negative_unmatched: unmatched,
        errors,
        warnings,
        problems,
        hard_negative_problems: side_problems,
    })
}

/// The human-readable report.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    if let Some(a) = &s.annotations {
        out.push_str(&format!(
            "{}: {} clips ({} anomalous, {} normal), {} regions, {} key frames ({} disabled boxes), {} with timestamps, {} with a long caption\n",
            a.file,
            a.clips,
            a.anomaly_clips,
            a.normal_clips,
            a.regions,
            a.key_frames,
            a.disabled_boxes,
            a.with_timestamps,
            a.long_captions
        ));
        if let Some(n) = a.videos_checked {
            out.push_str(&format!("videos checked: {n}\n"));
        }
    }
    if let Some(file) = &s.hard_negative_file {
        out.push_str(&format!(
            "{file}: {} items, {} empty\n",
            s.hard_negative_items.unwrap_or(0),
            s.hard_negative_empty.unwrap_or(0)
        ));
    }
    if s.hard_negatives > 0 || s.hard_negative_file.is_some() {
        out.push_str(&format!("hard negatives: {}", s.hard_negatives));
        if let Some(j) = s.hard_negatives_joined {
            out.push_str(&format!(", {j} on the annotations' regions"));
        }
        if let Some(r) = s.hard_negative_regions {
            out.push_str(&format!(" ({r} region(s))"));
        }
        if let Some(u) = s.hard_negative_unmatched {
            out.push_str(&format!(", {u} sidecar item(s) unmatched"));
        }
        out.push('\n');
    }
    let sev = |v: Severity| match v {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    for p in &s.problems {
        let field = if p.field.is_empty() {
            String::new()
        } else {
            format!(" {}", p.field)
        };
        out.push_str(&format!(
            "{}: clip {}{field}: {}\n",
            sev(p.severity),
            p.clip,
            p.message
        ));
    }
    for p in &s.hard_negative_problems {
        out.push_str(&format!(
            "{}: hard-negative item {} {}: {}\n",
            sev(p.severity),
            p.item,
            p.field,
            p.message
        ));
    }
    out.push_str(&format!(
        "{} error(s), {} warning(s)\n",
        s.errors, s.warnings
    ));
    out
}
