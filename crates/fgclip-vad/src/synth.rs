//! `fgclip synth`: a synthetic surveillance dataset made from nothing but a seed.
//!
//! Static-camera street scenes (a textured pavement, a road, per-video lighting) with
//! people walking or standing and cars driving; anomalous videos add one event visible
//! in single frames: fighting (two people overlapping and jittering), falling (a person
//! lying down), fire (a growing, flickering orange region), theft (a person grabbing a
//! bag and running), road accident (two cars colliding). Videos are H.264 MP4s written
//! with the FFmpeg libraries; annotations follow DESIGN.md §2 (English and Chinese), with
//! boxes on key frames from the objects' true positions and two hard negatives per
//! region (DESIGN.md §7: the same scene with a normal action, or for the walking person an
//! anomalous one); the test split has UCF-Crime style temporal ground truth.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::checkpoint::safetensors_io::write_atomic;
use crate::data::batch::Rng;
use crate::data::encode::{Codec, EncodeOptions, VideoWriter};

pub const WIDTH: usize = 128;
pub const HEIGHT: usize = 96;
pub const FPS: u32 = 10;

/// The anomaly classes, with their captions (English, Chinese) and region captions.
pub const CLASSES: [(&str, &str, &str, &str); 5] = [
    (
        "Fighting",
        "two people fight in the street",
        "两个人在街上打架",
        "a person hits another person",
    ),
    (
        "Falling",
        "a person falls and lies on the ground",
        "一个人摔倒躺在地上",
        "a person lying on the ground",
    ),
    (
        "Fire",
        "a fire breaks out and spreads",
        "火灾发生并蔓延",
        "orange flames",
    ),
    (
        "Theft",
        "a person grabs a bag and runs away",
        "一个人抢了包逃跑",
        "a thief running with a bag",
    ),
    (
        "RoadAccident",
        "two cars crash into each other",
        "两辆车相撞",
        "two crashed cars",
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
}

#[derive(Clone, Copy)]
struct Person {
    x: f32,
    y: f32,
    vx: f32,
    shirt: [u8; 3],
}

#[derive(Clone, Copy)]
struct Car {
    x: f32,
    y: f32,
    vx: f32,
    colour: [u8; 3],
}

/// An axis-aligned box in pixels (x0, y0, x1, y1), clipped to the frame.
type PxBox = (f32, f32, f32, f32);

fn clip_box(b: PxBox) -> PxBox {
    (
        b.0.clamp(0.0, WIDTH as f32),
        b.1.clamp(0.0, HEIGHT as f32),
        b.2.clamp(0.0, WIDTH as f32),
        b.3.clamp(0.0, HEIGHT as f32),
    )
}

fn union(a: PxBox, b: PxBox) -> PxBox {
    (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3))
}

struct Frame {
    data: Vec<u8>,
}

impl Frame {
    fn fill(&mut self, b: PxBox, c: [u8; 3]) {
        let (x0, y0, x1, y1) = clip_box(b);
        for y in y0 as usize..(y1.ceil() as usize).min(HEIGHT) {
            for x in x0 as usize..(x1.ceil() as usize).min(WIDTH) {
                self.data[(y * WIDTH + x) * 3..(y * WIDTH + x) * 3 + 3].copy_from_slice(&c);
            }
        }
    }

    fn person(&mut self, x: f32, y: f32, shirt: [u8; 3]) -> PxBox {
        // Head, body, legs: 6 px wide, 16 px tall, feet at y.
        self.fill((x - 2.0, y - 16.0, x + 2.0, y - 12.0), [230, 190, 160]);
        self.fill((x - 3.0, y - 12.0, x + 3.0, y - 5.0), shirt);
        self.fill((x - 3.0, y - 5.0, x + 3.0, y), [40, 40, 70]);
        (x - 3.0, y - 16.0, x + 3.0, y)
    }

    fn lying(&mut self, x: f32, y: f32, shirt: [u8; 3]) -> PxBox {
        self.fill((x - 8.0, y - 5.0, x - 4.0, y - 1.0), [230, 190, 160]);
        self.fill((x - 4.0, y - 6.0, x + 3.0, y), shirt);
        self.fill((x + 3.0, y - 5.0, x + 8.0, y - 1.0), [40, 40, 70]);
        (x - 8.0, y - 6.0, x + 8.0, y)
    }

    fn car(&mut self, x: f32, y: f32, c: [u8; 3]) -> PxBox {
        self.fill((x - 11.0, y - 8.0, x + 11.0, y - 2.0), c);
        self.fill(
            (x - 6.0, y - 12.0, x + 5.0, y - 8.0),
            [c[0] / 2 + 60, c[1] / 2 + 60, c[2] / 2 + 80],
        );
        self.fill((x - 9.0, y - 2.0, x - 5.0, y), [20, 20, 20]);
        self.fill((x + 5.0, y - 2.0, x + 9.0, y), [20, 20, 20]);
        (x - 11.0, y - 12.0, x + 11.0, y)
    }
}

fn background(rng: &mut Rng) -> (Vec<u8>, f32) {
    // Lighting varies between videos, but not so much that the scene outweighs the event.
    let light = 0.9 + (rng.below(20) as f32) / 100.0;
    let tint = [
        rng.below(8) as f32,
        rng.below(8) as f32,
        rng.below(8) as f32,
    ];
    let mut bg = vec![0u8; WIDTH * HEIGHT * 3];
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let tex = (((x * 7) ^ (y * 13)) % 17) as f32;
            let base = if (58..80).contains(&y) {
                [70.0, 70.0, 75.0] // the road
            } else if y < 20 {
                [120.0, 110.0, 100.0] // building wall
            } else {
                [140.0, 135.0, 120.0] // pavement
            };
            for c in 0..3 {
                let v = (base[c] + tex + tint[c]) * light;
                bg[(y * WIDTH + x) * 3 + c] = v.clamp(0.0, 255.0) as u8;
            }
        }
        if (68..70).contains(&y) {
            for x in (0..WIDTH).filter(|x| x % 16 < 8) {
                bg[(y * WIDTH + x) * 3..(y * WIDTH + x) * 3 + 3].copy_from_slice(&[200, 200, 180]);
            }
        }
    }
    (bg, light)
}

fn shirt(rng: &mut Rng) -> [u8; 3] {
    const SHIRTS: [[u8; 3]; 6] = [
        [200, 40, 40],
        [40, 90, 200],
        [40, 160, 60],
        [220, 200, 40],
        [150, 60, 170],
        [240, 240, 240],
    ];
    SHIRTS[rng.below(SHIRTS.len() as u64) as usize]
}

fn car_colour(rng: &mut Rng) -> [u8; 3] {
    const CARS: [[u8; 3]; 5] = [
        [30, 60, 160],
        [180, 30, 30],
        [220, 220, 220],
        [30, 30, 30],
        [40, 140, 140],
    ];
    CARS[rng.below(CARS.len() as u64) as usize]
}

/// One generated video: its frames go to `path`; returns, per frame, the anomaly's box
/// (None outside the event) and the box of a normal walking person.
struct VideoTruthPx {
    event: Vec<Option<PxBox>>,
    walker: Vec<Option<PxBox>>,
}

fn render_video(
    path: &Path,
    class: Option<usize>,
    event: (usize, usize),
    frames: usize,
    seed: u64,
) -> Result<VideoTruthPx> {
    let mut rng = Rng::new(seed);
    let (bg, _) = background(&mut rng);
    let mut people: Vec<Person> = (0..2 + rng.below(3) as usize)
        .map(|_| Person {
            x: rng.below(WIDTH as u64) as f32,
            y: 26.0 + rng.below(28) as f32,
            vx: if rng.below(3) == 0 {
                0.0
            } else {
                (rng.below(20) as f32 - 10.0) / 10.0
            },
            shirt: shirt(&mut rng),
        })
        .collect();
    let mut cars: Vec<Car> = (0..1 + rng.below(2) as usize)
        .map(|i| Car {
            x: rng.below(WIDTH as u64) as f32,
            y: if i % 2 == 0 { 67.0 } else { 78.0 },
            vx: if i % 2 == 0 {
                2.0 + rng.below(20) as f32 / 10.0
            } else {
                -2.0 - rng.below(20) as f32 / 10.0
            },
            colour: car_colour(&mut rng),
        })
        .collect();
    // The event's actors.
    let ex = 30.0 + rng.below(68) as f32;
    let ey = 34.0 + rng.below(18) as f32;
    let (s1, s2) = (shirt(&mut rng), shirt(&mut rng));
    let opts = EncodeOptions {
        codec: Codec::H264,
        fps: FPS,
        gop: 20,
        b_frames: 2,
        crf: 18,
    };
    let mut writer = VideoWriter::create(path, WIDTH as u32, HEIGHT as u32, opts)?;
    let mut truth = VideoTruthPx {
        event: Vec::with_capacity(frames),
        walker: Vec::with_capacity(frames),
    };
    for t in 0..frames {
        let mut f = Frame { data: bg.clone() };
        for c in &mut cars {
            c.x += c.vx;
            if c.x > WIDTH as f32 + 15.0 {
                c.x = -15.0;
            } else if c.x < -15.0 {
                c.x = WIDTH as f32 + 15.0;
            }
            f.car(c.x, c.y, c.colour);
        }
        let mut walker = None;
        for (i, p) in people.iter_mut().enumerate() {
            p.x += p.vx;
            if p.x > WIDTH as f32 + 4.0 {
                p.x = -4.0;
            } else if p.x < -4.0 {
                p.x = WIDTH as f32 + 4.0;
            }
            let b = f.person(p.x, p.y, p.shirt);
            if i == 0 && b.0 >= 0.0 && b.2 <= WIDTH as f32 {
                walker = Some(b);
            }
        }
        let active = class.is_some() && (event.0..=event.1).contains(&t);
        let k = t.saturating_sub(event.0) as f32;
        let ev = if active {
            match class {
                Some(0) => {
                    // Fighting: two people overlapping, jittering.
                    let j1 = (rng.below(5) as f32 - 2.0, rng.below(3) as f32 - 1.0);
                    let j2 = (rng.below(5) as f32 - 2.0, rng.below(3) as f32 - 1.0);
                    let a = f.person(ex - 2.0 + j1.0, ey + j1.1, s1);
                    let b = f.person(ex + 2.0 + j2.0, ey + j2.1, s2);
                    Some(union(a, b))
                }
                Some(1) => Some(f.lying(ex, ey, s1)),
                Some(2) => {
                    // Fire: a growing, flickering orange disc.
                    let r = (3.0 + k * 0.6).min(16.0);
                    let mut b = (ex, ey, ex, ey);
                    for dy in -(r as i32)..=(r as i32) {
                        for dx in -(r as i32)..=(r as i32) {
                            let d = ((dx * dx + dy * dy) as f32).sqrt();
                            if d <= r {
                                let flick = rng.below(60) as u8;
                                let c = if d < r * 0.5 {
                                    [255, 220 - flick / 2, 80]
                                } else {
                                    [250, 120 + flick, 20]
                                };
                                let (x, y) = (ex + dx as f32, ey + dy as f32);
                                f.fill((x, y, x + 1.0, y + 1.0), c);
                                b = union(b, (x, y, x + 1.0, y + 1.0));
                            }
                        }
                    }
                    Some(b)
                }
                Some(3) => {
                    // Theft: the thief takes the bag from a standing person, then runs.
                    let victim = f.person(ex, ey, s2);
                    let half = ((event.1 - event.0) / 3).max(1) as f32;
                    let tx = if k < half {
                        ex + 6.0
                    } else {
                        ex + 6.0 + (k - half) * 4.0
                    };
                    let thief = f.person(tx, ey, s1);
                    f.fill((tx + 3.0, ey - 10.0, tx + 7.0, ey - 6.0), [120, 70, 20]);
                    let thief = union(thief, (tx + 3.0, ey - 10.0, tx + 7.0, ey - 6.0));
                    Some(if k < half {
                        union(victim, thief)
                    } else {
                        thief
                    })
                }
                Some(_) => {
                    // Road accident: two cars meet and stay crashed.
                    let meet = ((event.1 - event.0) / 3).max(1) as f32;
                    let off = ((meet - k).max(0.0)) * 3.0 + 10.0;
                    let a = f.car(ex - off, 72.0, [180, 30, 30]);
                    let b = f.car(ex + off, 74.0, [30, 60, 160]);
                    if k >= meet {
                        // Debris: a scatter of bright fragments.
                        for _ in 0..6 {
                            let (dx, dy) = (rng.below(20) as f32 - 10.0, rng.below(6) as f32);
                            f.fill(
                                (ex + dx, 64.0 + dy, ex + dx + 1.0, 65.0 + dy),
                                [250, 250, 200],
                            );
                        }
                    }
                    Some(union(a, b))
                }
                None => None,
            }
        } else {
            None
        };
        truth.event.push(ev.map(clip_box));
        truth.walker.push(walker.map(clip_box));
        writer.write_rgb(&f.data)?;
    }
    writer.finish()?;
    Ok(truth)
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
                            "region_captions": [pick(region, region), normal_region],
                            "hard_negatives": [negatives(HARD_NEGATIVES[c]), normal_negatives],
                            "box_infos": [key_frames(&truth.event, (start, end), 3), key_frames(&truth.walker, (start, end), 1)],
                            "timestamps": [secs(start), secs(end + 1)],
                        }));
                        // … and the normal time before and after it: the same scene with
                        // the normal caption, so the event, not the scene, tells them apart.
                        // (Only before it: after-parts would make normal clips outnumber
                        // the events three to one.)
                        for (a, b) in [(0, start)] {
                            if b >= a + FPS as usize {
                                out_vec.push(json!({
                                    "video": video,
                                    "global_caption": pick(NORMAL_CAPTION.0, NORMAL_CAPTION.1),
                                    "region_captions": [normal_region],
                                    "hard_negatives": [normal_negatives],
                                    "box_infos": [key_frames(&truth.walker, (a, b - 1), 1)],
                                    "timestamps": [secs(a), secs(b)],
                                }));
                            }
                        }
                    }
                    None => {
                        for (a, b) in [(0, frames)] {
                            out_vec.push(json!({
                                "video": video,
                                "global_caption": pick(NORMAL_CAPTION.0, NORMAL_CAPTION.1),
                                "region_captions": [normal_region],
                                "hard_negatives": [normal_negatives],
                                "box_infos": if walker_boxes.is_empty() { json!([[]]) } else { json!([key_frames(&truth.walker, (a, b - 1), 1)]) },
                                "timestamps": [secs(a), secs(b)],
                            }));
                        }
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
    })
}
