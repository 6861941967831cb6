//! The biased linear layer `x · W + b` on burn's CPU backend, forward and backward, straight
//! on gemm (the matmul library burn-flex itself calls).
//!
//! Why: burn-flex allocates every matmul output as a zero-filled byte vector that it then
//! copies into an aligned buffer (`FlexTensor::empty` → `Bytes::from_bytes_vec`), and adds
//! the bias in a second pass: three serial passes over each output while the other core
//! waits, about 40 % of the single-threaded time of a ViT-B/32 training step on two cores
//! (profile in BENCHMARKS.md). Here the output is written once: rows pre-filled with the
//! bias in parallel, then gemm accumulates `x · W` into them; the backward products read
//! their transposed operands through strides (no copies), and the bias gradient is summed
//! over fixed row blocks in a fixed order (deterministic). Other dtypes and backends take
//! burn's own `linear`.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex};
use burn::tensor::{DType, Shape, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Rows per task of the bias fill and the bias-gradient sums.
const ROW_BLOCK: usize = 64;

use super::matrix::{Operand, gemm_into, product, product_in_column_bands, tensor};
use super::{FusedOps, contiguous_f32, runs_on_flex};

/// `x · W + b` over the last dimension of `x` (`weight`: [in, out] as burn's `Linear`
/// stores it). Fused on the CPU backend for f32 with a bias; burn's `linear` otherwise.
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    match bias {
        Some(b)
            if runs_on_flex(&x)
                && x.dtype() == DType::F32
                && weight.dtype() == DType::F32
                && b.dtype() == DType::F32 =>
        {
            Tensor::from_dispatch(<Dispatch as FusedOps>::linear_bias(
                x.into_dispatch(),
                weight.into_dispatch(),
                b.into_dispatch(),
            ))
        }
        bias => crate::gemm::linear(x, weight, bias),
    }
}

/// The size of the last dimension (None for a scalar).
fn last_dim(t: &FlexTensor) -> Option<usize> {
    let shape = t.layout().shape();
    shape.num_dims().checked_sub(1).map(|i| shape[i])
}

fn all_f32(ts: &[&FlexTensor]) -> bool {
    ts.iter().all(|t| t.dtype() == DType::F32)
}

/// The leading dimensions of `shape` with the last one replaced by `last`.
fn with_last(shape: &Shape, last: usize) -> Shape {
    let mut dims: Vec<usize> = shape.iter().copied().collect();
    if let Some(l) = dims.last_mut() {
        *l = last;
    }
    Shape::from(dims)
}

pub(super) fn flex_forward(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
    if !all_f32(&[&x, &weight, &bias]) {
        return <Flex as ModuleOps<Flex>>::linear(x, weight, Some(bias));
    }
    let (d_in, d_out) = (weight.layout().shape()[0], weight.layout().shape()[1]);
    if last_dim(&x) != Some(d_in) || bias.layout().num_elements() != d_out {
        // burn's own checks and messages.
        return <Flex as ModuleOps<Flex>>::linear(x, weight, Some(bias));
    }
    let x = contiguous_f32(x);
    let bias = contiguous_f32(bias);
    let rows = x.layout().num_elements() / d_in.max(1);
    let b: &[f32] = &bias.storage()[..d_out];
    let mut out: Vec<f32> = Vec::with_capacity(rows * d_out);
    out.spare_capacity_mut()[..rows * d_out]
        .par_chunks_mut(ROW_BLOCK * d_out.max(1))
        .for_each(|block| {
            for row in block.chunks_mut(d_out.max(1)) {
                for (dst, &v) in row.iter_mut().zip(b) {
                    dst.write(v);
                }
            }
        });
    // SAFETY: every one of the rows·d_out values was written above.
    unsafe { out.set_len(rows * d_out) };
    if d_in > 0 && rows > 0 {
        let xs: &[f32] = x.storage();
        // SAFETY: out is rows × d_out; x is rows × d_in contiguous; weight is d_in × d_out.
        unsafe {
            gemm_into(
                out.as_mut_ptr(),
                d_out,
                (rows, d_out, d_in),
                Operand::rows(xs, d_in),
                Operand::of(&weight),
                (true, 1.0),
            );
        }
    }
    tensor(out, with_last(x.layout().shape(), d_out))
}

pub(super) fn flex_x_grad(grad: FlexTensor, weight: FlexTensor) -> FlexTensor {
    if !all_f32(&[&grad, &weight]) {
        return <Flex as ModuleOps<Flex>>::linear_x_backward(weight, grad);
    }
    let (d_in, d_out) = (weight.layout().shape()[0], weight.layout().shape()[1]);
    if last_dim(&grad) != Some(d_out) {
        return <Flex as ModuleOps<Flex>>::linear_x_backward(weight, grad);
    }
    let grad = contiguous_f32(grad);
    let rows = grad.layout().num_elements() / d_out.max(1);
    let gs: &[f32] = grad.storage();
    let out = product_in_column_bands(
        rows,
        d_in,
        d_out,
        Operand::rows(gs, d_out),
        Operand::of(&weight).transposed(),
    );
    tensor(out, with_last(grad.layout().shape(), d_in))
}

pub(super) fn flex_weight_grad(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
    if !all_f32(&[&x, &grad]) {
        return <Flex as ModuleOps<Flex>>::linear_weight_backward(x, grad);
    }
    let rows_of = |t: &FlexTensor| last_dim(t).map(|d| t.layout().num_elements() / d.max(1));
    if rows_of(&x).is_none() || rows_of(&x) != rows_of(&grad) {
        return <Flex as ModuleOps<Flex>>::linear_weight_backward(x, grad);
    }
    let x = contiguous_f32(x);
    let grad = contiguous_f32(grad);
    let shape = x.layout().shape();
    let d_in = shape[shape.num_dims() - 1];
    let gshape = grad.layout().shape();
    let d_out = gshape[gshape.num_dims() - 1];
    let rows = x.layout().num_elements() / d_in.max(1);
    let out = product(
        d_in,
        d_out,
        rows,
        Operand::rows(x.storage(), d_in).transposed(),
        Operand::rows(grad.storage(), d_out),
    );
    tensor(out, Shape::new([d_in, d_out]))
}

pub(super) fn flex_bias_grad(grad: FlexTensor) -> FlexTensor {
    if !all_f32(&[&grad]) || last_dim(&grad).is_none() {
        return <Flex as ModuleOps<Flex>>::linear_bias_backward(grad);
    }
    let grad = contiguous_f32(grad);
    let gshape = grad.layout().shape();
    let d_out = gshape[gshape.num_dims() - 1];
    let n = grad.layout().num_elements();
    let gs: &[f32] = &grad.storage()[..n];
    // Partial sums over fixed blocks of rows, then the blocks in order: the same bits
    // whatever the threads do.
    let partials: Vec<Vec<f32>> = gs
        .par_chunks(ROW_BLOCK * d_out.max(1))
        .map(|block| {
            let mut acc = vec![0f32; d_out];
            for row in block.chunks(d_out.max(1)) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
            acc
        })
        .collect();
    let mut sum = vec![0f32; d_out];
    for p in &partials {
        for (s, &v) in sum.iter_mut().zip(p) {
            *s += v;
        }
    }
    tensor(sum, Shape::new([d_out]))
}

#[derive(Debug)]
struct LinearBackward;

impl<B: Backend + FusedOps> Backward<B, 3> for LinearBackward {
    /// The input and the weight, as checkpointed nodes.
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (x_id, w_id) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_id);
        let w: FloatTensor<B> = checkpointer.retrieve_node_output(w_id);
        let grad = grads.consume::<B>(&ops.node);
        let [x_node, w_node, b_node] = ops.parents;
        if let Some(node) = b_node {
            grads.register::<B>(node.id, B::linear_bias_grad(grad.clone()));
        }
        if let Some(node) = w_node {
            grads.register::<B>(node.id, B::linear_weight_grad(x, grad.clone()));
        }
        if let Some(node) = x_node {
            grads.register::<B>(node.id, B::linear_x_grad(grad, w));
        }
    }
}

pub(super) fn autodiff_forward<B: Backend + FusedOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    match LinearBackward
        .prepare::<C>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&x), prep.checkpoint(&weight));
            prep.finish(
                state,
                B::linear_bias(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                ),
            )
        }
        OpsKind::UnTracked(prep) => prep.finish(B::linear_bias(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    use crate::fused::testing::host;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        crate::fused::testing::xorshift(n, seed, 1.0, 0.0)
    }

    fn assert_close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    /// Forward and the three gradients of `sum(linear(x, W, b) · R)` against the same
    /// sums in f64, for x of shape [2, 131, 70] (rows beyond one block, ragged), W given
    /// contiguous and as a transposed view.
    #[test]
    fn forward_and_gradients_match_f64() {
        let device = Device::flex().autodiff();
        let (a, r, d_in, d_out) = (2usize, 131usize, 70usize, 45usize);
        let rows = a * r;
        let xv = values(rows * d_in, 7);
        let wv = values(d_in * d_out, 11);
        let bv = values(d_out, 13);
        let rv = values(rows * d_out, 17);
        for transposed_weight in [false, true] {
            let x = Tensor::<3>::from_data(TensorData::new(xv.clone(), [a, r, d_in]), &device)
                .require_grad();
            let (leaf, w) = if transposed_weight {
                // The same W stored as its transpose: a strided view.
                let wt: Vec<f32> = (0..d_out * d_in)
                    .map(|k| wv[(k % d_in) * d_out + k / d_in])
                    .collect();
                let leaf = Tensor::<2>::from_data(TensorData::new(wt, [d_out, d_in]), &device)
                    .require_grad();
                (leaf.clone(), leaf.swap_dims(0, 1))
            } else {
                let leaf =
                    Tensor::<2>::from_data(TensorData::new(wv.clone(), [d_in, d_out]), &device)
                        .require_grad();
                (leaf.clone(), leaf)
            };
            let b = Tensor::<1>::from_data(TensorData::new(bv.clone(), [d_out]), &device)
                .require_grad();
            let weights =
                Tensor::<3>::from_data(TensorData::new(rv.clone(), [a, r, d_out]), &device);
            let y = linear(x.clone(), w, Some(b.clone()));
            let grads = (y.clone() * weights).sum().backward();

            let mut want_y = vec![0f64; rows * d_out];
            let mut want_gx = vec![0f64; rows * d_in];
            let mut want_gw = vec![0f64; d_in * d_out];
            let mut want_gb = vec![0f64; d_out];
            for i in 0..rows {
                for o in 0..d_out {
                    let mut acc = bv[o] as f64;
                    for k in 0..d_in {
                        acc += xv[i * d_in + k] as f64 * wv[k * d_out + o] as f64;
                    }
                    want_y[i * d_out + o] = acc;
                    let g = rv[i * d_out + o] as f64;
                    want_gb[o] += g;
                    for k in 0..d_in {
                        want_gx[i * d_in + k] += g * wv[k * d_out + o] as f64;
                        want_gw[k * d_out + o] += g * xv[i * d_in + k] as f64;
                    }
                }
            }
            assert_close(&host(y), &want_y, "y");
            assert_close(&host(x.grad(&grads).expect("x grad")), &want_gx, "dx");
            let gw = if transposed_weight {
                // The gradient of the stored [out, in] tensor, back in [in, out] order.
                let g = host(leaf.grad(&grads).expect("w grad"));
                (0..d_in * d_out)
                    .map(|k| g[(k % d_out) * d_in + k / d_out])
                    .collect()
            } else {
                host(leaf.grad(&grads).expect("w grad"))
            };
            assert_close(&gw, &want_gw, "dW");
            assert_close(&host(b.grad(&grads).expect("b grad")), &want_gb, "db");
        }
    }

    #[test]
    fn bias_gradient_is_the_same_bits_every_run() {
        let device = Device::flex();
        let g = Tensor::<2>::from_data(TensorData::new(values(1000 * 33, 5), [1000, 33]), &device);
        let run = || {
            host(Tensor::<1>::from_dispatch(
                <Dispatch as FusedOps>::linear_bias_grad(g.clone().into_dispatch()),
            ))
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
        };
        let first = run();
        for _ in 0..5 {
            assert_eq!(run(), first);
        }
    }

    #[test]
    fn other_dtypes_and_no_bias_take_burns_linear() {
        let device = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new(values(6 * 4, 3), [6, 4]), &device);
        let w = Tensor::<2>::from_data(TensorData::new(values(4 * 5, 9), [4, 5]), &device);
        let b = Tensor::<1>::from_data(TensorData::new(values(5, 21), [5]), &device);
        let fused = host(linear(x.clone(), w.clone(), Some(b.clone())));
        let burn = host(burn::tensor::module::linear(x.clone(), w.clone(), Some(b)));
        for (f, r) in fused.iter().zip(&burn) {
            assert!((f - r).abs() <= 1e-6, "{f} vs {r}");
        }
        let plain = host(linear(x.clone(), w.clone(), None));
        assert_eq!(plain, host(burn::tensor::module::linear(x, w, None)));
    }
}
