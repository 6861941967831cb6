//! `fgclip watch` against real servers on loopback: GStreamer's RTSP server
//! (`tests/rtsp_server.py`, TCP and UDP transport) and the `ffmpeg` CLI publishing MPEG-TS
//! over UDP; a damaged TS sent datagram by datagram; SIGTERM in the middle of an event.
//! The model is `tests/fixtures/watch_model` (trained on the synthetic set by
//! `tools/make_watch_model.py`: an input, not an expected value); the videos are the
//! synthetic generator's, whose ground truth says where the fire starts. Times asserted are
//! stream times, never wall-clock.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::loopback::{Server, free_tcp_port, which};
use common::watch::*;
use serde_json::Value;

/// The fire's event: opened and closed once, class Fire, its stream-time start within
/// (min-snippets + smooth) × stride / fps of the fire's first frame; its clip plays and
/// its thumbnail exists.
fn check_fire_event(out: &Path, events: &[Value], source: &str, fire_first: u64) {
    let mine: Vec<&Value> = events.iter().filter(|e| e["source"] == source).collect();
    assert_eq!(mine.len(), 2, "{mine:#?}");
    assert_eq!(
        (&mine[0]["state"], &mine[1]["state"]),
        (&"open".into(), &"closed".into())
    );
    for e in &mine {
        assert_eq!(e["class"], "Fire", "{e}");
        assert_eq!(e["id"], 1);
    }
    let start = mine[1]["stream_start_s"].as_f64().unwrap();
    let fire_s = fire_first as f64 / FPS;
    let bound = (MIN_SNIPPETS + SMOOTH) as f64 * STRIDE as f64 / FPS;
    assert!(
        (start - fire_s).abs() <= bound + 1e-9,
        "event starts at {start} s, the fire at {fire_s} s (bound {bound} s)"
    );
    let end = mine[1]["stream_end_s"].as_f64().unwrap();
    assert!(end > start, "{}", mine[1]);
    let clip = out.join(mine[1]["clip"].as_str().unwrap());
    let probe = fgclip().arg("probe").arg(&clip).output().unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let info: Value = serde_json::from_slice(&probe.stdout).unwrap();
    let frames = info["frame_count"].as_u64().unwrap();
    // The clip spans the event plus its pre-roll (2 s) and post-roll (1 s), at 10 fps.
    assert!(
        frames as f64 >= (end - start) * FPS,
        "{frames} frames in a {start}–{end} s event's clip"
    );
    assert!(out.join(mine[1]["thumbnail"].as_str().unwrap()).is_file());
}

#[test]
fn an_rtsp_stream_over_tcp_raises_a_fire_event_and_a_normal_one_none() {
    let dir = common::temp_dir("watch-rtsp-tcp");
    let (fire, normal, fire_first) = synth(&dir);
    let (p1, p2) = (free_tcp_port(), free_tcp_port());
    let _s1 = rtsp_server(&fire, p1);
    let _s2 = rtsp_server(&normal, p2);
    let out = dir.join("out");
    let hook = dir.join("hook.jsonl");
    let (fire_url, normal_url) = (
        format!("rtsp://127.0.0.1:{p1}/stream"),
        format!("rtsp://127.0.0.1:{p2}/stream"),
    );
    let run = fgclip()
        .args(watch_args(&out))
        .args([&fire_url, &normal_url])
        .args(["--rtsp-transport", "tcp", "--max-reconnects", "0"])
        .args(["--exec", "sh", "-c"])
        .arg(format!("cat >> '{}'", hook.display()))
        .output()
        .unwrap();
    check(&run);
    let events = lines(&out.join("events.jsonl"));
    check_fire_event(&out, &events, &fire_url, fire_first);
    assert!(
        !events.iter().any(|e| e["source"] == normal_url.as_str()),
        "an event on the normal stream: {events:#?}"
    );
    // Stdout and --exec got the same lines as events.jsonl.
    let stdout: Vec<Value> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(stdout, events);
    let mut hooked = lines(&hook);
    hooked.sort_by_key(|e| e["state"].as_str().map(String::from));
    assert_eq!(hooked.len(), 2);
    let st = status(&out);
    assert_eq!(st["exec"]["succeeded"], 2, "{st}");
    for s in st["sources"].as_array().unwrap() {
        assert_eq!(s["connections"], 1, "{s}");
        assert_eq!(s["state"], "ended", "{s}");
        assert_eq!(s["snippets_dropped"], 0, "{s}");
        assert_eq!(s["packets_skipped"], 0, "{s}");
    }
    // Every snippet of the 16 s streams was scored, in order.
    let sc = scores(&out);
    for url in [&fire_url, &normal_url] {
        let n = sc.iter().filter(|s| &s.0 == url).count();
        assert!(n >= 38, "{n} snippets of {url}");
    }
}

#[test]
fn an_rtsp_stream_over_udp_raises_the_fire_event() {
    let dir = common::temp_dir("watch-rtsp-udp");
    let (fire, _, fire_first) = synth(&dir);
    let port = free_tcp_port();
    let _server = rtsp_server(&fire, port);
    let out = dir.join("out");
    let url = format!("rtsp://127.0.0.1:{port}/stream");
    let run = fgclip()
        .args(watch_args(&out))
        .arg(&url)
        .args(["--rtsp-transport", "udp", "--max-reconnects", "0"])
        .output()
        .unwrap();
    check(&run);
    check_fire_event(&out, &lines(&out.join("events.jsonl")), &url, fire_first);
}

/// SIGTERM while an event is open, on an HTTP stream from the ffmpeg CLI (`-listen 1`):
/// watch closes the event in events.jsonl, finishes its clip (a playable MP4) and exits 0.
#[test]
fn sigterm_mid_event_closes_it_and_its_clip_plays() {
    let dir = common::temp_dir("watch-sigterm");
    let (fire, _, _) = synth(&dir);
    let port = free_tcp_port();
    let url = format!("http://127.0.0.1:{port}/fire.ts");
    let _server = Server(
        Command::new(which("ffmpeg"))
            .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
            .arg(&fire)
            .args(["-an", "-c:v", "copy", "-f", "mpegts", "-listen", "1"])
            .arg(&url)
            .stdin(Stdio::null())
            // It reports the client going away (SIGTERM) as a broken pipe.
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = dir.join("out");
    let mut watch = fgclip()
        .args(watch_args(&out))
        .arg(&url)
        .args(["--reconnect-min", "0.2", "--reconnect-max", "0.5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(watch.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let opened: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(opened["state"], "open");
    // Half a second more of the event, then SIGTERM.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) }, 0);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = watch.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let events = lines(&out.join("events.jsonl"));
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1]["state"], "closed");
    assert_eq!(events[1]["id"], opened["id"]);
    assert!(events[1]["stream_end_s"].as_f64().is_some());
    let clip = out.join(events[1]["clip"].as_str().unwrap());
    let probe = Command::new(which("ffprobe"))
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(&clip)
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let frames: u64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(frames >= 20, "{frames} frames in the clip");
}

#[test]
fn bad_arguments_fail_at_start() {
    let dir = common::temp_dir("watch-args");
    let out = dir.join("out");
    for (extra, want) in [
        (vec!["ftp://cam/1"], "unknown scheme `ftp://`"),
        (vec!["/no/such/cam.mp4"], "no such file"),
        (
            vec!["udp://127.0.0.1:9", "--threshold", "1.5"],
            "--threshold 1.5",
        ),
        (
            vec!["udp://127.0.0.1:9", "--batch-size", "0"],
            "--batch-size must be",
        ),
    ] {
        let t = Instant::now();
        let run = fgclip()
            .args(watch_args(&out))
            .args(&extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{extra:?}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
        assert!(t.elapsed() < Duration::from_secs(20));
    }
}

/// A file read as a live source is scored as `detect` scores it: the same frames (the
/// centre of each snippet), the same conversion, the same head — for a CLIP model and for
/// FG-CLIP 2's NaFlex tower with its sigmoid head.
#[test]
fn a_file_watched_gets_detect_s_snippet_scores() {
    let dir = common::temp_dir("watch-as-detect");
    let video = common::fixtures().join("videos/testsrc_h264.mp4");
    let clip = model();
    let fgclip2 = common::fixtures().join("fgclip2_tiny/model");
    let cases: [(&Path, Vec<&str>); 2] = [
        (
            &clip,
            vec!["--tokenizer", "builtin", "--prompts", "ucf-crime"],
        ),
        (&fgclip2, vec!["--prompts", "ucf-crime.zh"]),
    ];
    for (i, (m, extra)) in cases.iter().enumerate() {
        let det = dir.join(format!("detect{i}"));
        let run = fgclip()
            .args(["detect", "--model"])
            .arg(m)
            .arg(&video)
            .arg("--out")
            .arg(&det)
            .args(["--stride", "16", "--smooth", "1"])
            .args(extra)
            .output()
            .unwrap();
        check(&run);
        let out = dir.join(format!("watch{i}"));
        let run = fgclip()
            .args(["watch", "--model"])
            .arg(m)
            .arg(&video)
            .arg("--out")
            .arg(&out)
            .args([
                "--stride",
                "16",
                "--smooth",
                "1",
                "--log-snippets",
                "--quiet",
            ])
            .args(["--max-pending", "1000", "--no-clips", "--no-thumbnails"])
            .args(extra)
            .output()
            .unwrap();
        check(&run);
        let r: Value =
            serde_json::from_str(&std::fs::read_to_string(det.join("testsrc_h264.json")).unwrap())
                .unwrap();
        let want: Vec<f64> = r["snippets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["score"].as_f64().unwrap())
            .collect();
        let got = scores(&out);
        // 360 frames: 22 whole snippets (detect also scores the last 8 frames).
        assert_eq!((want.len(), got.len()), (23, 22), "{}", m.display());
        for (k, s) in got.iter().enumerate() {
            assert!((s.2 - k as f64 * 16.0 / 30.0).abs() < 1e-3, "{s:?}");
            assert!(
                (s.4 - want[k]).abs() < 2e-5,
                "{}: snippet {k}: watch {} detect {}",
                m.display(),
                s.4,
                want[k]
            );
        }
        assert!(
            want.iter().any(|w| (w - want[0]).abs() > 1e-4),
            "constant scores"
        );
    }
}
