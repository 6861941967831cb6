//! The collective operations of data-parallel training (DESIGN.md §7): one process, or
//! MPI ranks started by `mpirun` / `srun`.
//!
//! The training code only sees [`Collective`]: variable-count all-gather, all-reduce sums,
//! broadcast from rank 0 and a barrier, on host buffers. The loss sees the rows of the
//! other ranks through [`RowGather`] (`fgclip_core::gather`), implemented here on top of
//! the collective. A NCCL engine for multi-GPU nodes slots in as a third implementation of
//! the same trait, with device buffers instead of host copies (see `docs/collectives.md`).

use crate::trainee::Trainable;
use anyhow::Result;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use fgclip_core::gather::{RowGather, assemble};
use fgclip_core::names::ParamRef;

use crate::device::host_f32;

/// Collective operations over the ranks of one training job. Every rank must make the
/// same calls in the same order; a failure aborts the whole job (MPI's default).
pub trait Collective {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Every rank's `local` concatenated in rank order, and each rank's length.
    fn all_gather_f32(&self, local: &[f32]) -> (Vec<f32>, Vec<usize>);
    /// Element-wise sum over ranks, in place.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]);
    fn all_reduce_sum_u64(&self, buf: &mut [u64]);
    /// Rank 0's values, on every rank.
    fn broadcast_u64(&self, buf: &mut [u64]);
    fn barrier(&self);
    /// Which engine, for logs: "one process" or "MPI".
    fn engine(&self) -> &'static str;
    /// Ends the whole job now (every rank), with `code`.
    fn abort(&self, code: i32) -> !;
}

/// Training in one process: every operation is the identity.
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_gather_f32(&self, local: &[f32]) -> (Vec<f32>, Vec<usize>) {
        (local.to_vec(), vec![local.len()])
    }
    fn all_reduce_sum_f32(&self, _buf: &mut [f32]) {}
    fn all_reduce_sum_u64(&self, _buf: &mut [u64]) {}
    fn broadcast_u64(&self, _buf: &mut [u64]) {}
    fn barrier(&self) {}
    fn engine(&self) -> &'static str {
        "one process"
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// True when an MPI launcher (Open MPI's mpirun, a PMI/PMIx one such as Slurm's srun)
/// started this process as one rank of several.
pub fn launched_by_mpi() -> bool {
    let size = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .any(|k| size(k).is_some_and(|n| n > 1))
        || (std::env::var("PMIX_RANK").is_ok() && size("SLURM_NTASKS").is_some_and(|n| n > 1))
}

/// The collective of this process: MPI when an MPI launcher started several ranks, else
/// one process. A build without the `mpi` feature launched by mpirun is an error.
pub fn open() -> Result<Box<dyn Collective>> {
    if !launched_by_mpi() {
        return Ok(Box::new(SingleProcess));
    }
    #[cfg(feature = "mpi")]
    {
        Ok(Box::new(mpi_engine::Mpi::init()?))
    }
    #[cfg(not(feature = "mpi"))]
    {
        anyhow::bail!(
            "started by an MPI launcher, but this fgclip was built without MPI (cargo feature `mpi`; \
             install Open MPI — Debian: libopenmpi-dev — and build with default features)"
        )
    }
}

#[cfg(feature = "mpi")]
mod mpi_engine {
    use anyhow::{Result, bail};
    use mpi::collective::SystemOperation;
    use mpi::datatype::PartitionMut;
    use mpi::environment::Universe;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;

    use super::Collective;

    /// MPI_COMM_WORLD. Dropping it finalises MPI.
    pub struct Mpi {
        world: SimpleCommunicator,
        _universe: Universe,
    }

    impl Mpi {
        pub fn init() -> Result<Self> {
            let Some(universe) = mpi::initialize() else {
                bail!("MPI was already initialised in this process");
            };
            let world = universe.world();
            Ok(Self {
                world,
                _universe: universe,
            })
        }
    }

    impl Collective for Mpi {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn world_size(&self) -> usize {
            self.world.size() as usize
        }
        fn all_gather_f32(&self, local: &[f32]) -> (Vec<f32>, Vec<usize>) {
            let n = self.world_size();
            let mut counts = vec![0u64; n];
            self.world
                .all_gather_into(&(local.len() as u64), &mut counts[..]);
            let counts_i: Vec<mpi::Count> = counts.iter().map(|&c| c as mpi::Count).collect();
            let displs: Vec<mpi::Count> = counts_i
                .iter()
                .scan(0, |acc, &c| {
                    let d = *acc;
                    *acc += c;
                    Some(d)
                })
                .collect();
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            let mut out = vec![0f32; total];
            {
                let mut part = PartitionMut::new(&mut out[..], &counts_i[..], &displs[..]);
                self.world.all_gather_varcount_into(local, &mut part);
            }
            (out, counts.into_iter().map(|c| c as usize).collect())
        }
        fn all_reduce_sum_f32(&self, buf: &mut [f32]) {
            let send = buf.to_vec();
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
        }
        fn all_reduce_sum_u64(&self, buf: &mut [u64]) {
            let send = buf.to_vec();
            self.world
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
        }
        fn broadcast_u64(&self, buf: &mut [u64]) {
            self.world.process_at_rank(0).broadcast_into(buf);
        }
        fn barrier(&self) {
            self.world.barrier();
        }
        fn engine(&self) -> &'static str {
            "MPI"
        }
        fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
    }
}

/// The loss's view of the other ranks' rows, through a collective: this rank's rows go to
/// the host, every rank's are all-gathered, and the others' come back as constants.
pub struct CollectiveGather<'a>(pub &'a dyn Collective);

impl RowGather for CollectiveGather<'_> {
    fn gather(&self, local: Option<Tensor<2>>, width: usize, device: &Device) -> Option<Tensor<2>> {
        let c = self.0;
        if c.world_size() == 1 {
            return local;
        }
        // A device read that fails here would leave the other ranks waiting: abort instead.
        let host = match &local {
            Some(t) => host_f32(t.clone()).unwrap_or_else(|e| {
                eprintln!("error: rank {}: reading rows to gather: {e:#}", c.rank());
                std::process::exit(1)
            }),
            None => Vec::new(),
        };
        let (all, counts) = c.all_gather_f32(&host);
        let start: usize = counts[..c.rank()].iter().sum();
        let end = start + counts[c.rank()];
        assemble(
            all[..start].to_vec(),
            local,
            all[end..].to_vec(),
            width,
            device,
        )
    }

    fn sum_count(&self, local: usize) -> usize {
        let mut v = [local as u64];
        self.0.all_reduce_sum_u64(&mut v);
        v[0] as usize
    }

    fn world_size(&self) -> usize {
        self.0.world_size()
    }
}

/// Sums every parameter's gradient over the ranks (DESIGN.md §7): the towers' as they
/// are (each rank holds the part through its own rows); the scales of the gathered terms
/// ([`Trainable::gathered_only_params`]) divided by W first, since every rank already holds
/// their whole gradient. A parameter with a gradient on no rank stays without one (AdamW
/// leaves it alone, as in one process).
pub fn all_reduce_gradients<M: Trainable>(
    model: &M,
    grads: &mut GradientsParams,
    c: &dyn Collective,
) -> Result<()> {
    let w = c.world_size();
    if w == 1 {
        return Ok(());
    }
    let params = model.params();
    let once = model.gathered_only_params();
    let mut flat = Vec::new();
    let mut spans = Vec::with_capacity(params.len());
    let mut present = vec![0u64; params.len()];
    for (i, p) in params.iter().enumerate() {
        let (values, dims) = match p.param {
            ParamRef::D1(t) => (
                grads.get::<1>(t.id).map(host_f32).transpose()?,
                t.val().dims().to_vec(),
            ),
            ParamRef::D2(t) => (
                grads.get::<2>(t.id).map(host_f32).transpose()?,
                t.val().dims().to_vec(),
            ),
        };
        let n: usize = dims.iter().product();
        let start = flat.len();
        match values {
            Some(mut v) => {
                present[i] = 1;
                if once.contains(&p.name) {
                    v.iter_mut().for_each(|x| *x /= w as f32);
                }
                flat.extend(v);
            }
            None => flat.extend(std::iter::repeat_n(0f32, n)),
        }
        spans.push((start, dims));
    }
    // Gradients live on the inner (non-autodiff) device: take it from one of them.
    let device = params.iter().find_map(|p| match p.param {
        ParamRef::D1(t) => grads.get::<1>(t.id).map(|g| g.device()),
        ParamRef::D2(t) => grads.get::<2>(t.id).map(|g| g.device()),
    });
    c.all_reduce_sum_f32(&mut flat);
    c.all_reduce_sum_u64(&mut present);
    let Some(device) = device else {
        anyhow::bail!("rank {}: no parameter has a gradient", c.rank());
    };
    for (i, p) in params.iter().enumerate() {
        if present[i] == 0 {
            continue;
        }
        let (start, dims) = &spans[i];
        let n: usize = dims.iter().product();
        let values = flat[*start..start + n].to_vec();
        match p.param {
            ParamRef::D1(t) => {
                grads.remove::<1>(t.id);
                grads.register(
                    t.id,
                    Tensor::<1>::from_data(TensorData::new(values, [dims[0]]), &device),
                );
            }
            ParamRef::D2(t) => {
                grads.remove::<2>(t.id);
                grads.register(
                    t.id,
                    Tensor::<2>::from_data(TensorData::new(values, [dims[0], dims[1]]), &device),
                );
            }
        }
    }
    Ok(())
}
