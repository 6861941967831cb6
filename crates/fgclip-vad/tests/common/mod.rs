//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fgclip_vad::checkpoint::safetensors_io::{Array, read_arrays};

pub mod loopback;
pub mod watch;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn expected_tiny() -> BTreeMap<String, Array> {
    read_arrays(&fixtures().join("clip_tiny/expected.safetensors")).unwrap()
}

pub fn f32s(arrays: &BTreeMap<String, Array>, name: &str) -> (Vec<usize>, Vec<f32>) {
    match arrays.get(name) {
        Some(Array::F32 { shape, data }) => (shape.clone(), data.clone()),
        other => panic!("`{name}` is not an f32 array: {other:?}"),
    }
}

pub fn i64s(arrays: &BTreeMap<String, Array>, name: &str) -> (Vec<usize>, Vec<i64>) {
    match arrays.get(name) {
        Some(Array::I64 { shape, data }) => (shape.clone(), data.clone()),
        other => panic!("`{name}` is not an i64 array: {other:?}"),
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[track_caller]
pub fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    let d = max_abs_diff(got, want);
    eprintln!("{name}: max abs error {d:.3e}");
    assert!(d <= tol, "{name}: max abs error {d} > {tol}");
    // Guard against comparing two empty or all-zero tensors.
    assert!(
        want.iter().any(|v| v.abs() > 1e-3),
        "{name}: reference is all zero"
    );
}

pub fn l2_normalize_rows(x: &[f32], dim: usize) -> Vec<f32> {
    x.chunks(dim)
        .flat_map(|row| {
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter().map(move |v| v / n)
        })
        .collect()
}

/// A fresh empty folder under the system temp dir (the `tempfile` crate's), removed when
/// the guard goes out of scope — unless the test is failing, so that its files can be
/// looked at.
pub fn temp_dir(tag: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("fgclip-test-{tag}-"))
        .tempdir()
        .unwrap();
    TempDir {
        path: dir.path().to_path_buf(),
        dir: Some(dir),
    }
}

/// See [`temp_dir`].
pub struct TempDir {
    path: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.path
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A failing test keeps its folder; otherwise tempfile removes it.
        if std::thread::panicking()
            && let Some(d) = self.dir.take()
        {
            let _ = d.keep();
        }
    }
}

/// Asserts that a command exited with status 0, showing its stderr otherwise.
#[track_caller]
pub fn assert_success(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the `fgclip` binary with `args` and `--quiet`.
pub fn fgclip(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fgclip"))
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap()
}

/// A copy of the clip_tiny fixture folder in `dir` with its `logit_scale` set to `value`.
pub fn tiny_with_logit_scale(dir: &std::path::Path, value: f32) -> PathBuf {
    use fgclip_vad::checkpoint::safetensors_io::write_arrays;
    let tiny = fixtures().join("clip_tiny");
    let model = dir.join(format!("clip_tiny_scale_{value}"));
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tiny.join(f), model.join(f)).unwrap();
    }
    let mut weights = read_arrays(&tiny.join("model.safetensors")).unwrap();
    weights.insert(
        "logit_scale".into(),
        Array::F32 {
            shape: vec![],
            data: vec![value],
        },
    );
    write_arrays(&model.join("model.safetensors"), &weights).unwrap();
    model
}

/// Four 64×64 clips of a coloured block moving on grey (24 frames at 10 fps), each with
/// its own caption: `DIR/train.json` over `DIR/v{0..3}.mp4`.
pub fn moving_blocks(dir: &std::path::Path) -> std::path::PathBuf {
    use fgclip_vad::data::encode::{Codec, EncodeOptions, VideoWriter};
    let colours = [
        ([220u8, 40, 40], "a red square moves right"),
        ([40, 200, 60], "a green car drives past"),
        ([40, 60, 220], "a blue truck stops"),
        ([230, 220, 40], "a yellow fire grows"),
    ];
    let mut clips = Vec::new();
    for (k, (rgb, caption)) in colours.iter().enumerate() {
        let name = format!("v{k}.mp4");
        let opts = EncodeOptions {
            codec: Codec::H264,
            fps: 10,
            gop: 10,
            b_frames: 2,
            crf: 16,
        };
        let mut w = VideoWriter::create(&dir.join(&name), 64, 64, opts).unwrap();
        for i in 0..24usize {
            let mut f = vec![110u8; 64 * 64 * 3];
            let x0 = (i + k * 7) % 40;
            for y in 20..44 {
                for x in x0..x0 + 24 {
                    f[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3].copy_from_slice(rgb);
                }
            }
            w.write_rgb(&f).unwrap();
        }
        w.finish().unwrap();
        clips.push(serde_json::json!({"video": name, "global_caption": caption}));
    }
    let ann = dir.join("train.json");
    std::fs::write(&ann, serde_json::Value::Array(clips).to_string()).unwrap();
    ann
}

/// `fgclip train --quiet` of the clip_tiny fixture model on `ann` (videos under `videos`)
/// into `run` with the config file `cfg`.
pub fn train_tiny(
    ann: &std::path::Path,
    videos: &std::path::Path,
    run: &std::path::Path,
    cfg: &std::path::Path,
) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fgclip"));
    c.args(["train", "--quiet", "--annotations"])
        .arg(ann)
        .arg("--videos")
        .arg(videos)
        .arg("--model")
        .arg(fixtures().join("clip_tiny"))
        .arg("--out")
        .arg(run)
        .arg("--config")
        .arg(cfg);
    c
}

/// Copies a folder tree (a run folder, a model folder).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// The FG-CLIP 2 fixture's frame and its crops (x0, y0, x1, y1) as packed RGB24: (name,
/// data, width, height). The frame's MD5 must be the one the fixture was made from.
pub fn fgclip2_frames() -> Vec<(String, Vec<u8>, usize, usize)> {
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("fgclip2_tiny/expected.json")).unwrap(),
    )
    .unwrap();
    let video = meta["frame"]["video"].as_str().unwrap();
    let index = meta["frame"]["index"].as_u64().unwrap();
    let mut reader =
        fgclip_vad::data::video::VideoReader::open(&fixtures().join("videos").join(video)).unwrap();
    let mut frame = None;
    reader
        .read_frames(&[index], |f| {
            frame = Some(f);
            Ok(())
        })
        .unwrap();
    let f = frame.unwrap();
    let md5 = format!("{:x}", <md5::Md5 as md5::Digest>::digest(&f.data));
    assert_eq!(md5, meta["frame"]["md5_rgb24"].as_str().unwrap());
    let w = f.width as usize;
    let crops = meta["frame"]["crops"].as_object().unwrap();
    crops
        .iter()
        .map(|(name, c)| {
            let c: Vec<usize> = (0..4).map(|i| c[i].as_u64().unwrap() as usize).collect();
            let (cw, ch) = (c[2] - c[0], c[3] - c[1]);
            let mut data = Vec::with_capacity(cw * ch * 3);
            for y in c[1]..c[3] {
                data.extend_from_slice(&f.data[(y * w + c[0]) * 3..(y * w + c[2]) * 3]);
            }
            (name.clone(), data, cw, ch)
        })
        .collect()
}

/// Writes FG-CLIP 2 processor outputs as an `embed --pixels` file: `pixel_values`,
/// `spatial_shapes` and `pixel_attention_mask`, as FG-CLIP 2's processor returns them.
pub fn write_naflex_pixels(path: &Path, imgs: &[fgclip_vad::data::naflex::NaflexImage]) {
    use fgclip_vad::checkpoint::safetensors_io::write_arrays;
    let p = imgs[0].max_num_patches;
    let mut arrays = BTreeMap::new();
    arrays.insert(
        "pixel_values".to_string(),
        Array::F32 {
            shape: vec![imgs.len(), p, 768],
            data: imgs.iter().flat_map(|i| i.pixel_values.clone()).collect(),
        },
    );
    arrays.insert(
        "spatial_shapes".to_string(),
        Array::I64 {
            shape: vec![imgs.len(), 2],
            data: imgs
                .iter()
                .flat_map(|i| [i.spatial_shape.0 as i64, i.spatial_shape.1 as i64])
                .collect(),
        },
    );
    arrays.insert(
        "pixel_attention_mask".to_string(),
        Array::I64 {
            shape: vec![imgs.len(), p],
            data: imgs.iter().flat_map(|i| i.mask()).collect(),
        },
    );
    write_arrays(path, &arrays).unwrap();
}

const FGCLIP2_SCENES: [([u8; 3], &str, &str); 4] = [
    (
        [220, 40, 40],
        "一名男子在商店内对女性进行暴力攻击",
        "男子拉扯女性的红色物品",
    ),
    (
        [40, 200, 60],
        "a green car crashes into a pole",
        "the green car",
    ),
    ([40, 60, 220], "顾客在超市正常购物", "顾客在货架前挑选商品"),
    (
        [230, 220, 40],
        "a fire grows in the corner of the street",
        "the yellow fire",
    ),
];

/// FG-CLIP 2 training data, `DIR/train.json`: four 64×48 clips of a coloured block moving on grey
/// (Chinese and English captions), with a region box on every frame
/// (three negatives each), a long caption on three of them.
pub fn fgclip2_clips(dir: &Path) -> PathBuf {
    use fgclip_vad::data::encode::{Codec, EncodeOptions, VideoWriter};
    let mut clips = Vec::new();
    for (k, (rgb, caption, region)) in FGCLIP2_SCENES.iter().enumerate() {
        let name = format!("v{k}.mp4");
        let opts = EncodeOptions {
            codec: Codec::H264,
            fps: 10,
            gop: 10,
            b_frames: 0,
            crf: 16,
        };
        let mut w = VideoWriter::create(&dir.join(&name), 64, 48, opts).unwrap();
        let mut boxes = Vec::new();
        for i in 0..20usize {
            let mut f = vec![110u8; 64 * 48 * 3];
            let x0 = (i + k * 5) % 40;
            for y in 12..36 {
                for x in x0..x0 + 24 {
                    f[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3].copy_from_slice(rgb);
                }
            }
            w.write_rgb(&f).unwrap();
            let x0 = x0 as f64 / 64.0;
            boxes.push(serde_json::json!({"frame": i, "bbox": [x0, 0.25, x0 + 0.375, 0.75]}));
        }
        w.finish().unwrap();
        let mut clip = serde_json::json!({
            "video": name,
            "global_caption": caption,
            "region_captions": [region],
            "box_infos": [boxes],
            "hard_negatives": [[format!("{region} 不"), format!("not {region}"), "一辆汽车"]],
            "timestamps": null
        });
        if k != 2 {
            clip["long_caption"] = serde_json::json!(format!("{caption}。{region}，{caption}"));
        }
        clips.push(clip);
    }
    let ann = dir.join("train.json");
    std::fs::write(&ann, serde_json::to_string_pretty(&clips).unwrap()).unwrap();
    ann
}
