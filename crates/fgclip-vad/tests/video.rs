//! Video decoding against OpenCV's frames (tests/fixtures/videos, from shared/fixtures)
//! and against videos these tests encode themselves with the FFmpeg libraries.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_success, fixtures, temp_dir};
use fgclip_vad::data::encode::{Codec, EncodeOptions, VideoWriter};
use fgclip_vad::data::frames::extract_frames;
use fgclip_vad::data::sampling::extent;
use fgclip_vad::data::video::{RgbFrame, VideoReader, probe};
use md5::{Digest, Md5};

struct Segment {
    timestamps: (f64, f64),
    indices: Vec<u64>,
    md5: Vec<String>,
    mean: Vec<[f64; 3]>,
}

fn segments(name: &str) -> (f64, u64, Vec<Segment>) {
    let text = std::fs::read_to_string(fixtures().join("videos").join(name)).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let segs = json["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let frames = s["frames"].as_array().unwrap();
            Segment {
                timestamps: (
                    s["timestamps"][0].as_f64().unwrap(),
                    s["timestamps"][1].as_f64().unwrap(),
                ),
                indices: frames
                    .iter()
                    .map(|f| f["index"].as_u64().unwrap())
                    .collect(),
                md5: frames
                    .iter()
                    .map(|f| f["md5_rgb24"].as_str().unwrap().to_string())
                    .collect(),
                mean: frames
                    .iter()
                    .map(|f| {
                        let m = &f["mean_rgb"];
                        [
                            m[0].as_f64().unwrap(),
                            m[1].as_f64().unwrap(),
                            m[2].as_f64().unwrap(),
                        ]
                    })
                    .collect(),
            }
        })
        .collect();
    (
        json["fps"].as_f64().unwrap(),
        json["frame_count"].as_u64().unwrap(),
        segs,
    )
}

fn read(path: &Path, indices: &[u64]) -> Vec<RgbFrame> {
    let mut reader = VideoReader::open(path).unwrap();
    let mut out = Vec::new();
    reader
        .read_frames(indices, |f| {
            out.push(f);
            Ok(())
        })
        .unwrap();
    out
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads each fixture segment (the reader seeks where that is cheaper) and checks the
/// indices exactly and the pixels by md5 or mean.
fn check_segments(video: &str, segs_file: &str, bit_exact: bool) {
    let path = fixtures().join("videos").join(video);
    let (fps, count, segs) = segments(segs_file);
    let info = probe(&path, true).unwrap();
    assert_eq!((info.fps, info.frame_count), (fps, count));
    for seg in &segs {
        let e = extent(Some(seg.timestamps), fps, count).unwrap();
        let wanted: Vec<u64> = (e.first..=e.last).collect();
        assert_eq!(wanted, seg.indices, "{video} {:?}: extent", seg.timestamps);
        let frames = read(&path, &wanted);
        let got: Vec<u64> = frames.iter().map(|f| f.index).collect();
        assert_eq!(got, seg.indices, "{video} {:?}: indices", seg.timestamps);
        let distance =
            |m: &[f64], r: &[f64]| (0..3).map(|c| (m[c] - r[c]).abs()).fold(0.0, f64::max);
        for (k, f) in frames.iter().enumerate() {
            if bit_exact {
                assert_eq!(md5_hex(&f.data), seg.md5[k], "{video} frame {}", f.index);
            }
            // Without bit-exactness the content must still be OpenCV's frame of that index:
            // within 0.005 of its mean RGB (adjacent vtest frames differ by ≥ 0.012), and
            // nearer to it than to any other frame of the segment.
            let m = f.mean_rgb();
            let d = distance(&m, &seg.mean[k]);
            assert!(
                d < 0.005,
                "{video} frame {}: mean {m:?} vs {:?}",
                f.index,
                seg.mean[k]
            );
            let nearest = (0..seg.mean.len())
                .min_by(|&a, &b| distance(&m, &seg.mean[a]).total_cmp(&distance(&m, &seg.mean[b])));
            assert_eq!(
                nearest,
                Some(k),
                "{video} frame {} looks like another",
                f.index
            );
        }
    }
}

#[test]
fn h264_segments_are_bit_exact_with_opencv() {
    check_segments("testsrc_h264.mp4", "testsrc_h264_segments.json", true);
}

#[test]
fn mpeg4_part2_segments_match_opencv() {
    check_segments("vtest.avi", "vtest_segments.json", false);
}

#[test]
fn random_access_equals_sequential_decoding() {
    let path = fixtures().join("videos/testsrc_h264.mp4");
    let all = read(&path, &(0..360).collect::<Vec<_>>());
    assert_eq!(all.len(), 360);
    // Unsorted, duplicated, far apart: seeks both ways.
    let picks = [300, 7, 299, 180, 181, 7, 359, 61, 0];
    let got = read(&path, &picks);
    let mut want: Vec<u64> = picks.to_vec();
    want.sort();
    want.dedup();
    assert_eq!(got.iter().map(|f| f.index).collect::<Vec<_>>(), want);
    for f in &got {
        assert_eq!(f.data, all[f.index as usize].data, "frame {}", f.index);
    }
    // Past the end: not found, no error.
    assert!(read(&path, &[400, 1000]).is_empty());
}

/// A 64×48 frame whose 8 blocks (16×24 px) spell the bits of `i`, robust to compression.
fn coded_frame(i: u64) -> Vec<u8> {
    let (w, h) = (64usize, 48usize);
    let mut data = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let bit = (y / 24) * 4 + x / 16;
            let on = (i >> bit) & 1 == 1;
            let v = if on { 220 } else { 30 };
            data[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[v, v / 2, 255 - v]);
        }
    }
    data
}

fn decode_code(f: &RgbFrame) -> u64 {
    let w = f.width as usize;
    (0..8)
        .map(|bit| {
            let (bx, by) = (bit % 4 * 16 + 8, bit / 4 * 24 + 12);
            let r = f.data[(by * w + bx) * 3];
            ((r > 128) as u64) << bit
        })
        .sum()
}

fn make_video(dir: &Path, name: &str, codec: Codec, frames: u64) -> PathBuf {
    let path = dir.join(name);
    let opts = EncodeOptions {
        codec,
        fps: 25,
        gop: 12,
        b_frames: 2,
        crf: 18,
    };
    let mut w = VideoWriter::create(&path, 64, 48, opts).unwrap();
    for i in 0..frames {
        w.write_rgb(&coded_frame(i)).unwrap();
    }
    w.finish().unwrap();
    path
}

#[test]
fn generated_videos_decode_frame_exactly() {
    let dir = temp_dir("gen");
    for (name, codec) in [
        ("h264.mp4", Codec::H264),
        ("mpeg4.avi", Codec::Mpeg4),
        ("h264.mkv", Codec::H264),
    ] {
        let path = make_video(&dir, name, codec, 100);
        let info = probe(&path, true).unwrap();
        assert_eq!(
            (info.frame_count, info.width, info.height),
            (100, 64, 48),
            "{name}"
        );
        assert!((info.fps - 25.0).abs() < 1e-9, "{name}: fps {}", info.fps);
        let all = read(&path, &(0..100).collect::<Vec<_>>());
        assert_eq!(all.len(), 100, "{name}");
        for f in &all {
            assert_eq!(
                decode_code(f),
                f.index,
                "{name}: content of frame {}",
                f.index
            );
        }
        let picks = [97, 3, 50, 51, 13, 80, 99];
        for f in read(&path, &picks) {
            assert_eq!(decode_code(&f), f.index, "{name}: seek to {}", f.index);
        }
        // A 2 s segment at 25 fps, sampled at 8 centres and resized.
        let out = dir.join(format!("{name}.npy"));
        let r = extract_frames(
            &path,
            Some((1.0, 3.0)),
            Some(8),
            Some((32, Default::default())),
            &out,
            &indicatif::ProgressBar::hidden(),
        )
        .unwrap();
        assert_eq!(r.indices, vec![28, 34, 40, 46, 53, 59, 65, 71]);
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes.len(), 128 + 8 * 32 * 32 * 3);
        assert!(
            std::str::from_utf8(&bytes[10..128])
                .unwrap()
                .contains("'shape': (8, 32, 32, 3)")
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn damaged_truncated_empty_and_missing_files_are_errors_not_panics() {
    let dir = temp_dir("bad");
    // Truncated Matroska: the first part still decodes.
    let mkv = make_video(&dir, "t.mkv", Codec::H264, 100);
    let bytes = std::fs::read(&mkv).unwrap();
    let cut = dir.join("cut.mkv");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let frames = read(&cut, &(0..100).collect::<Vec<_>>());
    assert!(
        !frames.is_empty() && frames.len() < 100,
        "{} frames",
        frames.len()
    );
    for f in &frames {
        assert_eq!(decode_code(f), f.index);
    }
    // Truncated MP4 (index at the end): cannot be opened.
    let mp4 = make_video(&dir, "t.mp4", Codec::H264, 50);
    let bytes = std::fs::read(&mp4).unwrap();
    let cut = dir.join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let err = format!("{:#}", VideoReader::open(&cut).err().unwrap());
    assert!(err.contains("cut.mp4"), "{err}");

    let empty = dir.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    assert!(format!("{:#}", probe(&empty, false).unwrap_err()).contains("empty.mp4"));
    let text = dir.join("notes.avi");
    std::fs::write(&text, "this is not a video\n".repeat(100)).unwrap();
    assert!(format!("{:#}", probe(&text, false).unwrap_err()).contains("notes.avi"));
    let missing = dir.join("missing.mp4");
    let err = format!("{:#}", VideoReader::open(&missing).err().unwrap());
    assert!(
        err.contains("missing.mp4") && err.contains("no such file"),
        "{err}"
    );

    // OpenCV's damaged sample decodes without a panic.
    let bugy = fixtures().join("videos/Megamind_bugy.avi");
    let frames = read(&bugy, &[0, 100, 269]);
    assert!(!frames.is_empty());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_segments_are_errors() {
    let dir = temp_dir("seg");
    let path = fixtures().join("videos/testsrc_h264.mp4");
    let out = dir.join("x.npy");
    for (s, e, needle) in [
        (20.0, 30.0, "holds no frame"),
        (5.0, 5.0, "bad timestamps"),
        (6.0, 5.0, "bad timestamps"),
        (f64::NAN, 5.0, "bad timestamps"),
        (-1.0, 5.0, "bad timestamps"),
    ] {
        let err = format!(
            "{:#}",
            extract_frames(
                &path,
                Some((s, e)),
                None,
                None,
                &out,
                &indicatif::ProgressBar::hidden()
            )
            .unwrap_err()
        );
        assert!(err.contains(needle), "[{s}, {e}]: {err}");
        assert!(!out.exists());
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn probe_and_frames_commands() {
    let dir = temp_dir("cli");
    let bin = env!("CARGO_BIN_EXE_fgclip");
    let video = fixtures().join("videos/testsrc_h264.mp4");
    let run = std::process::Command::new(bin)
        .args(["probe"])
        .arg(&video)
        .output()
        .unwrap();
    assert!(run.status.success());
    let info: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(info["codec"], "h264");
    assert_eq!(info["fps"], 30.0);
    assert_eq!(info["frame_count"], 360);
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(info["has_audio"], true);

    let out = dir.join("f.npy");
    let run = std::process::Command::new(bin)
        .args(["frames"])
        .arg(&video)
        .args(["--timestamps", "1.9", "2.1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&run);
    let r: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(r["indices"], serde_json::json!([57, 58, 59, 60, 61, 62]));
    assert_eq!(r["fps"], 30.0);
    let (shape, streamed) = fgclip_vad::data::npy::read_f32(&out).unwrap();
    assert_eq!(shape, [6, 240, 320, 3]);
    // Without --sample the frames are streamed to disk; with --sample 6 (all six here)
    // they are gathered in memory: the same pixels, and no temporary file left.
    let sampled = dir.join("s.npy");
    let run = std::process::Command::new(bin)
        .args(["frames"])
        .arg(&video)
        .args(["--timestamps", "1.9", "2.1", "--sample", "6", "--out"])
        .arg(&sampled)
        .output()
        .unwrap();
    assert_success(&run);
    assert!(fgclip_vad::data::npy::read_f32(&sampled).unwrap().1 == streamed);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");

    let empty = dir.join("e.npy");
    let run = std::process::Command::new(bin)
        .args(["frames"])
        .arg(&video)
        .args(["--timestamps", "20", "30", "--out"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("holds no frame"));
    assert!(!empty.exists());
    let run = std::process::Command::new(bin)
        .args(["probe"])
        .arg(dir.join("none.mp4"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("none.mp4"));
    std::fs::remove_dir_all(dir).ok();
}
