//! The parsers that read untrusted bytes, each as one function of those bytes: the
//! libFuzzer targets in `fuzz/` (cargo-fuzz) call them, and `tests/fuzz_corpus.rs` replays
//! the checked-in corpora and every past finding through them on stable Rust. Each may
//! return an error for bad input; none may panic, hang or allocate without bound.

use std::path::{Path, PathBuf};

use fgclip_core::WeightSource;

/// A fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` file and corpus folder) and
/// the function that parses one input.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "annotations",
        run: annotations,
    },
    Target {
        name: "hard_negatives",
        run: hard_negatives,
    },
    Target {
        name: "ground_truth",
        run: ground_truth,
    },
    Target {
        name: "safetensors",
        run: safetensors,
    },
    Target {
        name: "npy",
        run: npy,
    },
    Target {
        name: "prompts",
        run: prompts,
    },
    Target {
        name: "clip_config",
        run: clip_config,
    },
    Target {
        name: "train_config",
        run: train_config,
    },
];

/// The target of `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// An annotation file (JSON array or JSON Lines; DESIGN.md §2 and VAGTA's variants:
/// `[[]]` box lists, `enabled`, `_track_id`), then the clips it yields sampled as training
/// would see them.
pub fn annotations(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(d) = crate::data::annotations::parse(t, Path::new("fuzz.json"), 4) {
        let _ = d.usable();
        let _ = (d.errors(), d.warnings(), d.clips_with_errors());
    }
}

/// A VAGTA hard-negative sidecar.
pub fn hard_negatives(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(s) = crate::data::hard_negatives::parse(t, Path::new("fuzz.json")) {
        let _ = (
            s.errors(),
            s.negatives(),
            s.empty_items(),
            s.describe_errors(3),
        );
    }
}

/// A ground-truth file in the UCF-Crime layout and in XD-Violence's.
pub fn ground_truth(data: &[u8]) {
    let Some(t) = text(data) else { return };
    for truth in [
        crate::eval::parse_ucf_crime(t, Path::new("fuzz.txt")),
        crate::eval::parse_xd_violence(t, Path::new("fuzz.txt")),
    ]
    .into_iter()
    .flatten()
    {
        for v in truth {
            // Labels for a short video: spans past its end are cut, never indexed.
            let _ = v.labels(64);
        }
    }
}

/// A safetensors file, as training and `eval`'s arrays read it and as model weights are
/// taken from it (each declared tensor at its declared shape).
pub fn safetensors(data: &[u8]) {
    let path = PathBuf::from("fuzz.safetensors");
    let _ = crate::checkpoint::safetensors_io::parse_arrays(data, &path);
    if let Ok(w) =
        crate::checkpoint::hf::SafetensorsWeights::from_bytes(vec![(path, data.to_vec())])
    {
        for (name, shape) in w.declared_shapes() {
            let _ = w.get(&name, &shape);
        }
        let _ = w.unused();
    }
}

/// A `.npy` array (features, frame scores).
pub fn npy(data: &[u8]) {
    let _ = crate::data::npy::parse_f32(data);
}

/// A prompt file.
pub fn prompts(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(p) = crate::detect::PromptSet::parse(t, "fuzz.json") {
        let _ = p.names();
    }
}

/// An HF `config.json`.
pub fn clip_config(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(c) = crate::checkpoint::hf::parse_config(t) {
        let _ = (c.vision_config.grid_size(), c.vision_config.num_positions());
    }
}

/// A training config file (`fgclip train --config`).
pub fn train_config(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(c) = crate::train::parse_train_config(t, Path::new("fuzz.json")) {
        let _ = c.loss_weights();
        let _ = c.lr_at(0, 10);
    }
}
