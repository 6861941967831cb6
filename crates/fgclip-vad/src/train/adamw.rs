//! AdamW as burn's `AdamW` computes it, in one multi-threaded pass per parameter on the CPU.
//!
//! Why: burn-flex runs element-wise operations on one thread, and burn's AdamW is fourteen of
//! them per parameter (moments, bias corrections, square root, decay, update), each reading
//! and writing the whole tensor: about 0.5 s of a ViT-B/32 step on two cores with both
//! cores but one idle (BENCHMARKS.md). Here each parameter is one pass over (param, grad,
//! m, v), split across rayon's threads, with the same f32 operations in the same order, so
//! the result is bit for bit burn's (tested). The state is burn's `AdamWState`, so
//! checkpoints are unchanged. Other devices (CUDA), other dtypes and the AMSGrad / cautious
//! variants take burn's own AdamW.

use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;

/// Elements per rayon task; small tensors (biases, norms) run in one task.
const CHUNK: usize = 1 << 15;

/// burn's AdamW (same configuration, state and results), fused on the CPU backend.
#[derive(Clone)]
pub struct FusedAdamW {
    burn: AdamW,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    /// AMSGrad, cautious weight decay or an unreadable config: burn's own step always.
    unfused: bool,
}

impl FusedAdamW {
    pub fn new(config: &AdamWConfig) -> Self {
        // burn's config keeps its fields private; its JSON form names them.
        let json = serde_json::to_value(config).unwrap_or_default();
        let f = |key: &str| json.get(key).and_then(serde_json::Value::as_f64);
        let flag = |key: &str| json.get(key).and_then(serde_json::Value::as_bool);
        let fields = (f("beta_1"), f("beta_2"), f("epsilon"), f("weight_decay"));
        let plain = flag("amsgrad") == Some(false) && flag("cautious_weight_decay") == Some(false);
        let (beta_1, beta_2, epsilon, weight_decay, unfused) = match fields {
            (Some(b1), Some(b2), Some(e), Some(w)) if plain => (b1, b2, e, w, false),
            _ => (0.0, 0.0, 0.0, 0.0, true),
        };
        Self {
            burn: config.build(),
            beta_1: beta_1 as f32,
            beta_2: beta_2 as f32,
            epsilon: epsilon as f32,
            weight_decay: weight_decay as f32,
            unfused,
        }
    }
}

fn on_cpu(device: &Device) -> bool {
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        burn::backend::DispatchDevice::Flex(_)
    )
}

/// The values of an f32 CPU tensor (checked by the caller); moved out without a copy when
/// the tensor owns a contiguous buffer alone.
fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec::<f32>()
        .expect("the fused AdamW takes f32 tensors only (checked before)")
}

/// One element of burn's AdamW step, in burn's order of f32 operations.
struct Step {
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    /// `1 - lr · weight_decay` (None: no decay, the parameter as it is).
    keep: Option<f32>,
    lr: f32,
}

impl Step {
    #[inline(always)]
    fn apply(&self, p: &mut f32, g: f32, m: &mut f32, v: &mut f32, first: bool) {
        if first {
            *m = g * self.factor_1;
            *v = (g * g) * self.factor_2;
        } else {
            *m = *m * self.beta_1 + g * self.factor_1;
            *v = *v * self.beta_2 + (g * g) * self.factor_2;
        }
        let m_hat = *m / self.correction_1;
        let v_hat = *v / self.correction_2;
        let delta = m_hat / (v_hat.sqrt() + self.epsilon);
        let decayed = match self.keep {
            Some(k) => *p * k,
            None => *p,
        };
        *p = decayed - delta * self.lr;
    }
}

fgclip_core::multiversion!(
    adamw_chunk,
    (p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step: &Step, first: bool),
    {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            step.apply(p, g, m, v, first);
        }
    }
);

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let fusable = !self.unfused
            && on_cpu(&device)
            && tensor.dtype() == DType::F32
            && grad.dtype() == DType::F32
            && state.as_ref().is_none_or(|s| {
                s.momentum.moment_1.dtype() == DType::F32
                    && s.momentum.moment_2.dtype() == DType::F32
                    && s.momentum.max_moment_2.is_none()
            });
        if !fusable {
            return self.burn.step(lr, tensor, grad, state);
        }
        let shape = tensor.shape();
        let n = shape.num_elements();
        let (time, moments) = match state {
            Some(s) => (
                s.momentum.time + 1,
                Some((s.momentum.moment_1, s.momentum.moment_2)),
            ),
            None => (1, None),
        };
        let first = moments.is_none();
        let mut p = values(tensor);
        let g = values(grad);
        let (mut m, mut v) = match moments {
            Some((m1, m2)) => (values(m1), values(m2)),
            None => (vec![0f32; n], vec![0f32; n]),
        };
        let decay_rate = lr * f64::from(self.weight_decay);
        let t = time as i32;
        let step = Step {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            factor_1: 1.0 - self.beta_1,
            factor_2: 1.0 - self.beta_2,
            correction_1: 1f32 - self.beta_1.powi(t),
            correction_2: 1f32 - self.beta_2.powi(t),
            epsilon: self.epsilon,
            keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            lr: lr as f32,
        };
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| adamw_chunk(p, g, m, v, &step, first));
        let back = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, shape.clone()), &device);
        let state = AdamWState {
            momentum: AdaptiveMomentumState {
                time,
                moment_1: back(m),
                moment_2: back(v),
                max_moment_2: None,
            },
        };
        (back(p), Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <AdamW as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn bits<const D: usize>(t: &Tensor<D>) -> Vec<u32> {
        let v: Vec<f32> = t.to_data().try_to_vec().unwrap_or_default();
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Four steps at changing learning rates, with fresh gradients each step, against
    /// burn's AdamW: the same bits in the parameter and both moments.
    fn same_as_burn<const D: usize>(shape: [usize; D], config: &AdamWConfig) {
        let device = Device::default();
        let fused = FusedAdamW::new(config);
        assert!(!fused.unfused, "the config must take the fused path");
        assert!(on_cpu(&device), "the tests run on the CPU backend");
        let reference = config.build();
        let mut p_f = Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let mut p_r = p_f.clone() + 0.0;
        let (mut s_f, mut s_r) = (None, None);
        for (i, lr) in [1e-3, 5e-4, 2e-2, 1e-5].into_iter().enumerate() {
            let mut g = Tensor::<D>::random(shape, Distribution::Normal(0.0, 0.1), &device);
            if i == 1 {
                // Exact zeros (and negative zeros) in the gradient, as a frozen row gives.
                g = g.clamp_min(0.0) * -1.0;
            }
            let (a, sa) = fused.step(lr, p_f, g.clone(), s_f);
            let (b, sb) = reference.step(lr, p_r, g, s_r);
            assert_eq!(bits(&a), bits(&b), "parameter after step {i}");
            let (ma, mb) = (
                sa.as_ref().map(|s| &s.momentum),
                sb.as_ref().map(|s| &s.momentum),
            );
            let (Some(ma), Some(mb)) = (ma, mb) else {
                panic!("both optimizers keep a state");
            };
            assert_eq!(ma.time, mb.time);
            assert_eq!(bits(&ma.moment_1), bits(&mb.moment_1), "m after step {i}");
            assert_eq!(bits(&ma.moment_2), bits(&mb.moment_2), "v after step {i}");
            (p_f, p_r, s_f, s_r) = (a, b, sa, sb);
        }
    }

    #[test]
    fn matches_burns_adamw_bit_for_bit() {
        // Several rayon chunks with a ragged tail, with and without weight decay.
        let decay = AdamWConfig::new()
            .with_weight_decay(0.05)
            .with_epsilon(1e-6);
        same_as_burn([37, 2001], &decay);
        same_as_burn([5], &decay);
        let plain = AdamWConfig::new()
            .with_weight_decay(0.0)
            .with_beta_1(0.8)
            .with_beta_2(0.98);
        same_as_burn([3, 4, 5000], &plain);
    }

    #[test]
    fn amsgrad_takes_burns_step() {
        let fused = FusedAdamW::new(&AdamWConfig::new().with_amsgrad(true));
        assert!(fused.unfused);
    }
}
