//! One clip of an annotation file, parsed field by field: every problem is recorded with
//! the clip's index, the field's path and a severity, and parsing goes on.

use crate::data::json_kind as kind;
use serde_json::Value;

use super::{BOX_TOLERANCE, Clip, KeyBox, Problem, Region, Severity};

pub(super) struct ClipParser<'a> {
    pub(super) index: usize,
    pub(super) problems: &'a mut Vec<Problem>,
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

    pub(super) fn clip(&mut self, value: &Value, max_anns: usize) -> Option<Clip> {
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
