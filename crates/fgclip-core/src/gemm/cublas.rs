//! [`GemmOps::gemm`] on burn's CUDA backend: `cublasGemmStridedBatchedEx` through cudarc,
//! on the device buffers cubecl allocated, read through their strides (`plan.rs`).
//!
//! Ordering: cubecl 0.11.3 hands out a buffer's device address
//! (`Client::get_resource`, which also keeps the allocation in place while held) but not
//! the CUDA stream its kernels run on, and its streams are non-blocking (no implicit order
//! with other streams). So a product waits on the host for cubecl's queued work, runs on a
//! stream of its own, and waits for itself before cubecl's next kernel can read the
//! result: correct by construction, at the price of two host synchronisations per product
//! (measured against cubecl's matmul by `tools/gpu/check.sh`; a stream handle from cubecl
//! would remove them).
//!
//! A machine where cuBLAS cannot be loaded, or a product that fails before cuBLAS
//! launched it (nothing written yet), says so once on stderr and keeps cubecl's matmul for
//! the rest of the process: the products are the same, only the kernels differ, and
//! `bench train`'s cuBLAS counters show it. A failure after the launch is a device fault:
//! nothing sensible can follow it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use burn::backend::ops::FloatTensorOps;
use burn::tensor::DType;
use burn_cubecl::cubecl::cuda::CudaRuntime;
use burn_cubecl::cubecl::future::block_on;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{CubeBackend, CubeDevice};
use cubecl_runtime::runtime::Runtime;
use cudarc::cublas::{CudaBlas, result, sys};
use cudarc::driver::{CudaContext, CudaStream};

use super::plan::{GemmPlan, plan};
use super::{GemmOps, product_shape};

impl GemmOps for CubeBackend {
    fn gemm(lhs: CubeTensor, rhs: CubeTensor, exact: bool) -> CubeTensor {
        let CubeDevice::Cuda(device) = &lhs.device else {
            return CubeBackend::float_matmul(lhs, rhs);
        };
        let Some(types) = Types::of(lhs.dtype, rhs.dtype, exact) else {
            return CubeBackend::float_matmul(lhs, rhs);
        };
        if GAVE_UP.load(Ordering::Relaxed) {
            return CubeBackend::float_matmul(lhs, rhs);
        }
        let blas = match Blas::of(device.index) {
            Ok(blas) => blas,
            Err(reason) => {
                give_up(&reason);
                return CubeBackend::float_matmul(lhs, rhs);
            }
        };
        let (lhs, rhs, plan) = match planned(lhs, rhs) {
            Ok(planned) => planned,
            Err((lhs, rhs)) => return CubeBackend::float_matmul(lhs, rhs),
        };
        let out = empty_device_contiguous_dtype(
            lhs.client.clone(),
            lhs.device.clone(),
            product_shape(lhs.meta.shape(), rhs.meta.shape()),
            lhs.dtype,
        );
        match run(&blas, &plan, types, [&lhs, &rhs, &out]) {
            Ok(()) => out,
            Err(Failure::Untouched(reason)) => {
                give_up(&format!("product {plan:?}: {reason}"));
                CubeBackend::float_matmul(lhs, rhs)
            }
            // The output may be half written; cubecl's own launch failures end the same way.
            Err(Failure::Fatal(reason)) => {
                panic!("cuBLAS product {plan:?} failed: {reason}")
            }
        }
    }
}

/// The operands with a plan, each made contiguous first when its strides cannot be read
/// as they are; back unchanged when even that cannot be planned or exceeds cuBLAS's sizes.
#[allow(clippy::result_large_err)]
fn planned(
    lhs: CubeTensor,
    rhs: CubeTensor,
) -> Result<(CubeTensor, CubeTensor, GemmPlan), (CubeTensor, CubeTensor)> {
    let try_plan = |l: &CubeTensor, r: &CubeTensor| {
        if l.meta.is_tiled() || r.meta.is_tiled() {
            return None;
        }
        plan(
            l.meta.shape(),
            l.meta.strides(),
            r.meta.shape(),
            r.meta.strides(),
        )
        .filter(GemmPlan::fits_i32)
    };
    if let Some(p) = try_plan(&lhs, &rhs) {
        return Ok((lhs, rhs, p));
    }
    let (lhs, rhs) = (into_contiguous(lhs), into_contiguous(rhs));
    match try_plan(&lhs, &rhs) {
        Some(p) => Ok((lhs, rhs, p)),
        None => Err((lhs, rhs)),
    }
}

/// cuBLAS's element and compute types for these dtypes.
#[derive(Clone, Copy, Debug)]
struct Types {
    data: sys::cudaDataType,
    compute: sys::cublasComputeType_t,
}

impl Types {
    fn of(lhs: DType, rhs: DType, exact: bool) -> Option<Self> {
        if lhs != rhs {
            return None;
        }
        let data = match lhs {
            DType::F32 => sys::cudaDataType::CUDA_R_32F,
            DType::BF16 => sys::cudaDataType::CUDA_R_16BF,
            DType::F16 => sys::cudaDataType::CUDA_R_16F,
            _ => return None,
        };
        // Half-precision inputs accumulate in f32 (autocast's GEMMs); f32 inputs round to
        // TF32 only when asked.
        let compute = if lhs == DType::F32 && !exact {
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
        } else {
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
        };
        Some(Self { data, compute })
    }
}

/// One cuBLAS handle per device, on a stream of its own in the primary context (the one
/// cubecl uses, so its device addresses are valid here).
struct Blas {
    context: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    handle: Mutex<CudaBlas>,
}

type Handles = Mutex<Vec<(usize, Result<Arc<Blas>, String>)>>;

impl Blas {
    fn of(device: usize) -> Result<Arc<Blas>, String> {
        static HANDLES: OnceLock<Handles> = OnceLock::new();
        let handles = HANDLES.get_or_init(|| Mutex::new(Vec::new()));
        let mut handles = handles
            .lock()
            .map_err(|_| "a cuBLAS call panicked".to_string())?;
        if let Some((_, made)) = handles.iter().find(|(d, _)| *d == device) {
            return made.clone();
        }
        let made = Self::open(device).map(Arc::new);
        handles.push((device, made.clone()));
        made
    }

    fn open(device: usize) -> Result<Blas, String> {
        // SAFETY: only asks whether the library can be loaded.
        if !unsafe { sys::is_culib_present() } {
            return Err("libcublas could not be loaded".into());
        }
        let context = CudaContext::new(device).map_err(|e| format!("CUDA context: {e:?}"))?;
        let stream = context
            .new_stream()
            .map_err(|e| format!("CUDA stream: {e:?}"))?;
        let handle = CudaBlas::new(stream.clone()).map_err(|e| format!("cublasCreate: {e:?}"))?;
        Ok(Blas {
            context,
            stream,
            handle: Mutex::new(handle),
        })
    }
}

/// Set once cuBLAS failed: every later product takes cubecl's matmul at once.
static GAVE_UP: AtomicBool = AtomicBool::new(false);

fn give_up(reason: &str) {
    if !GAVE_UP.swap(true, Ordering::Relaxed) {
        eprintln!("fgclip: cuBLAS unavailable ({reason}); matrix products use cubecl's kernels");
    }
}

/// How a product failed: before cuBLAS launched it, with nothing written (cubecl's matmul
/// can take over), or with the device in doubt.
enum Failure {
    Untouched(String),
    Fatal(String),
}

/// `out = lhs · rhs` as `plan` says, ordered after everything cubecl queued before it and
/// finished before returning (see the module's header).
fn run(
    blas: &Blas,
    plan: &GemmPlan,
    types: Types,
    [lhs, rhs, out]: [&CubeTensor; 3],
) -> Result<(), Failure> {
    use Failure::{Fatal, Untouched};
    type Server = <CudaRuntime as Runtime>::Server;
    let client = &lhs.client;
    let resource = |t: &CubeTensor, what: &str| {
        client
            .get_resource::<Server>(t.handle.clone())
            .map_err(|e| Untouched(format!("{what}'s device buffer: {e:?}")))
    };
    // Held until the product is done: the allocations stay in place.
    let (l, r, o) = (
        resource(lhs, "lhs")?,
        resource(rhs, "rhs")?,
        resource(out, "out")?,
    );
    let asked = Instant::now();
    // A fault here is cubecl's (an earlier kernel), not this product's.
    block_on(client.sync()).map_err(|e| Fatal(format!("waiting for cubecl's queue: {e:?}")))?;
    let launched = Instant::now();
    let handle = blas
        .handle
        .lock()
        .map_err(|_| Untouched("a cuBLAS call panicked".to_string()))?;
    blas.context
        .bind_to_thread()
        .map_err(|e| Untouched(format!("binding the CUDA context: {e:?}")))?;
    let (alpha, beta) = (1f32, 0f32);
    let op = |t: bool| {
        if t {
            sys::cublasOperation_t::CUBLAS_OP_T
        } else {
            sys::cublasOperation_t::CUBLAS_OP_N
        }
    };
    // BLAS's first operand is the tensor rhs, its second lhs (`plan.rs`).
    // SAFETY: the pointers are live device allocations of the sizes the plan reads (held
    // above); every size fits i32 (`fits_i32`); alpha and beta are host f32, as the
    // default pointer mode and a 32F compute type expect.
    unsafe {
        result::gemm_strided_batched_ex(
            *handle.handle(),
            op(plan.a.transposed),
            op(plan.b.transposed),
            plan.m as i32,
            plan.n as i32,
            plan.k as i32,
            (&alpha as *const f32).cast(),
            r.resource().ptr as *const _,
            types.data,
            plan.a.ld as i32,
            plan.a.batch_stride as i64,
            l.resource().ptr as *const _,
            types.data,
            plan.b.ld as i32,
            plan.b.batch_stride as i64,
            (&beta as *const f32).cast(),
            o.resource().ptr as *mut _,
            types.data,
            plan.ldc as i32,
            plan.batch_stride_c as i64,
            plan.batch as i32,
            types.compute,
            sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    // cuBLAS checks its arguments before it launches: an error status wrote nothing.
    .map_err(|e| Untouched(format!("cublasGemmStridedBatchedEx: {e:?}")))?;
    blas.stream
        .synchronize()
        .map_err(|e| Fatal(format!("waiting for cuBLAS: {e:?}")))?;
    super::record_cublas(launched - asked, launched.elapsed());
    Ok(())
}
