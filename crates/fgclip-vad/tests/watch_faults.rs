//! `fgclip watch` when streams fail, on loopback: one stream's RTSP server killed and
//! restarted beside a steady UDP stream from the ffmpeg CLI; MPEG-TS with bit flips sent
//! datagram by datagram. The model and videos are those of `tests/watch.rs`
//! (`common/watch.rs`). Times asserted are stream times.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::loopback::{free_tcp_port, free_udp_port, which};
use common::watch::*;
use serde_json::Value;

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
