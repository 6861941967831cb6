//! The backward pass of LayerNorm (scale and shift, last dimension) on burn's CPU backend,
//! one pass over the rows spread over rayon's threads.
//!
//! Why: under autodiff burn composes LayerNorm from nine operations (mean, centre, square,
//! mean, add ε, square root, divide, scale, shift) whose backward passes, about twenty
//! element-wise and reduction passes, run on one thread: 0.31 s per ViT-B/32 training step
//! for the vision tower's 25 norms on two cores, 0.08 s with this backward (forward
//! included, timed apart; BENCHMARKS.md). The forward value is burn-flex's own fused
//! LayerNorm; the
//! backward recomputes each row's mean and 1/σ in f32 and forms
//! `dx = (g − mean(g) − x̂ · mean(g x̂)) / σ` with `g = dy · γ`, and the parameter
//! gradients `Σ dy x̂`, `Σ dy` as partial sums over fixed blocks of rows added in order (the
//! same bits whatever the threads do). Other dtypes and backends take burn's own.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata};
use burn::nn::LayerNorm;
use burn::tensor::{DType, Shape, Slice, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

use super::matrix::tensor;
use super::{FusedOps, contiguous_f32, runs_on_flex};

/// Rows per task.
const ROW_BLOCK: usize = 32;

/// `ln(x)` where `ln` was made with `epsilon`; fused backward on the CPU backend in f32
/// (with a shift), burn's LayerNorm otherwise.
pub fn layer_norm<const D: usize>(ln: &LayerNorm, x: Tensor<D>, epsilon: f64) -> Tensor<D> {
    let gamma = ln.gamma.val();
    match ln.beta.as_ref().map(|b| b.val()) {
        Some(beta)
            if runs_on_flex(&x)
                && [x.dtype(), gamma.dtype(), beta.dtype()]
                    .iter()
                    .all(|d| *d == DType::F32) =>
        {
            Tensor::from_dispatch(<Dispatch as FusedOps>::layer_norm_affine(
                x.into_dispatch(),
                gamma.into_dispatch(),
                beta.into_dispatch(),
                epsilon,
            ))
        }
        _ => ln.forward(x),
    }
}

/// LayerNorm's gradients composed from backend operations, flat as
/// [`FusedOps::layer_norm_grads`] returns them (the reference the fused kernel matches).
pub(super) fn composed_grads<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    grad: FloatTensor<B>,
    epsilon: f64,
) -> FloatTensor<B> {
    let shape = x.shape();
    let last = shape.num_dims() - 1;
    let d = shape[last];
    let rows = shape.num_elements() / d.max(1);
    let row_shape = Shape::new([rows, d]);
    let (x, grad) = (
        B::float_reshape(x, row_shape.clone()),
        B::float_reshape(grad, row_shape),
    );
    let centred = B::float_sub(x.clone(), B::float_mean_dim(x, 1));
    let var = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), 1);
    let sigma = B::float_sqrt(B::float_add_scalar(var, epsilon.into()));
    let xhat = B::float_div(centred, sigma.clone());
    let g = B::float_mul(grad.clone(), B::float_reshape(gamma, Shape::new([1, d])));
    let inner = B::float_sub(
        B::float_sub(g.clone(), B::float_mean_dim(g.clone(), 1)),
        B::float_mul(
            xhat.clone(),
            B::float_mean_dim(B::float_mul(g, xhat.clone()), 1),
        ),
    );
    let dx = B::float_div(inner, sigma);
    let dgamma = B::float_sum_dim(B::float_mul(grad.clone(), xhat), 0);
    let dbeta = B::float_sum_dim(grad, 0);
    B::float_cat(
        vec![
            B::float_reshape(dx, Shape::new([rows * d])),
            B::float_reshape(dgamma, Shape::new([d])),
            B::float_reshape(dbeta, Shape::new([d])),
        ],
        0,
    )
}

// One block of rows: dx into `dx`, Σ dy x̂ and Σ dy added to `dgamma`, `dbeta`.
crate::multiversion!(
    rows_backward,
    (
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        epsilon: f32,
        dx: &mut [f32],
        dgamma: &mut [f32],
        dbeta: &mut [f32]
    ),
    {
        let d = gamma.len();
        let inv_d = 1.0 / d as f32;
        for ((x, dy), dx) in x.chunks(d).zip(dy.chunks(d)).zip(dx.chunks_mut(d)) {
            let mean = x.iter().sum::<f32>() * inv_d;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() * inv_d;
            let rstd = 1.0 / (var + epsilon).sqrt();
            let (mut sum_g, mut sum_gx) = (0f32, 0f32);
            for ((&x, &dy), &w) in x.iter().zip(dy).zip(gamma) {
                let g = dy * w;
                sum_g += g;
                sum_gx += g * ((x - mean) * rstd);
            }
            let (mean_g, mean_gx) = (sum_g * inv_d, sum_gx * inv_d);
            for (j, out) in dx.iter_mut().enumerate() {
                let xhat = (x[j] - mean) * rstd;
                *out = rstd * (dy[j] * gamma[j] - mean_g - xhat * mean_gx);
                dgamma[j] += dy[j] * xhat;
                dbeta[j] += dy[j];
            }
        }
    }
);

pub(super) fn flex_grads(
    x: FlexTensor,
    gamma: FlexTensor,
    grad: FlexTensor,
    epsilon: f64,
) -> FlexTensor {
    let shape = x.layout().shape().clone();
    let usable = [&x, &gamma, &grad].iter().all(|t| t.dtype() == DType::F32)
        && grad.layout().shape() == &shape
        && shape.num_dims() >= 1
        && shape.num_elements() > 0;
    if !usable {
        return composed_grads::<burn::backend::Flex>(x, gamma, grad, epsilon);
    }
    let d = shape[shape.num_dims() - 1];
    let n = shape.num_elements();
    let (x, gamma, grad) = (
        contiguous_f32(x),
        contiguous_f32(gamma),
        contiguous_f32(grad),
    );
    let (xs, gs, w): (&[f32], &[f32], &[f32]) = (
        &x.storage()[..n],
        &grad.storage()[..n],
        &gamma.storage()[..d],
    );
    let mut out = vec![0f32; n + 2 * d];
    let (dx, params) = out.split_at_mut(n);
    let block = ROW_BLOCK * d.max(1);
    let partials: Vec<Vec<f32>> = dx
        .par_chunks_mut(block)
        .zip(xs.par_chunks(block))
        .zip(gs.par_chunks(block))
        .map(|((dx, x), dy)| {
            let mut sums = vec![0f32; 2 * d];
            let (dgamma, dbeta) = sums.split_at_mut(d);
            rows_backward(x, dy, w, epsilon as f32, dx, dgamma, dbeta);
            sums
        })
        .collect();
    for p in &partials {
        for (s, &v) in params.iter_mut().zip(p) {
            *s += v;
        }
    }
    tensor(out, Shape::new([n + 2 * d]))
}

#[derive(Debug)]
struct LayerNormBackward;

impl<B: Backend + FusedOps> Backward<B, 3> for LayerNormBackward {
    /// x and gamma as checkpointed nodes, and ε.
    type State = (NodeId, NodeId, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (x_id, gamma_id, epsilon) = ops.state;
        let x: FloatTensor<B> = checkpointer.retrieve_node_output(x_id);
        let gamma: FloatTensor<B> = checkpointer.retrieve_node_output(gamma_id);
        let shape = x.shape();
        let (n, d) = (shape.num_elements(), gamma.shape().num_elements());
        let grad = grads.consume::<B>(&ops.node);
        let all = B::layer_norm_grads(x, gamma, grad, epsilon);
        let part =
            |range: std::ops::Range<usize>| B::float_slice(all.clone(), &[Slice::from(range)]);
        let [x_node, gamma_node, beta_node] = ops.parents;
        if let Some(node) = x_node {
            grads.register::<B>(node.id, B::float_reshape(part(0..n), shape));
        }
        if let Some(node) = gamma_node {
            grads.register::<B>(node.id, part(n..n + d));
        }
        if let Some(node) = beta_node {
            grads.register::<B>(node.id, part(n + d..n + 2 * d));
        }
    }
}

pub(super) fn autodiff_forward<B: Backend + FusedOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
    beta: FloatTensor<Autodiff<B, C>>,
    epsilon: f64,
) -> FloatTensor<Autodiff<B, C>> {
    match LayerNormBackward
        .prepare::<C>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&x), prep.checkpoint(&gamma), epsilon);
            prep.finish(
                state,
                B::layer_norm_affine(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                ),
            )
        }
        OpsKind::UnTracked(prep) => prep.finish(B::layer_norm_affine(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            epsilon,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::LayerNormConfig;
    use burn::tensor::{Device, TensorData};

    use crate::fused::testing::{host, xorshift as values};

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 5e-5 * w.abs().max(1.0),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    const SHAPE: [usize; 3] = [3, 45, 96];
    const EPS: f64 = 1e-5;

    /// Output and the three gradients of `sum(ln(x) · R)`, fused or burn's own, with
    /// rows of an offset mean (as residual streams have) and non-trivial γ, β.
    fn run(fused: bool) -> [Vec<f32>; 4] {
        let device = Device::flex().autodiff();
        let n: usize = SHAPE.iter().product();
        let d = SHAPE[2];
        let mut ln = LayerNormConfig::new(d).with_epsilon(EPS).init(&device);
        ln.gamma = Param::from_tensor(Tensor::from_data(
            TensorData::new(values(d, 3, 2.0, 1.0), [d]),
            &device,
        ));
        ln.beta = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(values(d, 5, 1.0, 0.0), [d]),
            &device,
        )));
        let x = Tensor::<3>::from_data(TensorData::new(values(n, 7, 6.0, 2.5), SHAPE), &device)
            .require_grad();
        let r = Tensor::<3>::from_data(TensorData::new(values(n, 11, 2.0, 0.0), SHAPE), &device);
        let y = if fused {
            layer_norm(&ln, x.clone(), EPS)
        } else {
            ln.forward(x.clone())
        };
        let grads = (y.clone() * r).sum().backward();
        let beta = ln.beta.as_ref().expect("a shift").val();
        [
            host(y),
            host(x.grad(&grads).expect("dx")),
            host(ln.gamma.val().grad(&grads).expect("dgamma")),
            host(beta.grad(&grads).expect("dbeta")),
        ]
    }

    #[test]
    fn gradients_match_burns_layer_norm() {
        let fused = run(true);
        let reference = run(false);
        for (i, what) in ["output", "dx", "dgamma", "dbeta"].iter().enumerate() {
            assert_close(&fused[i], &reference[i], what);
        }
        assert!(fused[1].iter().any(|v| v.abs() > 1e-2));
        // The same bits on a second run (fixed-order partial sums).
        assert_eq!(run(true), fused);
    }

    #[test]
    fn fused_kernel_matches_the_composed_gradients() {
        let device = Device::flex();
        let n: usize = SHAPE.iter().product();
        let d = SHAPE[2];
        let t = |v: Vec<f32>, shape: Vec<usize>| {
            Tensor::<1>::from_data(
                TensorData::new(v, [shape.iter().product::<usize>()]),
                &device,
            )
            .into_dispatch()
        };
        let both = [true, false].map(|fused| {
            let x = t(values(n, 7, 6.0, 2.5), vec![n]);
            let gamma = t(values(d, 3, 2.0, 1.0), vec![d]);
            let g = t(values(n, 11, 2.0, 0.0), vec![n]);
            let reshape = |p| {
                <Dispatch as burn::backend::ops::FloatTensorOps<Dispatch>>::float_reshape(
                    p,
                    Shape::new(SHAPE),
                )
            };
            let (x, g) = (reshape(x), reshape(g));
            let out = if fused {
                <Dispatch as FusedOps>::layer_norm_grads(x, gamma, g, EPS)
            } else {
                composed_grads::<Dispatch>(x, gamma, g, EPS)
            };
            host(Tensor::<1>::from_dispatch(out))
        });
        assert_close(&both[0], &both[1], "flat gradients");
    }
}
