//! `fgclip watch` against real servers on loopback: GStreamer's RTSP server
//! (`tests/rtsp_server.py`, TCP and UDP transport) and the `ffmpeg` CLI publishing MPEG-TS
//! over UDP; a damaged TS sent datagram by datagram; SIGTERM in the middle of an event.
//! The model is `tests/fixtures/watch_model` (trained on the synthetic set by
//! `tools/make_watch_model.py`: an input, not an expected value); the videos are the
//! synthetic generator's, whose ground truth says where the fire starts. Times asserted are
//! stream times, never wall-clock.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const FPS: f64 = 10.0;
const STRIDE: u64 = 4;
const SMOOTH: usize = 2;
const MIN_SNIPPETS: usize = 2;

fn fgclip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fgclip"))
}

fn model() -> PathBuf {
    common::fixtures().join("watch_model")
}

fn which(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            p.to_str()?
                .split(':')
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{tool} is missing: run scripts/install-deps"))
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Synthetic test videos of 16 s at 10 fps: (fire video, normal video, the fire's first
/// frame from the generator's ground truth).
fn synth(dir: &Path) -> (PathBuf, PathBuf, u64) {
    let out = dir.join("synth");
    let run = fgclip()
        .args([
            "synth",
            "--num-videos",
            "6",
            "--seconds",
            "16",
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let gt = std::fs::read_to_string(out.join("test_gt.txt")).unwrap();
    let line = gt
        .lines()
        .find(|l| l.starts_with("test_000_Fire.mp4"))
        .unwrap_or_else(|| panic!("no fire video in {gt}"));
    let first: u64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(gt.contains("test_001_Normal.mp4 Normal"), "{gt}");
    (
        out.join("videos/test_000_Fire.mp4"),
        out.join("videos/test_001_Normal.mp4"),
        first,
    )
}

/// A child process killed when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GStreamer's RTSP server serving `video` at rtsp://127.0.0.1:port/stream.
fn rtsp_server(video: &Path, port: u16) -> Server {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/rtsp_server.py");
    // Debian's Python: python3-gi is installed for it.
    let python = if Path::new("/usr/bin/python3").is_file() {
        PathBuf::from("/usr/bin/python3")
    } else {
        which("python3")
    };
    let mut child = Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .arg(video)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        "ready",
        "the RTSP server did not start (scripts/install-deps installs GStreamer's)"
    );
    Server(child)
}

/// `video` with a key frame every 10 frames (1 s), as a camera sends it: a UDP stream is
/// joined mid-way and decodes from its next key frame (the synthetic videos have one).
fn with_key_frames(video: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("gop10.mp4");
    let ok = Command::new(which("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(video)
        .args([
            "-an", "-c:v", "libx264", "-g", "10", "-bf", "0", "-preset", "veryfast",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(ok.success());
    out
}

/// `ffmpeg` publishing `video` in a loop at its own rate as MPEG-TS to udp://127.0.0.1:port.
fn udp_publisher(video: &Path, port: u16) -> Server {
    Server(
        Command::new(which("ffmpeg"))
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-re",
                "-stream_loop",
                "-1",
                "-i",
            ])
            .arg(video)
            .args(["-an", "-c:v", "copy", "-f", "mpegts"])
            .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn watch_args(out: &Path) -> Vec<String> {
    let m = model();
    [
        "watch",
        "--model",
        m.to_str().unwrap(),
        "--tokenizer",
        "builtin",
        "--prompts",
        m.join("prompts.json").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--stride",
        &STRIDE.to_string(),
        "--smooth",
        &SMOOTH.to_string(),
        "--min-snippets",
        &MIN_SNIPPETS.to_string(),
        "--log-snippets",
        "--quiet",
        // Room for a busy test machine: scoring lags, nothing is skipped.
        "--max-pending",
        "64",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn check(run: &Output) {
    assert!(
        run.status.success(),
        "watch failed ({:?}):\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (source, connection, start_s, end_s, score) of scores.csv.
fn scores(out: &Path) -> Vec<(String, u64, f64, f64, f64)> {
    let mut r = csv::Reader::from_path(out.join("scores.csv")).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (
                rec[0].to_string(),
                rec[1].parse().unwrap(),
                rec[2].parse().unwrap(),
                rec[3].parse().unwrap(),
                rec[4].parse().unwrap(),
            )
        })
        .collect()
}

fn status(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("status.json")).unwrap()).unwrap()
}

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

/// Two streams in one process; the RTSP server of one is killed mid-run and started again.
/// The other's snippets follow each other without a gap; the killed one reconnects and
/// resumes, and status.json shows it go from live to reconnecting and back.
#[test]
fn a_killed_stream_reconnects_and_the_other_never_stalls() {
    let dir = common::temp_dir("watch-kill");
    let (fire, normal, _) = synth(&dir);
    let udp = free_udp_port();
    let rtsp = free_tcp_port();
    let _steady = udp_publisher(&with_key_frames(&normal, &dir), udp);
    let mut flaky = Some(rtsp_server(&fire, rtsp));
    let out = dir.join("out");
    let steady_url = format!("udp://127.0.0.1:{udp}");
    let flaky_url = format!("rtsp://127.0.0.1:{rtsp}/stream");
    let mut watch = fgclip()
        .args(watch_args(&out))
        .args([&steady_url, &flaky_url])
        .args(["--rtsp-transport", "tcp", "--timeout", "3"])
        .args([
            "--reconnect-min",
            "0.5",
            "--reconnect-max",
            "1",
            "--status-every",
            "0.1",
        ])
        .args(["--duration", "16", "--no-clips"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut states: Vec<String> = Vec::new();
    let mut restarted = false;
    while watch.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(out.join("status.json"))
            && let Ok(st) = serde_json::from_str::<Value>(&text)
            && let Some(s) = st["sources"].as_array().and_then(|a| a.get(1))
        {
            let state = s["state"].as_str().unwrap_or_default().to_string();
            if states.last() != Some(&state) {
                states.push(state);
            }
        }
        let t = t0.elapsed();
        if flaky.is_some() && t > Duration::from_secs(5) && !restarted {
            drop(flaky.take());
        }
        if flaky.is_none() && !restarted && t > Duration::from_secs(8) {
            flaky = Some(rtsp_server(&fire, rtsp));
            restarted = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = watch.wait_with_output().unwrap();
    check(&output);
    assert!(restarted);
    let live_again = states
        .windows(2)
        .any(|w| w[0] == "reconnecting" && w[1] == "live");
    assert!(
        states.iter().position(|s| s == "live") < states.iter().position(|s| s == "reconnecting")
            && live_again,
        "states of the killed source: {states:?}"
    );
    let st = status(&out);
    let flaky_status = &st["sources"][1];
    assert!(flaky_status["connections"].as_u64().unwrap() >= 2, "{st}");
    assert!(
        flaky_status["connect_failures"].as_u64().unwrap() >= 1,
        "{st}"
    );
    let sc = scores(&out);
    assert!(
        sc.iter().any(|s| s.0 == flaky_url && s.1 >= 2),
        "no snippet scored after the reconnection"
    );
    // The steady stream: one connection, consecutive snippets one stride apart.
    let steady: Vec<&(String, u64, f64, f64, f64)> =
        sc.iter().filter(|s| s.0 == steady_url).collect();
    assert!(steady.len() >= 25, "{} steady snippets", steady.len());
    let step = STRIDE as f64 / FPS;
    for w in steady.windows(2) {
        assert_eq!(w[1].1, 1, "the steady source reconnected");
        let gap = w[1].2 - w[0].2;
        assert!(
            gap <= step + 1e-3,
            "steady stream: {gap} s between snippets at {} and {}",
            w[0].2,
            w[1].2
        );
    }
    assert_eq!(st["sources"][0]["snippets_dropped"], 0, "{st}");
}

/// MPEG-TS with bit flips, sent over UDP as a camera would: no panic, damage counted.
#[test]
fn a_damaged_stream_is_skipped_and_counted() {
    let dir = common::temp_dir("watch-damaged");
    let (_, normal, _) = synth(&dir);
    let ts = dir.join("normal.ts");
    let conv = Command::new(which("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(with_key_frames(&normal, &dir))
        .args(["-an", "-c:v", "copy", "-f", "mpegts"])
        .arg(&ts)
        .status()
        .unwrap();
    assert!(conv.success());
    let mut bytes = std::fs::read(&ts).unwrap();
    assert_eq!(bytes.len() % 188, 0);
    // Flip bits in the payload of one TS packet in 23, and in the header (continuity
    // counter, PID) of one in 97.
    for (k, packet) in bytes.chunks_mut(188).enumerate() {
        if k % 23 == 11 {
            for j in (20..188).step_by(13) {
                packet[j] ^= 0x5a;
            }
        }
        if k % 97 == 50 {
            packet[3] ^= 0x0f;
            packet[2] ^= 0x01;
        }
    }
    let port = free_udp_port();
    let out = dir.join("out");
    let url = format!("udp://127.0.0.1:{port}");
    let watch = fgclip()
        .args(watch_args(&out))
        .arg(&url)
        .args(["--timeout", "2", "--max-reconnects", "0", "--no-clips"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // 16 s of video sent in 8 s, 7 TS packets a datagram.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagrams: Vec<&[u8]> = bytes.chunks(188 * 7).collect();
    let pause = Duration::from_secs_f64(8.0 / datagrams.len() as f64);
    for d in &datagrams {
        sock.send_to(d, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(pause);
    }
    let output = watch.wait_with_output().unwrap();
    check(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let st = status(&out);
    let s = &st["sources"][0];
    let damaged = s["packets_skipped"].as_u64().unwrap() + s["frames_corrupt"].as_u64().unwrap();
    assert!(damaged > 0, "no damage counted: {s}");
    assert!(s["snippets_scored"].as_u64().unwrap() >= 20, "{s}");
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
