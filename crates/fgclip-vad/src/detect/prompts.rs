//! Prompt sets (one normal class and the anomaly classes, each with its templates) and the
//! zero-shot head built from them.

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use fgclip_core::zeroshot::{ZeroShotHead, class_embedding};
use fgclip_core::{ClipModel, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::device::host_f32;

/// A prompt file: one normal class and the anomaly classes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromptSet {
    #[serde(default)]
    pub name: String,
    pub normal: PromptClass,
    pub classes: Vec<PromptClass>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromptClass {
    pub name: String,
    pub templates: Vec<String>,
}

pub const UCF_CRIME_PROMPTS: &str = include_str!("../../../../prompts/ucf-crime.json");
pub const XD_VIOLENCE_PROMPTS: &str = include_str!("../../../../prompts/xd-violence.json");
/// The same classes in Chinese, for bilingual models (FG-CLIP 2).
pub const UCF_CRIME_ZH_PROMPTS: &str = include_str!("../../../../prompts/ucf-crime.zh.json");
pub const XD_VIOLENCE_ZH_PROMPTS: &str = include_str!("../../../../prompts/xd-violence.zh.json");

/// The built-in prompt sets by name.
const BUILT_IN: [(&str, &str); 4] = [
    ("ucf-crime", UCF_CRIME_PROMPTS),
    ("xd-violence", XD_VIOLENCE_PROMPTS),
    ("ucf-crime.zh", UCF_CRIME_ZH_PROMPTS),
    ("xd-violence.zh", XD_VIOLENCE_ZH_PROMPTS),
];

impl PromptSet {
    /// `ucf-crime`, `xd-violence`, their Chinese `ucf-crime.zh`, `xd-violence.zh`, or the
    /// path of a prompt file.
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        let built_in = BUILT_IN.iter().find(|(n, _)| *n == name_or_path);
        let (text, origin) = match built_in {
            Some((name, text)) => (text.to_string(), format!("built-in {name}")),
            None => {
                let path = name_or_path;
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading prompt file {path}"))?;
                (text, path.to_string())
            }
        };
        Self::parse(&text, &origin)
    }

    /// A prompt set from JSON text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let set: PromptSet =
            serde_json::from_str(text).with_context(|| format!("{origin}: not a prompt set"))?;
        if set.classes.is_empty() {
            bail!("{origin}: no anomaly classes");
        }
        for c in std::iter::once(&set.normal).chain(&set.classes) {
            if c.templates.iter().all(|t| t.trim().is_empty()) {
                bail!("{origin}: class `{}` has no template", c.name);
            }
        }
        Ok(set)
    }

    /// Class names, "Normal" (or the normal class's name) first.
    pub fn names(&self) -> Vec<String> {
        std::iter::once(self.normal.name.clone())
            .chain(self.classes.iter().map(|c| c.name.clone()))
            .collect()
    }
}

/// The zero-shot head of a prompt set for a model.
pub fn build_head(
    model: &ClipModel,
    tokenizer: &Tokenizer,
    prompts: &PromptSet,
    scale: Option<f64>,
    device: &Device,
) -> Result<ZeroShotHead> {
    let l = model.config().text_config.max_position_embeddings;
    let mut classes = Vec::new();
    for c in std::iter::once(&prompts.normal).chain(&prompts.classes) {
        let texts: Vec<&String> = c
            .templates
            .iter()
            .filter(|t| !t.trim().is_empty())
            .collect();
        let ids = tokenizer.tokenize_batch(&texts, l);
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [texts.len(), l]), device);
        classes.push(class_embedding(model.encode_text(ids)));
    }
    let scale = match scale {
        Some(s) => s,
        None => host_f32(model.logit_scale.val().exp())?
            .first()
            .map_or(100.0, |&s| f64::from(s).min(100.0)),
    };
    Ok(ZeroShotHead::new(classes, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_prompt_sets_are_complete() {
        let u = PromptSet::resolve("ucf-crime").unwrap();
        assert_eq!(u.classes.len(), 13);
        assert_eq!(u.names()[0], "Normal");
        assert!(u.names().contains(&"RoadAccidents".to_string()));
        let x = PromptSet::resolve("xd-violence").unwrap();
        let names = x.names();
        for c in [
            "Abuse",
            "Car accident",
            "Explosion",
            "Fighting",
            "Riot",
            "Shooting",
        ] {
            assert!(names.contains(&c.to_string()), "{c}");
        }
        assert!(PromptSet::resolve("/nonexistent.json").is_err());
        // The Chinese sets have the same class names, so they score against the same truth.
        for (en, zh) in [
            ("ucf-crime", "ucf-crime.zh"),
            ("xd-violence", "xd-violence.zh"),
        ] {
            let (en, zh) = (
                PromptSet::resolve(en).unwrap(),
                PromptSet::resolve(zh).unwrap(),
            );
            assert_eq!(en.names(), zh.names());
            assert!(
                zh.classes
                    .iter()
                    .all(|c| c.templates.iter().all(|t| !t.is_ascii()))
            );
        }
    }
}
