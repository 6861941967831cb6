//! `fgclip watch`: live sources scored in real time. Each source has a thread that decodes
//! it (`source.rs`); one scorer (here) takes the finished snippets of every source together
//! into one tower call, scores them with `detect`'s zero-shot head, smooths them causally
//! and opens and closes events (`events.rs`), each written as a JSON line with a clip
//! (`clip.rs`) and a thumbnail, and handed to `--exec` (`exec.rs`). `status.json` is
//! rewritten every few seconds (`status.rs`).

pub mod clip;
pub mod events;
pub mod exec;
mod output;
pub mod source;
pub mod status;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use fgclip_core::fgclip::fuse_frames;
use fgclip_core::zeroshot::ZeroShotHead;
use serde::Serialize;

use crate::data::video::RgbFrame;
use crate::detect::{Prepared, VideoModel, thumbnail_of_frame};
use crate::device::host_f32;
use events::{Change, Event, EventRules, ScoredSnippet, SourceEvents};
use exec::ExecHook;
use output::{Outputs, event_json, slug};
pub use output::{run_id, wall_now};
use source::{SnippetMsg, SourceSettings, SourceShared, lock, run_source};
use status::{Latencies, StatusWriter};

/// How `watch` runs.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub sources: Vec<String>,
    pub source: SourceSettings,
    pub rules: EventRules,
    /// Frames a tower call at most.
    pub batch_size: usize,
    pub status_every: Duration,
    /// Seconds of video before an event's first high snippet and after its last one in its
    /// clip; no clips at all when `clips` is false.
    pub pre_roll_s: f64,
    pub post_roll_s: f64,
    pub clips: bool,
    pub thumbnails: bool,
    pub exec: Option<ExecHook>,
    /// Every scored snippet as a line of `scores.csv`.
    pub log_snippets: bool,
    /// Stop after this long (benchmarks, trials).
    pub duration: Option<Duration>,
    /// Names this run in event lines and file names (a watcher restarted on the same
    /// folder numbers its events from 1 again): [`run_id`].
    pub run_id: String,
}

/// What a run did.
#[derive(Debug, Serialize)]
pub struct WatchSummary {
    pub events: u64,
    pub snippets_scored: u64,
    pub tower_calls: u64,
    pub seconds: f64,
    pub latency_ms: status::Percentiles,
    pub sources: Vec<status::SourceStatus>,
    pub exec: Option<exec::ExecSummary>,
}

/// The scorer's view of one source.
struct Scored {
    events: SourceEvents,
    connection: u64,
    /// The frame of the open event's (or the run's) peak snippet.
    peak_frame: Option<RgbFrame>,
    /// The open event's files.
    files: Option<(Option<PathBuf>, Option<PathBuf>)>,
    /// What status.json shows of it (`open_event` is filled in when it is read).
    stats: status::ScoredView,
}

/// What scores the snippets: `detect`'s model and zero-shot head, and its class names.
#[derive(Clone, Copy)]
pub struct Scoring<'a> {
    pub model: &'a VideoModel,
    pub head: &'a ZeroShotHead,
    pub names: &'a [String],
}

/// Runs until `stop` is set (a signal), `options.duration` passes, or every source has
/// ended (files); `emit` gets each event line (stdout).
pub fn watch(
    Scoring { model, head, names }: Scoring<'_>,
    options: &WatchOptions,
    out: &Path,
    device: &Device,
    stop: &'static AtomicBool,
    emit: Box<dyn Fn(&str) + Send + Sync>,
) -> Result<WatchSummary> {
    model.check_frames_per_snippet(options.source.per_snippet)?;
    for s in &options.sources {
        crate::data::live::check_source(s)?;
    }
    for d in ["clips", "thumbnails"] {
        std::fs::create_dir_all(out.join(d))
            .with_context(|| format!("creating {}", out.join(d).display()))?;
    }
    let open = |name: &str| -> Result<BufWriter<File>> {
        let p = out.join(name);
        Ok(BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .with_context(|| format!("opening {}", p.display()))?,
        ))
    };
    let scores = if options.log_snippets {
        let fresh = !out.join("scores.csv").exists();
        let mut w = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(open("scores.csv")?);
        if fresh {
            w.write_record([
                "source",
                "connection",
                "start_s",
                "end_s",
                "score",
                "smoothed",
                "class",
                "latency_ms",
            ])?;
        }
        Some(w)
    } else {
        None
    };
    let mut outputs = Outputs {
        dir: out.to_path_buf(),
        events: open("events.jsonl")?,
        scores,
        emit,
        exec: options.exec.clone(),
        exec_threads: Vec::new(),
    };
    let shared: Vec<SourceShared> = options
        .sources
        .iter()
        .map(|s| SourceShared::new(s))
        .collect();
    let mut scored: Vec<Scored> = options
        .sources
        .iter()
        .map(|s| Scored {
            events: SourceEvents::new(s, options.rules, names.to_vec()),
            connection: 0,
            peak_frame: None,
            files: None,
            stats: status::ScoredView::default(),
        })
        .collect();
    let ready = (Mutex::new(false), Condvar::new());
    let started = Instant::now();
    let mut status = StatusWriter::new(out.join("status.json"), options.sources.len());
    let mut latencies = Latencies::new(100_000);
    let mut tower_calls = 0u64;
    let ctx = Ctx {
        shared: &shared,
        model,
        head,
        names,
        options,
        device,
    };
    let result = std::thread::scope(|scope| -> Result<()> {
        for sh in &shared {
            let (tower, settings, ready) = (&model.tower, &options.source, &ready);
            scope.spawn(move || run_source(sh, tower, settings, stop, ready));
        }
        let r = (|| -> Result<()> {
            loop {
                let over = options.duration.is_some_and(|d| started.elapsed() >= d);
                let all_done = shared.iter().all(|s| {
                    use source::SourceState::*;
                    matches!(s.counters().state, Ended | Failed | Stopped)
                        && lock(&s.queue).is_empty()
                });
                if stop.load(Ordering::Relaxed) || over || all_done {
                    break;
                }
                let batch = take_batch(&shared, options.batch_size);
                if batch.is_empty() {
                    let (flag, cv) = &ready;
                    let mut f = lock(flag);
                    if !*f {
                        f = cv
                            .wait_timeout(f, Duration::from_millis(100))
                            .map(|(g, _)| g)
                            .unwrap_or_else(|e| e.into_inner().0);
                    }
                    *f = false;
                } else {
                    tower_calls += 1;
                    ctx.score(batch, &mut scored, &mut outputs, &mut latencies)?;
                }
                if status.due(options.status_every) {
                    status.write(
                        &shared,
                        &scored_view(&scored),
                        &latencies,
                        exec_summary(&outputs),
                    )?;
                }
            }
            Ok(())
        })();
        // Sources stop (and finish their clips) whatever ended the loop.
        stop.store(true, Ordering::Relaxed);
        r
    });
    // Open events are closed and their files flushed even after an error.
    let wall = wall_now();
    for (i, s) in scored.iter_mut().enumerate() {
        if let Some(e) = s.events.finish(wall) {
            ctx.closed(i, &e, s, &mut outputs)?;
        }
    }
    if let Some(w) = outputs.scores.as_mut() {
        w.flush()?;
    }
    for h in outputs.exec_threads.drain(..) {
        let _ = h.join();
    }
    status.write(
        &shared,
        &scored_view(&scored),
        &latencies,
        exec_summary(&outputs),
    )?;
    result?;
    Ok(WatchSummary {
        events: scored.iter().map(|s| s.stats.events).sum(),
        snippets_scored: scored.iter().map(|s| s.stats.snippets_scored).sum(),
        tower_calls,
        seconds: started.elapsed().as_secs_f64(),
        latency_ms: latencies.percentiles(),
        sources: status.sources(&shared, &scored_view(&scored)),
        exec: options.exec.as_ref().map(|e| e.counters.summary()),
    })
}

fn exec_summary(o: &Outputs) -> Option<exec::ExecSummary> {
    o.exec.as_ref().map(|e| e.counters.summary())
}

fn scored_view(scored: &[Scored]) -> Vec<status::ScoredView> {
    scored
        .iter()
        .map(|s| status::ScoredView {
            open_event: s.events.open_event().map(|e| e.id),
            ..s.stats.clone()
        })
        .collect()
}

/// Up to `batch_size` frames of queued snippets, one source at a time in turn, so that a
/// busy source cannot starve the others; (source, snippet), each source's in stream order.
fn take_batch(shared: &[SourceShared], batch_size: usize) -> Vec<(usize, SnippetMsg)> {
    let mut batch = Vec::new();
    let mut frames = 0;
    loop {
        let mut took = false;
        for (i, s) in shared.iter().enumerate() {
            if frames >= batch_size.max(1) {
                return batch;
            }
            if let Some(m) = lock(&s.queue).pop_front() {
                frames += m.frames.len();
                batch.push((i, m));
                took = true;
            }
        }
        if !took {
            return batch;
        }
    }
}

struct Ctx<'a> {
    shared: &'a [SourceShared],
    model: &'a VideoModel,
    head: &'a ZeroShotHead,
    names: &'a [String],
    options: &'a WatchOptions,
    device: &'a Device,
}

impl Ctx<'_> {
    /// Embeddings (n, P) of the batch's snippets: the mean of their frames' normalised
    /// embeddings, normalised, or the temporal transformer's fusion.
    fn snippet_embeddings(&self, batch: &[(usize, SnippetMsg)]) -> Result<Vec<f32>> {
        let frames: Vec<&Prepared> = batch.iter().flat_map(|(_, m)| m.frames.iter()).collect();
        let e = self.model.tower.embed(&frames, self.device)?;
        let p = self.model.tower.embed_dim();
        let t = batch.first().map_or(1, |(_, m)| m.frames.len()).max(1);
        if let Some(fusion) = &self.model.fusion {
            let x = Tensor::<3>::from_data(TensorData::new(e, [batch.len(), t, p]), self.device);
            return host_f32(fuse_frames(Some(fusion), x));
        }
        let mut out = Vec::with_capacity(batch.len() * p);
        for k in 0..batch.len() {
            let mut row = vec![0f32; p];
            for j in 0..t {
                let f = &e[(k * t + j) * p..(k * t + j + 1) * p];
                row.iter_mut().zip(f).for_each(|(r, v)| *r += v);
            }
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            out.extend(row.iter().map(|v| v / norm));
        }
        Ok(out)
    }

    fn score(
        &self,
        batch: Vec<(usize, SnippetMsg)>,
        scored: &mut [Scored],
        outputs: &mut Outputs,
        latencies: &mut Latencies,
    ) -> Result<()> {
        let n = batch.len();
        let p = self.model.tower.embed_dim();
        let emb = self.snippet_embeddings(&batch)?;
        let probs = host_f32(self.head.probabilities(Tensor::<2>::from_data(
            TensorData::new(emb, [n, p]),
            self.device,
        )))?;
        let c = self.names.len();
        let done = Instant::now();
        let wall = wall_now();
        for (k, (i, msg)) in batch.into_iter().enumerate() {
            let row = &probs[k * c..(k + 1) * c];
            let (score, class) = self.head.score_and_class(row);
            let latency = done.duration_since(msg.arrived).as_secs_f64();
            latencies.push(latency);
            let s = &mut scored[i];
            if msg.connection != s.connection {
                if let Some(e) = s.events.restart(wall) {
                    self.closed(i, &e, s, outputs)?;
                }
                s.connection = msg.connection;
                s.peak_frame = None;
            }
            let snippet = ScoredSnippet {
                start_s: msg.start_s,
                end_s: msg.end_s,
                score,
                probabilities: row.to_vec(),
            };
            let changes = s.events.push(&snippet, wall);
            if s.events.latest_is_peak() {
                s.peak_frame = Some(msg.key_frame);
            }
            s.stats.snippets_scored += 1;
            s.stats.last_score = Some(score);
            s.stats.last_smoothed = s.events.smoothed();
            s.stats.last_stream_s = Some(msg.end_s);
            s.stats.latency_s = Some(latency);
            if let Some(w) = outputs.scores.as_mut() {
                w.write_record([
                    self.options.sources[i].as_str(),
                    &msg.connection.to_string(),
                    &format!("{:.4}", msg.start_s),
                    &format!("{:.4}", msg.end_s),
                    &format!("{score:.6}"),
                    &format!("{:.6}", s.stats.last_smoothed.unwrap_or(score)),
                    &self.names[class],
                    &format!("{:.1}", latency * 1000.0),
                ])?;
            }
            for change in changes {
                match change {
                    Change::Opened(e) => self.opened(i, &e, s, outputs)?,
                    Change::Closed(e) => self.closed(i, &e, s, outputs)?,
                }
            }
        }
        if let Some(w) = outputs.scores.as_mut() {
            w.flush()?;
        }
        Ok(())
    }

    fn opened(&self, i: usize, e: &Event, s: &mut Scored, outputs: &mut Outputs) -> Result<()> {
        s.stats.events += 1;
        let stem = format!(
            "{}-{}-event{}",
            slug(i, &self.options.sources[i]),
            self.options.run_id,
            e.id
        );
        let clip = self.options.clips.then(|| {
            let path = outputs.dir.join("clips").join(format!("{stem}.mp4"));
            let from = e.stream_start_s - self.options.pre_roll_s;
            // A new request replaces any earlier stop: the clip runs until this event ends.
            *lock(&self.shared[i].clip) = source::ClipRequest {
                start: Some((path.clone(), from, s.connection)),
                stop_at: None,
            };
            path
        });
        let thumb = self
            .options
            .thumbnails
            .then(|| outputs.dir.join("thumbnails").join(format!("{stem}.png")));
        let region = self.thumbnail(e, s, thumb.as_deref());
        let line = self.event_line(e, "open", s.connection, (&clip, &thumb, region), outputs);
        s.files = Some((clip, thumb));
        line
    }

    /// The closing line of an event; its clip ends `post_roll_s` after its last high snippet.
    fn closed(&self, i: usize, e: &Event, s: &mut Scored, outputs: &mut Outputs) -> Result<()> {
        let (clip, thumb) = s.files.take().unwrap_or((None, None));
        if clip.is_some() {
            let end = e.stream_end_s.unwrap_or(e.stream_start_s) + self.options.post_roll_s;
            lock(&self.shared[i].clip).stop_at = Some(end);
        }
        // The peak may have moved since the event opened: the thumbnail follows it.
        let region = self.thumbnail(e, s, thumb.as_deref());
        s.peak_frame = None;
        self.event_line(e, "closed", s.connection, (&clip, &thumb, region), outputs)
    }

    /// Writes an event's line (stdout, events.jsonl, `--exec`).
    fn event_line(
        &self,
        e: &Event,
        state: &str,
        connection: u64,
        (clip, thumb, region): (&Option<PathBuf>, &Option<PathBuf>, Option<[f32; 4]>),
        outputs: &mut Outputs,
    ) -> Result<()> {
        let line = event_json(
            e,
            state,
            (&self.options.run_id, connection),
            (clip.as_deref(), thumb.as_deref(), region),
            &outputs.dir,
        );
        outputs.line(&line)
    }

    /// Writes the thumbnail of the event's peak frame; the heat map's box, if any. A
    /// failure is reported and costs only the thumbnail.
    fn thumbnail(&self, e: &Event, s: &Scored, path: Option<&Path>) -> Option<[f32; 4]> {
        let (path, frame) = (path?, s.peak_frame.as_ref()?);
        let class = self.names.iter().position(|n| *n == e.class).unwrap_or(1);
        match thumbnail_of_frame(
            &self.model.tower,
            self.head,
            frame,
            class,
            path,
            self.device,
        ) {
            Ok(r) => r,
            Err(err) => {
                eprintln!("watch: {}: thumbnail: {err:#}", path.display());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::video::RgbFrame;

    fn msg(start_s: f64, frames: usize) -> SnippetMsg {
        SnippetMsg {
            connection: 1,
            start_s,
            end_s: start_s + 0.3,
            frames: (0..frames)
                .map(|_| Prepared {
                    values: Vec::new(),
                    grid: (1, 1),
                    size: 1,
                })
                .collect(),
            key_frame: RgbFrame {
                index: 0,
                width: 1,
                height: 1,
                data: vec![0; 3],
            },
            arrived: Instant::now(),
        }
    }

    /// A busy source cannot starve the others: a batch takes the sources in turn, each
    /// source's snippets in stream order, up to the frame budget.
    #[test]
    fn batches_take_the_sources_in_turn() {
        let shared: Vec<SourceShared> = ["a", "b", "c"]
            .iter()
            .map(|s| SourceShared::new(s))
            .collect();
        for k in 0..6 {
            lock(&shared[0].queue).push_back(msg(k as f64, 1));
        }
        lock(&shared[2].queue).push_back(msg(10.0, 1));
        let got: Vec<(usize, f64)> = take_batch(&shared, 4)
            .iter()
            .map(|(i, m)| (*i, m.start_s))
            .collect();
        assert_eq!(got, [(0, 0.0), (2, 10.0), (0, 1.0), (0, 2.0)]);
        let rest: Vec<(usize, f64)> = take_batch(&shared, 32)
            .iter()
            .map(|(i, m)| (*i, m.start_s))
            .collect();
        assert_eq!(rest, [(0, 3.0), (0, 4.0), (0, 5.0)]);
        // Snippets of several frames count by frames.
        lock(&shared[1].queue).push_back(msg(0.0, 3));
        lock(&shared[1].queue).push_back(msg(1.0, 3));
        assert_eq!(take_batch(&shared, 4).len(), 2);
        assert!(take_batch(&shared, 4).is_empty());
    }
}
