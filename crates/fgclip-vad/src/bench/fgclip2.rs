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

/// `fgclip bench train` for an FG-CLIP 2 preset: median time of one optimizer step of
/// FG-CLIP 2's loss (every term), its backward and AdamW, on B clips of T frames of
/// `patches` patches (a square grid) with random pixels; 4 region slots a clip, 2 boxed on
/// every other frame, each with H negatives; a short (64) and a long (196) caption a clip,
/// all padded to their full length as FG-CLIP 2 feeds them.
pub fn bench_train_fgclip2(
    config: &fgclip_core::fgclip2::Fgclip2Config,
    shape: &super::TrainBench,
    patches: usize,
    device: &Device,
    started: std::time::Instant,
) -> Result<super::TrainTiming> {
    use fgclip_core::fgclip::{HardNegatives, LongCaptions, ScaleInit};
    use fgclip_core::fgclip2::video::SCALE_INIT;
    use fgclip_core::fgclip2::{
        Fgclip2LossWeights, Fgclip2RandomInit, Fgclip2Video, Fgclip2VideoBatch, NaflexPixels,
    };
    let super::TrainBench {
        batch,
        frames,
        warmup,
        iters,
        precision,
        hard_negatives: h,
        pad_text: _,
    } = *shape;
    let side = (patches as f64).sqrt() as usize;
    if side * side != patches || patches == 0 {
        bail!("--patches {patches}: give a square budget (256, 576, 1024, …)");
    }
    let device = device.clone().autodiff();
    let init = Fgclip2RandomInit::new(config, 0);
    let mut model = Fgclip2Video::load(
        &Weights::new(&init, &device),
        config,
        ScaleInit::Value(SCALE_INIT),
        ScaleInit::Value(SCALE_INIT),
    )?;
    model.model.set_precision(precision);
    let t = &config.text_config;
    let (l, ll, n) = (t.max_position_embeddings, t.longtext_len, 4usize);
    // 20 real tokens (bos … eos) padded on the left to the walk's length, as Gemma pads.
    let caption = |k: usize, len: usize| -> Vec<i64> {
        (0..len)
            .map(|i| match len - 1 - i {
                0 => 1,
                1..=18 => 4 + ((k * 31 + i * 7) % (t.vocab_size - 4)) as i64,
                19 => 2,
                _ => 0,
            })
            .collect()
    };
    let ids = |rows: usize, base: usize, len: usize| -> Vec<i64> {
        (0..rows).flat_map(|k| caption(k + base, len)).collect()
    };
    let (boxes, mask) = super::bench_regions(batch, frames, n);
    let dim = config.vision_config.patch_dim();
    let vb = Fgclip2VideoBatch {
        pixels: NaflexPixels {
            pixel_values: Tensor::random(
                [batch * frames, patches, dim],
                Distribution::Normal(0.0, 1.0),
                &device,
            ),
            spatial_shapes: vec![(side, side); batch * frames],
        },
        frames,
        global_input_ids: Tensor::<2, Int>::from_data(
            TensorData::new(ids(batch, 0, l), [batch, l]),
            &device,
        ),
        region_input_ids: Tensor::<3, Int>::from_data(
            TensorData::new(ids(batch * n, 100, l), [batch, n, l]),
            &device,
        ),
        boxes,
        bbox_mask: mask,
        global_long: Some(LongCaptions {
            input_ids: Tensor::<2, Int>::from_data(
                TensorData::new(ids(batch, 50, ll), [batch, ll]),
                &device,
            ),
            mask: vec![1; batch],
        }),
        hard_negatives: (h > 0).then(|| HardNegatives {
            input_ids: Tensor::<4, Int>::from_data(
                TensorData::new(ids(batch * n * h, 10_000, l), [batch, n, h, l]),
                &device,
            ),
            mask: (0..batch * n * h)
                .map(|k| u8::from((k / h) % n < 2))
                .collect(),
        }),
    };
    let weights = Fgclip2LossWeights::default();
    super::time_train_steps(model, &device, started, batch, (warmup, iters), |m| {
        m.loss(&vb, &weights, 0.5).loss
    })
}
