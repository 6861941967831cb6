//! Events of a live source: snippet scores smoothed causally (a trailing moving average:
//! `detect`'s centred average needs snippets that have not arrived yet), an event opened
//! when the smoothed score stays at or above the threshold for `min_snippets` snippets in a
//! row, and closed at the first snippet below it. Memory is bounded: the last `smooth`
//! scores and the peak of the run that may open an event.

use std::collections::VecDeque;

use serde::Serialize;

/// When an event opens and closes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventRules {
    pub threshold: f32,
    /// Consecutive smoothed scores at or above the threshold that open an event (≥ 1).
    pub min_snippets: usize,
    /// Snippets in the trailing moving average (1: none).
    pub smooth: usize,
}

/// One scored snippet of a source.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredSnippet {
    /// Stream time of its first and last frame, seconds.
    pub start_s: f64,
    pub end_s: f64,
    /// The raw anomaly score.
    pub score: f32,
    /// Per-class probabilities, in the order of the class names (entry 0: normal).
    pub probabilities: Vec<f32>,
}

/// An event as `events.jsonl` has it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub source: String,
    pub id: u64,
    /// Stream time where the run of high snippets that opened it starts, and where its last
    /// high snippet ends (None while open).
    pub stream_start_s: f64,
    pub stream_end_s: Option<f64>,
    /// Wall-clock seconds since the Unix epoch when it opened and closed.
    pub wall_start: f64,
    pub wall_end: Option<f64>,
    /// The largest smoothed score, the stream time of its snippet's middle, that snippet's
    /// most probable anomaly class and its class probabilities.
    pub peak_score: f32,
    pub peak_stream_s: f64,
    pub class: String,
    pub probabilities: Vec<(String, f32)>,
    /// Snippets at or above the threshold so far.
    pub snippets: usize,
}

/// What a snippet changed.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Opened(Event),
    Closed(Event),
}

/// The highest smoothed score of a run or event, and where.
#[derive(Clone, Debug)]
struct Peak {
    score: f32,
    at_s: f64,
    probabilities: Vec<f32>,
}

/// High snippets that have not opened an event yet.
struct Run {
    start_s: f64,
    len: usize,
    peak: Peak,
}

struct Open {
    event: Event,
    last_high_end: f64,
}

/// The event state of one source.
pub struct SourceEvents {
    source: String,
    rules: EventRules,
    classes: Vec<String>,
    window: VecDeque<f32>,
    run: Option<Run>,
    open: Option<Open>,
    next_id: u64,
    /// Whether the last snippet pushed became the peak of the run or open event.
    latest_is_peak: bool,
}

impl SourceEvents {
    /// `classes`: the names of the probabilities' entries (entry 0, the normal class, never
    /// names an event).
    pub fn new(source: &str, rules: EventRules, classes: Vec<String>) -> Self {
        Self {
            source: source.to_string(),
            rules: EventRules {
                min_snippets: rules.min_snippets.max(1),
                smooth: rules.smooth.max(1),
                ..rules
            },
            classes,
            window: VecDeque::new(),
            run: None,
            open: None,
            next_id: 1,
            latest_is_peak: false,
        }
    }

    /// The event open now, if any.
    pub fn open_event(&self) -> Option<&Event> {
        self.open.as_ref().map(|o| &o.event)
    }

    /// The trailing average of the last `smooth` scores (None before the first snippet).
    pub fn smoothed(&self) -> Option<f32> {
        (!self.window.is_empty())
            .then(|| self.window.iter().sum::<f32>() / self.window.len() as f32)
    }

    fn class_of(&self, probabilities: &[f32]) -> String {
        probabilities
            .iter()
            .enumerate()
            .skip(1)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .and_then(|(i, _)| self.classes.get(i).cloned())
            .unwrap_or_default()
    }

    fn named(&self, probabilities: &[f32]) -> Vec<(String, f32)> {
        self.classes
            .iter()
            .cloned()
            .zip(probabilities.iter().copied())
            .collect()
    }

    /// Whether the last snippet pushed is now the peak of the run or the open event (its
    /// frame is the event's thumbnail).
    pub fn latest_is_peak(&self) -> bool {
        self.latest_is_peak
    }

    /// Takes the next snippet (in stream order) at wall-clock time `wall`.
    pub fn push(&mut self, s: &ScoredSnippet, wall: f64) -> Vec<Change> {
        self.latest_is_peak = false;
        self.window.push_back(s.score);
        while self.window.len() > self.rules.smooth {
            self.window.pop_front();
        }
        let smoothed = self.smoothed().unwrap_or(0.0);
        let high = smoothed >= self.rules.threshold;
        let middle = (s.start_s + s.end_s) / 2.0;
        if let Some(mut open) = self.open.take() {
            if !high {
                open.event.stream_end_s = Some(open.last_high_end);
                open.event.wall_end = Some(wall);
                return vec![Change::Closed(open.event)];
            }
            open.event.snippets += 1;
            open.last_high_end = s.end_s;
            if smoothed > open.event.peak_score {
                self.latest_is_peak = true;
                open.event.peak_score = smoothed;
                open.event.peak_stream_s = middle;
                open.event.class = self.class_of(&s.probabilities);
                open.event.probabilities = self.named(&s.probabilities);
            }
            self.open = Some(open);
            return Vec::new();
        }
        if !high {
            self.run = None;
            return Vec::new();
        }
        let peak = Peak {
            score: smoothed,
            at_s: middle,
            probabilities: s.probabilities.clone(),
        };
        if self.run.is_none() {
            self.latest_is_peak = true;
        }
        let run = self.run.get_or_insert(Run {
            start_s: s.start_s,
            len: 0,
            peak: peak.clone(),
        });
        run.len += 1;
        if smoothed > run.peak.score {
            self.latest_is_peak = true;
            run.peak = peak;
        }
        if run.len < self.rules.min_snippets {
            return Vec::new();
        }
        let Some(run) = self.run.take() else {
            return Vec::new();
        };
        let event = Event {
            source: self.source.clone(),
            id: self.next_id,
            stream_start_s: run.start_s,
            stream_end_s: None,
            wall_start: wall,
            wall_end: None,
            peak_score: run.peak.score,
            peak_stream_s: run.peak.at_s,
            class: self.class_of(&run.peak.probabilities),
            probabilities: self.named(&run.peak.probabilities),
            snippets: run.len,
        };
        self.next_id += 1;
        self.open = Some(Open {
            event: event.clone(),
            last_high_end: s.end_s,
        });
        vec![Change::Opened(event)]
    }

    /// A new connection: its stream times start again, so the smoothing window and a run
    /// in progress are dropped and the open event, if any, is closed (returned).
    pub fn restart(&mut self, wall: f64) -> Option<Event> {
        self.window.clear();
        self.finish(wall)
    }

    /// Closes the open event (end of stream, shutdown) at wall-clock time `wall`.
    pub fn finish(&mut self, wall: f64) -> Option<Event> {
        self.run = None;
        let mut open = self.open.take()?;
        open.event.stream_end_s = Some(open.last_high_end);
        open.event.wall_end = Some(wall);
        Some(open.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snippets(scores: &[f32]) -> Vec<ScoredSnippet> {
        // Stride 16 at 32 fps: half a second a snippet; class 2 leads when the score is high.
        scores
            .iter()
            .enumerate()
            .map(|(k, &score)| ScoredSnippet {
                start_s: k as f64 * 0.5,
                end_s: k as f64 * 0.5 + 15.0 / 32.0,
                score,
                probabilities: if score > 0.5 {
                    vec![1.0 - score, 0.05, score]
                } else {
                    vec![1.0 - score, score, 0.0]
                },
            })
            .collect()
    }

    fn run(rules: EventRules, scores: &[f32]) -> Vec<(usize, Change)> {
        let names = vec!["Normal".into(), "Fighting".into(), "Fire".into()];
        let mut e = SourceEvents::new("cam1", rules, names);
        let mut out = Vec::new();
        for (k, s) in snippets(scores).iter().enumerate() {
            for c in e.push(s, 1000.0 + k as f64) {
                out.push((k, c));
            }
        }
        if let Some(ev) = e.finish(2000.0) {
            out.push((scores.len(), Change::Closed(ev)));
        }
        out
    }

    #[test]
    fn an_event_opens_after_min_snippets_and_closes_at_the_first_low_one() {
        let mut scores = vec![0.1; 5];
        scores.extend([0.7, 0.9, 0.8, 0.95, 0.6]);
        scores.extend([0.1; 4]);
        let rules = EventRules {
            threshold: 0.5,
            min_snippets: 3,
            smooth: 1,
        };
        let changes = run(rules, &scores);
        assert_eq!(changes.len(), 2, "{changes:?}");
        let (k, Change::Opened(open)) = &changes[0] else {
            panic!("{changes:?}")
        };
        // Opened on the third high snippet (index 7), starting where the run started (5).
        assert_eq!(
            (*k, open.id, open.stream_start_s, open.snippets),
            (7, 1, 2.5, 3)
        );
        assert_eq!(
            (open.peak_score, open.peak_stream_s),
            (0.9, 3.0 + 15.0 / 64.0)
        );
        assert_eq!(open.class, "Fire");
        assert_eq!(open.wall_start, 1007.0);
        let (k, Change::Closed(closed)) = &changes[1] else {
            panic!("{changes:?}")
        };
        // Closed at the first low snippet (10); ends with the last high one (9).
        assert_eq!(*k, 10);
        assert_eq!(closed.stream_end_s, Some(4.5 + 15.0 / 32.0));
        assert_eq!((closed.peak_score, closed.snippets), (0.95, 5));
        assert_eq!(closed.wall_end, Some(1010.0));
        assert_eq!(closed.probabilities[2], ("Fire".to_string(), 0.95));
    }

    #[test]
    fn smoothing_is_causal_and_short_runs_open_nothing() {
        // Two high snippets among low ones never reach min_snippets = 3.
        let rules = EventRules {
            threshold: 0.5,
            min_snippets: 3,
            smooth: 1,
        };
        assert!(run(rules, &[0.1, 0.9, 0.9, 0.1, 0.9, 0.1]).is_empty());
        // A trailing average of 3: the step from 0 to 1 at snippet 4 reaches 0.5 at the
        // snippet where two of the last three are high (5), never earlier.
        let rules = EventRules {
            threshold: 0.5,
            min_snippets: 1,
            smooth: 3,
        };
        let changes = run(rules, &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        let (k, Change::Opened(open)) = &changes[0] else {
            panic!("{changes:?}")
        };
        assert_eq!((*k, open.stream_start_s), (5, 2.5));
        assert!((open.peak_score - 2.0 / 3.0).abs() < 1e-6);
        // Still open at the end of the stream: `finish` closes it, ending with the last.
        let (k, Change::Closed(closed)) = &changes[1] else {
            panic!("{changes:?}")
        };
        assert_eq!((*k, closed.stream_end_s), (8, Some(3.5 + 15.0 / 32.0)));
        assert_eq!(closed.peak_score, 1.0);
    }

    #[test]
    fn events_are_numbered_per_source_and_never_overlap() {
        let rules = EventRules {
            threshold: 0.5,
            min_snippets: 2,
            smooth: 1,
        };
        let changes = run(rules, &[0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.1]);
        let kinds: Vec<(usize, &str, u64)> = changes
            .iter()
            .map(|(k, c)| match c {
                Change::Opened(e) => (*k, "open", e.id),
                Change::Closed(e) => (*k, "close", e.id),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (1, "open", 1),
                (2, "close", 1),
                (4, "open", 2),
                (6, "close", 2)
            ]
        );
    }
}
