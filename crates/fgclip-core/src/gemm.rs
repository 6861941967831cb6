//! Matrix products on cuBLAS for the CUDA backend: every product the towers, the losses and
//! ROI Align make goes through [`matmul`] (linear layers through [`linear`]), which on a
//! CUDA device with [`MatmulKernels::Cublas`] or [`MatmulKernels::CublasF32`] selected
//! runs `cublasGemmStridedBatchedEx` (the GEMM PyTorch calls) instead of cubecl's matmul.
//!
//! Why: cubecl's matmul autotunes a few hundred candidate kernels on a cold start, each
//! compiled by NVRTC (BENCHMARKS.md, GPU), and always rounds f32 inputs to TF32. cuBLAS
//! needs no compilation and computes in exact f32 ([`MatmulKernels::CublasF32`]), in TF32
//! ([`MatmulKernels::Cublas`], what PyTorch does with `allow_tf32`), or in bf16 with f32
//! accumulation (bf16 tensors, as autocast). Operands are read through their strides
//! (`gemm/plan.rs`), so transposed views are never copied. On every other device, and with
//! [`MatmulKernels::Cubecl`] (the default), these are burn's own `matmul` and `linear`.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Bool, DType, FloatDType, Shape, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

#[cfg(feature = "cuda")]
mod cublas;
pub mod plan;

/// Which kernels compute matrix products on a CUDA device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatmulKernels {
    /// cubecl's autotuned matmul (TF32 for f32).
    #[default]
    Cubecl,
    /// cuBLAS, f32 products in TF32 (PyTorch with `allow_tf32 = True`).
    Cublas,
    /// cuBLAS, f32 products in exact f32 (PyTorch's default).
    CublasF32,
}

impl MatmulKernels {
    /// Parses `cubecl`, `cublas` or `cublas-f32`.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "cubecl" => Ok(Self::Cubecl),
            "cublas" | "cublas-tf32" => Ok(Self::Cublas),
            "cublas-f32" => Ok(Self::CublasF32),
            other => Err(ConfigError::Invalid {
                field: "matmul",
                reason: format!("is `{other}`: use cubecl, cublas or cublas-f32"),
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Cubecl => "cubecl",
            Self::Cublas => "cublas",
            Self::CublasF32 => "cublas-f32",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Cubecl => 0,
            Self::Cublas => 1,
            Self::CublasF32 => 2,
        }
    }
}

/// The process-wide choice, like PyTorch's `torch.backends.cuda.matmul` settings: the
/// products are made deep inside the towers, far from any configuration.
static KERNELS: AtomicU8 = AtomicU8::new(0);

/// Selects the kernels for every later product on a CUDA device.
pub fn set_matmul_kernels(kernels: MatmulKernels) {
    KERNELS.store(kernels.code(), Ordering::Relaxed);
}

/// The kernels selected (cubecl unless [`set_matmul_kernels`] said otherwise).
pub fn matmul_kernels() -> MatmulKernels {
    match KERNELS.load(Ordering::Relaxed) {
        1 => MatmulKernels::Cublas,
        2 => MatmulKernels::CublasF32,
        _ => MatmulKernels::Cubecl,
    }
}

static PRODUCTS: AtomicU64 = AtomicU64::new(0);
static QUEUE_WAIT_NS: AtomicU64 = AtomicU64::new(0);
static GEMM_NS: AtomicU64 = AtomicU64::new(0);

/// What this process's cuBLAS products have cost so far (all zero off the cuBLAS path):
/// each product waits on the host for cubecl's queued work, then runs to its end
/// (`gemm/cublas.rs`), so both are wall times measured there, with nothing else inside.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CublasTotals {
    pub products: u64,
    /// Waiting for the kernels queued before each product.
    pub queue_wait_ms: f64,
    /// The products, from launch to finish.
    pub gemm_ms: f64,
}

pub fn cublas_totals() -> CublasTotals {
    let ms = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6;
    CublasTotals {
        products: PRODUCTS.load(Ordering::Relaxed),
        queue_wait_ms: ms(&QUEUE_WAIT_NS),
        gemm_ms: ms(&GEMM_NS),
    }
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn record_cublas(queue_wait: std::time::Duration, gemm: std::time::Duration) {
    PRODUCTS.fetch_add(1, Ordering::Relaxed);
    QUEUE_WAIT_NS.fetch_add(queue_wait.as_nanos() as u64, Ordering::Relaxed);
    GEMM_NS.fetch_add(gemm.as_nanos() as u64, Ordering::Relaxed);
}

/// `Some(exact)` when `x`'s products go to cuBLAS: a CUDA device, cuBLAS selected, a dtype
/// cuBLAS computes (f32, bf16, f16).
pub(crate) fn on_cublas<const D: usize>(x: &Tensor<D>) -> Option<bool> {
    let exact = match matmul_kernels() {
        MatmulKernels::Cubecl => return None,
        MatmulKernels::Cublas => false,
        MatmulKernels::CublasF32 => true,
    };
    (on_cuda(x) && matches!(x.dtype(), DType::F32 | DType::BF16 | DType::F16)).then_some(exact)
}

#[cfg(feature = "cuda")]
fn on_cuda<const D: usize>(x: &Tensor<D>) -> bool {
    matches!(
        x.device().without_autodiff().as_dispatch(),
        burn::backend::DispatchDevice::Cube(burn_cubecl::CubeDevice::Cuda(_))
    )
}

#[cfg(not(feature = "cuda"))]
fn on_cuda<const D: usize>(_: &Tensor<D>) -> bool {
    false
}

/// `a · b` for tensors of equal rank with broadcast batch dimensions, as `Tensor::matmul`.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    match on_cublas(&a) {
        Some(exact) if D >= 2 => extension_matmul(a, b, exact),
        _ => a.matmul(b),
    }
}

/// `x · W + b` over the last dimension of `x` (`weight`: [in, out], as burn's `Linear`).
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    match on_cublas(&x) {
        Some(exact) if D >= 2 => {
            let out = extension_matmul(x, weight.unsqueeze::<D>(), exact);
            match bias {
                Some(b) => out + b.unsqueeze::<D>(),
                None => out,
            }
        }
        _ => burn::tensor::module::linear(x, weight, bias),
    }
}

/// `softmax(q kᵀ / √d) v` on (B, H, L, d), keys hidden where `mask` is true, with both
/// products through [`matmul`] and the softmax in f32 (autocast's rule), NaN-safe for a
/// fully hidden row as burn's own fallback is. Used on the cuBLAS path instead of burn's
/// attention kernel, which has products of its own.
pub(crate) fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    mask: Option<Tensor<4, Bool>>,
) -> Tensor<4> {
    let [_, _, _, d] = q.dims();
    let dtype = v.dtype();
    let scores = matmul(q, k.swap_dims(2, 3)).cast(FloatDType::F32) / (d as f64).sqrt();
    let scores = match mask {
        Some(mask) => {
            let dims = scores.dims();
            scores.mask_fill(mask.expand(dims), f32::NEG_INFINITY)
        }
        None => scores,
    };
    let max = scores.clone().max_dim(3).clamp_min(f32::MIN);
    let e = (scores - max).exp();
    let p = e.clone() / e.sum_dim(3).clamp_min(f32::MIN_POSITIVE);
    matmul(p.cast(crate::precision::float_dtype(dtype)), v)
}

/// `a · b` through [`GemmOps::gemm`]: `b` keeps batch dimensions of size 1 (a shared
/// matrix, folded into one product), otherwise both are expanded to the broadcast batch.
fn extension_matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>, exact: bool) -> Tensor<D> {
    let (ad, bd) = (a.dims(), b.dims());
    let (a, b) = if bd[..D - 2].iter().all(|&d| d == 1) {
        (a, b)
    } else {
        let batch: Vec<usize> = (0..D - 2).map(|i| ad[i].max(bd[i])).collect();
        let full = |dims: [usize; D]| -> [usize; D] {
            let mut out = dims;
            out[..D - 2].copy_from_slice(&batch);
            out
        };
        (a.expand(full(ad)), b.expand(full(bd)))
    };
    Tensor::from_dispatch(<Dispatch as GemmOps>::gemm(
        a.into_dispatch(),
        b.into_dispatch(),
        exact,
    ))
}

/// The output shape of `lhs · rhs` as [`GemmOps::gemm`] takes them.
pub fn product_shape(lhs: &Shape, rhs: &Shape) -> Shape {
    let mut dims: Vec<usize> = lhs.iter().copied().collect();
    if let (Some(last), Some(&n)) = (dims.last_mut(), rhs.iter().last()) {
        *last = n;
    }
    Shape::from(dims)
}

/// The matrix product as a backend extension: cuBLAS on the CUDA backend, the backend's
/// own matmul elsewhere (the CPU backend is listed so the backward pass is tested there).
#[backend_extension(Flex, Cube: cfg(feature = "cuda"), Fusion: cfg(feature = "cuda"), Autodiff)]
pub trait GemmOps: Backend {
    /// `lhs` [.., M, K] · `rhs` [.., K, N]; `rhs`'s batch dimensions equal `lhs`'s or are
    /// all 1. `exact`: f32 in f32 rather than TF32 where the kernels distinguish them.
    #[fusion(dtype = lhs, shape = product_shape(lhs, rhs))]
    fn gemm(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, exact: bool) -> FloatTensor<Self> {
        let _ = exact;
        Self::float_matmul(lhs, rhs)
    }
}

impl GemmOps for Flex {}

/// The last two dimensions swapped (a strided view on every backend here).
fn transposed<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let rank = x.shape().num_dims();
    B::float_swap_dims(x, rank - 2, rank - 1)
}

/// `x` [b.., r, c] as [1.., b·r, c].
fn batch_into_rows<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let shape = x.shape();
    let rank = shape.num_dims();
    let rows: usize = shape.iter().take(rank - 1).product();
    let mut dims = vec![1; rank];
    dims[rank - 2] = rows;
    dims[rank - 1] = shape[rank - 1];
    B::float_reshape(x, Shape::from(dims))
}

#[derive(Debug)]
struct GemmBackward;

impl<B: Backend + GemmOps> Backward<B, 2> for GemmBackward {
    /// lhs, rhs (checkpointed) and `exact`.
    type State = (NodeId, NodeId, bool);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let (lhs_id, rhs_id, exact) = ops.state;
        let lhs: FloatTensor<B> = checkpointer.retrieve_node_output(lhs_id);
        let rhs: FloatTensor<B> = checkpointer.retrieve_node_output(rhs_id);
        let grad = grads.consume::<B>(&ops.node);
        let [lhs_node, rhs_node] = ops.parents;
        let rhs_shape = rhs.shape();
        let rank = rhs_shape.num_dims();
        let shared = rhs_shape.iter().take(rank - 2).all(|&d| d == 1);
        if let Some(node) = lhs_node {
            grads.register::<B>(node.id, B::gemm(grad.clone(), transposed::<B>(rhs), exact));
        }
        if let Some(node) = rhs_node {
            // A shared rhs takes the sum over the batch: one product over all rows.
            let g = if shared {
                B::gemm(
                    transposed::<B>(batch_into_rows::<B>(lhs)),
                    batch_into_rows::<B>(grad),
                    exact,
                )
            } else {
                B::gemm(transposed::<B>(lhs), grad, exact)
            };
            grads.register::<B>(node.id, g);
        }
    }
}

impl<B: Backend + GemmOps, C: CheckpointStrategy> GemmOps for Autodiff<B, C> {
    fn gemm(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, exact: bool) -> FloatTensor<Self> {
        match GemmBackward
            .prepare::<C>([lhs.node(), rhs.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&lhs), prep.checkpoint(&rhs), exact);
                prep.finish(
                    state,
                    B::gemm(lhs.into_primitive(), rhs.into_primitive(), exact),
                )
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::gemm(lhs.into_primitive(), rhs.into_primitive(), exact))
            }
        }
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

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    /// The extension's product and both gradients against burn's own matmul under autodiff,
    /// for the shapes the towers make: a shared weight (linear), equal batches (attention),
    /// transposed views, and a broadcast lhs (ROI Align's interpolation matrix).
    #[test]
    fn extension_product_and_gradients_match_burns_matmul() {
        let device = Device::flex().autodiff();
        let cases: [(&[usize], &[usize], bool, bool); 5] = [
            (&[3, 4, 5], &[1, 5, 6], false, false),
            (&[3, 4, 5], &[1, 6, 5], false, true),
            (&[2, 3, 4, 5], &[2, 3, 5, 4], false, false),
            (&[2, 3, 5, 4], &[2, 3, 5, 6], true, false),
            (&[1, 4, 5], &[3, 5, 6], false, false),
        ];
        for (i, (ls, rs, lt, rt)) in cases.into_iter().enumerate() {
            let make = |shape: &[usize], seed: u32| {
                let n = shape.iter().product();
                match shape.len() {
                    3 => Tensor::<3>::from_data(
                        TensorData::new(values(n, seed), shape.to_vec()),
                        &device,
                    )
                    .reshape([1, shape[0], shape[1], shape[2]]),
                    _ => Tensor::<4>::from_data(
                        TensorData::new(values(n, seed), shape.to_vec()),
                        &device,
                    ),
                }
                .require_grad()
            };
            let (a_leaf, b_leaf) = (make(ls, 7 + i as u32), make(rs, 11 + i as u32));
            // The operands as views of the leaves, built afresh for each graph.
            let operands = || {
                let a = if lt {
                    a_leaf.clone().swap_dims(2, 3)
                } else {
                    a_leaf.clone()
                };
                let b = if rt {
                    b_leaf.clone().swap_dims(2, 3)
                } else {
                    b_leaf.clone()
                };
                (a, b)
            };
            let (a, b) = operands();
            let out_dims = a.detach().matmul(b.detach()).dims();
            let weights = Tensor::<4>::from_data(
                TensorData::new(values(out_dims.iter().product(), 5), out_dims.to_vec()),
                &device,
            );
            let run = |ext: bool| {
                let (a, b) = operands();
                let y = if ext {
                    extension_matmul(a, b, true)
                } else {
                    a.matmul(b)
                };
                let grads = (y.clone() * weights.clone()).sum().backward();
                (
                    host(y),
                    host(a_leaf.grad(&grads).expect("lhs grad")),
                    host(b_leaf.grad(&grads).expect("rhs grad")),
                )
            };
            let (want, got) = (run(false), run(true));
            close(&got.0, &want.0, &format!("case {i}: product"));
            close(&got.1, &want.1, &format!("case {i}: lhs gradient"));
            close(&got.2, &want.2, &format!("case {i}: rhs gradient"));
        }
    }

    /// The composed attention of the cuBLAS path against burn's attention, with and without
    /// a causal mask (the text tower's).
    #[test]
    fn composed_attention_matches_burns() {
        let device = Device::flex();
        let dims = [2, 3, 7, 8];
        let t = |seed| {
            Tensor::<4>::from_data(TensorData::new(values(2 * 3 * 7 * 8, seed), dims), &device)
        };
        let (q, k, v) = (t(1) * 4.0, t(2) * 4.0, t(3));
        let causal: Vec<bool> = (0..2 * 3 * 7 * 7).map(|i| (i % 7) > (i / 7) % 7).collect();
        let mask = Tensor::<4, Bool>::from_data(TensorData::new(causal, [2, 3, 7, 7]), &device);
        let options = crate::fused::attention::OPTIONS;
        for mask in [None, Some(mask)] {
            let ours = host(attention(q.clone(), k.clone(), v.clone(), mask.clone()));
            let burns = host(burn::tensor::module::attention(
                q.clone(),
                k.clone(),
                v.clone(),
                mask.clone(),
                None,
                options,
            ));
            close(
                &ours,
                &burns,
                &format!("attention, mask {}", mask.is_some()),
            );
        }
    }

    #[test]
    fn off_cuda_the_wrappers_are_burns_own() {
        let device = Device::flex();
        set_matmul_kernels(MatmulKernels::CublasF32);
        let x = Tensor::<3>::from_data(TensorData::new(values(24, 3), [2, 3, 4]), &device);
        let w = Tensor::<2>::from_data(TensorData::new(values(20, 9), [4, 5]), &device);
        let b = Tensor::<1>::from_data(TensorData::new(values(5, 21), [5]), &device);
        let ours = host(linear(x.clone(), w.clone(), Some(b.clone())));
        let product = host(matmul(x.clone(), w.clone().unsqueeze()));
        set_matmul_kernels(MatmulKernels::Cubecl);
        assert_eq!(
            ours,
            host(burn::tensor::module::linear(x.clone(), w.clone(), Some(b)))
        );
        assert_eq!(product, host(x.matmul(w.unsqueeze())));
    }

    #[test]
    fn kernel_names_round_trip_and_bad_ones_are_refused() {
        for k in [
            MatmulKernels::Cubecl,
            MatmulKernels::Cublas,
            MatmulKernels::CublasF32,
        ] {
            assert_eq!(MatmulKernels::parse(k.name()).ok(), Some(k));
        }
        let err = MatmulKernels::parse("cutlass").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("cublas-f32")));
    }
}
