//! How a CLIP model folder's frames are to be preprocessed: read from the folder (`fgclip.json`
//! of an fgclip export, else HF's `preprocessor_config.json`), and written beside an export
//! as a `preprocessor_config.json` that HF's `CLIPImageProcessor` follows the same way.

use std::path::Path;

use anyhow::{Context, Result};

use super::hf::FGCLIP_EXTRA;
use crate::data::batch::{CLIP_MEAN, CLIP_STD};
use crate::data::preprocess::Preprocess;

/// The preprocessing a CLIP folder asks for: an fgclip export's `fgclip.json` `preprocess`
/// (what it was trained with); else `preprocessor_config.json`'s `do_center_crop` (HF's
/// CLIP checkpoints say true: their zero-shot numbers come from the centre crop); else
/// `squash`, fgclip's training default.
pub fn model_preprocess(dir: &Path) -> Result<Preprocess> {
    let read = |name: &str| -> Result<Option<serde_json::Value>> {
        let path = dir.join(name);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let v =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Some(v))
    };
    if let Some(p) = read(FGCLIP_EXTRA)?.and_then(|v| v.get("preprocess").cloned()) {
        return serde_json::from_value(p).with_context(|| {
            format!(
                "{}: `preprocess` must be \"squash\" or \"center_crop\"",
                dir.join(FGCLIP_EXTRA).display()
            )
        });
    }
    let crop = read("preprocessor_config.json")?
        .and_then(|v| v.get("do_center_crop").and_then(serde_json::Value::as_bool));
    Ok(if crop == Some(true) {
        Preprocess::CenterCrop
    } else {
        Preprocess::Squash
    })
}

/// `preprocessor_config.json` for a CLIP export trained at `size` with `preprocess`:
/// CLIPImageProcessor settings that prepare frames as fgclip did (bicubic, CLIP's mean and
/// std; squash as a resize to size × size without crop).
pub fn clip_preprocessor_json(preprocess: Preprocess, size: usize) -> Result<String> {
    let mut v = serde_json::json!({
        "image_processor_type": "CLIPImageProcessor",
        "do_convert_rgb": true,
        "do_resize": true,
        "resample": 3,
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
    });
    if let Some(o) = v.as_object_mut() {
        match preprocess {
            Preprocess::Squash => {
                o.insert(
                    "size".into(),
                    serde_json::json!({"height": size, "width": size}),
                );
                o.insert("do_center_crop".into(), serde_json::json!(false));
            }
            Preprocess::CenterCrop => {
                o.insert("size".into(), serde_json::json!({"shortest_edge": size}));
                o.insert("do_center_crop".into(), serde_json::json!(true));
                o.insert(
                    "crop_size".into(),
                    serde_json::json!({"height": size, "width": size}),
                );
            }
        }
    }
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_says_how_its_frames_are_prepared() -> Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(model_preprocess(dir.path())?, Preprocess::Squash);
        std::fs::write(
            dir.path().join("preprocessor_config.json"),
            clip_preprocessor_json(Preprocess::CenterCrop, 224)?,
        )?;
        assert_eq!(model_preprocess(dir.path())?, Preprocess::CenterCrop);
        std::fs::write(dir.path().join(FGCLIP_EXTRA), r#"{"preprocess": "squash"}"#)?;
        assert_eq!(model_preprocess(dir.path())?, Preprocess::Squash);
        std::fs::write(dir.path().join(FGCLIP_EXTRA), r#"{"preprocess": "crop"}"#)?;
        let e = format!(
            "{:#}",
            model_preprocess(dir.path())
                .err()
                .ok_or_else(|| anyhow::anyhow!("accepted"))?
        );
        assert!(
            e.contains("fgclip.json") && e.contains("center_crop"),
            "{e}"
        );
        Ok(())
    }
}
