//! `fgclip bench embed` for FG-CLIP 2 presets.

use anyhow::{Result, bail};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use fgclip_core::{Precision, Weights};

use super::{Timing, time};
use crate::device::host_data;

/// Forward timings of FG-CLIP 2's image tower (pooled, and pooled + dense features) at
/// each patch budget of `patches` (a full square grid, so no padding) and of its text tower
/// (the short walk, 64 positions), on random weights; `runs`: (warm-up, timed).
pub fn bench_embed_fgclip2(
    config: &fgclip_core::fgclip2::Fgclip2Config,
    batch: usize,
    patches: &[usize],
    (warmup, iters): (usize, usize),
    precision: Precision,
    device: &Device,
) -> Result<Vec<Timing>> {
    use fgclip_core::fgclip2::{Fgclip2Model, Fgclip2RandomInit, NaflexPixels, Walk};
    let init = Fgclip2RandomInit::new(config, 0);
    let mut model = Fgclip2Model::load(&Weights::new(&init, device), config)?;
    model.set_precision(precision);
    let mut failure: Option<anyhow::Error> = None;
    let mut keep = |r: Result<TensorData>| {
        if let Err(e) = r {
            failure.get_or_insert(e);
        }
    };
    let mut timings = Vec::new();
    let dim = config.vision_config.patch_dim();
    for &p in patches {
        let side = (p as f64).sqrt() as usize;
        if side * side != p || p == 0 {
            bail!("--patches {p}: give square budgets (256, 576, 1024, …)");
        }
        let x = NaflexPixels {
            pixel_values: Tensor::<3>::random(
                [batch, p, dim],
                Distribution::Normal(0.0, 1.0),
                device,
            ),
            spatial_shapes: vec![(side, side); batch],
        };
        timings.push(time(
            &format!("image forward, {p} patches"),
            batch,
            warmup,
            iters,
            || {
                keep(host_data(model.image_features(&x)));
            },
        ));
        timings.push(time(
            &format!("image + dense, {p} patches"),
            batch,
            warmup,
            iters,
            || {
                let (pooled, dense) = model.image_and_dense_features(&x);
                keep(host_data(pooled));
                keep(host_data(dense));
            },
        ));
    }
    let l = model.text_model.max_length(Walk::Short);
    let vocab = config.text_config.vocab_size as i64;
    let ids: Vec<i64> = (0..batch)
        .flat_map(|b| {
            (0..l).map(move |t| (2 + (b as i64 * 31 + t as i64 * 7) % (vocab - 2)).max(0))
        })
        .collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, l]), device);
    timings.push(time("text forward (short)", batch, warmup, iters, || {
        keep(host_data(model.text_features(ids.clone(), Walk::Short)));
    }));
    match failure {
        Some(e) => Err(e),
        None => Ok(timings),
    }
}
