//! Built-in model presets: HF `config.json` files kept in the repository's `configs/`
//! folder and compiled into the binary, so `--preset` works from any directory.

use anyhow::{Result, bail};
use fgclip_core::ClipConfig;

use crate::checkpoint::hf::parse_config;

/// (name, config.json text).
pub const PRESETS: &[(&str, &str)] = &[
    ("vit-b-32", include_str!("../../../configs/vit-b-32.json")),
    ("vit-b-16", include_str!("../../../configs/vit-b-16.json")),
    ("vit-l-14", include_str!("../../../configs/vit-l-14.json")),
    (
        "vit-l-14-336",
        include_str!("../../../configs/vit-l-14-336.json"),
    ),
    ("tiny", include_str!("../../../configs/tiny.json")),
    ("demo", include_str!("../../../configs/demo.json")),
];

/// FG-CLIP 2 presets (name, config.json text): another model family, trained with FG-CLIP
/// 2's loss. `fgclip2-demo` and `fgclip2-tiny` fit the built-in small tokenizer.
pub const FGCLIP2_PRESETS: &[(&str, &str)] = &[
    (
        "fgclip2-demo",
        include_str!("../../../configs/fgclip2-demo.json"),
    ),
    (
        "fgclip2-base",
        include_str!("../../../configs/fgclip2-base.json"),
    ),
    (
        "fgclip2-tiny",
        include_str!("../../../configs/fgclip2-tiny.json"),
    ),
];

/// An FG-CLIP 2 preset by name; None when `name` is not one.
pub fn resolve_fgclip2(name: &str) -> Option<Result<fgclip_core::fgclip2::Fgclip2Config>> {
    let (_, text) = FGCLIP2_PRESETS.iter().find(|(n, _)| *n == name)?;
    Some((|| {
        let c: fgclip_core::fgclip2::Fgclip2Config = serde_json::from_str(text)?;
        c.validate()?;
        Ok(c)
    })())
}

/// A preset by name, or a path to a `config.json`.
pub fn resolve(name_or_path: &str) -> Result<ClipConfig> {
    if let Some((_, text)) = PRESETS.iter().find(|(n, _)| *n == name_or_path) {
        return parse_config(text);
    }
    let path = std::path::Path::new(name_or_path);
    if path.is_file() {
        return crate::checkpoint::hf::read_config(path);
    }
    if FGCLIP2_PRESETS.iter().any(|(n, _)| *n == name_or_path) {
        bail!("`{name_or_path}` is an FG-CLIP 2 preset: this command takes CLIP presets");
    }
    let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
    bail!(
        "unknown preset `{name_or_path}`: use one of {} or the path of a config.json",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_has_its_geometry() {
        for (name, _) in PRESETS {
            resolve(name).unwrap();
        }
        for (name, _) in FGCLIP2_PRESETS {
            resolve_fgclip2(name).unwrap().unwrap();
        }
        let base = resolve_fgclip2("fgclip2-base").unwrap().unwrap();
        assert_eq!(base.vision_config.position_grid(), 16);
        assert_eq!(base.text_config.vocab_size, 256_000);
        let b32 = resolve("vit-b-32").unwrap();
        assert_eq!(b32.vision_config.grid_size(), 7);
        let l336 = resolve("vit-l-14-336").unwrap();
        assert_eq!(l336.vision_config.grid_size(), 24);
        assert_eq!(l336.projection_dim, 768);
        assert!(
            resolve("vit-h-99")
                .unwrap_err()
                .to_string()
                .contains("vit-b-32")
        );
    }
}
