//! Annotation files (DESIGN.md §2): a JSON array or JSON Lines of clips with a global
//! caption, region captions, key-frame boxes and optional timestamps, including the
//! published VAGTA variants (`enabled`, `_track_id`, `box_infos: [[]]`, tracked boxes),
//! and DESIGN.md §7's optional `long_caption` and per-region `hard_negatives`.
//!
//! Loading never stops at the first problem: every clip is parsed field by field and each
//! problem is recorded with the clip's index, the field's path and a severity.

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

struct ClipParser<'a> {
    index: usize,
    problems: &'a mut Vec<Problem>,
}

impl ClipParser<'_> {
    fn problem(
        &mut self,
        field: impl Into<String>,
        severity: Severity,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            clip: self.index,
            field: field.into(),
            severity,
            message: message.into(),
        });
    }

    fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problem(field, Severity::Error, message);
    }

    fn caption(&mut self, value: Option<&Value>, field: &str) -> Option<String> {
        match value {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                self.error(field, "empty caption");
                None
            }
            None | Some(Value::Null) => {
                self.error(field, "missing caption");
                None
            }
            Some(other) => {
                self.error(
                    field,
                    format!("caption must be a string, got {}", kind(other)),
                );
                None
            }
        }
    }

    /// `hard_negatives`: one list of captions per region (null or missing: none).
    fn hard_negatives(&mut self, value: Option<&Value>, regions: usize) -> Vec<Vec<String>> {
        let lists = match value {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(a)) => a,
            Some(other) => {
                self.error(
                    "hard_negatives",
                    format!("must be a list of caption lists, got {}", kind(other)),
                );
                return Vec::new();
            }
        };
        if lists.len() > regions {
            self.error(
                "hard_negatives",
                format!(
                    "{} lists for {regions} region captions: one list per region",
                    lists.len()
                ),
            );
        }
        lists
            .iter()
            .enumerate()
            .map(|(i, list)| match list {
                Value::Null => Vec::new(),
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .filter_map(|(j, v)| {
                        self.caption(Some(v), &format!("hard_negatives[{i}][{j}]"))
                    })
                    .collect(),
                other => {
                    self.error(
                        format!("hard_negatives[{i}]"),
                        format!("must be a list of captions, got {}", kind(other)),
                    );
                    Vec::new()
                }
            })
            .collect()
    }

    fn key_box(&mut self, value: &Value, field: &str) -> Option<KeyBox> {
        let Value::Object(obj) = value else {
            self.error(
                field,
                format!("a key frame must be an object, got {}", kind(value)),
            );
            return None;
        };
        let frame = match obj.get("frame") {
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(f), _) => Some(f),
                (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < 9e15 => Some(f as u64),
                _ => {
                    self.error(
                        format!("{field}.frame"),
                        format!("{n} is not a frame index (an integer ≥ 0)"),
                    );
                    None
                }
            },
            other => {
                self.error(
                    format!("{field}.frame"),
                    format!("missing or not a number ({})", other.map_or("absent", kind)),
                );
                None
            }
        };
        let enabled = match obj.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.error(
                    format!("{field}.enabled"),
                    format!("must be true or false, got {}", kind(other)),
                );
                true
            }
        };
        let bbox = self.bbox(obj.get("bbox"), &format!("{field}.bbox"));
        Some(KeyBox {
            frame: frame?,
            bbox: bbox?,
            enabled,
        })
    }

    fn bbox(&mut self, value: Option<&Value>, field: &str) -> Option<[f32; 4]> {
        let values: Option<Vec<f64>> = match value {
            Some(Value::Array(a)) if a.len() == 4 => a.iter().map(Value::as_f64).collect(),
            _ => None,
        };
        let Some(v) = values else {
            self.error(field, "must be [x1, y1, x2, y2], four numbers");
            return None;
        };
        if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
            self.error(field, format!("{bad} is not a finite number"));
            return None;
        }
        if v.iter()
            .any(|&x| !(-BOX_TOLERANCE..=1.0 + BOX_TOLERANCE).contains(&x))
        {
            self.error(field, format!("{v:?} lies outside [0, 1]"));
            return None;
        }
        let c: Vec<f64> = v.iter().map(|x| x.clamp(0.0, 1.0)).collect();
        if c[0] >= c[2] || c[1] >= c[3] {
            self.error(field, format!("{v:?} is empty: needs x1 < x2 and y1 < y2"));
            return None;
        }
        Some([c[0] as f32, c[1] as f32, c[2] as f32, c[3] as f32])
    }

    fn timestamps(&mut self, value: Option<&Value>) -> Option<Option<(f64, f64)>> {
        match value {
            None | Some(Value::Null) => Some(None),
            Some(Value::Array(a)) if a.len() == 2 => {
                let (Some(s), Some(e)) = (a[0].as_f64(), a[1].as_f64()) else {
                    self.error("timestamps", "must be [start_s, end_s], two numbers");
                    return None;
                };
                if !(s.is_finite() && e.is_finite()) || s < 0.0 {
                    self.error(
                        "timestamps",
                        format!("[{s}, {e}]: start must be ≥ 0 and both finite"),
                    );
                    None
                } else if s >= e {
                    self.error("timestamps", format!("[{s}, {e}]: start ≥ end"));
                    None
                } else {
                    Some(Some((s, e)))
                }
            }
            Some(other) => {
                self.error(
                    "timestamps",
                    format!("must be null or [start_s, end_s], got {}", kind(other)),
                );
                None
            }
        }
    }

    fn clip(&mut self, value: &Value, max_anns: usize) -> Option<Clip> {
        let Value::Object(obj) = value else {
            self.error(
                "",
                format!("a clip must be a JSON object, got {}", kind(value)),
            );
            return None;
        };
        let video = match obj.get("video") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            _ => {
                self.error("video", "missing or empty video path");
                None
            }
        };
        let global_caption = self.caption(obj.get("global_caption"), "global_caption");
        let long_caption = match obj.get("long_caption") {
            None | Some(Value::Null) => None,
            v => self.caption(v, "long_caption"),
        };
        let captions: Vec<Option<String>> = match obj.get("region_captions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| self.caption(Some(v), &format!("region_captions[{i}]")))
                .collect(),
            Some(other) => {
                self.error(
                    "region_captions",
                    format!("must be a list of strings, got {}", kind(other)),
                );
                Vec::new()
            }
        };
        let box_lists: Vec<Vec<Option<KeyBox>>> = match obj.get("box_infos") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(regions)) => regions
                .iter()
                .enumerate()
                .map(|(i, r)| match r {
                    Value::Array(boxes) => boxes
                        .iter()
                        .enumerate()
                        .map(|(j, b)| self.key_box(b, &format!("box_infos[{i}][{j}]")))
                        .collect(),
                    Value::Null => Vec::new(),
                    other => {
                        self.error(
                            format!("box_infos[{i}]"),
                            format!("must be a list of key frames, got {}", kind(other)),
                        );
                        Vec::new()
                    }
                })
                .collect(),
            Some(other) => {
                self.error("box_infos", format!("must be a list, got {}", kind(other)));
                Vec::new()
            }
        };
        // `[[]]` (and any trailing empty lists) is how published normal clips say "no boxes".
        let boxed_regions = box_lists
            .iter()
            .rposition(|l| !l.is_empty())
            .map_or(0, |i| i + 1);
        if boxed_regions > captions.len() {
            self.error(
                "box_infos",
                format!(
                    "{} regions have boxes but there are only {} region captions",
                    boxed_regions,
                    captions.len()
                ),
            );
        }
        if captions.len() > max_anns {
            self.problem(
                "region_captions",
                Severity::Warning,
                format!(
                    "{} regions, more than max_anns = {max_anns}: regions {max_anns}.. are dropped",
                    captions.len()
                ),
            );
        }
        let mut negatives = self.hard_negatives(obj.get("hard_negatives"), captions.len());
        let timestamps = self.timestamps(obj.get("timestamps"));
        let mut regions = Vec::with_capacity(captions.len());
        for (i, caption) in captions.into_iter().enumerate() {
            let boxes: Vec<KeyBox> = box_lists
                .get(i)
                .map(|l| l.iter().flatten().copied().collect())
                .unwrap_or_default();
            if !boxes.is_empty() && boxes.iter().all(|b| !b.enabled) {
                self.problem(
                    format!("box_infos[{i}]"),
                    Severity::Warning,
                    "every key frame is disabled: the region takes no part in the region loss",
                );
            }
            regions.push(Region {
                caption: caption.unwrap_or_default(),
                boxes,
                hard_negatives: negatives.get_mut(i).map(std::mem::take).unwrap_or_default(),
            });
        }
        Some(Clip {
            index: self.index,
            video: video.unwrap_or_default(),
            global_caption: global_caption.unwrap_or_default(),
            long_caption,
            regions,
            timestamps: timestamps.flatten(),
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
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
        let mut parser = ClipParser {
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
