//! Matrix products on gemm for the fused operations: operands read through their strides
//! (transposes cost nothing), outputs written once into buffers that were never zeroed.

use burn::tensor::{DType, Shape};
use burn_flex::{FlexTensor, Layout};

/// gemm's own threshold in burn-flex: below it, one thread.
const PARALLEL_OPS: usize = 192 * 192 * 192;

fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_OPS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// A matrix operand: its first element and its (row, column) strides in elements.
#[derive(Clone, Copy)]
pub(super) struct Operand {
    pub ptr: *const f32,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl Operand {
    /// The 2-D tensor `t` as stored.
    pub fn of(t: &FlexTensor) -> Self {
        let strides = t.layout().strides();
        let data: &[f32] = t.storage();
        Self {
            // In bounds: the layout's start offset lies inside its own buffer.
            ptr: data[t.layout().start_offset()..].as_ptr(),
            row_stride: strides[0],
            col_stride: strides[1],
        }
    }

    /// The contiguous rows of `data`, `cols` wide.
    pub fn rows(data: &[f32], cols: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    pub fn transposed(self) -> Self {
        Self {
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// `dst (m × n, rows `dst_row_stride` apart) = [dst +] beta · lhs (m × k) · rhs (k × n)`;
/// `(accumulate, beta)`: with `accumulate`, dst holds initialised values to add to, else
/// it is only written. Multi-threaded above burn-flex's threshold.
///
/// SAFETY: `dst` addresses an m × n matrix with that row stride; the operands address
/// m × k and k × n matrices.
pub(super) unsafe fn gemm_into(
    dst: *mut f32,
    dst_row_stride: usize,
    (m, n, k): (usize, usize, usize),
    lhs: Operand,
    rhs: Operand,
    (accumulate, beta): (bool, f32),
) {
    // SAFETY: as the caller promises; gemm writes every dst element when it does not read it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.ptr,
            lhs.col_stride,
            lhs.row_stride,
            rhs.ptr,
            rhs.col_stride,
            rhs.row_stride,
            if accumulate { 1.0 } else { 0.0 },
            beta,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
    }
}

/// A new m × n matrix, `lhs · rhs`.
pub(super) fn product(m: usize, n: usize, k: usize, lhs: Operand, rhs: Operand) -> Vec<f32> {
    if k == 0 {
        return vec![0.0; m * n];
    }
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    // SAFETY: room for m·n values; gemm writes each of them (not accumulating), then the
    // length covers exactly what was written.
    unsafe {
        gemm_into(out.as_mut_ptr(), n, (m, n, k), lhs, rhs, (false, 1.0));
        out.set_len(m * n);
    }
    out
}

/// A contiguous f32 tensor of `values`.
pub(super) fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        burn::tensor::Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}
