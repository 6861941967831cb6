//! CLIP's QuickGELU, `x · σ(1.702 x)`, as one fused operation on burn's CPU backend.
//!
//! Why: burn-flex runs element-wise operations on one thread, one scalar at a time, so the
//! three operations of the composed form (scale, sigmoid, multiply) and the five of its
//! backward pass were a third of the single-threaded time of a ViT-B/32 forward on two cores
//! (profile in BENCHMARKS.md). Here each direction is one pass over the data, split across
//! rayon's threads. The arithmetic is the composed form's, operation for operation and in the
//! same order, so results are bit-identical to it (tested); only the scheduling changes.
//!
//! Other backends (CUDA) and other dtypes (bf16 autocast) take the composed form, which their
//! own kernels or fusion already handle.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::autodiff::NodeId;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::tensor::{DType, Tensor};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

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

fn runs_on_flex<const D: usize>(x: &Tensor<D>) -> bool {
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
}

/// burn-flex's sigmoid, as written there (the branch keeps `exp` from overflowing).
#[inline]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[inline]
fn quick_gelu_f32(x: f32) -> f32 {
    x * sigmoid(x * QUICK_GELU_ALPHA)
}

#[inline]
fn quick_gelu_backward_f32(x: f32, g: f32) -> f32 {
    let s = sigmoid(x * QUICK_GELU_ALPHA);
    g * s + (g * x) * s * (1.0 - s) * QUICK_GELU_ALPHA
}

/// The f32 values of a tensor in logical (row-major) order.
fn contiguous_f32(x: FlexTensor) -> FlexTensor {
    if x.is_contiguous() && x.layout().start_offset() == 0 {
        x
    } else {
        x.to_contiguous()
    }
}

fn new_f32(values: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::new(
        burn::tensor::Bytes::from_elems(values),
        Layout::contiguous(like.layout().shape().clone()),
        DType::F32,
    )
}

impl FusedOps for Flex {
    fn quick_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return composed::<Self>(x);
        }
        let mut x = contiguous_f32(x);
        let n = x.layout().num_elements();
        if x.is_unique() {
            let values: &mut [f32] = x.storage_mut();
            values[..n]
                .par_chunks_mut(CHUNK)
                .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = quick_gelu_f32(*v)));
            return x;
        }
        let src: &[f32] = &x.storage()[..n];
        let mut out = vec![0f32; n];
        out.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(o, i)| {
                o.iter_mut()
                    .zip(i)
                    .for_each(|(o, &v)| *o = quick_gelu_f32(v))
            });
        new_f32(out, &x)
    }

    fn quick_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return composed_backward::<Self>(x, grad);
        }
        let x = contiguous_f32(x);
        let mut grad = contiguous_f32(grad);
        let n = x.layout().num_elements();
        let xs: &[f32] = &x.storage()[..n];
        if grad.is_unique() {
            let gs: &mut [f32] = grad.storage_mut();
            gs[..n]
                .par_chunks_mut(CHUNK)
                .zip(xs.par_chunks(CHUNK))
                .for_each(|(g, x)| {
                    g.iter_mut()
                        .zip(x)
                        .for_each(|(g, &x)| *g = quick_gelu_backward_f32(x, *g))
                });
            return grad;
        }
        let gs: &[f32] = &grad.storage()[..n];
        let mut out = vec![0f32; n];
        out.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK).zip(gs.par_chunks(CHUNK)))
            .for_each(|(o, (x, g))| {
                for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
                    *o = quick_gelu_backward_f32(x, g);
                }
            });
        new_f32(out, &x)
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
        let mut state = 0x9E37_79B9u32;
        let mut v: Vec<f32> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32 - 0.5) * 24.0
            })
            .collect();
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

    #[test]
    fn forward_is_bit_identical_to_the_composed_form() {
        let device = Device::flex();
        let x = input(&device);
        let expected = bits(quick_gelu_composed_tensor(x.clone()));
        // Shared input (the kernel writes a new buffer), owned input (in place) and a
        // transposed view (made contiguous first, result in logical order).
        assert_eq!(bits(quick_gelu(x.clone())), expected);
        assert_eq!(bits(quick_gelu(input(&device))), expected);
        let t = x.clone().swap_dims(1, 2);
        assert_eq!(
            bits(quick_gelu(t.clone())),
            bits(quick_gelu_composed_tensor(t))
        );
        // And it is QuickGELU: 1 · σ(1.702) = 0.845795…
        let one = Tensor::<1>::from_floats([1.0], &device);
        let v = quick_gelu(one).into_data().try_to_vec::<f32>().expect("f32")[0];
        assert!((v - 0.845_795_3).abs() < 1e-6, "{v}");
    }

    #[test]
    fn gradient_is_bit_identical_to_autodiff_of_the_composed_form() {
        let device = Device::flex().autodiff();
        let weights = Tensor::<3>::from_data(
            TensorData::new(
                values(SHAPE.iter().product())
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>(),
                SHAPE,
            ),
            &device,
        );
        let run = |fused: bool| {
            let x = input(&device).require_grad();
            let y = if fused {
                quick_gelu(x.clone())
            } else {
                quick_gelu_composed_tensor(x.clone())
            };
            let loss = (y.clone() * weights.clone()).sum();
            let grads = loss.backward();
            let gx = x.grad(&grads).expect("x has a gradient");
            (bits(y.inner()), bits(gx))
        };
        let (y_fused, g_fused) = run(true);
        let (y_ref, g_ref) = run(false);
        assert_eq!(y_fused, y_ref);
        assert_eq!(g_fused, g_ref);
        // Not trivially equal: the gradient has both signs and is not the input.
        let g: Vec<f32> = g_ref.iter().map(|b| f32::from_bits(*b)).collect();
        assert!(g.iter().any(|v| *v > 0.1) && g.iter().any(|v| *v < -0.1));
    }
}
