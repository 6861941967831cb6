//! A training run's folder as a whole: which of its entries a run writes, what a new run
//! finds there (a reused `--out` must not mix two runs), and `--overwrite`'s removal of
//! exactly those entries — anything else in the folder stays.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The files a run writes at its top level.
const RUN_FILES: [&str; 5] = [
    "config.json",
    "param_groups.json",
    "metrics.jsonl",
    "metrics.csv",
    "resumes.jsonl",
];
/// The folders a run writes.
const RUN_DIRS: [&str; 2] = ["checkpoints", "final"];

/// A temporary entry of an interrupted write: `.NAME.tmpPID` (an atomic file write),
/// `.final.tmpPID` / `.final.oldPID` (an export).
fn is_temporary(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    RUN_FILES.iter().chain(&["final"]).any(|stem| {
        [".tmp", ".old"].iter().any(|suffix| {
            rest.strip_prefix(stem)
                .and_then(|r| r.strip_prefix(suffix))
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        })
    })
}

fn written_by_a_run(name: &str) -> bool {
    RUN_FILES.contains(&name) || RUN_DIRS.contains(&name) || is_temporary(name)
}

/// What a folder holds, split into what a run writes and everything else (names sorted).
#[derive(Debug, Default)]
pub struct Contents {
    pub run_entries: Vec<String>,
    pub other: Vec<String>,
    /// The checkpoint folders' names (`step-N`), oldest first.
    pub checkpoints: Vec<String>,
}

impl Contents {
    pub fn is_empty(&self) -> bool {
        self.run_entries.is_empty() && self.other.is_empty()
    }

    /// A training run (not just some files) is there.
    pub fn holds_a_run(&self) -> bool {
        self.run_entries
            .iter()
            .any(|e| e == "config.json" || e == "checkpoints")
    }

    /// One line naming what is there, checkpoints summarised.
    pub fn describe(&self) -> String {
        describe(&self.run_entries, &self.other, &self.checkpoints)
    }
}

fn describe(run_entries: &[String], other: &[String], checkpoints: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in run_entries.iter().chain(other) {
        if e == "checkpoints" {
            parts.push(match checkpoints {
                [] => "checkpoints/ (empty)".to_string(),
                [one] => format!("checkpoints/{one}"),
                [first, .., last] => format!(
                    "checkpoints/ ({} of them, {first} … {last})",
                    checkpoints.len()
                ),
            });
        } else if e == "final" {
            parts.push("final/".into());
        } else {
            parts.push(e.clone());
        }
    }
    const SHOWN: usize = 12;
    if parts.len() > SHOWN {
        let more = parts.len() - SHOWN;
        parts.truncate(SHOWN);
        parts.push(format!("and {more} more"));
    }
    parts.join(", ")
}

/// The entries of `run` (nothing when it does not exist yet).
pub fn contents(run: &Path) -> Result<Contents> {
    let mut c = Contents::default();
    if !run.exists() {
        return Ok(c);
    }
    if !run.is_dir() {
        bail!("{} exists and is not a folder", run.display());
    }
    let entries =
        std::fs::read_dir(run).with_context(|| format!("reading the folder {}", run.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("reading the folder {}", run.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if written_by_a_run(&name) {
            c.run_entries.push(name);
        } else {
            c.other.push(name);
        }
    }
    c.run_entries.sort();
    c.other.sort();
    c.checkpoints = super::store::list_checkpoints(run)
        .into_iter()
        .filter_map(|(_, p)| Some(p.file_name()?.to_string_lossy().into_owned()))
        .collect();
    Ok(c)
}

/// A new run may only start in an empty (or new) folder: checkpoints of two runs would
/// mix, pruning would delete the new run's first, and `--resume` would load the old
/// run's weights under the new config.
pub fn refuse_if_used(run: &Path) -> Result<()> {
    let c = contents(run)?;
    if c.is_empty() {
        return Ok(());
    }
    let what = if c.holds_a_run() {
        "holds a training run"
    } else {
        "is not empty"
    };
    bail!(
        "{} {what} ({}): use --resume to continue the run there, --overwrite to replace it (only what a run writes is removed), or another --out",
        run.display(),
        c.describe()
    )
}

/// What `--overwrite` removed and what it left.
#[derive(Debug)]
pub struct Cleared {
    pub removed: String,
    pub kept: Vec<String>,
}

/// Removes every entry a run writes from `run` (`--overwrite`); other files stay.
/// None when there was nothing to remove.
pub fn clear_run(run: &Path) -> Result<Option<Cleared>> {
    let c = contents(run)?;
    if c.run_entries.is_empty() {
        return Ok(None);
    }
    for name in &c.run_entries {
        let path = run.join(name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing {} (--overwrite)", path.display()))?;
    }
    Ok(Some(Cleared {
        removed: describe(&c.run_entries, &[], &c.checkpoints),
        kept: c.other,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_of_a_run_are_recognised_and_nothing_else() {
        for name in [
            ".config.json.tmp123",
            ".metrics.csv.tmp9",
            ".final.tmp44",
            ".final.old44",
        ] {
            assert!(is_temporary(name), "{name}");
        }
        for name in [
            ".final.tmp",
            ".final.tmpx",
            "final.tmp1",
            ".notes.txt.tmp1",
            ".config.json.old",
            "config.json",
        ] {
            assert!(!is_temporary(name), "{name}");
        }
    }

    #[test]
    fn checkpoints_are_summarised() {
        let cps: Vec<String> = (1..=3).map(|s| format!("step-{s:08}")).collect();
        let d = describe(
            &["checkpoints".into(), "config.json".into()],
            &["notes.txt".into()],
            &cps,
        );
        assert_eq!(
            d,
            "checkpoints/ (3 of them, step-00000001 … step-00000003), config.json, notes.txt"
        );
    }
}
