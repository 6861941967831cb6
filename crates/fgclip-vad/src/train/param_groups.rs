//! Optimizer parameter groups by HF name (DESIGN.md §7): which parameters get weight decay,
//! and which take the text tower's own learning rate.
//!
//! - FG-CLIP's rule (HF Trainer's `get_decay_parameter_names`): no decay on biases and on
//!   the parameters of LayerNorm modules; decay on everything else, logit scales and
//!   embeddings included.
//! - open_clip's rule (`main.py`): no decay on parameters with fewer than 2 dimensions
//!   (biases, gains, class embedding, logit scales), on LayerNorm parameters, biases and
//!   logit scales.
//!
//! LayerNorm is recognised by module (HF names `layer_norm1`, `layer_norm2`,
//! `pre_layrnorm`, `post_layernorm`, `final_layer_norm`; FG-CLIP 2's pooling heads'
//! `layernorm`), so HF's misspelt `pre_layrnorm`
//! counts. `text_model_lr` applies to every `text_model.*` parameter (not
//! `text_projection`), as FG-CLIP's trainer does.

use crate::train::adamw::FusedAdamW;
use burn::module::{ParamGroup, ParamId};
use burn::optim::AdamWConfig;
use burn::optim::ModuleOptimizer;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use fgclip_core::names::{HfLayout, NamedParam, ParamRef};

use crate::trainee::Trainable;
use serde::{Deserialize, Serialize};

/// Which parameters are exempt from weight decay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightDecayRule {
    /// HF Trainer's rule, as FG-CLIP trains: biases and LayerNorm parameters.
    #[default]
    Fgclip,
    /// open_clip's: fewer than 2 dimensions, LayerNorm, biases, logit scales.
    OpenClip,
}

/// The LayerNorm modules of HF `CLIPModel` and FG-CLIP 2 (its pooling heads' `layernorm`).
const LAYER_NORMS: [&str; 6] = [
    "layernorm",
    "layer_norm1",
    "layer_norm2",
    "pre_layrnorm",
    "post_layernorm",
    "final_layer_norm",
];

fn in_layer_norm(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    parts.next();
    parts.next().is_some_and(|m| LAYER_NORMS.contains(&m))
}

/// Dimensions of the parameter as HF stores it (a scalar held as [1] has 0).
fn hf_rank(p: &NamedParam<'_>) -> usize {
    match (p.layout, p.param) {
        (HfLayout::Scalar, _) => 0,
        (HfLayout::PatchConv { .. }, _) => 4,
        (HfLayout::Unsqueezed, ParamRef::D2(_)) => 3,
        (_, ParamRef::D1(_)) => 1,
        (_, ParamRef::D2(_)) => 2,
    }
}

/// Whether `rule` applies weight decay to this parameter.
pub fn decays(p: &NamedParam<'_>, rule: WeightDecayRule) -> bool {
    let name = p.name.as_str();
    let bias_or_norm = in_layer_norm(name) || name.to_lowercase().contains("bias");
    match rule {
        WeightDecayRule::Fgclip => !bias_or_norm,
        WeightDecayRule::OpenClip => {
            !(bias_or_norm || hf_rank(p) < 2 || name.contains("logit_scale"))
        }
    }
}

/// Whether the text tower's learning rate applies.
pub fn in_text_model(name: &str) -> bool {
    name.starts_with("text_model.")
}

fn id_of(p: &NamedParam<'_>) -> ParamId {
    match p.param {
        ParamRef::D1(x) => x.id,
        ParamRef::D2(x) => x.id,
    }
}

/// The model's parameters sorted into groups, by HF name and by id.
#[derive(Clone, Debug)]
pub struct ParamGroups {
    pub rule: WeightDecayRule,
    pub decay: Vec<String>,
    pub no_decay: Vec<String>,
    /// Names under `text_model.` when a text learning rate is set; otherwise empty.
    pub text_lr: Vec<String>,
    no_decay_ids: Vec<ParamId>,
    text_ids: Vec<ParamId>,
}

/// What `param_groups.json` holds.
#[derive(Serialize)]
struct GroupsFile<'a> {
    weight_decay_rule: WeightDecayRule,
    weight_decay: f64,
    text_model_lr: Option<f64>,
    decay: &'a [String],
    no_decay: &'a [String],
    text_model_lr_params: &'a [String],
}

impl ParamGroups {
    pub fn new<M: Trainable>(model: &M, rule: WeightDecayRule, text_lr: bool) -> Self {
        let mut g = Self {
            rule,
            decay: Vec::new(),
            no_decay: Vec::new(),
            text_lr: Vec::new(),
            no_decay_ids: Vec::new(),
            text_ids: Vec::new(),
        };
        for p in model.params() {
            if decays(&p, rule) {
                g.decay.push(p.name.clone());
            } else {
                g.no_decay.push(p.name.clone());
                g.no_decay_ids.push(id_of(&p));
            }
            if text_lr && in_text_model(&p.name) {
                g.text_lr.push(p.name.clone());
                g.text_ids.push(id_of(&p));
            }
        }
        g
    }

    /// AdamW with `weight_decay` on the decay group and none on the others.
    pub fn optimizer(&self, adamw: &AdamWConfig) -> ModuleOptimizer {
        let base = ModuleOptimizer::from(FusedAdamW::new(adamw));
        if self.no_decay_ids.is_empty() {
            return base;
        }
        let no_decay = FusedAdamW::new(&adamw.clone().with_weight_decay(0.0));
        base.with_group(
            ParamGroup::from_ids(self.no_decay_ids.clone()),
            no_decay,
            None,
        )
    }

    /// The learning rate of every parameter at one step: `lr`, and `text_lr` on the text
    /// tower when it has its own.
    pub fn learning_rates(&self, lr: f64, text_lr: Option<f64>) -> ModuleLearningRate {
        let mut schedule = ModuleLrScheduler::new(lr);
        if let Some(t) = text_lr.filter(|_| !self.text_ids.is_empty()) {
            schedule = schedule.with_group(ParamGroup::from_ids(self.text_ids.clone()), t);
        }
        schedule.step()
    }

    /// `param_groups.json`: the groups by HF name.
    pub fn to_json(&self, weight_decay: f64, text_model_lr: Option<f64>) -> String {
        let file = GroupsFile {
            weight_decay_rule: self.rule,
            weight_decay,
            text_model_lr,
            decay: &self.decay,
            no_decay: &self.no_decay,
            text_model_lr_params: &self.text_lr,
        };
        serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use fgclip_core::fgclip::FgClip;
    use fgclip_core::{RandomInit, Weights};

    fn tiny() -> FgClip {
        let config = crate::presets::resolve("tiny").unwrap_or_default();
        let device = Device::flex();
        FgClip::load(
            &Weights::new(&RandomInit::new(&config, 0), &device),
            &config,
            fgclip_core::fgclip::Scales::fresh(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The names of one text layer, one vision layer, and the model-level parameters: the
    /// rest repeat per layer.
    fn sample(names: &[String]) -> Vec<&str> {
        names
            .iter()
            .map(String::as_str)
            .filter(|n| !n.contains("layers.") || n.contains("layers.0."))
            .collect()
    }

    #[test]
    fn fgclip_rule_spares_biases_and_layer_norms_only() {
        let g = ParamGroups::new(&tiny(), WeightDecayRule::Fgclip, false);
        let mut no = sample(&g.no_decay);
        no.sort();
        assert_eq!(
            no,
            [
                "text_model.encoder.layers.0.layer_norm1.bias",
                "text_model.encoder.layers.0.layer_norm1.weight",
                "text_model.encoder.layers.0.layer_norm2.bias",
                "text_model.encoder.layers.0.layer_norm2.weight",
                "text_model.encoder.layers.0.mlp.fc1.bias",
                "text_model.encoder.layers.0.mlp.fc2.bias",
                "text_model.encoder.layers.0.self_attn.k_proj.bias",
                "text_model.encoder.layers.0.self_attn.out_proj.bias",
                "text_model.encoder.layers.0.self_attn.q_proj.bias",
                "text_model.encoder.layers.0.self_attn.v_proj.bias",
                "text_model.final_layer_norm.bias",
                "text_model.final_layer_norm.weight",
                "vision_model.encoder.layers.0.layer_norm1.bias",
                "vision_model.encoder.layers.0.layer_norm1.weight",
                "vision_model.encoder.layers.0.layer_norm2.bias",
                "vision_model.encoder.layers.0.layer_norm2.weight",
                "vision_model.encoder.layers.0.mlp.fc1.bias",
                "vision_model.encoder.layers.0.mlp.fc2.bias",
                "vision_model.encoder.layers.0.self_attn.k_proj.bias",
                "vision_model.encoder.layers.0.self_attn.out_proj.bias",
                "vision_model.encoder.layers.0.self_attn.q_proj.bias",
                "vision_model.encoder.layers.0.self_attn.v_proj.bias",
                "vision_model.post_layernorm.bias",
                "vision_model.post_layernorm.weight",
                "vision_model.pre_layrnorm.bias",
                "vision_model.pre_layrnorm.weight",
            ]
        );
        // Embeddings, the patch conv, projections and the three logit scales decay.
        for name in [
            "logit_scale",
            "logit_scale_region",
            "logit_scale_hardneg",
            "text_model.embeddings.token_embedding.weight",
            "text_model.embeddings.position_embedding.weight",
            "vision_model.embeddings.class_embedding",
            "vision_model.embeddings.patch_embedding.weight",
            "vision_model.embeddings.position_embedding.weight",
            "visual_projection.weight",
            "text_projection.weight",
        ] {
            assert!(g.decay.iter().any(|n| n == name), "{name}");
        }
        assert_eq!(
            g.decay.len() + g.no_decay.len(),
            tiny().named_params().len()
        );
        assert!(g.text_lr.is_empty());
    }

    #[test]
    fn open_clip_rule_also_spares_gains_scales_and_the_class_embedding() {
        let g = ParamGroups::new(&tiny(), WeightDecayRule::OpenClip, true);
        let fg = ParamGroups::new(&tiny(), WeightDecayRule::Fgclip, true);
        let mut extra: Vec<&str> = g
            .no_decay
            .iter()
            .filter(|n| !fg.no_decay.contains(n))
            .map(String::as_str)
            .collect();
        extra.sort();
        assert_eq!(
            extra,
            [
                "logit_scale",
                "logit_scale_hardneg",
                "logit_scale_region",
                "vision_model.embeddings.class_embedding"
            ]
        );
        // The text learning rate: every text_model.* parameter, not text_projection.
        assert!(g.text_lr.iter().all(|n| n.starts_with("text_model.")));
        assert!(!g.text_lr.iter().any(|n| n == "text_projection.weight"));
        let text = tiny()
            .named_params()
            .iter()
            .filter(|p| p.name.starts_with("text_model."))
            .count();
        assert_eq!(g.text_lr.len(), text);
        let json: serde_json::Value =
            serde_json::from_str(&g.to_json(0.2, Some(1e-6))).unwrap_or_default();
        assert_eq!(json["weight_decay_rule"], "open_clip");
        assert_eq!(
            json["no_decay"].as_array().map(Vec::len),
            Some(g.no_decay.len())
        );
        assert_eq!(json["text_model_lr"], 1e-6);
    }
}
