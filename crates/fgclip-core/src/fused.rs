//! CLIP's QuickGELU, `x · σ(1.702 x)`, as one fused operation on burn's CPU backend; the
//! biased linear layer in [`linear`].
//!
//! Why: burn-flex runs element-wise operations on one thread, one scalar `exp` at a time, so
//! the three operations of the composed form (scale, sigmoid, multiply) and the five of its
//! backward pass were half of the single-threaded time of a ViT-B/32 forward on two cores
//! (profile in BENCHMARKS.md). Here each direction is one vectorised pass over the data,
//! split across rayon's threads, with a branch-free `exp` (Cephes' polynomial): within
//! 4 ulp of QuickGELU computed in f64, the same bits on every x86-64 (tested).
//!
//! Other backends (CUDA) and other dtypes (bf16 autocast) take the composed form, which their
//! own kernels or fusion already handle.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::tensor::{DType, Tensor};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

pub mod attention;
mod gelu_tanh;
pub mod layer_norm;
pub mod linear;
mod matrix;
#[cfg(test)]
pub(crate) mod testing;
pub use attention::attention;
pub use layer_norm::layer_norm;
pub use linear::linear;

/// QuickGELU's constant (OpenAI CLIP).
pub const QUICK_GELU_ALPHA: f32 = 1.702;

/// Elements per rayon task: large enough that scheduling costs nothing next to `exp`.
const CHUNK: usize = 1 << 14;

/// `x · σ(1.702 x)`; fused and multi-threaded on the CPU backend for f32.
pub fn quick_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if runs_on_flex(&x) && x.dtype() == DType::F32 {
        Tensor::from_dispatch(<Dispatch as FusedOps>::quick_gelu(x.into_dispatch()))
    } else {
        quick_gelu_composed_tensor(x)
    }
}

/// The composed form on the high-level API (the reference the fused kernel matches).
pub fn quick_gelu_composed_tensor<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clone() * burn::tensor::activation::sigmoid(x * QUICK_GELU_ALPHA)
}

/// The tanh-approximated GELU; fused and multi-threaded on the CPU backend for f32
/// (`fused/gelu_tanh.rs`).
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if runs_on_flex(&x) && x.dtype() == DType::F32 {
        Tensor::from_dispatch(<Dispatch as FusedOps>::gelu_tanh(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu_approximate(x)
    }
}

pub(crate) fn runs_on_flex<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(
        x.device().without_autodiff().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Fused operations; the default bodies are the composed forms.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// `x · σ(1.702 x)`.
    fn quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        composed::<Self>(x)
    }

    /// The input gradient of [`FusedOps::quick_gelu`] for the output gradient `grad`, as
    /// autodiff forms it for the composed form: `g·s + ((g·x)·s·(1 − s))·1.702`.
    fn quick_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_backward::<Self>(x, grad)
    }

    /// The tanh-approximated GELU (see `fused/gelu_tanh.rs`).
    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_tanh::composed::<Self>(x)
    }

    /// Its input gradient for the output gradient `grad`.
    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_tanh::composed_backward::<Self>(x, grad)
    }

    /// `x · W + b` over the last dimension of `x` (`W`: [in, out], `b`: [out]).
    fn linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::linear(x, weight, Some(bias))
    }

    /// The input gradient of [`FusedOps::linear_bias`]: `grad · Wᵀ`.
    fn linear_x_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_x_backward(weight, grad)
    }

    /// The weight gradient of [`FusedOps::linear_bias`]: `xᵀ · grad` over all rows.
    fn linear_weight_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_weight_backward(x, grad)
    }

    /// The bias gradient of [`FusedOps::linear_bias`]: `grad` summed over all rows.
    fn linear_bias_grad(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_bias_backward(grad)
    }

    /// Unmasked scaled dot-product attention, `softmax(q kᵀ / √d) v`, on (B, H, L, d).
    fn attention_unmasked(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::attention(q, k, v, None, None, attention::OPTIONS)
    }

    /// The gradients of [`FusedOps::attention_unmasked`] for the output gradient `grad`,
    /// stacked as (3, B, H, L, d): q's, k's, v's.
    fn attention_unmasked_grads(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        attention::composed_grads::<Self>(q, k, v, grad)
    }

    /// LayerNorm over the last dimension with scale and shift.
    fn layer_norm_affine(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// The gradients of [`FusedOps::layer_norm_affine`] for the output gradient `grad`,
    /// flat: x's (all of x's values), gamma's (d), beta's (d).
    fn layer_norm_grads(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        layer_norm::composed_grads::<Self>(x, gamma, grad, epsilon)
    }
}

/// e^x without branches or library calls, so that loops over it vectorise: Cephes' `expf`
/// (range reduction by ln 2 in two parts, degree-5 polynomial, within 2 ulp over the
/// clamped range). Plain multiplies and adds, no FMA, so every instruction set gives the
/// same bits.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    // e^88.3 is finite and e^-87 normal: 2^n below stays a normal float (NaN stays NaN).
    let x = x.clamp(-87.0, 88.3);
    // Round to nearest with the 1.5 · 2^23 trick (no `round` call; |x · log2 e| < 2^22).
    const ROUNDER: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUNDER) - ROUNDER;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

#[inline(always)]
fn quick_gelu_f32(x: f32) -> f32 {
    x * sigmoid(x * QUICK_GELU_ALPHA)
}

/// `g·s + ((g·x)·s·(1 − s))·1.702`, the order autodiff uses for the composed form.
#[inline(always)]
fn quick_gelu_backward_f32(x: f32, g: f32) -> f32 {
    let s = sigmoid(x * QUICK_GELU_ALPHA);
    g * s + (g * x) * s * (1.0 - s) * QUICK_GELU_ALPHA
}

/// The kernels over one chunk, compiled for AVX-512 and for AVX2 besides the baseline and
/// picked at run time (the binary still runs on any x86-64; the same bits on each, as long
/// as the body has no `mul_add`). Exported for the application's fused optimizer.
#[doc(hidden)]
#[macro_export]
macro_rules! multiversion {
    ($name:ident, ($($arg:ident: $ty:ty),*), $body:block) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) $body
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $body
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the function was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body
        }
    };
}

multiversion!(quick_gelu_chunk, (xs: &mut [f32]), {
    for v in xs.iter_mut() {
        *v = quick_gelu_f32(*v);
    }
});

multiversion!(quick_gelu_backward_chunk, (xs: &[f32], gs: &mut [f32]), {
    for (g, &x) in gs.iter_mut().zip(xs) {
        *g = quick_gelu_backward_f32(x, *g);
    }
});

/// The f32 values of a tensor in logical (row-major) order.
pub(crate) fn contiguous_f32(x: FlexTensor) -> FlexTensor {
    if x.is_contiguous() && x.layout().start_offset() == 0 {
        x
    } else {
        x.to_contiguous()
    }
}

/// A contiguous tensor this operation may overwrite: the input itself when nothing else
/// holds it, else a copy.
fn owned_f32(x: FlexTensor) -> FlexTensor {
    let x = contiguous_f32(x);
    if x.is_unique() {
        return x;
    }
    let n = x.layout().num_elements();
    let values: Vec<f32> = x.storage::<f32>()[..n].to_vec();
    FlexTensor::new(
        burn::tensor::Bytes::from_elems(values),
        Layout::contiguous(x.layout().shape().clone()),
        DType::F32,
    )
}

/// An element-wise f32 kernel over `x`, chunk by chunk on rayon's threads (in place when
/// nothing else holds `x`).
pub(crate) fn map_f32(x: FlexTensor, chunk: fn(&mut [f32])) -> FlexTensor {
    let mut out = owned_f32(x);
    let n = out.layout().num_elements();
    let values: &mut [f32] = out.storage_mut();
    values[..n].par_chunks_mut(CHUNK).for_each(chunk);
    out
}

/// An element-wise input gradient: `chunk(x, grad)` overwrites grad's chunk.
pub(crate) fn map_grad_f32(
    x: FlexTensor,
    grad: FlexTensor,
    chunk: fn(&[f32], &mut [f32]),
) -> FlexTensor {
    let x = contiguous_f32(x);
    let mut out = owned_f32(grad);
    let n = out.layout().num_elements();
    let xs: &[f32] = &x.storage()[..n];
    let gs: &mut [f32] = out.storage_mut();
    gs[..n]
        .par_chunks_mut(CHUNK)
        .zip(xs.par_chunks(CHUNK))
        .for_each(|(g, x)| chunk(x, g));
    out
}

impl FusedOps for Flex {
    fn linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        linear::flex_forward(x, weight, bias)
    }

    fn linear_x_grad(grad: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        linear::flex_x_grad(grad, weight)
    }

    fn linear_weight_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        linear::flex_weight_grad(x, grad)
    }

    fn linear_bias_grad(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        linear::flex_bias_grad(grad)
    }

    fn attention_unmasked(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        attention::flex_forward(q, k, v)
    }

    fn attention_unmasked_grads(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        attention::flex_grads(q, k, v, grad)
    }

    fn layer_norm_grads(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        layer_norm::flex_grads(x, gamma, grad, epsilon)
    }

    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_tanh::flex_forward(x)
    }

    fn gelu_tanh_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        gelu_tanh::flex_backward(x, grad)
    }

    fn quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return composed::<Self>(x);
        }
        map_f32(x, quick_gelu_chunk)
    }

    fn quick_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return composed_backward::<Self>(x, grad);
        }
        map_grad_f32(x, grad, quick_gelu_backward_chunk)
    }
}

fn composed<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let s = B::sigmoid(B::float_mul_scalar(x.clone(), QUICK_GELU_ALPHA.into()));
    B::float_mul(x, s)
}

fn composed_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let s = B::sigmoid(B::float_mul_scalar(x.clone(), QUICK_GELU_ALPHA.into()));
    let through_x = B::float_mul(grad.clone(), s.clone());
    let through_s = B::sigmoid_backward(s, B::float_mul(grad, x));
    B::float_add(
        through_x,
        B::float_mul_scalar(through_s, QUICK_GELU_ALPHA.into()),
    )
}

#[derive(Debug)]
struct QuickGeluBackward;

impl<B: Backend + FusedOps> Backward<B, 1> for QuickGeluBackward {
    type State = NodeId;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let input = checkpointer.retrieve_node_output(ops.state);
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::quick_gelu_backward(input, grad)
        });
    }
}

impl<B: Backend + FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn linear_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        linear::autodiff_forward::<B, C>(x, weight, bias)
    }

    fn attention_unmasked(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        attention::autodiff_forward::<B, C>(q, k, v)
    }

    fn layer_norm_affine(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        layer_norm::autodiff_forward::<B, C>(x, gamma, beta, epsilon)
    }

    fn gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match gelu_tanh::GeluTanhBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::gelu_tanh(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_tanh(x.into_primitive())),
        }
    }

    fn quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match QuickGeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::quick_gelu(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::quick_gelu(x.into_primitive())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// Values over QuickGELU's whole range, including both sigmoid branches, exp's overflow
    /// region and signed zeros; more than one rayon chunk.
    fn values(n: usize) -> Vec<f32> {
        let mut v = testing::xorshift(n, 0x9E37_79B9, 24.0, 0.0);
        v[..6].copy_from_slice(&[0.0, -0.0, 90.0, -90.0, 1e-30, -1e-30]);
        v
    }

    fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
        t.into_data()
            .try_to_vec::<f32>()
            .expect("f32 tensor")
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    const SHAPE: [usize; 3] = [3, 41, 300];

    fn input(device: &Device) -> Tensor<3> {
        let n = SHAPE.iter().product();
        Tensor::from_data(TensorData::new(values(n), SHAPE), device)
    }

    /// QuickGELU and its derivative in f64 (the independent reference), from the f32
    /// product 1.702·x that every f32 implementation starts from (its rounding alone moves
    /// σ by up to |1.702 x|·2⁻²⁴ relative).
    fn reference(x: f32) -> (f64, f64) {
        let t = (x * QUICK_GELU_ALPHA) as f64;
        let x = x as f64;
        let s = 1.0 / (1.0 + (-t).exp());
        (x * s, s + 1.702 * x * s * (1.0 - s))
    }

    fn assert_close(got: f32, want: f64, what: &str, x: f32) {
        let tol = 4.0 * f32::EPSILON as f64 * want.abs().max(1e-3) + 1e-37;
        assert!(
            (got as f64 - want).abs() <= tol,
            "{what} at x = {x}: {got} vs {want}"
        );
    }

    #[test]
    fn forward_matches_quick_gelu_in_f64() {
        let device = Device::flex();
        let x = input(&device);
        let xs = x.clone().into_data().try_to_vec::<f32>().expect("f32");
        let fused = quick_gelu(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        for (&x, &y) in xs.iter().zip(&fused) {
            assert_close(y, reference(x).0, "quick_gelu", x);
        }
        // Shared input (copied first), owned input (in place) and a transposed view (made
        // contiguous first, result in logical order) give the same values.
        assert_eq!(
            bits(quick_gelu(input(&device))),
            bits(quick_gelu(x.clone()))
        );
        let t = x.clone().swap_dims(1, 2);
        assert_eq!(bits(quick_gelu(t)), bits(quick_gelu(x).swap_dims(1, 2)));
        // 1 · σ(1.702) = 0.845795…
        let one = Tensor::<1>::from_floats([1.0], &device);
        let v = quick_gelu(one)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32")[0];
        assert!((v - 0.845_795_3).abs() < 1e-6, "{v}");
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        // The dispatched chunk kernel (AVX-512 or AVX2 where the CPU has them) against the
        // element function called one value at a time.
        let xs = values(5000);
        let mut fast = xs.clone();
        quick_gelu_chunk(&mut fast);
        let one_by_one: Vec<f32> = xs
            .iter()
            .map(|&x| std::hint::black_box(quick_gelu_f32(x)))
            .collect();
        assert_eq!(
            fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            one_by_one.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let mut grads: Vec<f32> = xs.iter().rev().copied().collect();
        let want: Vec<u32> = xs
            .iter()
            .zip(&grads)
            .map(|(&x, &g)| std::hint::black_box(quick_gelu_backward_f32(x, g)).to_bits())
            .collect();
        quick_gelu_backward_chunk(&xs, &mut grads);
        assert_eq!(grads.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want);
        // NaN propagates, as in the composed form (and PyTorch).
        let mut nan = vec![f32::NAN; 40];
        quick_gelu_chunk(&mut nan);
        assert!(nan.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn gradient_matches_the_derivative_and_the_composed_form() {
        let device = Device::flex().autodiff();
        let w: Vec<f32> = values(SHAPE.iter().product()).into_iter().rev().collect();
        let weights = Tensor::<3>::from_data(TensorData::new(w.clone(), SHAPE), &device);
        let run = |fused: bool| {
            let x = input(&device).require_grad();
            let y = if fused {
                quick_gelu(x.clone())
            } else {
                quick_gelu_composed_tensor(x.clone())
            };
            let loss = (y * weights.clone()).sum();
            let grads = loss.backward();
            let gx = x.grad(&grads).expect("x has a gradient");
            gx.into_data().try_to_vec::<f32>().expect("f32")
        };
        let fused = run(true);
        let composed = run(false);
        let xs = values(SHAPE.iter().product());
        for i in 0..xs.len() {
            let want = w[i] as f64 * reference(xs[i]).1;
            let tol = 1e-6 * (w[i].abs() as f64).max(1e-3);
            assert!(
                (fused[i] as f64 - want).abs() <= tol,
                "x = {}: {} vs {want}",
                xs[i],
                fused[i]
            );
            assert!(
                (fused[i] - composed[i]).abs() as f64 <= tol,
                "x = {}",
                xs[i]
            );
        }
        // Not trivially zero: the gradient has both signs.
        assert!(fused.iter().any(|v| *v > 0.1) && fused.iter().any(|v| *v < -0.1));
    }
}
