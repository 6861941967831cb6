//! How a row-major batched product `C = A · B` of strided tensors is asked of a
//! column-major BLAS (`cublasGemmStridedBatchedEx`), without copying either operand.
//!
//! A row-major matrix `X` of shape [r, c] with strides (sr, 1) is, read column-major, the
//! matrix `Xᵀ` [c, r] with leading dimension sr; with strides (1, sc) it is `X` itself
//! with leading dimension sc. The row-major output `C` [M, N] (contiguous) is column-major
//! `Cᵀ` [N, M] with ldc = N, and `Cᵀ = Bᵀ · Aᵀ`: so BLAS's first operand is `B`, its
//! second `A`, each transposed or not by how it is stored. Batch dimensions must collapse
//! into one uniform stride (0 for an operand broadcast over the batch); when `B` is
//! broadcast and `A`'s rows run on through its batch, the batch folds into M (one large
//! product, as a linear layer is).
//!
//! Pure arithmetic on shapes and strides, so it is tested on the CPU against a reference
//! that computes what the BLAS call would (`tests` below).

/// One operand as BLAS reads it: transposed or not, its leading dimension, its batch stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlasOperand {
    pub transposed: bool,
    pub ld: usize,
    pub batch_stride: usize,
}

/// The arguments of one strided batched column-major product computing the row-major,
/// contiguous `C` [batch, M, N] = `A` [batch, M, K] · `B` [batch, K, N].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmPlan {
    /// BLAS's m, n, k: N, M (batch folded in when it could be), K.
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// BLAS's first operand (the tensor `B`).
    pub a: BlasOperand,
    /// BLAS's second operand (the tensor `A`).
    pub b: BlasOperand,
    pub ldc: usize,
    pub batch: usize,
    pub batch_stride_c: usize,
}

/// How a [rows, cols] matrix with strides (row, col) reads column-major: `Some((transposed,
/// ld))` for `Xᵀ` as BLAS must receive it, None when neither dimension is unit-stride.
fn as_column_major(rows: usize, cols: usize, row: usize, col: usize) -> Option<(bool, usize)> {
    // A dimension of size 1 has no meaningful stride: any unit-stride reading works.
    let col_unit = col == 1 || cols <= 1;
    let row_unit = row == 1 || rows <= 1;
    if col_unit && (rows <= 1 || row >= cols.max(1)) {
        // Row-major: read column-major it is already Xᵀ.
        let ld = if rows <= 1 { cols.max(1) } else { row };
        return Some((false, ld));
    }
    if row_unit && (cols <= 1 || col >= rows.max(1)) {
        // Column-major: BLAS transposes it.
        let ld = if cols <= 1 { rows.max(1) } else { col };
        return Some((true, ld));
    }
    None
}

/// One stride for all batch dimensions together (their product of sizes): Some(0) for
/// an operand broadcast over every batch dimension, None when they do not nest.
fn uniform_batch_stride(shape: &[usize], strides: &[usize]) -> Option<usize> {
    let dims: Vec<(usize, usize)> = shape
        .iter()
        .zip(strides)
        .filter(|(size, _)| **size > 1)
        .map(|(&size, &stride)| (size, stride))
        .collect();
    let Some(&(_, innermost)) = dims.last() else {
        return Some(0);
    };
    for w in dims.windows(2) {
        let ((_, outer), (size, inner)) = (w[0], w[1]);
        if outer != inner * size {
            return None;
        }
    }
    Some(innermost)
}

/// The plan for `lhs` [.., M, K] · `rhs` [.., K, N] with these shapes and element strides,
/// or None when an operand must be made contiguous first. Batch dimensions of `rhs` must
/// equal `lhs`'s or all be 1; ranks must be equal and at least 2.
pub fn plan(
    lhs_shape: &[usize],
    lhs_strides: &[usize],
    rhs_shape: &[usize],
    rhs_strides: &[usize],
) -> Option<GemmPlan> {
    let rank = lhs_shape.len();
    if rank < 2 || rhs_shape.len() != rank || lhs_strides.len() != rank || rhs_strides.len() != rank
    {
        return None;
    }
    let (m, k) = (lhs_shape[rank - 2], lhs_shape[rank - 1]);
    let (k2, n) = (rhs_shape[rank - 2], rhs_shape[rank - 1]);
    if k != k2 {
        return None;
    }
    let lhs_batch = &lhs_shape[..rank - 2];
    let rhs_batch = &rhs_shape[..rank - 2];
    let broadcast = rhs_batch.iter().all(|&d| d == 1);
    if !broadcast && rhs_batch != lhs_batch {
        return None;
    }
    let batch: usize = lhs_batch.iter().product();
    let lhs_bs = uniform_batch_stride(lhs_batch, &lhs_strides[..rank - 2])?;
    let rhs_bs = if broadcast {
        0
    } else {
        uniform_batch_stride(rhs_batch, &rhs_strides[..rank - 2])?
    };
    let (rhs_t, rhs_ld) = as_column_major(k, n, rhs_strides[rank - 2], rhs_strides[rank - 1])?;
    let (lhs_row, lhs_col) = (lhs_strides[rank - 2], lhs_strides[rank - 1]);
    // Fold the batch into M when B is shared and A's rows continue evenly across it.
    if broadcast && batch > 1 && (lhs_col == 1 || k <= 1) {
        let row = if m <= 1 { lhs_bs } else { lhs_row };
        if row >= k.max(1) && (m <= 1 || lhs_bs == m * lhs_row) {
            let rows = batch * m;
            let (lhs_t, lhs_ld) = as_column_major(rows, k, row, 1)?;
            return Some(GemmPlan {
                m: n,
                n: rows,
                k,
                a: BlasOperand {
                    transposed: rhs_t,
                    ld: rhs_ld,
                    batch_stride: 0,
                },
                b: BlasOperand {
                    transposed: lhs_t,
                    ld: lhs_ld,
                    batch_stride: 0,
                },
                ldc: n.max(1),
                batch: 1,
                batch_stride_c: rows * n,
            });
        }
    }
    let (lhs_t, lhs_ld) = as_column_major(m, k, lhs_row, lhs_col)?;
    Some(GemmPlan {
        m: n,
        n: m,
        k,
        a: BlasOperand {
            transposed: rhs_t,
            ld: rhs_ld,
            batch_stride: rhs_bs,
        },
        b: BlasOperand {
            transposed: lhs_t,
            ld: lhs_ld,
            batch_stride: lhs_bs,
        },
        ldc: n.max(1),
        batch,
        batch_stride_c: m * n,
    })
}

impl GemmPlan {
    /// Whether every size, leading dimension and stride fits cuBLAS's 32-bit arguments
    /// (batch strides are 64-bit there).
    pub fn fits_i32(&self) -> bool {
        [
            self.m, self.n, self.k, self.a.ld, self.b.ld, self.ldc, self.batch,
        ]
        .iter()
        .all(|&v| v <= i32::MAX as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `gemmStridedBatched(opA, opB, m, n, k, 1, A, lda, sA, B, ldb, sB, 0, C, ldc, sC)`
    /// computes, element by element, column-major, as cuBLAS documents it.
    fn blas_reference(p: &GemmPlan, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; p.batch * p.batch_stride_c.max(p.m * p.n)];
        let at = |x: &BlasOperand, data: &[f64], batch: usize, i: usize, j: usize| {
            // op(X)[i, j] for column-major X with leading dimension ld.
            let (r, c) = if x.transposed { (j, i) } else { (i, j) };
            data[batch * x.batch_stride + c * x.ld + r]
        };
        for batch in 0..p.batch {
            for j in 0..p.n {
                for i in 0..p.m {
                    let mut acc = 0.0;
                    for l in 0..p.k {
                        acc += at(&p.a, a, batch, i, l) * at(&p.b, b, batch, l, j);
                    }
                    c[batch * p.batch_stride_c + j * p.ldc + i] = acc;
                }
            }
        }
        c
    }

    /// A tensor of `shape` stored with the given order of dimensions (outermost first) and
    /// `pad` extra elements on its innermost stored dimension: its buffer and strides.
    fn stored(shape: &[usize], order: &[usize], pad: usize, seed: u64) -> (Vec<f64>, Vec<usize>) {
        let mut strides = vec![0; shape.len()];
        let mut step = 1;
        for (pos, &d) in order.iter().enumerate().rev() {
            strides[d] = step;
            step *= shape[d] + if pos == order.len() - 1 { pad } else { 0 };
        }
        let mut state = seed;
        let buffer = (0..step.max(1))
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f64 / (1u64 << 24) as f64) - 0.5
            })
            .collect();
        (buffer, strides)
    }

    fn element(buffer: &[f64], strides: &[usize], index: &[usize]) -> f64 {
        buffer[index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>()]
    }

    /// Row-major `lhs · rhs` computed from the strided buffers directly.
    fn matmul_reference(
        ls: &[usize],
        (lb, lst): (&[f64], &[usize]),
        rs: &[usize],
        (rb, rst): (&[f64], &[usize]),
    ) -> Vec<f64> {
        let rank = ls.len();
        let (m, k, n) = (ls[rank - 2], ls[rank - 1], rs[rank - 1]);
        let batch: Vec<usize> = ls[..rank - 2].to_vec();
        let count: usize = batch.iter().product();
        let mut out = Vec::with_capacity(count * m * n);
        for flat in 0..count {
            let mut idx = vec![0; rank - 2];
            let mut rest = flat;
            for d in (0..rank - 2).rev() {
                idx[d] = rest % batch[d];
                rest /= batch[d];
            }
            let ridx: Vec<usize> = idx
                .iter()
                .zip(&rs[..rank - 2])
                .map(|(&i, &s)| if s == 1 { 0 } else { i })
                .collect();
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0.0;
                    for l in 0..k {
                        let li: Vec<usize> = idx.iter().copied().chain([i, l]).collect();
                        let ri: Vec<usize> = ridx.iter().copied().chain([l, j]).collect();
                        acc += element(lb, lst, &li) * element(rb, rst, &ri);
                    }
                    out.push(acc);
                }
            }
        }
        out
    }

    fn check(
        ls: &[usize],
        lorder: &[usize],
        lpad: usize,
        rs: &[usize],
        rorder: &[usize],
        rpad: usize,
    ) -> GemmPlan {
        let (lb, lst) = stored(ls, lorder, lpad, 3);
        let (rb, rst) = stored(rs, rorder, rpad, 5);
        check_buffers(ls, (&lb, &lst), rs, (&rb, &rst))
    }

    /// As `check`, for explicit strides (a view into a larger buffer).
    fn check_strided(ls: &[usize], lst: &[usize], rs: &[usize], rst: &[usize]) -> GemmPlan {
        let span = |s: &[usize], st: &[usize]| {
            1 + s.iter().zip(st).map(|(d, t)| (d - 1) * t).sum::<usize>()
        };
        let (lb, _) = stored(&[span(ls, lst)], &[0], 0, 3);
        let (rb, _) = stored(&[span(rs, rst)], &[0], 0, 5);
        check_buffers(ls, (&lb, lst), rs, (&rb, rst))
    }

    fn check_buffers(
        ls: &[usize],
        (lb, lst): (&[f64], &[usize]),
        rs: &[usize],
        (rb, rst): (&[f64], &[usize]),
    ) -> GemmPlan {
        let (lb, lst, rb, rst) = (lb.to_vec(), lst.to_vec(), rb.to_vec(), rst.to_vec());
        let p = plan(ls, &lst, rs, &rst)
            .unwrap_or_else(|| panic!("no plan for {ls:?}/{lst:?} · {rs:?}/{rst:?}"));
        let got = blas_reference(&p, &rb, &lb);
        let want = matmul_reference(ls, (&lb, &lst), rs, (&rb, &rst));
        assert_eq!(got.len(), want.len(), "{ls:?} · {rs:?}: output size");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 1e-12,
                "{ls:?} · {rs:?} [{i}]: {g} vs {w} ({p:?})"
            );
        }
        p
    }

    #[test]
    fn row_major_operands_need_no_transpose() {
        let p = check(&[5, 7], &[0, 1], 0, &[7, 3], &[0, 1], 0);
        assert_eq!(
            (p.m, p.n, p.k, p.a.transposed, p.b.transposed),
            (3, 5, 7, false, false)
        );
    }

    #[test]
    fn transposed_views_are_read_through_their_strides() {
        // kᵀ in attention, Wᵀ and xᵀ in the backward products.
        let p = check(&[5, 7], &[1, 0], 0, &[7, 3], &[1, 0], 0);
        assert!(p.a.transposed && p.b.transposed);
        check(&[5, 7], &[0, 1], 0, &[7, 3], &[1, 0], 0);
        check(&[5, 7], &[1, 0], 0, &[7, 3], &[0, 1], 0);
    }

    #[test]
    fn padded_rows_keep_their_leading_dimension() {
        let p = check(&[5, 7], &[0, 1], 3, &[7, 3], &[0, 1], 2);
        assert_eq!((p.a.ld, p.b.ld), (5, 10));
        check(&[5, 7], &[1, 0], 4, &[7, 3], &[1, 0], 1);
    }

    #[test]
    fn batches_of_equal_shape_take_strides() {
        // Attention's q·kᵀ and p·v: (B, H, L, d).
        let p = check(
            &[2, 3, 4, 5],
            &[0, 1, 2, 3],
            0,
            &[2, 3, 5, 4],
            &[0, 1, 3, 2],
            0,
        );
        assert_eq!((p.batch, p.batch_stride_c), (6, 16));
        check(
            &[2, 3, 4, 5],
            &[0, 1, 2, 3],
            0,
            &[2, 3, 5, 6],
            &[0, 1, 2, 3],
            0,
        );
        // A transposed lhs in a batch, and a padded one.
        check(
            &[2, 3, 4, 5],
            &[0, 1, 3, 2],
            0,
            &[2, 3, 5, 6],
            &[0, 1, 2, 3],
            0,
        );
        check(
            &[2, 3, 4, 5],
            &[0, 1, 2, 3],
            3,
            &[2, 3, 5, 6],
            &[0, 1, 3, 2],
            2,
        );
    }

    #[test]
    fn a_shared_weight_folds_the_batch_into_rows() {
        // A linear layer: x [B, L, in] · W [1, in, out].
        let p = check(&[3, 4, 5], &[0, 1, 2], 0, &[1, 5, 6], &[0, 1, 2], 0);
        assert_eq!((p.batch, p.n, p.m), (1, 12, 6));
        // Wᵀ stored [out, in] (burn's Linear holds [in, out]; a transposed weight view).
        let p = check(&[3, 4, 5], &[0, 1, 2], 0, &[1, 5, 6], &[0, 2, 1], 0);
        assert!(p.a.transposed && p.batch == 1);
        // Rows that do not run on through the batch: a stride-0 broadcast batch instead.
        let p = check(&[3, 4, 5], &[1, 0, 2], 0, &[1, 5, 6], &[0, 1, 2], 0);
        assert_eq!((p.batch, p.a.batch_stride), (3, 0));
        check(&[3, 4, 5], &[0, 2, 1], 0, &[1, 5, 6], &[0, 1, 2], 0);
        // Batches spaced wider than their rows (every other matrix of a larger tensor).
        let p = check_strided(&[3, 4, 5], &[40, 5, 1], &[1, 5, 6], &[30, 6, 1]);
        assert_eq!((p.batch, p.b.batch_stride), (3, 40));
    }

    #[test]
    fn degenerate_sizes_still_plan() {
        check(&[1, 7], &[0, 1], 0, &[7, 1], &[0, 1], 0);
        check(&[5, 1], &[0, 1], 0, &[1, 3], &[0, 1], 0);
        check(&[2, 1, 7], &[0, 1, 2], 0, &[1, 7, 3], &[0, 1, 2], 0);
        check(
            &[4, 1, 1, 3],
            &[0, 1, 2, 3],
            0,
            &[4, 1, 3, 2],
            &[0, 1, 2, 3],
            0,
        );
    }

    #[test]
    fn layouts_it_cannot_read_ask_for_a_copy() {
        // Neither dimension unit-stride (a strided slice).
        assert_eq!(plan(&[4, 5], &[10, 2], &[5, 3], &[3, 1]), None);
        // Batch dimensions that do not nest (heads stored outside the batch).
        assert_eq!(
            plan(
                &[2, 3, 4, 5],
                &[20, 40, 5, 1],
                &[2, 3, 5, 6],
                &[90, 30, 6, 1]
            ),
            None
        );
        // Mismatched inner or batch sizes: not a product at all.
        assert_eq!(plan(&[4, 5], &[5, 1], &[6, 3], &[3, 1]), None);
        assert_eq!(plan(&[2, 4, 5], &[20, 5, 1], &[3, 5, 3], &[15, 3, 1]), None);
    }
}
