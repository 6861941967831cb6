//! Hard-negative sidecar files (DESIGN.md §7, VAGTA's layout): `{"items": [{"video",
//! "region_index", "timestamps", "region_caption", "hard_negative": [...]}]}`, joined to
//! the annotations' regions on (video, timestamps, region_index).
//!
//! Like the annotations, a sidecar is read item by item: each problem is recorded with the
//! item's index and field, and an item with an error is left out (never half-used).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::json_kind as kind;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use super::annotations::{Clip, Severity};

/// One usable sidecar item.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Position in `items` (0-based), as problems quote it.
    pub index: usize,
    pub video: String,
    pub timestamps: Option<(f64, f64)>,
    pub region_index: usize,
    pub negatives: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ItemProblem {
    pub item: usize,
    pub field: String,
    pub severity: Severity,
    pub message: String,
}

/// A read sidecar file.
#[derive(Clone, Debug)]
pub struct Sidecar {
    pub path: PathBuf,
    /// Entries of `items`, usable or not.
    pub items_read: usize,
    /// The items without errors.
    pub items: Vec<Item>,
    pub problems: Vec<ItemProblem>,
}

impl Sidecar {
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }

    /// Negative captions of the usable items.
    pub fn negatives(&self) -> usize {
        self.items.iter().map(|i| i.negatives.len()).sum()
    }

    /// Usable items with an empty list.
    pub fn empty_items(&self) -> usize {
        self.items.iter().filter(|i| i.negatives.is_empty()).count()
    }

    /// "FILE: item I `FIELD`: message" for the first `n` errors.
    pub fn describe_errors(&self, n: usize) -> String {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .take(n)
            .map(|p| {
                format!(
                    "{}: item {} `{}`: {}",
                    self.path.display(),
                    p.item,
                    p.field,
                    p.message
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// (video, timestamps) as an exact key: both sides parse the same decimal text.
type ClipKey = (String, Option<(u64, u64)>);

fn clip_key(video: &str, timestamps: Option<(f64, f64)>) -> ClipKey {
    (
        video.to_string(),
        timestamps.map(|(s, e)| (s.to_bits(), e.to_bits())),
    )
}

fn parse_item(index: usize, value: &Value, problems: &mut Vec<ItemProblem>) -> Option<Item> {
    let mut error = |field: &str, message: String| {
        problems.push(ItemProblem {
            item: index,
            field: field.to_string(),
            severity: Severity::Error,
            message,
        })
    };
    let Value::Object(obj) = value else {
        error(
            "",
            format!("an item must be an object, got {}", kind(value)),
        );
        return None;
    };
    let video = match obj.get("video") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        None | Some(Value::Null) => {
            error("video", "missing".into());
            None
        }
        Some(other) => {
            error(
                "video",
                format!("must be a non-empty string, got {}", kind(other)),
            );
            None
        }
    };
    let region_index = match obj.get("region_index") {
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().map(|v| v as usize),
        other => {
            error(
                "region_index",
                format!(
                    "must be an integer ≥ 0, got {}",
                    other.map_or("nothing".into(), |v| v.to_string())
                ),
            );
            None
        }
    };
    let timestamps = match obj.get("timestamps") {
        None | Some(Value::Null) => Some(None),
        Some(Value::Array(a)) if a.len() == 2 => match (a[0].as_f64(), a[1].as_f64()) {
            (Some(s), Some(e)) => Some(Some((s, e))),
            _ => {
                error("timestamps", "must be [start_s, end_s], two numbers".into());
                None
            }
        },
        Some(other) => {
            error(
                "timestamps",
                format!(
                    "must be null or [start_s, end_s], two numbers, got {}",
                    kind(other)
                ),
            );
            None
        }
    };
    let negatives = match obj.get("hard_negative") {
        Some(Value::Array(list)) => {
            let mut out = Vec::with_capacity(list.len());
            let mut ok = true;
            for (j, v) in list.iter().enumerate() {
                match v {
                    Value::String(s) if !s.trim().is_empty() => out.push(s.clone()),
                    Value::String(_) => {
                        error(&format!("hard_negative[{j}]"), "empty caption".into());
                        ok = false;
                    }
                    other => {
                        error(
                            &format!("hard_negative[{j}]"),
                            format!("a negative must be a string, got {}", kind(other)),
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }
        None | Some(Value::Null) => {
            error("hard_negative", "missing".into());
            None
        }
        Some(other) => {
            error(
                "hard_negative",
                format!("must be a list of captions, got {}", kind(other)),
            );
            None
        }
    };
    Some(Item {
        index,
        video: video?,
        timestamps: timestamps?,
        region_index: region_index?,
        negatives: negatives?,
    })
}

/// Parses sidecar text. Fails only when it is not JSON or has no `items` list; every
/// per-item problem lands in `Sidecar::problems`.
pub fn parse(text: &str, path: &Path) -> Result<Sidecar> {
    let json: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let items = match &json {
        Value::Object(o) => match o.get("items") {
            Some(Value::Array(a)) => a,
            _ => bail!(
                "{}: expected {{\"items\": [...]}} (a hard-negative sidecar)",
                path.display()
            ),
        },
        Value::Array(a) => a,
        other => bail!(
            "{}: expected {{\"items\": [...]}}, got {}",
            path.display(),
            kind(other)
        ),
    };
    let mut problems = Vec::new();
    let mut usable = Vec::with_capacity(items.len());
    let mut seen: HashMap<(ClipKey, usize), usize> = HashMap::new();
    for (i, v) in items.iter().enumerate() {
        let Some(item) = parse_item(i, v, &mut problems) else {
            continue;
        };
        let key = (clip_key(&item.video, item.timestamps), item.region_index);
        if let Some(first) = seen.insert(key, i) {
            problems.push(ItemProblem {
                item: i,
                field: "region_index".into(),
                severity: Severity::Error,
                message: format!(
                    "(video, timestamps, region_index) repeats item {first}: each region has one item"
                ),
            });
            continue;
        }
        usable.push(item);
    }
    Ok(Sidecar {
        path: path.to_path_buf(),
        items_read: items.len(),
        items: usable,
        problems,
    })
}

/// Reads and parses a sidecar file.
pub fn load(path: &Path) -> Result<Sidecar> {
    let text = super::read_utf8(path)?;
    parse(&text, path)
}

/// What joining a sidecar to the annotations did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct JoinReport {
    /// Items whose negatives reached a region.
    pub matched: usize,
    /// (item, why) of items whose clip or region is not in the annotations.
    pub unmatched: Vec<(usize, String)>,
}

/// Adds each item's negatives to its region: the clip with the item's (video, timestamps)
/// (every such clip, if the annotations repeat one), region `region_index`.
pub fn join(clips: &mut [Clip], sidecar: &Sidecar) -> JoinReport {
    let mut by_key: HashMap<ClipKey, Vec<usize>> = HashMap::new();
    for (i, c) in clips.iter().enumerate() {
        by_key
            .entry(clip_key(&c.video, c.timestamps))
            .or_default()
            .push(i);
    }
    let mut report = JoinReport::default();
    for item in &sidecar.items {
        let Some(targets) = by_key.get(&clip_key(&item.video, item.timestamps)) else {
            report.unmatched.push((
                item.index,
                format!(
                    "no clip of the annotations has video `{}` and timestamps {:?}",
                    item.video, item.timestamps
                ),
            ));
            continue;
        };
        let mut reached = false;
        for &ci in targets {
            let clip = &mut clips[ci];
            match clip.regions.get_mut(item.region_index) {
                Some(region) => {
                    region.hard_negatives.extend(item.negatives.iter().cloned());
                    reached = true;
                }
                None => report.unmatched.push((
                    item.index,
                    format!(
                        "region_index {} is past clip {}'s {} region(s)",
                        item.region_index,
                        clip.index,
                        clip.regions.len()
                    ),
                )),
            }
        }
        if reached {
            report.matched += 1;
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::annotations;

    #[test]
    fn items_join_on_video_timestamps_and_region() {
        let ann = annotations::parse(
            r#"[{"video": "a.mp4", "global_caption": "g", "region_captions": ["r0", "r1"]},
                {"video": "b.mp4", "global_caption": "g", "region_captions": ["r0"],
                 "timestamps": [1.5, 9.25]}]"#,
            Path::new("a.json"),
            4,
        )
        .unwrap();
        let mut clips = ann.usable();
        let side = parse(
            r#"{"items": [
                {"video": "a.mp4", "region_index": 1, "timestamps": null, "hard_negative": ["n1", "n2"]},
                {"video": "b.mp4", "region_index": 0, "timestamps": [1.5, 9.25], "hard_negative": ["m"]},
                {"video": "b.mp4", "region_index": 0, "timestamps": [1.5, 9.3], "hard_negative": ["x"]},
                {"video": "a.mp4", "region_index": 4, "hard_negative": ["y"]},
                {"video": "a.mp4", "region_index": 0, "hard_negative": []}]}"#,
            Path::new("side.json"),
        )
        .unwrap();
        assert!(side.problems.is_empty(), "{:?}", side.problems);
        assert_eq!(
            (side.items_read, side.negatives(), side.empty_items()),
            (5, 5, 1)
        );
        let r = join(&mut clips, &side);
        assert_eq!(clips[0].regions[1].hard_negatives, ["n1", "n2"]);
        assert!(clips[0].regions[0].hard_negatives.is_empty());
        assert_eq!(clips[1].regions[0].hard_negatives, ["m"]);
        assert_eq!(r.matched, 3);
        let unmatched: Vec<usize> = r.unmatched.iter().map(|u| u.0).collect();
        assert_eq!(unmatched, [2, 3]);
        assert!(
            r.unmatched[1].1.contains("region_index 4"),
            "{:?}",
            r.unmatched
        );
    }

    #[test]
    fn bad_items_name_the_item_and_field() {
        let side = parse(
            r#"{"items": [
                {"region_index": 0, "hard_negative": ["a"]},
                {"video": "v", "region_index": -1, "hard_negative": ["a"]},
                {"video": "v", "region_index": 0, "hard_negative": ["a", 3]},
                {"video": "v", "region_index": 0, "hard_negative": "a"},
                {"video": "v", "region_index": 0, "timestamps": [1], "hard_negative": []},
                {"video": "v", "region_index": 0, "hard_negative": ["ok"]},
                {"video": "v", "region_index": 0, "hard_negative": ["again"]},
                7]}"#,
            Path::new("side.json"),
        )
        .unwrap();
        let has = |item: usize, field: &str, needle: &str| {
            assert!(
                side.problems
                    .iter()
                    .any(|p| p.item == item && p.field == field && p.message.contains(needle)),
                "no problem at item {item} `{field}` with {needle:?}: {:#?}",
                side.problems
            );
        };
        has(0, "video", "missing");
        has(1, "region_index", "integer ≥ 0");
        has(2, "hard_negative[1]", "must be a string");
        has(3, "hard_negative", "list of captions");
        has(4, "timestamps", "two numbers");
        has(6, "region_index", "repeats item 5");
        has(7, "", "must be an object");
        assert_eq!(side.items.len(), 1);
        assert_eq!(side.items[0].index, 5);
        assert!(
            side.describe_errors(1)
                .contains("side.json: item 0 `video`")
        );
        for text in ["", "[1,", "{\"x\": 1}", "3"] {
            let e = parse(text, Path::new("side.json")).unwrap_err();
            assert!(format!("{e:#}").contains("side.json"), "{e:#}");
        }
    }
}
