//! The tanh-approximated GELU (`gelu_pytorch_tanh`, SigLIP's and FG-CLIP 2's MLPs) as one
//! vectorised multi-threaded pass on the CPU backend, forward and backward, as QuickGELU is
//! fused in the parent module. burn's composed form takes a scalar `powf` and `tanh` per
//! element on one thread: a sixth of an FG-CLIP 2 image forward.
//!
//! `0.5 · x · (1 + tanh(u))` with `u = √(2/π) · (x + 0.044715 x³)` equals `x · σ(2u)`
//! (since `1 + tanh(u) = 2σ(2u)`), which has no cancellation near u = 0 and reuses the
//! branch-free `exp`.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex};
use burn::tensor::DType;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};

use super::{FusedOps, exp_f32, map_f32, map_grad_f32};

/// √(2/π).
const K: f32 = 0.797_884_6;
/// The cubic term's coefficient.
const A: f32 = 0.044_715;

#[inline(always)]
fn sigmoid_2u(x: f32) -> f32 {
    let u = K * (x + A * (x * x * x));
    1.0 / (1.0 + exp_f32(-2.0 * u))
}

#[inline(always)]
pub(super) fn gelu_tanh_f32(x: f32) -> f32 {
    x * sigmoid_2u(x)
}

/// d/dx x·σ(2u) = σ + x·σ(1 − σ)·2√(2/π)(1 + 3a x²), times the output gradient.
#[inline(always)]
pub(super) fn gelu_tanh_backward_f32(x: f32, g: f32) -> f32 {
    let s = sigmoid_2u(x);
    g * (s + x * s * (1.0 - s) * (2.0 * K) * (1.0 + 3.0 * A * (x * x)))
}

crate::multiversion!(gelu_tanh_chunk, (xs: &mut [f32]), {
    for v in xs.iter_mut() {
        *v = gelu_tanh_f32(*v);
    }
});

crate::multiversion!(gelu_tanh_backward_chunk, (xs: &[f32], gs: &mut [f32]), {
    for (g, &x) in gs.iter_mut().zip(xs) {
        *g = gelu_tanh_backward_f32(x, *g);
    }
});

pub(super) fn flex_forward(x: FloatTensor<Flex>) -> FloatTensor<Flex> {
    if x.dtype() != DType::F32 {
        return composed::<Flex>(x);
    }
    map_f32(x, gelu_tanh_chunk)
}

pub(super) fn flex_backward(x: FloatTensor<Flex>, grad: FloatTensor<Flex>) -> FloatTensor<Flex> {
    if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
        return composed_backward::<Flex>(x, grad);
    }
    map_grad_f32(x, grad, gelu_tanh_backward_chunk)
}

/// `x · σ(2u)` from backend operations (other backends and dtypes).
pub(super) fn composed<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let x3 = B::float_mul(B::float_mul(x.clone(), x.clone()), x.clone());
    let u = B::float_add(x.clone(), B::float_mul_scalar(x3, A.into()));
    let s = B::sigmoid(B::float_mul_scalar(u, (2.0 * K).into()));
    B::float_mul(x, s)
}

pub(super) fn composed_backward<B: Backend>(
    x: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let x2 = B::float_mul(x.clone(), x.clone());
    let u = B::float_add(
        x.clone(),
        B::float_mul_scalar(B::float_mul(x2.clone(), x.clone()), A.into()),
    );
    let s = B::sigmoid(B::float_mul_scalar(u, (2.0 * K).into()));
    let one_minus = B::float_add_scalar(B::float_neg(s.clone()), 1.0.into());
    let du = B::float_add_scalar(B::float_mul_scalar(x2, (3.0 * A).into()), 1.0.into());
    let inner = B::float_mul_scalar(
        B::float_mul(B::float_mul(B::float_mul(x, s.clone()), one_minus), du),
        (2.0 * K).into(),
    );
    B::float_mul(grad, B::float_add(s, inner))
}

/// The autodiff node: the input kept, the gradient through [`FusedOps::gelu_tanh_backward`].
#[derive(Debug)]
pub(super) struct GeluTanhBackward;

impl<B: Backend + FusedOps> Backward<B, 1> for GeluTanhBackward {
    type State = NodeId;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let input = checkpointer.retrieve_node_output(ops.state);
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::gelu_tanh_backward(input, grad)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Tensor, TensorData};

    fn values(n: usize) -> Vec<f32> {
        let mut v = super::super::testing::xorshift(n, 0x51ED_2701, 12.0, 0.0);
        v[..6].copy_from_slice(&[0.0, -0.0, 40.0, -40.0, 1e-30, -1e-30]);
        v
    }

    /// PyTorch's formula in f64: 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) and its derivative.
    fn reference(x: f32) -> (f64, f64) {
        let x = x as f64;
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let u = k * (x + 0.044715 * x * x * x);
        let t = u.tanh();
        let y = 0.5 * x * (1.0 + t);
        let dy = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
        (y, dy)
    }

    #[test]
    fn forward_and_backward_match_the_formula_in_f64() {
        let xs = values(70_000);
        let device = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [70, 1000]), &device);
        let y = crate::fused::gelu_tanh(x)
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let mut g: Vec<f32> = xs.iter().map(|_| 1.0).collect();
        gelu_tanh_backward_chunk(&xs, &mut g);
        for ((&x, &y), &g) in xs.iter().zip(&y).zip(&g) {
            let (want, dwant) = reference(x);
            // A few ulp of the output, or of x·y' where the f32 rounding of u itself moves it
            // (x ≪ 0: σ(2u) tiny and steep).
            let scale = want.abs().max((x as f64 * dwant).abs()).max(1e-3);
            let tol = 8.0 * f32::EPSILON as f64 * scale + 1e-37;
            assert!((y as f64 - want).abs() <= tol, "x = {x}: {y} vs {want}");
            // f32 leaves 1 − σ a few ulp of σ: for large x the derivative's x·σ(1 − σ)·… term
            // carries ~2e-6 of absolute error (burn's composed form too); it crosses zero near
            // x = −0.75, hence the floor.
            let dtol = 4e-6 * dwant.abs().max(0.1);
            assert!((g as f64 - dwant).abs() <= dtol, "x = {x}: {g} vs {dwant}");
        }
    }

    #[test]
    fn autodiff_gradient_equals_burns_composed_gelu() {
        let device = Device::flex().autodiff();
        let xs = values(4096);
        let w: Vec<f32> = xs.iter().rev().copied().collect();
        let weights = Tensor::<2>::from_data(TensorData::new(w, [64, 64]), &device);
        let run = |fused: bool| {
            let x = Tensor::<2>::from_data(TensorData::new(xs.clone(), [64, 64]), &device)
                .require_grad();
            let y = if fused {
                crate::fused::gelu_tanh(x.clone())
            } else {
                burn::tensor::activation::gelu_approximate(x.clone())
            };
            let grads = (y * weights.clone()).sum().backward();
            x.grad(&grads)
                .expect("grad")
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32")
        };
        let (fused, burn) = (run(true), run(false));
        for (a, b) in fused.iter().zip(&burn) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
        }
        assert!(fused.iter().any(|v| *v > 0.1) && fused.iter().any(|v| *v < -0.1));
    }
}
