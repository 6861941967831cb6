//! The backward pass of unmasked scaled dot-product attention (the vision tower's) on
//! burn's CPU backend, one task per (batch, head) pair.
//!
//! Why: under autodiff burn composes attention from a dozen operations (matmuls, scale,
//! softmax's max / exp / sum / divide) whose backward passes run one after another on one
//! thread, each output zero-filled and copied once more by burn-flex's matmul: about half of
//! the single-threaded time left in a ViT-B/32 training step on two cores (BENCHMARKS.md).
//! Here the forward is two gemm products and a vectorised softmax per (batch, head) pair,
//! and the backward recomputes
//! the probabilities of each (batch, head) pair and forms its three gradients in one task
//! (FlashAttention's backward, without tiling: CLIP's sequences are short), with the pairs
//! spread over rayon's threads. Masked attention (the text tower's), other dtypes and other
//! backends take burn's own attention.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Shape, Slice, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::matrix::{Operand, SharedOut, gemm_into, tensor};
use super::{FusedOps, exp_f32, runs_on_flex};

/// CLIP's attention: scale 1/√d, no softcap, not causal.
pub(crate) const OPTIONS: AttentionModuleOptions = AttentionModuleOptions {
    scale: None,
    softcap: None,
    is_causal: false,
};

/// `softmax(q kᵀ / √d) v` for (B, H, L, d) inputs, keys hidden where `mask` is true.
/// Without a mask, on the CPU backend in f32, its backward pass is fused; otherwise this is
/// burn's `attention`.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
) -> Tensor<4> {
    let fusable = mask.is_none()
        && runs_on_flex(&q)
        && [&q, &k, &v].iter().all(|t| t.dtype() == DType::F32)
        && q.dims() == k.dims()
        && q.dims() == v.dims();
    if fusable {
        Tensor::from_dispatch(<Dispatch as FusedOps>::attention_unmasked(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
        ))
    } else if crate::gemm::on_cublas(&q).is_some() {
        crate::gemm::attention(q, k, v, mask)
    } else {
        burn::tensor::module::attention(q, k, v, mask, None, OPTIONS)
    }
}

/// The gradients of unmasked attention composed from backend operations, stacked as
/// (3, B, H, L, d) (the reference the fused kernel matches; other dtypes use it).
pub(super) fn composed_grads<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> FloatTensor<B> {
    let shape = q.shape();
    let scale = 1.0 / (shape[3] as f64).sqrt();
    let s = B::float_mul_scalar(
        B::float_matmul(q.clone(), B::float_transpose(k.clone())),
        scale.into(),
    );
    let e = B::float_exp(B::float_sub(s.clone(), B::float_max_dim(s, 3)));
    let p = B::float_div(e.clone(), B::float_sum_dim(e, 3));
    let dv = B::float_matmul(B::float_transpose(p.clone()), grad.clone());
    let dp = B::float_matmul(grad, B::float_transpose(v));
    let c = B::float_sum_dim(B::float_mul(dp.clone(), p.clone()), 3);
    let ds = B::float_mul(p, B::float_sub(dp, c));
    let dq = B::float_mul_scalar(B::float_matmul(ds.clone(), k), scale.into());
    let dk = B::float_mul_scalar(B::float_matmul(B::float_transpose(ds), q), scale.into());
    let one = Shape::from(vec![1, shape[0], shape[1], shape[2], shape[3]]);
    B::float_cat(
        [dq, dk, dv]
            .into_iter()
            .map(|g| B::float_reshape(g, one.clone()))
            .collect(),
        0,
    )
}

/// One (batch, head) matrix of a 4-D tensor.
fn head(t: &FlexTensor, b: usize, h: usize) -> Operand {
    let s = t.layout().strides();
    let data: &[f32] = t.storage();
    let base = data[t.layout().start_offset()..].as_ptr();
    Operand {
        ptr: base.wrapping_offset(b as isize * s[0] + h as isize * s[1]),
        row_stride: s[2],
        col_stride: s[3],
    }
}

/// Lanes of the row reductions: independent partial maxima and sums that the compiler
/// keeps in vector registers (a single running sum is a serial dependency chain).
const LANES: usize = 16;

crate::multiversion!(softmax_rows, (p: &mut [f32], width: usize), {
    for row in p.chunks_mut(width) {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (m, &x) in lanes.iter_mut().zip(c) {
                *m = if x > *m { x } else { *m };
            }
        }
        let max = chunks
            .remainder()
            .iter()
            .chain(&lanes)
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        for x in row.iter_mut() {
            *x = exp_f32(*x - max);
        }
        let mut sums = [0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (s, &x) in sums.iter_mut().zip(c) {
                *s += x;
            }
        }
        let sum = sums.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
        for x in row.iter_mut() {
            *x /= sum;
        }
    }
});

// dS = P ⊙ (dP − rowsum(dP ⊙ P)), into dp.
crate::multiversion!(softmax_backward_rows, (p: &[f32], dp: &mut [f32], width: usize), {
    for (pr, gr) in p.chunks(width).zip(dp.chunks_mut(width)) {
        let c: f32 = pr.iter().zip(gr.iter()).map(|(p, g)| p * g).sum();
        for (g, &p) in gr.iter_mut().zip(pr) {
            *g = p * (*g - c);
        }
    }
});

/// The forward value, one task per (batch, head) pair: `P = softmax(scale · q kᵀ)` and
/// `P v` as two gemm products, the softmax's row reductions in vector lanes. Faster than
/// burn-flex's kernel at every length measured (ViT-B/32's 50 tokens: 859 → 814 ms a batch
/// of 16; ViT-B/16's 197: 1549 → 1432 ms a batch of 8; FG-CLIP 2's 1024: about 1.5 → 1.2 s
/// an image), and the same rounding as the backward's recomputation.
pub(super) fn flex_forward(q: FlexTensor, k: FlexTensor, v: FlexTensor) -> FlexTensor {
    let shape = q.layout().shape().clone();
    let same = [&k, &v]
        .iter()
        .all(|t| t.layout().shape() == &shape && t.dtype() == DType::F32);
    if q.dtype() != DType::F32 || !same || shape.num_dims() != 4 || shape.num_elements() == 0 {
        return <burn::backend::Flex as burn::backend::ops::ModuleOps<burn::backend::Flex>>::attention(
            q, k, v, None, None, OPTIONS,
        );
    }
    let (b, h, l, d) = (shape[0], shape[1], shape[2], shape[3]);
    let block = l * d;
    let total = b * h * block;
    let scale = 1.0 / (d as f32).sqrt();
    let mut out: Vec<f32> = Vec::with_capacity(total);
    let dst = SharedOut(out.as_mut_ptr());
    (0..b * h).into_par_iter().for_each_init(
        || vec![0f32; l * l],
        |p, pair| {
            let (bi, hi) = (pair / h, pair % h);
            let (q, k, v) = (head(&q, bi, hi), head(&k, bi, hi), head(&v, bi, hi));
            // SAFETY: p is l × l; the heads are l × d; each output block (l × d) belongs to
            // this pair alone and is written whole by its product.
            unsafe {
                gemm_into(
                    p.as_mut_ptr(),
                    l,
                    (l, l, d),
                    q,
                    k.transposed(),
                    (false, scale),
                );
                softmax_rows(p, l);
                gemm_into(
                    dst.at(pair * block),
                    d,
                    (l, d, l),
                    Operand::rows(p, l),
                    v,
                    (false, 1.0),
                );
            }
        },
    );
    // SAFETY: the pairs' tasks wrote every block.
    unsafe { out.set_len(total) };
    tensor(out, shape)
}

pub(super) fn flex_grads(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    grad: FlexTensor,
) -> FlexTensor {
    let shape = q.layout().shape().clone();
    let same = [&k, &v, &grad]
        .iter()
        .all(|t| t.layout().shape() == &shape && t.dtype() == DType::F32);
    if q.dtype() != DType::F32 || !same || shape.num_dims() != 4 || shape.num_elements() == 0 {
        return composed_grads::<burn::backend::Flex>(q, k, v, grad);
    }
    let (b, h, l, d) = (shape[0], shape[1], shape[2], shape[3]);
    let block = l * d;
    let total = 3 * b * h * block;
    let scale = 1.0 / (d as f32).sqrt();
    let mut out: Vec<f32> = Vec::with_capacity(total);
    let dst = SharedOut(out.as_mut_ptr());
    (0..b * h).into_par_iter().for_each_init(
        || (vec![0f32; l * l], vec![0f32; l * l]),
        |(p, dp), pair| {
            let (bi, hi) = (pair / h, pair % h);
            let (q, k, v, g) = (
                head(&q, bi, hi),
                head(&k, bi, hi),
                head(&v, bi, hi),
                head(&grad, bi, hi),
            );
            let at = |which: usize| dst.at((which * b * h + pair) * block);
            // SAFETY: p and dp are l × l; the heads are l × d; each output block (l × d)
            // belongs to this pair alone and is written whole by its product.
            unsafe {
                gemm_into(
                    p.as_mut_ptr(),
                    l,
                    (l, l, d),
                    q,
                    k.transposed(),
                    (false, scale),
                );
                softmax_rows(p, l);
                let p_op = Operand::rows(p, l);
                gemm_into(at(2), d, (l, d, l), p_op.transposed(), g, (false, 1.0));
                gemm_into(
                    dp.as_mut_ptr(),
                    l,
                    (l, l, d),
                    g,
                    v.transposed(),
                    (false, 1.0),
                );
                softmax_backward_rows(p, dp, l);
                let ds = Operand::rows(dp, l);
                gemm_into(at(0), d, (l, d, l), ds, k, (false, scale));
                gemm_into(at(1), d, (l, d, l), ds.transposed(), q, (false, scale));
            }
        },
    );
    // SAFETY: the pairs' tasks wrote all three blocks of every pair.
    unsafe { out.set_len(total) };
    tensor(out, Shape::from(vec![3, b, h, l, d]))
}

#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend + FusedOps> Backward<B, 3> for AttentionBackward {
    /// q, k and v, as checkpointed nodes.
    type State = [NodeId; 3];

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [q, k, v] = ops
            .state
            .map(|id| checkpointer.retrieve_node_output::<FloatTensor<B>>(id));
        let shape = q.shape();
        let grad = grads.consume::<B>(&ops.node);
        let all = B::attention_unmasked_grads(q, k, v, grad);
        for (i, parent) in ops.parents.into_iter().enumerate() {
            if let Some(node) = parent {
                let mut ranges = vec![Slice::from(i..i + 1)];
                ranges.extend((0..4).map(|a| Slice::from(0..shape[a])));
                let part = B::float_reshape(B::float_slice(all.clone(), &ranges), shape.clone());
                grads.register::<B>(node.id, part);
            }
        }
    }
}

pub(super) fn autodiff_forward<B: Backend + FusedOps, C: CheckpointStrategy>(
    q: FloatTensor<Autodiff<B, C>>,
    k: FloatTensor<Autodiff<B, C>>,
    v: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    match AttentionBackward
        .prepare::<C>([q.node(), k.node(), v.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = [
                prep.checkpoint(&q),
                prep.checkpoint(&k),
                prep.checkpoint(&v),
            ];
            prep.finish(
                state,
                B::attention_unmasked(q.into_primitive(), k.into_primitive(), v.into_primitive()),
            )
        }
        OpsKind::UnTracked(prep) => prep.finish(B::attention_unmasked(
            q.into_primitive(),
            k.into_primitive(),
            v.into_primitive(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    use crate::fused::testing::host;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        crate::fused::testing::xorshift(n, seed, 3.0, 0.0)
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 2e-5 * w.abs().max(1.0),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    const B: usize = 2;
    const H: usize = 3;
    const L: usize = 50;
    const D: usize = 16;

    /// (B, H, L, d) inputs laid out as the model makes them: (B, L, H, d) with the head
    /// and sequence dimensions swapped (strided views).
    fn qkv(device: &Device) -> [Tensor<4>; 3] {
        [3, 5, 7].map(|seed| {
            Tensor::<4>::from_data(
                TensorData::new(values(B * L * H * D, seed), [B, L, H, D]),
                device,
            )
            .require_grad()
        })
    }

    /// Output and q/k/v gradients of `sum(attention(q, k, v) · R)`.
    fn run(fused: bool) -> [Vec<f32>; 4] {
        let device = Device::flex().autodiff();
        let [q, k, v] = qkv(&device);
        let r = Tensor::<4>::from_data(
            TensorData::new(values(B * H * L * D, 11), [B, H, L, D]),
            &device,
        );
        let heads = |t: &Tensor<4>| t.clone().swap_dims(1, 2);
        let out = if fused {
            attention(heads(&q), heads(&k), heads(&v), None)
        } else {
            burn::tensor::module::attention(heads(&q), heads(&k), heads(&v), None, None, OPTIONS)
        };
        let grads = (out.clone() * r).sum().backward();
        let g = |t: &Tensor<4>| host(t.grad(&grads).expect("a gradient"));
        [host(out), g(&q), g(&k), g(&v)]
    }

    #[test]
    fn gradients_match_burns_composed_attention() {
        let fused = run(true);
        let reference = run(false);
        for (i, what) in ["output", "dq", "dk", "dv"].iter().enumerate() {
            assert_close(&fused[i], &reference[i], what);
        }
        // Not trivially zero.
        assert!(fused[1].iter().any(|v| v.abs() > 1e-2));
    }

    #[test]
    fn fused_kernel_matches_the_composed_gradients() {
        let device = Device::flex();
        let t = |seed: u32| {
            Tensor::<4>::from_data(
                TensorData::new(values(B * H * L * D, seed), [B, H, L, D]),
                &device,
            )
            .into_dispatch()
        };
        let both = [true, false].map(|fused| {
            let (q, k, v, g) = (t(3), t(5), t(7), t(11));
            let out = if fused {
                <Dispatch as FusedOps>::attention_unmasked_grads(q, k, v, g)
            } else {
                composed_grads::<Dispatch>(q, k, v, g)
            };
            host(Tensor::<5>::from_dispatch(out))
        });
        assert_close(&both[0], &both[1], "stacked gradients");
    }
}
