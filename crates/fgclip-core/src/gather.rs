//! How the loss sees the rows of other processes (DESIGN.md §7, "several processes").
//!
//! Data-parallel training gathers every contrastive term's embeddings from all processes,
//! so each loss is the loss of the whole global batch. The gathered matrix keeps this
//! process's rows in the autodiff graph and holds the others' as constants: the backward
//! pass gives each process the gradient of the global loss with respect to its own rows,
//! and summing the tower gradients over processes gives the one-process gradient. The
//! logit scales act after the gather, so every process has their whole gradient already
//! (count it once). The library knows no transport: the application implements
//! [`RowGather`] over its collective (MPI, or one process).

use burn::tensor::{Device, Tensor};

/// The collective operations the loss needs. Every process must make the same calls in
/// the same order (the loss guarantees it: it calls them whether or not it has rows).
pub trait RowGather {
    /// Every process's rows in rank order, this process's `local` (None: no rows here)
    /// in its place with its graph, the others' as constants; `width` is the row length.
    /// None when no process has a row.
    fn gather(&self, local: Option<Tensor<2>>, width: usize, device: &Device) -> Option<Tensor<2>>;
    /// The sum over processes of a count.
    fn sum_count(&self, local: usize) -> usize;
    /// Number of processes.
    fn world_size(&self) -> usize;
}

/// One process: the local rows are all the rows.
#[derive(Clone, Copy, Debug, Default)]
pub struct OneProcess;

impl RowGather for OneProcess {
    fn gather(
        &self,
        local: Option<Tensor<2>>,
        _width: usize,
        _device: &Device,
    ) -> Option<Tensor<2>> {
        local
    }

    fn sum_count(&self, local: usize) -> usize {
        local
    }

    fn world_size(&self) -> usize {
        1
    }
}

/// The gathered matrix from host rows of the other processes: `before` (the rows of lower
/// ranks) and `after` (higher ranks), each (rows, width) row-major, around `local`.
pub fn assemble(
    before: Vec<f32>,
    local: Option<Tensor<2>>,
    after: Vec<f32>,
    width: usize,
    device: &Device,
) -> Option<Tensor<2>> {
    let constant = |rows: Vec<f32>| -> Option<Tensor<2>> {
        (!rows.is_empty()).then(|| {
            let n = rows.len() / width.max(1);
            Tensor::<2>::from_data(burn::tensor::TensorData::new(rows, [n, width]), device)
        })
    };
    let parts: Vec<Tensor<2>> = [constant(before), local, constant(after)]
        .into_iter()
        .flatten()
        .collect();
    match parts.len() {
        0 => None,
        1 => parts.into_iter().next(),
        _ => Some(Tensor::cat(parts, 0)),
    }
}
