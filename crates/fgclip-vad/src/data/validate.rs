//! `fgclip validate`: counts and every problem of an annotation file, optionally checked
//! against the videos themselves.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use indicatif::ProgressBar;
use serde::Serialize;

use super::annotations::{Dataset, Problem, Severity, load};
use super::sampling::extent;
use super::video::{VideoInfo, probe};

#[derive(Debug, Serialize)]
pub struct Summary {
    pub file: String,
    pub clips: usize,
    pub anomaly_clips: usize,
    pub normal_clips: usize,
    pub regions: usize,
    pub key_frames: usize,
    pub disabled_boxes: usize,
    pub with_timestamps: usize,
    pub videos_checked: Option<usize>,
    pub errors: usize,
    pub warnings: usize,
    pub problems: Vec<Problem>,
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

/// Loads `annotations` and gathers the summary. Errs only when the file is unreadable.
pub fn validate(
    annotations: &Path,
    videos: Option<&Path>,
    max_anns: usize,
    progress: &ProgressBar,
) -> Result<Summary> {
    let mut d = load(annotations, max_anns)?;
    let mut videos_checked = None;
    if let Some(root) = videos {
        let (n, more) = check_videos(&d, root, progress);
        videos_checked = Some(n);
        d.problems.extend(more);
        d.problems
            .sort_by(|a, b| (a.clip, a.severity).cmp(&(b.clip, b.severity)));
    }
    let boxes = || {
        d.clips
            .iter()
            .flat_map(|c| c.regions.iter().flat_map(|r| r.boxes.iter()))
    };
    let anomaly_clips = d.clips.iter().filter(|c| c.has_boxes()).count();
    Ok(Summary {
        file: annotations.display().to_string(),
        clips: d.clips.len() + d.problems.iter().filter(|p| p.field.is_empty()).count(),
        anomaly_clips,
        normal_clips: d.clips.len() - anomaly_clips,
        regions: d.clips.iter().map(|c| c.regions.len()).sum(),
        key_frames: boxes().filter(|b| b.enabled).count(),
        disabled_boxes: boxes().filter(|b| !b.enabled).count(),
        with_timestamps: d.clips.iter().filter(|c| c.timestamps.is_some()).count(),
        videos_checked,
        errors: d.errors(),
        warnings: d.warnings(),
        problems: d.problems,
    })
}

/// The human-readable report.
pub fn render(s: &Summary) -> String {
    let mut out = format!(
        "{}: {} clips ({} anomalous, {} normal), {} regions, {} key frames ({} disabled boxes), {} with timestamps\n",
        s.file,
        s.clips,
        s.anomaly_clips,
        s.normal_clips,
        s.regions,
        s.key_frames,
        s.disabled_boxes,
        s.with_timestamps
    );
    if let Some(n) = s.videos_checked {
        out.push_str(&format!("videos checked: {n}\n"));
    }
    for p in &s.problems {
        let sev = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let field = if p.field.is_empty() {
            String::new()
        } else {
            format!(" {}", p.field)
        };
        out.push_str(&format!("{sev}: clip {}{field}: {}\n", p.clip, p.message));
    }
    out.push_str(&format!(
        "{} error(s), {} warning(s)\n",
        s.errors, s.warnings
    ));
    out
}
