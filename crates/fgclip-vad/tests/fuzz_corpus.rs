//! Replays the fuzz inputs — the seeds (`fuzz/seeds/<target>/`), what libFuzzer kept
//! (`fuzz/corpus/<target>/`) — and every past finding (`fuzz/regressions/<target>/`) through the parsers on stable
//! Rust: none may panic or take more than a second. `cargo +nightly fuzz run <target>`
//! explores further (fuzz/README.md).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fgclip_vad::fuzzing::TARGETS;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_parses_without_panic() {
    let mut failures = Vec::new();
    let mut total = 0;
    for t in TARGETS {
        let seeds = inputs("seeds", t.name);
        assert!(!seeds.is_empty(), "fuzz/seeds/{} is empty", t.name);
        let kept = inputs("corpus", t.name).into_iter();
        for path in seeds
            .into_iter()
            .chain(kept)
            .chain(inputs("regressions", t.name))
        {
            let bytes = std::fs::read(&path).unwrap();
            let start = Instant::now();
            let outcome = std::panic::catch_unwind(|| (t.run)(&bytes));
            let took = start.elapsed();
            total += 1;
            if outcome.is_err() {
                failures.push(format!("{}: panicked", path.display()));
            } else if took > Duration::from_secs(1) {
                failures.push(format!("{}: took {took:?}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} inputs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{total} inputs replayed");
}

/// Every target has its libFuzzer entry point and is listed in fuzz/Cargo.toml.
#[test]
fn every_target_has_a_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for t in TARGETS {
        let src = fuzz_dir().join(format!("fuzz_targets/{}.rs", t.name));
        let text = std::fs::read_to_string(&src).unwrap_or_default();
        assert!(
            text.contains(&format!("fgclip_vad::fuzzing::{}(data)", t.name)),
            "{} does not call its parser",
            src.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{}\"", t.name)),
            "{} not in fuzz/Cargo.toml",
            t.name
        );
    }
}
