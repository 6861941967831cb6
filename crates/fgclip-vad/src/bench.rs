//! `fgclip bench`: timing of model work on random weights of a preset.

use std::time::Instant;

use anyhow::Result;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use fgclip_core::{ClipConfig, ClipModel, RandomInit, Weights};

/// Timing of one measured operation, in milliseconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Timing {
    pub name: String,
    pub batch: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub items_per_s: f64,
}

fn time<F: FnMut()>(name: &str, batch: usize, warmup: usize, iters: usize, mut f: F) -> Timing {
    for _ in 0..warmup {
        f();
    }
    let mut ms: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    Timing {
        name: name.to_string(),
        batch,
        median_ms: median,
        min_ms: ms[0],
        max_ms: ms[ms.len() - 1],
        items_per_s: batch as f64 / (median / 1e3),
    }
}

/// Forward timings of the image tower (pooled, and pooled + FG-CLIP dense grid) and the
/// text tower, each on a batch of `batch`.
pub fn bench_embed(
    config: &ClipConfig,
    batch: usize,
    warmup: usize,
    iters: usize,
    device: &Device,
) -> Result<Vec<Timing>> {
    let model = ClipModel::load(&Weights::new(&RandomInit::new(config, 0), device), config)?;
    let s = config.vision_config.image_size;
    let c = config.vision_config.num_channels;
    let pixels = Tensor::<4>::random([batch, c, s, s], Distribution::Normal(0.0, 1.0), device);
    let l = config.text_config.max_position_embeddings;
    // Captions of 20 tokens (a typical region caption), padded with 0.
    let ids: Vec<i64> = (0..batch)
        .flat_map(|b| {
            (0..l).map(move |t| match t {
                0 => 49406,
                1..=18 => 320 + ((b * 31 + t * 7) % 4000) as i64,
                19 => 49407,
                _ => 0,
            })
        })
        .collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, l]), device);
    Ok(vec![
        time("image forward", batch, warmup, iters, || {
            let _ = model.encode_image(pixels.clone(), false).embeds.into_data();
        }),
        time("image forward + dense grid", batch, warmup, iters, || {
            let out = model.encode_image(pixels.clone(), true);
            let _ = out.embeds.into_data();
            let _ = out.patch_grid.map(|g| g.into_data());
        }),
        time("text forward", batch, warmup, iters, || {
            let _ = model.encode_text(ids.clone()).into_data();
        }),
    ])
}
