//! Everything between files on disk and a training batch: videos, annotations,
//! sampling and batching.

pub mod annotations;
pub mod augment;
pub mod batch;
pub mod encode;
pub mod frames;
pub mod hard_negatives;
pub mod live;
pub mod loader;
pub mod naflex;
pub mod npy;
pub mod preprocess;
pub mod resize;
pub mod rng;
pub mod sampling;
pub mod validate;
pub mod video;
pub mod video_list;

/// A text file's contents; invalid UTF-8 is an error naming the file and the offset.
pub fn read_utf8(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// What a JSON value is, for messages ("must be a list, got a number").
pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
