//! `status.json`: every source's state and rates, rewritten atomically every few seconds so
//! that a reader never sees half a file; and the latency percentiles of a run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::source::{SourceCounters, SourceShared};

/// The scorer's side of a source.
#[derive(Clone, Debug, Default)]
pub struct ScoredView {
    pub snippets_scored: u64,
    pub last_score: Option<f32>,
    pub last_smoothed: Option<f32>,
    pub last_stream_s: Option<f64>,
    pub latency_s: Option<f64>,
    pub events: u64,
    pub open_event: Option<u64>,
}

/// One source in `status.json`.
#[derive(Clone, Debug, Serialize)]
pub struct SourceStatus {
    pub source: String,
    #[serde(flatten)]
    pub counters: SourceCounters,
    /// Frames decoded and snippets scored a second over the last interval.
    pub decoded_fps: f64,
    pub scored_per_s: f64,
    pub snippets_scored: u64,
    /// Seconds from the arrival of the last scored snippet's last frame to its score, or
    /// the age of the oldest snippet still waiting when that is larger.
    pub lag_s: Option<f64>,
    pub last_score: Option<f32>,
    pub last_smoothed_score: Option<f32>,
    pub last_stream_s: Option<f64>,
    pub events: u64,
    pub open_event: Option<u64>,
}

/// Percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// The last `cap` latencies (seconds).
pub struct Latencies {
    cap: usize,
    values: std::collections::VecDeque<f64>,
}

impl Latencies {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            values: Default::default(),
        }
    }

    pub fn push(&mut self, seconds: f64) {
        self.values.push_back(seconds);
        if self.values.len() > self.cap {
            self.values.pop_front();
        }
    }

    /// Nearest-rank percentiles.
    pub fn percentiles(&self) -> Percentiles {
        let mut v: Vec<f64> = self.values.iter().map(|s| s * 1000.0).collect();
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Percentiles {
            count: v.len(),
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }
}

#[derive(Serialize)]
struct StatusFile<'a> {
    updated: f64,
    uptime_s: f64,
    sources: &'a [SourceStatus],
    latency_ms: Percentiles,
    exec: Option<super::exec::ExecSummary>,
}

/// Writes `status.json`; remembers the last counts for the rates.
pub struct StatusWriter {
    path: PathBuf,
    started: Instant,
    last: Option<Instant>,
    previous: Vec<(u64, u64)>,
}

impl StatusWriter {
    pub fn new(path: PathBuf, sources: usize) -> Self {
        Self {
            path,
            started: Instant::now(),
            last: None,
            previous: vec![(0, 0); sources],
        }
    }

    pub fn due(&self, every: Duration) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= every)
    }

    /// The sources' status now (rates over the interval since the last call of `write`).
    pub fn sources(&self, shared: &[SourceShared], scored: &[ScoredView]) -> Vec<SourceStatus> {
        let dt = self
            .last
            .unwrap_or(self.started)
            .elapsed()
            .as_secs_f64()
            .max(1e-3);
        shared
            .iter()
            .zip(scored)
            .zip(&self.previous)
            .map(|((sh, sc), &(f0, s0))| {
                let counters = sh.counters();
                let waiting = super::source::lock(&sh.queue)
                    .front()
                    .map(|m| m.arrived.elapsed().as_secs_f64());
                let lag = match (sc.latency_s, waiting) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                SourceStatus {
                    source: sh.name.clone(),
                    decoded_fps: (counters.frames_decoded.saturating_sub(f0)) as f64 / dt,
                    scored_per_s: (sc.snippets_scored.saturating_sub(s0)) as f64 / dt,
                    counters,
                    snippets_scored: sc.snippets_scored,
                    lag_s: lag,
                    last_score: sc.last_score,
                    last_smoothed_score: sc.last_smoothed,
                    last_stream_s: sc.last_stream_s,
                    events: sc.events,
                    open_event: sc.open_event,
                }
            })
            .collect()
    }

    pub fn write(
        &mut self,
        shared: &[SourceShared],
        scored: &[ScoredView],
        latencies: &Latencies,
        exec: Option<super::exec::ExecSummary>,
    ) -> Result<()> {
        let sources = self.sources(shared, scored);
        let file = StatusFile {
            updated: super::wall_now(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            sources: &sources,
            latency_ms: latencies.percentiles(),
            exec,
        };
        crate::io::write_atomic(&self.path, serde_json::to_string_pretty(&file)?.as_bytes())?;
        self.previous = sources
            .iter()
            .map(|s| (s.counters.frames_decoded, s.snippets_scored))
            .collect();
        self.last = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::new(1000);
        for k in 1..=100 {
            l.push(k as f64 / 1000.0);
        }
        let p = l.percentiles();
        assert_eq!((p.count, p.p50, p.p95, p.max), (100, 50.0, 95.0, 100.0));
        let mut l = Latencies::new(3);
        for k in 1..=5 {
            l.push(k as f64);
        }
        assert_eq!(l.percentiles().count, 3);
        assert_eq!(l.percentiles().p50, 4000.0);
    }
}
