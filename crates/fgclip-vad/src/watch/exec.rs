//! `--exec`: a program run per event line, as argv (no shell), the line's JSON on its
//! stdin, killed after a time limit. It runs on its own thread: a slow or failing program is
//! logged and counted and never holds up scoring.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// What the programs did.
#[derive(Debug, Default)]
pub struct ExecCounters {
    pub started: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub timed_out: AtomicU64,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct ExecSummary {
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
}

impl ExecCounters {
    pub fn summary(&self) -> ExecSummary {
        ExecSummary {
            started: self.started.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
        }
    }
}

/// The program and its limit.
#[derive(Clone, Debug)]
pub struct ExecHook {
    pub argv: Vec<String>,
    pub timeout: Duration,
    pub counters: Arc<ExecCounters>,
}

impl ExecHook {
    /// Runs the program with `json` on its stdin on a new thread; the handle ends when the
    /// program does (or is killed).
    pub fn fire(&self, json: String) -> std::thread::JoinHandle<()> {
        let hook = self.clone();
        std::thread::spawn(move || hook.run(&json))
    }

    fn run(&self, json: &str) {
        let Some((program, args)) = self.argv.split_first() else {
            return;
        };
        let c = &self.counters;
        c.started.fetch_add(1, Ordering::Relaxed);
        let fail = |why: String| {
            eprintln!("watch: --exec {program}: {why}");
            c.failed.fetch_add(1, Ordering::Relaxed);
        };
        let mut child = match Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
        {
            Ok(ch) => ch,
            Err(e) => return fail(format!("cannot start: {e}")),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A program that does not read its input gets a broken pipe, not an error here.
            let _ = stdin.write_all(json.as_bytes());
            let _ = stdin.write_all(b"\n");
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => {
                    c.succeeded.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(Some(status)) => return fail(format!("exited with {status}")),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    eprintln!(
                        "watch: --exec {program}: killed after {:.1} s",
                        self.timeout.as_secs_f64()
                    );
                    c.timed_out.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return fail(format!("waiting: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(argv: &[&str], timeout_ms: u64) -> ExecHook {
        ExecHook {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
            counters: Arc::default(),
        }
    }

    #[test]
    fn the_program_gets_the_json_on_stdin() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("got.json");
        let script = format!("cat > '{}'", out.display());
        let h = hook(&["sh", "-c", &script], 5000);
        h.fire("{\"id\":1}".into())
            .join()
            .map_err(|_| anyhow::anyhow!("panicked"))?;
        assert_eq!(std::fs::read_to_string(&out)?, "{\"id\":1}\n");
        let s = h.counters.summary();
        assert_eq!(
            (s.started, s.succeeded, s.failed, s.timed_out),
            (1, 1, 0, 0)
        );
        Ok(())
    }

    #[test]
    fn failures_and_time_outs_are_counted() {
        let h = hook(&["sh", "-c", "exit 3"], 5000);
        let _ = h.fire(String::new()).join();
        let h2 = hook(&["sleep", "30"], 200);
        let t = Instant::now();
        let _ = h2.fire(String::new()).join();
        assert!(t.elapsed() < Duration::from_secs(10));
        let h3 = hook(&["/no/such/program"], 200);
        let _ = h3.fire(String::new()).join();
        assert_eq!(h.counters.summary().failed, 1);
        assert_eq!(h2.counters.summary().timed_out, 1);
        assert_eq!(h3.counters.summary().failed, 1);
    }
}
