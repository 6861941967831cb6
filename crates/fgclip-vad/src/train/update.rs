//! One optimizer update as PyTorch training code makes it (HF Trainer / open_clip): the
//! gradients of the loss, torch's `clip_grad_norm_`, AdamW over the parameter groups at the
//! step's learning rates, then open_clip's clamp of the logit scales to [0, ln 100].
//! `fgclip check-steps` runs a few such updates on one batch, for comparison with
//! PyTorch (`tools/make_optimizer_fixture.py`).

use std::collections::BTreeMap;

use anyhow::Result;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use fgclip_core::fgclip::{FgClip, VideoBatch};
use fgclip_core::names::ParamRef;
use serde::Serialize;

use crate::device::{host_f32, host_scalar as scalar};
use crate::train::TrainConfig;
use crate::train::collective::{Collective, SingleProcess, all_reduce_gradients};
use crate::train::param_groups::ParamGroups;
use crate::trainee::Trainable;

/// PyTorch's `torch.nn.utils.clip_grad_norm_`: the global L2 norm over every gradient,
/// and with `max_norm`, every gradient scaled by min(1, max_norm / (norm + 1e-6)).
/// Returns the norm before clipping. burn's own clipping is per tensor.
pub fn clip_grad_norm<M: Trainable>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: Option<f32>,
) -> Result<f64> {
    let params = model.params();
    let mut squares: Vec<Tensor<1>> = Vec::new();
    for p in &params {
        match p.param {
            ParamRef::D1(t) => squares.extend(grads.get::<1>(t.id).map(|g| g.powi_scalar(2).sum())),
            ParamRef::D2(t) => squares.extend(grads.get::<2>(t.id).map(|g| g.powi_scalar(2).sum())),
        }
    }
    if squares.is_empty() {
        return Ok(0.0);
    }
    let norm = f64::from(host_f32(Tensor::cat(squares, 0).sum().sqrt())?[0]);
    let Some(max_norm) = max_norm else {
        return Ok(norm);
    };
    let coef = f64::from(max_norm) / (norm + 1e-6);
    if coef < 1.0 {
        for p in &params {
            match p.param {
                ParamRef::D1(t) => {
                    if let Some(g) = grads.remove::<1>(t.id) {
                        grads.register(t.id, g.mul_scalar(coef));
                    }
                }
                ParamRef::D2(t) => {
                    if let Some(g) = grads.remove::<2>(t.id) {
                        grads.register(t.id, g.mul_scalar(coef));
                    }
                }
            }
        }
    }
    Ok(norm)
}

/// Gradients of `loss` clipped as `clip_grad_norm_` does, with the norm before clipping;
/// `Err(what)` when the loss or the norm is not finite (the step is then skipped).
/// With several ranks, the gradients are summed over them first (DESIGN.md §7), so the
/// norm is the global batch's.
pub fn gradients<M: Trainable>(
    model: &M,
    loss: Tensor<1>,
    loss_value: f64,
    max_norm: Option<f32>,
    collective: &dyn Collective,
) -> Result<Result<(GradientsParams, f64), &'static str>> {
    if !loss_value.is_finite() {
        return Ok(Err("loss"));
    }
    let mut grads = GradientsParams::from_grads(loss.backward(), model);
    all_reduce_gradients(model, &mut grads, collective)?;
    let norm = clip_grad_norm(model, &mut grads, max_norm)?;
    Ok(if norm.is_finite() {
        Ok((grads, norm))
    } else {
        Err("gradient norm")
    })
}

pub use crate::trainee::clamp_logit_scales;

/// AdamW on the groups at the step's learning rates (`lr`, and the text tower's from the
/// config), then the clamp of the logit scales.
pub fn apply<M: Trainable>(
    model: M,
    optim: &mut ModuleOptimizer,
    groups: &ParamGroups,
    grads: GradientsParams,
    lr: f64,
    cfg: &TrainConfig,
) -> M {
    let model = optim.step(groups.learning_rates(lr, cfg.text_lr_at(lr)), model, grads);
    model.clamped(cfg.logit_scale_max)
}

/// What one step of [`check_steps`] reports.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub step: usize,
    pub lr: f64,
    pub text_lr: Option<f64>,
    pub loss: f64,
    pub loss_global: f64,
    pub loss_region: f64,
    pub grad_norm: f64,
    /// The watched parameters after the step, in HF layout, row-major.
    pub params: BTreeMap<String, Vec<f32>>,
}

/// `steps` updates on the same batch with the training config's optimizer, groups,
/// schedule (over `max_steps`, else `steps`), clipping and clamp; `watch` names the
/// parameters (HF names) to report after each step.
pub fn check_steps(
    model: FgClip,
    batch: &VideoBatch,
    cfg: &TrainConfig,
    steps: usize,
    watch: &[String],
) -> Result<Vec<StepReport>> {
    cfg.validate()?;
    let names: Vec<String> = model
        .named_params()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    if let Some(missing) = watch.iter().find(|w| !names.contains(w)) {
        anyhow::bail!("the model has no parameter `{missing}`");
    }
    let total = cfg.max_steps.unwrap_or(steps);
    let (groups, mut optim) = cfg.optimizer(&model);
    let mut model = model;
    let mut out = Vec::with_capacity(steps);
    for step in 0..steps {
        let lr = cfg.lr_at(step, total);
        let terms = model.loss(batch, &cfg.loss_weights());
        let loss = scalar(terms.loss.clone())?;
        let (loss_global, loss_region) = (
            scalar(terms.loss_global.clone())?,
            scalar(terms.loss_region.clone())?,
        );
        let (grads, grad_norm) =
            match gradients(&model, terms.loss, loss, cfg.grad_clip_norm, &SingleProcess)? {
                Ok(g) => g,
                Err(what) => anyhow::bail!("non-finite {what} at step {step}"),
            };
        model = apply(model, &mut optim, &groups, grads, lr, cfg);
        // The watched parameters in HF layout, through the checkpoint writer's conversion.
        let params = crate::train::model_arrays(&model, false)?
            .into_iter()
            .filter(|(name, _)| watch.contains(name))
            .filter_map(|(name, a)| match a {
                crate::checkpoint::safetensors_io::Array::F32 { data, .. } => Some((name, data)),
                _ => None,
            })
            .collect();
        out.push(StepReport {
            step,
            lr,
            text_lr: cfg.text_lr_at(lr),
            loss,
            loss_global,
            loss_region,
            grad_norm,
            params,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use burn::tensor::TensorData;
    use fgclip_core::{RandomInit, Weights};

    fn tiny() -> FgClip {
        let config = crate::presets::resolve("tiny").unwrap();
        let device = Device::flex();
        FgClip::load(
            &Weights::new(&RandomInit::new(&config, 0), &device),
            &config,
            fgclip_core::fgclip::Scales::fresh(),
        )
        .unwrap()
    }

    /// Gradients 3 (logit_scale), 4 (logit_scale_region) and [[12, 0], [0, 0]] (the first
    /// two columns of the visual projection's first row): global norm 13, as
    /// torch.nn.utils.clip_grad_norm_ computes it.
    fn grads(model: &FgClip) -> GradientsParams {
        let device = Device::flex();
        let mut g = GradientsParams::new();
        g.register(
            model.clip.logit_scale.id,
            Tensor::<1>::from_data(TensorData::new(vec![3.0f32], [1]), &device),
        );
        g.register(
            model.logit_scale_region.id,
            Tensor::<1>::from_data(TensorData::new(vec![4.0f32], [1]), &device),
        );
        g.register(
            model.clip.visual_projection.weight.id,
            Tensor::<2>::from_data(
                TensorData::new(vec![12.0f32, 0.0, 0.0, 0.0], [2, 2]),
                &device,
            ),
        );
        g
    }

    fn values<const D: usize>(g: &GradientsParams, id: burn::module::ParamId) -> Vec<f32> {
        host_f32(g.get::<D>(id).unwrap()).unwrap()
    }

    #[test]
    fn gradients_are_clipped_by_their_global_norm() {
        let model = tiny();
        let mut g = grads(&model);
        let norm = clip_grad_norm(&model, &mut g, Some(1.0)).unwrap();
        assert!((norm - 13.0).abs() < 1e-5, "{norm}");
        let coef = (1.0 / (13.0 + 1e-6)) as f32;
        assert_eq!(values::<1>(&g, model.clip.logit_scale.id), [3.0 * coef]);
        assert_eq!(values::<1>(&g, model.logit_scale_region.id), [4.0 * coef]);
        let w = values::<2>(&g, model.clip.visual_projection.weight.id);
        assert_eq!(w, [12.0 * coef, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn gradients_under_the_limit_or_without_one_are_unchanged() {
        let model = tiny();
        for limit in [Some(13.5), None] {
            let mut g = grads(&model);
            let norm = clip_grad_norm(&model, &mut g, limit).unwrap();
            assert!((norm - 13.0).abs() < 1e-5, "{norm}");
            assert_eq!(values::<1>(&g, model.clip.logit_scale.id), [3.0]);
            assert_eq!(values::<1>(&g, model.logit_scale_region.id), [4.0]);
        }
        let mut empty = GradientsParams::new();
        assert_eq!(clip_grad_norm(&model, &mut empty, Some(1.0)).unwrap(), 0.0);
    }
}
