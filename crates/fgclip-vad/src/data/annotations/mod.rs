//! Annotation files (DESIGN.md §2): a JSON array or JSON Lines of clips with a global
//! caption, region captions, key-frame boxes and optional timestamps, including the
//! published VAGTA variants (`enabled`, `_track_id`, `box_infos: [[]]`, tracked boxes),
//! and DESIGN.md §7's optional `long_caption` and per-region `hard_negatives`.
//!
//! Loading never stops at the first problem: every clip is parsed field by field and each
//! problem is recorded with the clip's index, the field's path and a severity.

mod clip;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

/// Box coordinates this far outside [0, 1] are floating-point noise in published data
/// and are clamped silently.
pub const BOX_TOLERANCE: f64 = 1e-6;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeyBox {
    /// Frame index in the original video.
    pub frame: u64,
    /// `[x1, y1, x2, y2]`, normalised to [0, 1].
    pub bbox: [f32; 4],
    pub enabled: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub caption: String,
    /// Key frames; empty for a region without boxes (it gets the whole-frame box).
    pub boxes: Vec<KeyBox>,
    /// Hard-negative captions (inline `hard_negatives[i]`, or joined from a sidecar).
    pub hard_negatives: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Clip {
    /// Position in the file (0-based), as problems quote it.
    pub index: usize,
    pub video: String,
    pub global_caption: String,
    /// FG-CLIP's long caption (its `loss_itcl`), when the clip has one.
    pub long_caption: Option<String>,
    pub regions: Vec<Region>,
    pub timestamps: Option<(f64, f64)>,
}

impl Clip {
    /// True when any region has a box (an annotated anomaly).
    pub fn has_boxes(&self) -> bool {
        self.regions.iter().any(|r| !r.boxes.is_empty())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    pub clip: usize,
    pub field: String,
    pub severity: Severity,
    pub message: String,
}

/// A loaded annotation file. Clips with errors are kept (for reporting) and left out of
/// [`Dataset::usable`].
#[derive(Clone, Debug)]
pub struct Dataset {
    pub path: PathBuf,
    pub clips: Vec<Clip>,
    pub problems: Vec<Problem>,
    pub max_anns: usize,
}

impl Dataset {
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.problems.len() - self.errors()
    }

    /// Indices of clips with at least one error.
    pub fn clips_with_errors(&self) -> BTreeSet<usize> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.clip)
            .collect()
    }

    /// Clips without errors, regions cut to `max_anns`.
    pub fn usable(&self) -> Vec<Clip> {
        let bad = self.clips_with_errors();
        self.clips
            .iter()
            .filter(|c| !bad.contains(&c.index))
            .map(|c| {
                let mut c = c.clone();
                c.regions.truncate(self.max_anns);
                c
            })
            .collect()
    }
}

/// Parses annotation text (a JSON array, or JSON Lines). Fails only when the text is not
/// JSON at all; every per-clip problem lands in `Dataset::problems`.
pub fn parse(text: &str, path: &Path, max_anns: usize) -> Result<Dataset> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let mut problems = Vec::new();
    let values: Vec<(usize, Option<Value>)> = if trimmed.starts_with('[') {
        let all: Value = serde_json::from_str(trimmed)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        match all {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i, Some(v)))
                .collect(),
            _ => bail!("{}: expected a JSON array of clips", path.display()),
        }
    } else if trimmed.starts_with('{') {
        let mut out = Vec::new();
        for (line_no, line) in trimmed.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let index = out.len();
            match serde_json::from_str::<Value>(line) {
                Ok(v) => out.push((index, Some(v))),
                Err(e) => {
                    problems.push(Problem {
                        clip: index,
                        field: String::new(),
                        severity: Severity::Error,
                        message: format!("line {}: not valid JSON: {e}", line_no + 1),
                    });
                    out.push((index, None));
                }
            }
        }
        out
    } else if trimmed.is_empty() {
        bail!("{}: the file is empty", path.display());
    } else {
        bail!(
            "{}: not an annotation file (expected a JSON array or JSON Lines)",
            path.display()
        );
    };
    let mut clips = Vec::with_capacity(values.len());
    for (index, value) in values {
        let Some(value) = value else { continue };
        let mut parser = clip::ClipParser {
            index,
            problems: &mut problems,
        };
        if let Some(clip) = parser.clip(&value, max_anns) {
            clips.push(clip);
        }
    }
    problems.sort_by_key(|p| p.clip);
    Ok(Dataset {
        path: path.to_path_buf(),
        clips,
        problems,
        max_anns,
    })
}

/// Reads and parses an annotation file.
pub fn load(path: &Path, max_anns: usize) -> Result<Dataset> {
    let text = super::read_utf8(path)?;
    parse(&text, path, max_anns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_examples_load() {
        let d = parse(
            r#"[{"video": "Abuse/Abuse001_x264.mp4",
                 "global_caption": "一名男子在商店内对女性进行暴力攻击",
                 "region_captions": ["男子拉扯女性的红色物品", "另一名男子上前殴打女性", "女性倒地"],
                 "box_infos": [[{"frame": 192, "bbox": [0.10, 0.35, 0.61, 0.92]}],
                               [{"frame": 816, "bbox": [0.09, 0.39, 0.58, 0.88]}],
                               [{"frame": 1912, "bbox": [0.08, 0.42, 0.56, 0.87]}]],
                 "timestamps": null},
                {"video": "Normal_Shopping_142.mp4", "global_caption": "顾客在超市正常购物",
                 "region_captions": ["顾客在货架前挑选商品"], "box_infos": [], "timestamps": [45.2, 98.7]}]"#,
            Path::new("a.json"),
            4,
        )
        .unwrap();
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.clips.len(), 2);
        assert_eq!(d.clips[0].regions[2].boxes[0].frame, 1912);
        assert!(d.clips[0].has_boxes() && !d.clips[1].has_boxes());
        assert_eq!(d.clips[1].timestamps, Some((45.2, 98.7)));
    }

    #[test]
    fn json_lines_and_published_variants() {
        let text = concat!(
            r#"{"video": "a.mp4", "global_caption": "g", "region_captions": ["r"], "box_infos": [[]]}"#,
            "\n\n",
            r#"{"video": "b.mp4", "global_caption": "g", "region_captions": ["r"]}"#,
            "\n",
            r#"{"video": "c.mp4", "global_caption": "g", "region_captions": ["r"], "box_infos": [[{"frame": 3, "bbox": [-1e-15, 0.1, 1.0000000000000069, 0.5], "enabled": false, "_track_id": 7}, {"frame": 4, "bbox": [0, 0.1, 0.5, 0.5], "enabled": true, "_track_id": null}]]}"#,
            "\n",
        );
        let d = parse(text, Path::new("a.jsonl"), 4).unwrap();
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.clips.len(), 3);
        assert!(!d.clips[0].has_boxes());
        let b = d.clips[2].regions[0].boxes[0];
        assert_eq!((b.bbox, b.enabled), ([0.0, 0.1, 1.0, 0.5], false));
    }

    /// One message per problem kind, with the clip index and field path.
    #[test]
    fn every_problem_is_reported_with_its_field() {
        let d = parse(
            r#"[{"video": "ok.mp4", "global_caption": "g", "region_captions": ["r"]},
                {"video": "", "global_caption": " ", "region_captions": ["", 3],
                 "box_infos": [[{"frame": -2, "bbox": [0.5, 0.1, 0.2, 0.3]}],
                               [{"frame": 1, "bbox": [0.1, 0.1, 1.2, 0.3]}],
                               [{"frame": 1, "bbox": [0.1, 0.1, "x", 0.3]}]],
                 "timestamps": [9, 3]},
                {"video": "v.mp4", "global_caption": "g", "region_captions": ["a","b","c","d","e"],
                 "box_infos": [[{"frame": 1, "bbox": [0.1, 0.1, 0.2, 0.2], "enabled": false}]],
                 "timestamps": [1, "NaN"]},
                7]"#,
            Path::new("a.json"),
            4,
        )
        .unwrap();
        let has = |clip: usize, field: &str, sev: Severity, needle: &str| {
            assert!(
                d.problems.iter().any(|p| p.clip == clip
                    && p.field == field
                    && p.severity == sev
                    && p.message.contains(needle)),
                "no {sev:?} at clip {clip} `{field}` containing {needle:?} in {:#?}",
                d.problems
            );
        };
        has(1, "video", Severity::Error, "missing or empty");
        has(1, "global_caption", Severity::Error, "empty caption");
        has(1, "region_captions[0]", Severity::Error, "empty caption");
        has(1, "region_captions[1]", Severity::Error, "must be a string");
        has(
            1,
            "box_infos[0][0].frame",
            Severity::Error,
            "not a frame index",
        );
        has(1, "box_infos[0][0].bbox", Severity::Error, "x1 < x2");
        has(1, "box_infos[1][0].bbox", Severity::Error, "outside [0, 1]");
        has(1, "box_infos[2][0].bbox", Severity::Error, "four numbers");
        has(
            1,
            "box_infos",
            Severity::Error,
            "3 regions have boxes but there are only 2",
        );
        has(1, "timestamps", Severity::Error, "start ≥ end");
        has(
            2,
            "region_captions",
            Severity::Warning,
            "more than max_anns = 4",
        );
        has(2, "box_infos[0]", Severity::Warning, "disabled");
        has(2, "timestamps", Severity::Error, "two numbers");
        has(3, "", Severity::Error, "must be a JSON object");
        assert!(!d.problems.iter().any(|p| p.clip == 0));
        let usable = d.usable();
        assert_eq!(usable.len(), 1);
        assert_eq!(usable[0].video, "ok.mp4");
    }

    #[test]
    fn unreadable_files_fail_with_the_path() {
        let p = Path::new("bad.json");
        for text in ["", "  ", "hello", "[1, 2", "{\"a\": 1}\n{oops"] {
            match parse(text, p, 4) {
                Err(e) => assert!(e.to_string().contains("bad.json"), "{e}"),
                // JSON Lines: a bad line is a problem of that clip.
                Ok(d) => assert!(
                    d.problems.iter().any(|p| p.message.contains("line 2")),
                    "{text}"
                ),
            }
        }
        let e = parse("{\"x\": 1}", p, 4).unwrap();
        assert!(e.problems.iter().any(|p| p.field == "video"));
    }
}
