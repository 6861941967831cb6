//! `fgclip bench collective`: the collectives of one data-parallel step.

use anyhow::Result;
use burn::tensor::{Device, Distribution, Tensor};
use fgclip_core::{ClipConfig, RandomInit, Weights};

use super::{Timing, time};

/// Figures of `fgclip bench collective` (run under `mpirun -np W`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CollectiveTiming {
    pub engine: &'static str,
    pub world_size: usize,
    /// Floats in the model's gradients.
    pub gradient_floats: usize,
    /// The gradient all-reduce: device → host, all-reduce, host → device.
    pub all_reduce: Timing,
    /// One step's row gathers: video, global text, region and region text embeddings.
    pub gathers: Timing,
}

/// Times the collectives of one data-parallel step at a preset's size: the all-reduce of
/// every parameter's gradient and the four row gathers of `rows` embeddings per rank.
pub fn bench_collective(
    config: &ClipConfig,
    collective: &dyn crate::train::collective::Collective,
    rows: usize,
    iters: usize,
    device: &Device,
) -> Result<CollectiveTiming> {
    use burn::optim::GradientsParams;
    use fgclip_core::fgclip::{FgClip, Scales};
    use fgclip_core::gather::RowGather;
    use fgclip_core::names::ParamRef;
    let device_ad = device.clone().autodiff();
    let model = FgClip::load(
        &Weights::new(&RandomInit::new(config, 0), &device_ad),
        config,
        Scales::fresh(),
    )?;
    // Gradients of the parameters' shapes, on the inner device as backward leaves them.
    let fresh_grads = || {
        let mut g = GradientsParams::new();
        for p in model.named_params() {
            match p.param {
                ParamRef::D1(t) => g.register(
                    t.id,
                    Tensor::<1>::random(t.val().dims(), Distribution::Normal(0.0, 1.0), device),
                ),
                ParamRef::D2(t) => g.register(
                    t.id,
                    Tensor::<2>::random(t.val().dims(), Distribution::Normal(0.0, 1.0), device),
                ),
            }
        }
        g
    };
    let gradient_floats: usize = model
        .named_params()
        .iter()
        .map(|p| match p.param {
            ParamRef::D1(t) => t.val().dims().iter().product::<usize>(),
            ParamRef::D2(t) => t.val().dims().iter().product(),
        })
        .sum();
    let mut failure = None;
    let mut grads = Some(fresh_grads());
    let all_reduce = time("gradient all-reduce", 1, 1, iters, || {
        let mut g = grads.take().unwrap_or_else(fresh_grads);
        if let Err(e) = crate::train::collective::all_reduce_gradients(&model, &mut g, collective) {
            failure = Some(e);
        }
        grads = Some(g);
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let p = config.projection_dim;
    let local = Tensor::<2>::random([rows, p], Distribution::Normal(0.0, 1.0), device);
    let gather = crate::train::collective::CollectiveGather(collective);
    let gathers = time("row gathers (4 per step)", rows, 1, iters, || {
        for _ in 0..4 {
            let _ = gather.gather(Some(local.clone()), p, device);
        }
    });
    Ok(CollectiveTiming {
        engine: collective.engine(),
        world_size: collective.world_size(),
        gradient_floats,
        all_reduce,
        gathers,
    })
}
