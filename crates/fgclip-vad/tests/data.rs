//! Annotations, validation, sampling and batching on a small dataset the test encodes
//! itself (H.264 videos whose frames spell their own index).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{fgclip, fixtures, temp_dir};
use fgclip_vad::checkpoint::hf::load_tokenizer;
use fgclip_vad::checkpoint::safetensors_io::{Array, read_arrays, write_arrays};
use fgclip_vad::data::annotations::load;
use fgclip_vad::data::batch::{
    Batch, CLIP_MEAN, CLIP_STD, Loader, LoaderPosition, LoaderSettings, SampleConfig, Sampling,
    TextLayout, build_sample,
};
use fgclip_vad::data::encode::{Codec, EncodeOptions, VideoWriter};

const W: usize = 64;
const H: usize = 48;

fn coded_frame(i: u64) -> Vec<u8> {
    let mut data = vec![0u8; W * H * 3];
    for y in 0..H {
        for x in 0..W {
            let bit = (y / 24) * 4 + x / 16;
            let v = if (i >> bit) & 1 == 1 { 230 } else { 20 };
            data[(y * W + x) * 3..(y * W + x) * 3 + 3].copy_from_slice(&[v, v, v]);
        }
    }
    data
}

/// The index spelled by a (3, S, S) normalised sample frame.
fn code_of(pixels: &[f32], s: usize) -> u64 {
    (0..8)
        .map(|bit| {
            let x = (bit % 4 * 16 + 8) * s / W;
            let y = (bit / 4 * 24 + 12) * s / H;
            let r = pixels[y * s + x] * CLIP_STD[0] + CLIP_MEAN[0];
            ((r > 0.5) as u64) << bit
        })
        .sum()
}

fn make_dataset(dir: &Path) -> PathBuf {
    for name in ["a.mp4", "b.mp4", "c.mp4"] {
        let opts = EncodeOptions {
            codec: Codec::H264,
            fps: 25,
            gop: 25,
            b_frames: 2,
            crf: 12,
        };
        let mut w = VideoWriter::create(&dir.join(name), W as u32, H as u32, opts).unwrap();
        for i in 0..100 {
            w.write_rgb(&coded_frame(i)).unwrap();
        }
        w.finish().unwrap();
    }
    let ann = dir.join("train.json");
    std::fs::write(
        &ann,
        r#"[
 {"video": "a.mp4", "global_caption": "a man attacks a woman", "region_captions": ["the man", "the woman"],
  "box_infos": [[{"frame": 10, "bbox": [0.1, 0.2, 0.5, 0.6]}, {"frame": 37, "bbox": [0.2, 0.2, 0.6, 0.6], "enabled": true, "_track_id": 3},
                 {"frame": 50, "bbox": [0.2, 0.2, 0.6, 0.6], "enabled": false}],
                [{"frame": 80, "bbox": [0.5, 0.1, 0.9, 1.0000000001]}]], "timestamps": null},
 {"video": "b.mp4", "global_caption": "顾客在超市正常购物", "region_captions": ["顾客在货架前挑选商品"], "box_infos": [[]], "timestamps": [1.0, 3.0]},
 {"video": "missing.mp4", "global_caption": "gone", "region_captions": ["r"], "box_infos": []},
 {"video": "c.mp4", "global_caption": "late boxes", "region_captions": ["r"],
  "box_infos": [[{"frame": 90, "bbox": [0.1, 0.1, 0.2, 0.2]}]], "timestamps": [0.0, 2.0]}
]"#,
    )
    .unwrap();
    ann
}

#[test]
fn validate_reports_counts_and_video_problems() {
    let dir = temp_dir("validate");
    let ann = make_dataset(&dir);
    let run = fgclip(&[
        "validate",
        "--annotations",
        ann.to_str().unwrap(),
        "--videos",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(s["clips"], 4);
    assert_eq!(s["anomaly_clips"], 2);
    assert_eq!(s["normal_clips"], 2);
    assert_eq!(s["regions"], 5);
    assert_eq!(s["key_frames"], 4);
    assert_eq!(s["disabled_boxes"], 1);
    assert_eq!(s["with_timestamps"], 2);
    assert_eq!(s["videos_checked"], 4);
    assert_eq!(s["errors"], 1);
    let problems = s["problems"].as_array().unwrap();
    let find = |clip: u64, field: &str| {
        problems
            .iter()
            .find(|p| p["clip"] == clip && p["field"] == field)
            .unwrap_or_else(|| panic!("no problem at clip {clip} {field}: {problems:#?}"))
    };
    let p = find(2, "video");
    assert_eq!(p["severity"], "error");
    assert!(p["message"].as_str().unwrap().contains("missing.mp4"));
    let p = find(3, "box_infos[0]");
    assert_eq!(p["severity"], "warning");
    assert!(
        p["message"].as_str().unwrap().contains("takes no part"),
        "{p}"
    );

    // The readable report, and exit 0 once the bad clip is gone.
    let run = fgclip(&["validate", "--annotations", ann.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(0));
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        text.contains("4 clips (2 anomalous, 2 normal)") && text.contains("0 error(s)"),
        "{text}"
    );

    let broken = dir.join("broken.json");
    std::fs::write(&broken, "[{\"video\": ").unwrap();
    let run = fgclip(&["validate", "--annotations", broken.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("broken.json"));
    let run = fgclip(&[
        "validate",
        "--annotations",
        dir.join("nope.json").to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn samples_put_key_frames_boxes_and_virtual_boxes_in_place() {
    let dir = temp_dir("sample");
    let ann = make_dataset(&dir);
    let d = load(&ann, 4).unwrap();
    let cfg = SampleConfig {
        frames: 8,
        image_size: 32,
        max_anns: 4,
        whole_video_normals: false,
        augment: Vec::new(),
        naflex: None,
        preprocess: Default::default(),
    };
    let (s, t, n) = (32usize, 8usize, 4usize);

    let x = build_sample(&d.clips[0], &dir, &cfg, Sampling::Uniform).unwrap();
    // Uniform centres of 0..=99 are 6, 18, 31, 43, 56, 68, 81, 93; key frames 10, 37, 80
    // replace the nearest ones (6, 31 or 43, 81); the disabled box at 50 does not.
    assert_eq!(x.frame_indices, vec![10, 18, 37, 43, 56, 68, 80, 93]);
    for (k, &f) in x.frame_indices.iter().enumerate() {
        assert_eq!(
            code_of(&x.pixels[k * 3 * s * s..], s),
            f,
            "content of sampled frame {f}"
        );
    }
    let mask_at = |ti: usize, i: usize| x.mask[ti * n + i];
    let box_at = |ti: usize, i: usize| &x.boxes[(ti * n + i) * 4..(ti * n + i) * 4 + 4];
    assert_eq!((mask_at(0, 0), mask_at(2, 0), mask_at(6, 1)), (1, 1, 1));
    assert_eq!(box_at(0, 0), &[0.1, 0.2, 0.5, 0.6]);
    assert_eq!(box_at(6, 1), &[0.5, 0.1, 0.9, 1.0], "clamped noise");
    assert_eq!(x.mask.iter().map(|&m| m as usize).sum::<usize>(), 3);
    assert_eq!(x.region_captions.len(), 2);

    // HF's centre crop: the 64×48 frames go to 42×32 (shortest edge 32, int(32·64/48)), then
    // columns 5..37; the boxes follow into the crop and are clipped at its edges.
    let crop = SampleConfig {
        preprocess: fgclip_vad::data::preprocess::Preprocess::CenterCrop,
        ..cfg.clone()
    };
    let c = build_sample(&d.clips[0], &dir, &crop, Sampling::Uniform).unwrap();
    assert_eq!(c.frame_indices, x.frame_indices);
    assert_eq!(c.pixels.len(), x.pixels.len());
    assert_ne!(c.pixels, x.pixels);
    let cbox = |ti: usize, i: usize| &c.boxes[(ti * n + i) * 4..(ti * n + i) * 4 + 4];
    assert_eq!(cbox(0, 0), &[0.0, 0.2, 0.5, 0.6]);
    assert_eq!(cbox(6, 1), &[0.5, 0.1, 1.0, 1.0]);
    assert_eq!(c.mask, x.mask);

    // A normal clip in [1 s, 3 s) at 25 fps: frames 25..=74, the whole-frame box everywhere.
    let y = build_sample(&d.clips[1], &dir, &cfg, Sampling::Uniform).unwrap();
    assert_eq!(y.frame_indices, vec![28, 34, 40, 46, 53, 59, 65, 71]);
    for ti in 0..t {
        assert_eq!(y.mask[ti * n], 1);
        assert_eq!(&y.boxes[ti * n * 4..ti * n * 4 + 4], &[0.0, 0.0, 1.0, 1.0]);
        assert_eq!(y.mask[ti * n + 1], 0);
    }
    // Key frames outside the clip: no valid frame, the region has no mask.
    let z = build_sample(&d.clips[3], &dir, &cfg, Sampling::Uniform).unwrap();
    assert!(z.mask.iter().all(|&m| m == 0));
    assert!(z.frame_indices.iter().all(|&f| f < 50));
    // Random sampling is deterministic for a seed and stays in the segments.
    let r1 = build_sample(&d.clips[1], &dir, &cfg, Sampling::Random { seed: 3 }).unwrap();
    let r2 = build_sample(&d.clips[1], &dir, &cfg, Sampling::Random { seed: 3 }).unwrap();
    assert_eq!(r1.frame_indices, r2.frame_indices);
    assert_eq!(r1.pixels, r2.pixels);
    for (j, &f) in r1.frame_indices.iter().enumerate() {
        let lo = 25 + (j as u64 * 50 / 8);
        let hi = 25 + ((j as u64 + 1) * 50 / 8);
        assert!((lo..hi).contains(&f), "{:?}", r1.frame_indices);
    }
    // The missing video is an error naming the clip.
    let e = format!(
        "{:#}",
        build_sample(&d.clips[2], &dir, &cfg, Sampling::Uniform).unwrap_err()
    );
    assert!(e.contains("clip 2") && e.contains("missing.mp4"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn loader_is_deterministic_skips_bad_clips_and_resumes() {
    let dir = temp_dir("loader");
    let ann = make_dataset(&dir);
    let d = load(&ann, 4).unwrap();
    let clips = Arc::new(d.clips.clone());
    let cfg = SampleConfig {
        frames: 4,
        image_size: 16,
        max_anns: 4,
        whole_video_normals: false,
        augment: Vec::new(),
        naflex: None,
        preprocess: Default::default(),
    };
    let run = |workers: usize, seed: u64, start: LoaderPosition| {
        Loader::new(
            clips.clone(),
            dir.clone(),
            cfg.clone(),
            &LoaderSettings {
                batch_size: 2,
                seed,
                shuffle: true,
                random_frames: true,
                workers,
                prefetch: 4,
                drop_last: false,
                rank: 0,
                world: 1,
            },
            start,
        )
        .map(|b| {
            let frames: Vec<(usize, Vec<u64>)> = b
                .samples
                .iter()
                .map(|s| (s.clip, s.frame_indices.clone()))
                .collect();
            let skipped: Vec<usize> = b.skipped.iter().map(|(c, _)| *c).collect();
            (b.position, frames, skipped)
        })
        .collect::<Vec<_>>()
    };
    let one = run(1, 5, LoaderPosition { epoch: 2, batch: 0 });
    let three = run(3, 5, LoaderPosition { epoch: 2, batch: 0 });
    assert_eq!(one, three);
    assert_eq!(one.len(), 2);
    let skipped: Vec<usize> = one.iter().flat_map(|b| b.2.clone()).collect();
    assert_eq!(skipped, vec![2]);
    let loaded: usize = one.iter().map(|b| b.1.len()).sum();
    assert_eq!(loaded, 3);
    // Another epoch or seed draws other frames or order.
    assert_ne!(one, run(2, 6, LoaderPosition { epoch: 2, batch: 0 }));
    // Resuming at batch 1 gives exactly the rest.
    let rest = run(2, 5, LoaderPosition { epoch: 2, batch: 1 });
    assert_eq!(rest, one[1..]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn batch_has_the_design_layout() {
    let dir = temp_dir("batch");
    let ann = make_dataset(&dir);
    let d = load(&ann, 4).unwrap();
    let cfg = SampleConfig {
        frames: 4,
        image_size: 16,
        max_anns: 4,
        whole_video_normals: false,
        augment: Vec::new(),
        naflex: None,
        preprocess: Default::default(),
    };
    let samples: Vec<_> = [0, 1]
        .iter()
        .map(|&i| build_sample(&d.clips[i], &dir, &cfg, Sampling::Uniform).unwrap())
        .collect();
    let tok = load_tokenizer(&fixtures().join("clip_tiny")).unwrap();
    let batch = Batch::collate(&samples, &cfg, &tok, &TextLayout::short(77)).unwrap();
    let path = dir.join("batch.safetensors");
    write_arrays(&path, &batch.to_arrays()).unwrap();
    let a = read_arrays(&path).unwrap();
    let shape = |k: &str| a[k].shape().to_vec();
    assert_eq!(shape("pixel_values"), [2, 4, 3, 16, 16]);
    assert_eq!(shape("global_input_ids"), [2, 77]);
    assert_eq!(shape("region_input_ids"), [2, 4, 77]);
    assert_eq!(shape("boxes"), [2, 4, 4, 4]);
    assert_eq!(shape("bbox_mask"), [2, 4, 4]);
    assert!(matches!(a["bbox_mask"], Array::U8 { .. }));
    match &a["box_nums"] {
        Array::I64 { data, .. } => assert_eq!(data, &vec![2, 1]),
        other => panic!("{other:?}"),
    }
    match &a["region_input_ids"] {
        Array::I64 { data, .. } => {
            // Clip 1's second region slot is padding: an empty caption.
            let row = &data[(4 + 1) * 77..(4 + 2) * 77];
            assert_eq!(&row[..3], &[49406, 49407, 0]);
            assert_eq!(data[0], 49406);
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Segment frames follow Python's `int(float(t) * fps)` for every timestamp 0.00–600.00 s
/// (0.01 s steps) at 25, 30 and 30000/1001 fps, with the timestamps parsed from JSON text
/// as the annotation loader parses them (tests/fixtures/frame_rule, from
/// tools/make_frame_rule_fixture.py).
#[test]
fn segment_frames_truncate_the_double_product_as_python_does() {
    use std::io::Read;
    let file = std::fs::File::open(fixtures().join("frame_rule/expected.json.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let stamps: Vec<String> = (0..=60000u32)
        .map(|i| format!("{}.{:02}", i / 100, i % 100))
        .collect();
    let mut checked = 0;
    for (name, fps) in fixture["fps"].as_object().unwrap() {
        let fps = fps.as_f64().unwrap();
        let want = fixture["frames"][name].as_array().unwrap();
        assert_eq!(want.len(), stamps.len());
        for (s, w) in stamps.iter().zip(want) {
            // Through an annotation-shaped JSON value, as `annotations::load` reads it.
            let v: serde_json::Value = serde_json::from_str(&format!("[{s}, 1e9]")).unwrap();
            let t = v[0].as_f64().unwrap();
            assert_eq!(
                fgclip_vad::data::sampling::frame_at(t, fps),
                w.as_u64().unwrap(),
                "{s} s at {name} fps"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * 60001);
}

#[test]
fn whole_video_segments_sample_normal_clips_over_their_whole_video() {
    let dir = temp_dir("segments");
    let ann = make_dataset(&dir);
    let d = load(&ann, 4).unwrap();
    let mut cfg = SampleConfig {
        frames: 8,
        image_size: 32,
        max_anns: 4,
        whole_video_normals: false,
        augment: Vec::new(),
        naflex: None,
        preprocess: Default::default(),
    };
    // b.mp4 (normal, timestamps [1, 3] s at 25 fps): its segment, frames 25..=75.
    let normal = &d.clips[1];
    assert!(!normal.has_boxes());
    let x = build_sample(normal, &dir, &cfg, Sampling::Uniform).unwrap();
    assert!(
        x.frame_indices.iter().all(|f| (25..=75).contains(f)),
        "{:?}",
        x.frame_indices
    );
    // whole_video: the uniform centres of all 100 frames, as for a clip without timestamps.
    cfg.whole_video_normals = true;
    let x = build_sample(normal, &dir, &cfg, Sampling::Uniform).unwrap();
    assert_eq!(x.frame_indices, vec![6, 18, 31, 43, 56, 68, 81, 93]);
    // A clip with boxes keeps its timestamps ([0, 2] s: frames 0..=50).
    let boxed = d.clips.iter().find(|c| c.video == "c.mp4").unwrap();
    let y = build_sample(boxed, &dir, &cfg, Sampling::Uniform).unwrap();
    assert!(
        y.frame_indices.iter().all(|f| *f <= 50),
        "{:?}",
        y.frame_indices
    );
}

#[test]
fn augmentation_is_drawn_per_clip_seed_and_moves_boxes_with_the_pixels() {
    use fgclip_vad::data::augment::AugmentOp;
    use fgclip_vad::data::batch::build_sample_augmented;
    let dir = temp_dir("augment");
    let ann = make_dataset(&dir);
    let d = load(&ann, 4).unwrap();
    let plain = SampleConfig {
        frames: 8,
        image_size: 32,
        max_anns: 4,
        whole_video_normals: false,
        augment: Vec::new(),
        naflex: None,
        preprocess: Default::default(),
    };
    let flip = SampleConfig {
        augment: vec![AugmentOp::Flip(1.0)],
        ..plain.clone()
    };
    let clip = &d.clips[0];
    let x = build_sample(clip, &dir, &plain, Sampling::Uniform).unwrap();
    let y = build_sample_augmented(clip, &dir, &flip, Sampling::Uniform, 7).unwrap();
    assert_eq!(x.frame_indices, y.frame_indices);
    // Every image is mirrored: row r, column c of y is column S-1-c of x.
    let s = 32usize;
    for k in 0..3 * 8 {
        for r in 0..s {
            for c in 0..s {
                let a = x.pixels[k * s * s + r * s + c];
                let b = y.pixels[k * s * s + r * s + (s - 1 - c)];
                assert!((a - b).abs() < 1e-6);
            }
        }
    }
    // And so is every valid box; the mask is unchanged.
    assert_eq!(x.mask, y.mask);
    for (bx, by) in x.boxes.chunks(4).zip(y.boxes.chunks(4)) {
        if bx != [0.0; 4] {
            assert!((by[0] - (1.0 - bx[2])).abs() < 1e-6 && (by[2] - (1.0 - bx[0])).abs() < 1e-6);
            assert_eq!((by[1], by[3]), (bx[1], bx[3]));
        }
    }
    // Random crops: the same seed, the same sample; another seed, another crop.
    let crop = SampleConfig {
        augment: vec![AugmentOp::Crop {
            scale: [0.3, 0.6],
            ratio: [0.75, 1.333],
        }],
        ..plain.clone()
    };
    let a = build_sample_augmented(clip, &dir, &crop, Sampling::Uniform, 1).unwrap();
    let b = build_sample_augmented(clip, &dir, &crop, Sampling::Uniform, 1).unwrap();
    let c = build_sample_augmented(clip, &dir, &crop, Sampling::Uniform, 2).unwrap();
    assert_eq!(a.pixels, b.pixels);
    assert_eq!(a.boxes, b.boxes);
    assert_ne!(a.pixels, c.pixels);
    assert_ne!(a.pixels, x.pixels);
}
