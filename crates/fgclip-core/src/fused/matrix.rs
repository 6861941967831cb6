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

// SAFETY: an operand is only read, while the tensor or buffer it points into is alive
// (each product's caller holds them for the whole call).
unsafe impl Send for Operand {}
unsafe impl Sync for Operand {}

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

    /// The columns from `c` on.
    pub fn columns_from(self, c: usize) -> Self {
        Self {
            ptr: self.ptr.wrapping_offset(c as isize * self.col_stride),
            ..self
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
    // SAFETY: as the caller promises.
    unsafe {
        gemm_with(
            dst,
            dst_row_stride,
            (m, n, k),
            lhs,
            rhs,
            (accumulate, beta),
            parallelism(m, n, k),
        )
    }
}

/// [`gemm_into`] on one thread (`gemm::Parallelism::None`) or as gemm decides.
///
/// SAFETY: as [`gemm_into`].
unsafe fn gemm_with(
    dst: *mut f32,
    dst_row_stride: usize,
    (m, n, k): (usize, usize, usize),
    lhs: Operand,
    rhs: Operand,
    (accumulate, beta): (bool, f32),
    parallelism: gemm::Parallelism,
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
            parallelism,
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

/// A new m × n matrix, `lhs · rhs`, computed as one single-threaded product per band of
/// columns, the bands on rayon's threads. For a right operand gemm would first repack on
/// the calling thread alone (one that is not row-contiguous in the transposed problem gemm
/// solves, such as `Wᵀ` in a linear layer's input gradient): each band repacks only its
/// own columns, in parallel.
pub(super) fn product_in_column_bands(
    m: usize,
    n: usize,
    k: usize,
    lhs: Operand,
    rhs: Operand,
) -> Vec<f32> {
    use rayon::prelude::*;
    let bands = rayon::current_num_threads();
    if bands < 2 || k == 0 || m.saturating_mul(n).saturating_mul(k) < PARALLEL_OPS || n < 32 * bands
    {
        return product(m, n, k, lhs, rhs);
    }
    // Bands of whole 16-float vectors.
    let width = n.div_ceil(bands).div_ceil(16) * 16;
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let dst = SharedOut(out.as_mut_ptr());
    (0..n.div_ceil(width)).into_par_iter().for_each(|band| {
        let (c0, c1) = (band * width, ((band + 1) * width).min(n));
        let rhs = rhs.columns_from(c0);
        // SAFETY: each band writes its own columns c0..c1 of every row of the m × n output
        // (row stride n), all of them; rhs is offset to the band's first column.
        unsafe {
            gemm_with(
                dst.at(c0),
                n,
                (m, c1 - c0, k),
                lhs,
                rhs,
                (false, 1.0),
                gemm::Parallelism::None,
            );
        }
    });
    // SAFETY: the bands cover all n columns of all m rows.
    unsafe { out.set_len(m * n) };
    out
}

/// An output pointer shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(super) struct SharedOut(pub *mut f32);
// SAFETY: the tasks sharing it write disjoint elements only.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The element `offset` values in.
    pub fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// A contiguous f32 tensor of `values`.
pub(super) fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        burn::tensor::Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        crate::fused::testing::xorshift(n, seed, 1.0, 0.0)
    }

    /// Products by column bands (forced onto two or more bands) equal the f64 products,
    /// with the right operand read transposed through its strides, for widths that do
    /// and do not divide into the bands.
    #[test]
    fn column_bands_give_the_product() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("a thread pool");
        for (m, n, k) in [(300, 203, 150), (257, 192, 160)] {
            let a = values(m * k, 3);
            // rhs stored as its transpose (n × k), read as k × n.
            let bt = values(n * k, 5);
            let lhs = Operand::rows(&a, k);
            let rhs = Operand::rows(&bt, k).transposed();
            assert!(
                m * n * k >= PARALLEL_OPS && n >= 32 * 3,
                "the banded path runs"
            );
            let got = pool.install(|| product_in_column_bands(m, n, k, lhs, rhs));
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|t| a[i * k + t] as f64 * bt[j * k + t] as f64)
                        .sum();
                    let g = got[i * n + j] as f64;
                    assert!(
                        (g - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "({i}, {j}): {g} vs {want}"
                    );
                }
            }
        }
    }
}
