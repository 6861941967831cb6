//! What `watch` writes: event lines (stdout, `events.jsonl`, `--exec`), the names of a
//! run's files, and wall-clock time.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::events::Event;
use super::exec::ExecHook;

/// Seconds since the Unix epoch.
pub fn wall_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A run's name: its UTC start time, `YYYYMMDDTHHMMSSZ`.
pub fn run_id(epoch_s: f64) -> String {
    let secs = epoch_s.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date of a day count (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A file-name-safe form of a source (its index keeps two sources apart).
pub(super) fn slug(index: usize, source: &str) -> String {
    let tail = source.split("://").last().unwrap_or(source);
    let s: String = tail
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect();
    let s = s.trim_matches('_');
    let s: String = s
        .chars()
        .rev()
        .take(48)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{}-{}", index + 1, s)
}

/// Where the output goes.
pub(super) struct Outputs {
    pub dir: PathBuf,
    pub events: BufWriter<File>,
    pub scores: Option<csv::Writer<BufWriter<File>>>,
    pub emit: Box<dyn Fn(&str) + Send + Sync>,
    pub exec: Option<ExecHook>,
    pub exec_threads: Vec<std::thread::JoinHandle<()>>,
}

impl Outputs {
    pub fn line(&mut self, value: &serde_json::Value) -> Result<()> {
        let json = serde_json::to_string(value)?;
        (self.emit)(&json);
        writeln!(self.events, "{json}")
            .and_then(|_| self.events.flush())
            .with_context(|| format!("writing {}", self.dir.join("events.jsonl").display()))?;
        if let Some(hook) = &self.exec {
            self.exec_threads.retain(|h| !h.is_finished());
            self.exec_threads.push(hook.fire(json));
        }
        Ok(())
    }
}

/// An event line: the event's fields, its state (`open`, `closed`), the connection its
/// stream times belong to, and its files relative to the output folder.
pub(super) fn event_json(
    e: &Event,
    state: &str,
    (run, connection): (&str, u64),
    (clip, thumb, region): (Option<&Path>, Option<&Path>, Option<[f32; 4]>),
    dir: &Path,
) -> serde_json::Value {
    let rel = |p: Option<&Path>| p.map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string());
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("state".into(), state.into());
        m.insert("run".into(), run.into());
        m.insert("connection".into(), connection.into());
        m.insert("clip".into(), rel(clip).into());
        m.insert("thumbnail".into(), rel(thumb).into());
        m.insert(
            "region".into(),
            serde_json::to_value(region).unwrap_or_default(),
        );
        m.insert(
            "probabilities".into(),
            e.probabilities
                .iter()
                .map(|(n, p)| (n.clone(), serde_json::Value::from(*p)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_utc_times() {
        assert_eq!(run_id(0.0), "19700101T000000Z");
        // 2026-12-05 21:15:00 UTC (date -d @1796505300 -u).
        assert_eq!(run_id(1_796_505_300.0), "20261205T211500Z");
        assert_eq!(run_id(951_782_400.0), "20000229T000000Z");
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug(0, "rtsp://127.0.0.1:8554/cam"), "1-127_0_0_1_8554_cam");
        assert_eq!(slug(1, "/data/cams/前门.mp4"), "2-data_cams_前门_mp4");
    }
}
