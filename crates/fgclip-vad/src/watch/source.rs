//! One live source's thread: connect (retrying with backoff), decode every frame, convert
//! and prepare the snippet frames for the tower, hand finished snippets to the scorer
//! through a short queue (the oldest dropped when the scorer falls behind: memory stays
//! bounded and scoring catches up with live), and write event clips from the frames it
//! decodes.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::clip::{ClipWriter, Ring, clip_size};
use crate::data::live::{LiveOptions, LiveSource};
use crate::data::video::RgbFrame;
use crate::detect::{ImageTower, Prepared, Snippets};

/// Where a source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    Connecting,
    Live,
    Reconnecting,
    /// A file source that reached its end (network sources are retried instead).
    Ended,
    /// Stopped for good (an error that retrying cannot mend, or shutdown).
    Failed,
    Stopped,
}

/// What a source has done; the status file shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SourceCounters {
    pub state: SourceState,
    /// Successful connections (1 + reconnections).
    pub connections: u64,
    /// Failed connection attempts and dropped connections.
    pub connect_failures: u64,
    pub last_error: Option<String>,
    pub frames_decoded: u64,
    pub packets_skipped: u64,
    pub frames_corrupt: u64,
    pub snippets_sent: u64,
    /// Snippets dropped unscored because the scorer was behind (catching up with live).
    pub snippets_dropped: u64,
    pub clips_written: u64,
    pub clip_errors: u64,
}

/// A snippet ready for the tower.
pub struct SnippetMsg {
    /// The connection it came from (1, 2, … after reconnections): stream times restart.
    pub connection: u64,
    pub start_s: f64,
    pub end_s: f64,
    pub frames: Vec<Prepared>,
    /// The middle sampled frame in RGB (thumbnails).
    pub key_frame: RgbFrame,
    /// When its last frame was decoded.
    pub arrived: Instant,
}

/// What the scorer asks of a source's clip writer.
#[derive(Clone, Debug, Default)]
pub struct ClipRequest {
    /// Start a clip at `path` from stream time `from_s` (pre-roll included) for connection
    /// `connection`.
    pub start: Option<(PathBuf, f64, u64)>,
    /// End the clip once the stream passes this time.
    pub stop_at: Option<f64>,
}

/// What a source thread and the scorer share.
pub struct SourceShared {
    pub name: String,
    pub queue: Mutex<VecDeque<SnippetMsg>>,
    pub counters: Mutex<SourceCounters>,
    pub clip: Mutex<ClipRequest>,
}

impl SourceShared {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            queue: Mutex::new(VecDeque::new()),
            counters: Mutex::new(SourceCounters {
                state: SourceState::Connecting,
                connections: 0,
                connect_failures: 0,
                last_error: None,
                frames_decoded: 0,
                packets_skipped: 0,
                frames_corrupt: 0,
                snippets_sent: 0,
                snippets_dropped: 0,
                clips_written: 0,
                clip_errors: 0,
            }),
            clip: Mutex::new(ClipRequest::default()),
        }
    }

    pub fn counters(&self) -> SourceCounters {
        lock(&self.counters).clone()
    }

    fn update(&self, f: impl FnOnce(&mut SourceCounters)) {
        f(&mut lock(&self.counters));
    }

    /// A connection failed or ended: logged and counted; the source is reconnecting
    /// after `wait`.
    fn failed(&self, message: String, wait: Duration) {
        eprintln!(
            "watch: {message}; reconnecting in {:.1} s",
            wait.as_secs_f64()
        );
        self.update(|c| {
            c.connect_failures += 1;
            c.last_error = Some(message);
            c.state = SourceState::Reconnecting;
        });
    }
}

/// A poisoned lock (a thread panicked holding it) still holds usable counters.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How sources are read.
#[derive(Clone, Debug)]
pub struct SourceSettings {
    pub live: LiveOptions,
    /// Frames a snippet and frames sampled from each.
    pub stride: u64,
    pub per_snippet: u64,
    /// Snippets waiting for the scorer before the oldest is dropped.
    pub max_pending: usize,
    /// Reconnection backoff: first wait, doubled after each failure up to the last.
    pub backoff: (Duration, Duration),
    /// Reconnections in all (after a failure or the end of a stream) before a network
    /// source is given up; None: never.
    pub max_reconnects: Option<u64>,
    /// Clip frames (none without clips) at most this wide; the ring keeps `pre_roll_s` plus
    /// `ring_snippets` snippets (what the event rules and the queue need before an event
    /// can open).
    pub clips: bool,
    pub clip_width: u32,
    pub pre_roll_s: f64,
    pub ring_snippets: usize,
    /// Longest clip, seconds.
    pub clip_max_s: f64,
}

/// A file source ends; anything with a scheme is a network source and is retried.
fn is_file(source: &str) -> bool {
    !source.contains("://") || source.starts_with("file://")
}

/// Runs a source until `stop`; wakes the scorer through `ready` whenever a snippet is queued.
pub fn run_source(
    shared: &SourceShared,
    tower: &ImageTower,
    settings: &SourceSettings,
    stop: &'static AtomicBool,
    ready: &(Mutex<bool>, Condvar),
) {
    let mut wait = settings.backoff.0;
    let mut connection = 0u64;
    let mut retries = 0u64;
    let mut clean_end = false;
    while !stop.load(Ordering::Relaxed) {
        if !attempts_left(settings, &mut retries, connection) {
            let state = if clean_end {
                SourceState::Ended
            } else {
                SourceState::Failed
            };
            eprintln!("watch: {}: giving up ({state:?})", shared.name);
            shared.update(|c| c.state = state);
            return;
        }
        let live = settings.live.clone();
        let opened = LiveSource::open(
            &shared.name,
            &LiveOptions {
                stop: Some(stop),
                ..live
            },
        );
        let mut src = match opened {
            Ok(s) => s,
            Err(e) => {
                clean_end = false;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                shared.failed(format!("{e:#}"), wait);
                sleep_unless(stop, wait);
                wait = (wait * 2).min(settings.backoff.1);
                continue;
            }
        };
        connection += 1;
        shared.update(|c| {
            c.connections += 1;
            c.state = SourceState::Live;
        });
        let base = {
            let c = shared.counters();
            (c.packets_skipped, c.frames_corrupt)
        };
        let outcome = read_connection(
            shared,
            tower,
            settings,
            stop,
            ready,
            &mut src,
            (connection, base),
        );
        shared.update(|c| damage(c, base, &src));
        match outcome {
            Ok(got_frames) => {
                clean_end = true;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if is_file(&shared.name) {
                    shared.update(|c| c.state = SourceState::Ended);
                    return;
                }
                if got_frames {
                    wait = settings.backoff.0;
                }
                shared.failed(format!("{}: the stream ended", shared.name), wait);
            }
            Err(e) => {
                clean_end = false;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                shared.failed(format!("{e:#}"), wait);
                if is_file(&shared.name) {
                    shared.update(|c| c.state = SourceState::Failed);
                    return;
                }
            }
        }
        sleep_unless(stop, wait);
        wait = (wait * 2).min(settings.backoff.1);
    }
    shared.update(|c| c.state = SourceState::Stopped);
}

/// Damage counts: those of earlier connections (`base`) and this one's.
fn damage(c: &mut SourceCounters, base: (u64, u64), src: &LiveSource) {
    c.packets_skipped = base.0 + src.stats.packets_skipped;
    c.frames_corrupt = base.1 + src.stats.frames_corrupt;
}

/// Whether another connection attempt is allowed (the first always is); counts it.
fn attempts_left(settings: &SourceSettings, retries: &mut u64, connection: u64) -> bool {
    let first = connection == 0 && *retries == 0;
    if first {
        *retries = 1;
        return true;
    }
    let allowed = settings.max_reconnects.is_none_or(|m| *retries <= m);
    *retries += 1;
    allowed
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}

/// An event clip in progress.
struct OpenClip {
    writer: ClipWriter,
    connection: u64,
    started: f64,
}

/// Reads one connection until it ends (Ok(whether it gave frames)), fails, or `stop`;
/// `(connection, base)`: its number and the packets skipped before it.
fn read_connection(
    shared: &SourceShared,
    tower: &ImageTower,
    settings: &SourceSettings,
    stop: &AtomicBool,
    ready: &(Mutex<bool>, Condvar),
    src: &mut LiveSource,
    (connection, base): (u64, (u64, u64)),
) -> Result<bool> {
    let (w, h) = src.size();
    let (cw, ch) = clip_size(w, h, settings.clip_width);
    let fps = src.fps();
    let stride = settings.stride.max(1);
    if settings.clips {
        src.set_clip_size(Some((cw, ch)));
    }
    let ring_s = settings.pre_roll_s + settings.ring_snippets as f64 * stride as f64 / fps;
    // Sampled offsets inside a snippet (Snippets::frames_of on a full snippet).
    let offsets: Vec<u64> = Snippets {
        frames: stride,
        stride,
        per_snippet: settings.per_snippet,
    }
    .frames_of(0);
    let key = offsets[offsets.len() / 2];
    let mut ring = Ring::new(ring_s);
    let mut clip: Option<OpenClip> = None;
    let mut frames: Vec<Prepared> = Vec::with_capacity(offsets.len());
    let mut key_frame: Option<RgbFrame> = None;
    let mut start_s = 0.0;
    let mut got = false;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(got);
        }
        let d = match src.next(|n| offsets.contains(&(n % stride))) {
            Ok(Some(d)) => d,
            Ok(None) => break Ok(got),
            Err(e) => break Err(e),
        };
        got = true;
        shared.update(|c| c.frames_decoded += 1);
        let offset = d.index % stride;
        if offset == 0 {
            start_s = d.stream_s;
            frames.clear();
            key_frame = None;
        }
        if let Some(rgb) = d.rgb {
            match tower.prepare(&rgb) {
                Ok(p) => frames.push(p),
                Err(e) => break Err(e),
            }
            if offset == key {
                key_frame = Some(rgb);
            }
        }
        if let Some(c) = d.clip {
            clip_frame(
                shared,
                settings,
                &mut clip,
                &ring,
                (cw, ch, fps),
                connection,
                d.stream_s,
                &c,
            );
            ring.push(d.stream_s, c);
        }
        if offset == stride - 1
            && frames.len() == offsets.len()
            && let Some(key_frame) = key_frame.take()
        {
            let msg = SnippetMsg {
                connection,
                start_s,
                end_s: d.stream_s,
                frames: std::mem::take(&mut frames),
                key_frame,
                arrived: Instant::now(),
            };
            let dropped = {
                let mut q = lock(&shared.queue);
                q.push_back(msg);
                let mut dropped = 0;
                while q.len() > settings.max_pending.max(1) {
                    q.pop_front();
                    dropped += 1;
                }
                dropped
            };
            shared.update(|c| {
                c.snippets_sent += 1;
                c.snippets_dropped += dropped;
                damage(c, base, src);
            });
            let (flag, cv) = ready;
            *lock(flag) = true;
            cv.notify_all();
        }
    };
    if let Some(open) = clip.take() {
        finish_clip(shared, open);
    }
    result
}

/// Starts, feeds or ends the event clip with one decoded frame.
#[allow(clippy::too_many_arguments)]
fn clip_frame(
    shared: &SourceShared,
    settings: &SourceSettings,
    clip: &mut Option<OpenClip>,
    ring: &Ring,
    (cw, ch, fps): (u32, u32, f64),
    connection: u64,
    stream_s: f64,
    frame: &ffmpeg_next::frame::Video,
) {
    let request = {
        let mut r = lock(&shared.clip);
        (r.start.take(), r.stop_at)
    };
    if let (Some((path, from_s, conn)), _) = &request
        && *conn == connection
    {
        if let Some(old) = clip.take() {
            finish_clip(shared, old);
        }
        let from_s = from_s.max(0.0);
        let first = ring.since(from_s).next().map_or(stream_s, |(t, _)| *t);
        match ClipWriter::create(path, cw, ch, fps, first) {
            Ok(mut writer) => {
                let mut ok = true;
                for (t, f) in ring.since(from_s) {
                    ok &= writer.push(*t, f).is_ok();
                }
                if !ok {
                    shared.update(|c| c.clip_errors += 1);
                }
                *clip = Some(OpenClip {
                    writer,
                    connection,
                    started: first,
                });
            }
            Err(e) => {
                eprintln!("watch: {e:#}");
                shared.update(|c| c.clip_errors += 1);
            }
        }
    }
    let Some(open) = clip.as_mut() else { return };
    if open.connection != connection {
        return;
    }
    if let Err(e) = open.writer.push(stream_s, frame) {
        eprintln!("watch: {e:#}");
        shared.update(|c| c.clip_errors += 1);
    }
    let over =
        request.1.is_some_and(|t| stream_s >= t) || stream_s - open.started >= settings.clip_max_s;
    if over && let Some(done) = clip.take() {
        lock(&shared.clip).stop_at = None;
        finish_clip(shared, done);
    }
}

fn finish_clip(shared: &SourceShared, open: OpenClip) {
    match open.writer.finish() {
        Ok(_) => shared.update(|c| c.clips_written += 1),
        Err(e) => {
            eprintln!("watch: {e:#}");
            shared.update(|c| c.clip_errors += 1);
        }
    }
}
