//! `fgclip synth`: a synthetic surveillance dataset made from nothing but a seed.
//!
//! Static-camera street scenes (a textured pavement, a road, per-video lighting) with
//! people walking or standing and cars driving; anomalous videos add one event visible
//! in single frames: fighting (two people face to face, one punching, one with a fist
//! raised, jittering), falling (a person lying down), fire (a growing, flickering orange
//! region), theft (a person grabbing a bag and running off, legs apart), road accident
//! (two cars colliding). Videos are H.264 MP4s written
//! with the FFmpeg libraries; annotations follow DESIGN.md §2 (English and Chinese), with
//! boxes on key frames from the objects' true positions and two hard negatives per
//! region (DESIGN.md §7: the same scene with a normal action, or for the walking person an
//! anomalous one); the test split has UCF-Crime style temporal ground truth.
//! Videos come from one random stream in order, training then test, so two sets of one
//! seed overlap: a larger set's training videos hold a smaller set's test videos.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

mod render;

use crate::data::batch::Rng;
use crate::io::write_atomic;
use render::{PxBox, render_video};

pub const WIDTH: usize = 128;
pub const HEIGHT: usize = 96;
pub const FPS: u32 = 10;

/// The anomaly classes, with their captions (English, Chinese) and the event region's
/// captions (English, Chinese).
pub const CLASSES: [(&str, &str, &str, (&str, &str)); 5] = [
    (
        "Fighting",
        "two people fight in the street",
        "两个人在街上打架",
        ("a person hits another person", "一个人在打另一个人"),
    ),
    (
        "Falling",
        "a person falls and lies on the ground",
        "一个人摔倒躺在地上",
        ("a person lying on the ground", "一个人躺在地上"),
    ),
    (
        "Fire",
        "a fire breaks out and spreads",
        "火灾发生并蔓延",
        ("orange flames", "橙色的火焰"),
    ),
    (
        "Theft",
        "a person grabs a bag and runs away",
        "一个人抢了包逃跑",
        ("a thief running with a bag", "一个小偷拿着包逃跑"),
    ),
    (
        "RoadAccident",
        "two cars crash into each other",
        "两辆车相撞",
        ("two crashed cars", "两辆相撞的车"),
    ),
];
pub const NORMAL_CAPTION: (&str, &str) = (
    "people walk along the street and cars drive by",
    "人们沿街行走，汽车驶过",
);
pub const NORMAL_REGION: (&str, &str) = ("a person walking", "一个行人");

/// Hard negatives of each class's event region (DESIGN.md §7): the same scene with a
/// normal action, in English and Chinese.
pub const HARD_NEGATIVES: [([&str; 2], [&str; 2]); 5] = [
    (
        [
            "two people stand and talk",
            "a person waves to another person",
        ],
        ["两个人站着聊天", "一个人向另一个人挥手"],
    ),
    (
        [
            "a person standing on the ground",
            "a person walking on the pavement",
        ],
        ["一个人站在地上", "一个人在人行道上行走"],
    ),
    (
        ["an orange shop sign", "an orange car parked"],
        ["一块橙色的招牌", "一辆停着的橙色汽车"],
    ),
    (
        [
            "a person walking with a bag",
            "a person carrying a bag calmly",
        ],
        ["一个人拿着包走路", "一个人平静地提着包"],
    ),
    (
        ["two cars driving past each other", "two parked cars"],
        ["两辆车交错驶过", "两辆停着的车"],
    ),
];
/// Hard negatives of the walking person: the same person doing something anomalous.
pub const NORMAL_HARD_NEGATIVES: ([&str; 2], [&str; 2]) = (
    [
        "a person lying on the ground",
        "a person running with a bag",
    ],
    ["一个人躺在地上", "一个人拿着包奔跑"],
);

/// The generator's settings.
#[derive(Clone, Copy, Debug)]
pub struct SynthConfig {
    pub train_videos: usize,
    pub test_videos: usize,
    /// Seconds per video.
    pub seconds: u32,
    pub seed: u64,
}

#[derive(Debug, Serialize)]
pub struct SynthSummary {
    pub out: PathBuf,
    pub train_videos: usize,
    pub test_videos: usize,
    pub train_clips: usize,
    pub annotations: PathBuf,
    pub annotations_zh: PathBuf,
    pub test_gt: PathBuf,
    pub test_list: PathBuf,
    pub prompts: PathBuf,
    /// The prompts in Chinese.
    pub prompts_zh: PathBuf,
}

fn norm_box(b: PxBox) -> [f64; 4] {
    let r = |v: f32, d: usize| ((v as f64 / d as f64) * 1e4).round() / 1e4;
    [r(b.0, WIDTH), r(b.1, HEIGHT), r(b.2, WIDTH), r(b.3, HEIGHT)]
}

/// Key frames of a span: `n` evenly spaced frames with a box.
fn key_frames(boxes: &[Option<PxBox>], span: (usize, usize), n: usize) -> Vec<serde_json::Value> {
    let len = span.1 - span.0 + 1;
    (0..n)
        .map(|j| span.0 + (2 * j + 1) * len / (2 * n))
        .filter_map(|f| {
            boxes
                .get(f)
                .copied()
                .flatten()
                .filter(|b| b.2 - b.0 >= 1.0 && b.3 - b.1 >= 1.0)
                .map(|b| json!({"frame": f, "bbox": norm_box(b)}))
        })
        .collect()
}

/// Writes the dataset under `out`.
pub fn generate(
    out: &Path,
    cfg: &SynthConfig,
    progress: &indicatif::ProgressBar,
) -> Result<SynthSummary> {
    let videos = out.join("videos");
    std::fs::create_dir_all(&videos).with_context(|| format!("creating {}", videos.display()))?;
    let frames = (cfg.seconds * FPS) as usize;
    let mut rng = Rng::new(cfg.seed);
    let mut train_en = Vec::new();
    let mut train_zh = Vec::new();
    let mut gt = String::new();
    let mut test_list = String::new();
    progress.set_length((cfg.train_videos + cfg.test_videos) as u64);
    for split in ["train", "test"] {
        let n = if split == "train" {
            cfg.train_videos
        } else {
            cfg.test_videos
        };
        let mut anomalies = 0usize;
        for i in 0..n {
            // Two in five videos are normal; the others cycle through every class.
            let class = if i % 5 == 4 || i % 5 == 1 {
                None
            } else {
                anomalies += 1;
                Some((anomalies - 1 + usize::from(split == "test") * 2) % CLASSES.len())
            };
            let start = frames / 5 + rng.below((frames / 4) as u64) as usize;
            let end =
                (start + frames / 3 + rng.below((frames / 6) as u64) as usize).min(frames - 1);
            let name = match class {
                Some(c) => format!("{split}_{i:03}_{}.mp4", CLASSES[c].0),
                None => format!("{split}_{i:03}_Normal.mp4"),
            };
            let truth = render_video(
                &videos.join(&name),
                class,
                (start, end),
                frames,
                rng.next_u64(),
            )?;
            progress.inc(1);
            let video = format!("videos/{name}");
            if split == "test" {
                let stem = name.trim_end_matches(".mp4");
                match class {
                    Some(c) => gt.push_str(&format!(
                        "{stem}.mp4 {} {start} {end} -1 -1\n",
                        CLASSES[c].0
                    )),
                    None => gt.push_str(&format!("{stem}.mp4 Normal -1 -1 -1 -1\n")),
                }
                test_list.push_str(&video);
                test_list.push('\n');
                continue;
            }
            let secs = |f: usize| (f as f64 / FPS as f64 * 100.0).round() / 100.0;
            let walker_boxes = key_frames(&truth.walker, (0, frames - 1), 2);
            for (lang, out_vec) in [(0usize, &mut train_en), (1, &mut train_zh)] {
                let pick = |en: &str, zh: &str| {
                    if lang == 0 {
                        en.to_string()
                    } else {
                        zh.to_string()
                    }
                };
                let normal_region = pick(NORMAL_REGION.0, NORMAL_REGION.1);
                let negatives = |(en, zh): ([&str; 2], [&str; 2])| {
                    if lang == 0 { json!(en) } else { json!(zh) }
                };
                let normal_negatives = negatives(NORMAL_HARD_NEGATIVES);
                match class {
                    Some(c) => {
                        let (_, en, zh, region) = CLASSES[c];
                        // The event, with boxes on its key frames …
                        out_vec.push(json!({
                            "video": video,
                            "global_caption": pick(en, zh),
                            "region_captions": [pick(region.0, region.1), normal_region],
                            "hard_negatives": [negatives(HARD_NEGATIVES[c]), normal_negatives],
                            "box_infos": [key_frames(&truth.event, (start, end), 3), key_frames(&truth.walker, (start, end), 1)],
                            "timestamps": [secs(start), secs(end + 1)],
                        }));
                        // … and the normal time before it: the same scene with the
                        // normal caption, so the event, not the scene, tells them apart.
                        // (Not after it too: that would make normal clips outnumber the
                        // events three to one.)
                        if start >= FPS as usize {
                            out_vec.push(json!({
                                "video": video,
                                "global_caption": pick(NORMAL_CAPTION.0, NORMAL_CAPTION.1),
                                "region_captions": [normal_region],
                                "hard_negatives": [normal_negatives],
                                "box_infos": [key_frames(&truth.walker, (0, start - 1), 1)],
                                "timestamps": [secs(0), secs(start)],
                            }));
                        }
                    }
                    None => {
                        out_vec.push(json!({
                            "video": video,
                            "global_caption": pick(NORMAL_CAPTION.0, NORMAL_CAPTION.1),
                            "region_captions": [normal_region],
                            "hard_negatives": [normal_negatives],
                            "box_infos": if walker_boxes.is_empty() { json!([[]]) } else { json!([key_frames(&truth.walker, (0, frames - 1), 1)]) },
                            "timestamps": [secs(0), secs(frames)],
                        }));
                    }
                }
            }
        }
    }
    let annotations = out.join("train.json");
    let annotations_zh = out.join("train_zh.json");
    write_atomic(
        &annotations,
        serde_json::to_string_pretty(&train_en)?.as_bytes(),
    )?;
    write_atomic(
        &annotations_zh,
        serde_json::to_string_pretty(&train_zh)?.as_bytes(),
    )?;
    let test_gt = out.join("test_gt.txt");
    write_atomic(&test_gt, gt.as_bytes())?;
    let test_list_path = out.join("test_videos.txt");
    write_atomic(&test_list_path, test_list.as_bytes())?;
    let prompts = out.join("prompts.json");
    let prompt_set = json!({
        "_about": "Zero-shot prompts of the synthetic dataset's classes (fgclip synth).",
        "name": "synth",
        // Exactly the training captions: a text tower trained from scratch knows no others.
        "normal": {"name": "Normal", "templates": [NORMAL_CAPTION.0]},
        "classes": CLASSES.iter().map(|(name, en, _, _)| json!({"name": name, "templates": [en]})).collect::<Vec<_>>(),
    });
    write_atomic(
        &prompts,
        serde_json::to_string_pretty(&prompt_set)?.as_bytes(),
    )?;
    // The same in Chinese: the Chinese training captions (train_zh.json).
    let prompts_zh = out.join("prompts_zh.json");
    let prompt_set_zh = json!({
        "_about": "Zero-shot prompts of the synthetic dataset's classes in Chinese (fgclip synth).",
        "name": "synth.zh",
        "normal": {"name": "Normal", "templates": [NORMAL_CAPTION.1]},
        "classes": CLASSES.iter().map(|(name, _, zh, _)| json!({"name": name, "templates": [zh]})).collect::<Vec<_>>(),
    });
    write_atomic(
        &prompts_zh,
        serde_json::to_string_pretty(&prompt_set_zh)?.as_bytes(),
    )?;
    Ok(SynthSummary {
        out: out.to_path_buf(),
        train_videos: cfg.train_videos,
        test_videos: cfg.test_videos,
        train_clips: train_en.len(),
        annotations,
        annotations_zh,
        test_gt,
        test_list: test_list_path,
        prompts,
        prompts_zh,
    })
}
