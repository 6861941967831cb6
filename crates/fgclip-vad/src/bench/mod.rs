//! `fgclip bench`: timing of model work on random weights of a preset.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use fgclip_core::{ClipConfig, ClipModel, Precision, RandomInit, Weights};

use crate::device::host_data;

pub mod checkpoint;
mod collective;
pub mod fgclip2;
mod video;
pub mod watch;

pub use collective::*;
pub use fgclip2::bench_embed_fgclip2;
pub use video::*;

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
    precision: Precision,
    device: &Device,
) -> Result<Vec<Timing>> {
    let mut model = ClipModel::load(&Weights::new(&RandomInit::new(config, 0), device), config)?;
    model.set_precision(precision);
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
    // The same captions cut after their end-of-text (what `embed`, `detect` and training
    // feed the tower): equal embeddings, fewer positions.
    let keep = fgclip_core::tokenizer::trimmed_length(
        &ids,
        batch,
        l,
        49407,
        fgclip_core::tokenizer::TRIM_MULTIPLE,
    );
    let trimmed = Tensor::<2, Int>::from_data(
        TensorData::new(
            fgclip_core::tokenizer::trim_rows(&ids, batch, l, keep),
            [batch, keep],
        ),
        device,
    );
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, l]), device);
    // A device failure inside a timed closure is kept and reported after timing.
    let mut failure: Option<anyhow::Error> = None;
    let mut keep = |r: Result<TensorData>| {
        if let Err(e) = r {
            failure.get_or_insert(e);
        }
    };
    let timings = vec![
        time("image forward", batch, warmup, iters, || {
            keep(host_data(model.encode_image(pixels.clone(), false).embeds));
        }),
        time("image forward + dense grid", batch, warmup, iters, || {
            let out = model.encode_image(pixels.clone(), true);
            keep(host_data(out.embeds));
            if let Some(g) = out.patch_grid {
                keep(host_data(g));
            }
        }),
        time("text forward", batch, warmup, iters, || {
            keep(host_data(model.encode_text(ids.clone())));
        }),
        time("text forward, trimmed", batch, warmup, iters, || {
            keep(host_data(model.encode_text(trimmed.clone())));
        }),
    ];
    match failure {
        Some(e) => Err(e),
        None => Ok(timings),
    }
}

/// `fgclip bench train`: median time of one FG-CLIP optimizer step (loss, backward,
/// AdamW) on a synthetic batch: B clips of T frames, 2 regions each, boxes on every
/// other frame, 20-token captions.
pub fn bench_train(
    config: &ClipConfig,
    shape: &TrainBench,
    device: &Device,
    started: Instant,
) -> Result<TrainTiming> {
    let TrainBench {
        batch,
        frames,
        warmup,
        iters,
        precision,
        hard_negatives,
        pad_text,
    } = *shape;
    use fgclip_core::fgclip::{FgClip, LossWeights};
    let device = device.clone().autodiff();
    let mut model = Some(FgClip::load(
        &Weights::new(&RandomInit::new(config, 0), &device),
        config,
        fgclip_core::fgclip::Scales::fresh(),
    )?);
    if let Some(m) = model.as_mut() {
        m.set_precision(precision);
    }
    let vb = bench_batch(config, (batch, frames), hard_negatives, pad_text, &device);
    let weights = LossWeights {
        region: 0.1,
        hard_negative: 0.5,
    };
    let model = model.take().context("the model")?;
    time_train_steps(model, &device, started, batch, (warmup, iters), |m| {
        m.loss(&vb, &weights).loss
    })
}

/// The benchmarks' FG-CLIP batch: B clips of T random frames, 4 region slots (2 boxed on
/// every other frame), 20-token captions, `h` hard negatives a boxed region.
pub(crate) fn bench_batch(
    config: &ClipConfig,
    (batch, frames): (usize, usize),
    h: usize,
    pad_text: bool,
    device: &Device,
) -> fgclip_core::fgclip::VideoBatch {
    use fgclip_core::fgclip::{HardNegatives, VideoBatch};
    let (s, n, l) = (
        config.vision_config.image_size,
        4usize,
        config.text_config.max_position_embeddings,
    );
    let caption = |k: usize| -> Vec<i64> {
        (0..l)
            .map(|t| match t {
                0 => 49406,
                1..=18 => 320 + ((k * 31 + t * 7) % 4000) as i64,
                19 => 49407,
                _ => 0,
            })
            .collect()
    };
    let (boxes, mask) = bench_regions(batch, frames, n);
    // Captions as `fgclip train` feeds them (`train::inputs::to_video_batch`): cut after
    // the last end-of-text of their rows, the same loss and gradients (causal mask) with
    // fewer text positions; with `pad_text`, PyTorch's layout (the context length).
    use fgclip_core::tokenizer::{TRIM_MULTIPLE, trim_rows, trimmed_length};
    const EOT: i64 = 49407;
    let global: Vec<i64> = (0..batch).flat_map(caption).collect();
    let region: Vec<i64> = (0..batch * n).flat_map(|k| caption(k + 100)).collect();
    let hard: Vec<i64> = (0..batch * n * h)
        .flat_map(|k| caption(k + 10_000))
        .collect();
    let (lg, lr) = if pad_text {
        (l, l)
    } else {
        (
            trimmed_length(&global, batch, l, EOT, TRIM_MULTIPLE),
            crate::train::region_text_length(&region, &hard, l, EOT),
        )
    };
    VideoBatch {
        pixel_values: Tensor::random(
            [batch, frames, 3, s, s],
            Distribution::Normal(0.0, 1.0),
            device,
        ),
        global_input_ids: Tensor::from_data(
            TensorData::new(trim_rows(&global, batch, l, lg), [batch, lg]),
            device,
        ),
        region_input_ids: Tensor::from_data(
            TensorData::new(trim_rows(&region, batch * n, l, lr), [batch, n, lr]),
            device,
        ),
        boxes,
        bbox_mask: mask,
        global_long: None,
        // The two boxed regions of each clip have H negatives each, 20-token captions.
        hard_negatives: (h > 0).then(|| HardNegatives {
            input_ids: Tensor::from_data(
                TensorData::new(trim_rows(&hard, batch * n * h, l, lr), [batch, n, h, lr]),
                device,
            ),
            mask: (0..batch * n * h)
                .map(|k| u8::from((k / h) % n < 2))
                .collect(),
        }),
    }
}

/// The benchmarks' regions: in each of `batch` clips of `frames` frames, the first 2 of
/// `n` slots boxed on every other frame; (boxes (B, T, N, 4), mask (B, T, N)).
pub(crate) fn bench_regions(batch: usize, frames: usize, n: usize) -> (Vec<f32>, Vec<u8>) {
    let mut boxes = vec![0f32; batch * frames * n * 4];
    let mut mask = vec![0u8; batch * frames * n];
    for b in 0..batch {
        for f in (0..frames).step_by(2) {
            for i in 0..2 {
                let o = (b * frames + f) * n + i;
                mask[o] = 1;
                boxes[o * 4..o * 4 + 4].copy_from_slice(&[
                    0.1 + 0.3 * i as f32,
                    0.2,
                    0.5 + 0.3 * i as f32,
                    0.9,
                ]);
            }
        }
    }
    (boxes, mask)
}

/// Times optimizer steps of `model` (the loss `loss` gives, its backward, AdamW as `fgclip
/// train` runs it): the first step apart, then `warmup − 1` untimed and `iters` timed ones;
/// each phase ends with a device sync, so a GPU's queued work is charged to its own phase.
pub(crate) fn time_train_steps<M: burn::module::Module>(
    model: M,
    device: &Device,
    started: Instant,
    batch: usize,
    (warmup, iters): (usize, usize),
    mut loss: impl FnMut(&M) -> Tensor<1>,
) -> Result<TrainTiming> {
    use burn::optim::{AdamWConfig, GradientsParams};
    let mut optim = burn::optim::ModuleOptimizer::from(crate::train::adamw::FusedAdamW::new(
        &AdamWConfig::new(),
    ));
    let mut model = Some(model);
    let mut failure = None;
    // forward, backward, optimizer; cuBLAS products, their queue wait and their time.
    let mut phases: Vec<[f64; 6]> = Vec::new();
    let mut run = || {
        if let Some(m) = model.take() {
            let mut sync = || {
                if let Err(e) = device.sync() {
                    failure.get_or_insert(e);
                }
            };
            let t0 = Instant::now();
            let blas0 = fgclip_core::gemm::cublas_totals();
            let l = loss(&m);
            sync();
            let t1 = Instant::now();
            let grads = GradientsParams::from_grads(l.backward(), &m);
            sync();
            let t2 = Instant::now();
            let m = optim.step(1e-5, m, grads);
            // Force every queued update to finish before the clock stops (GPU backends
            // run asynchronously; reading one parameter would only wait for its own).
            sync();
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            let blas = fgclip_core::gemm::cublas_totals();
            phases.push([
                ms(t0, t1),
                ms(t1, t2),
                ms(t2, Instant::now()),
                (blas.products - blas0.products) as f64,
                blas.queue_wait_ms - blas0.queue_wait_ms,
                blas.gemm_ms - blas0.gemm_ms,
            ]);
            model = Some(m);
        }
    };
    // The first step compiles and tunes the kernels it needs (GPU backends): timed apart.
    let first = Instant::now();
    run();
    let first_step_ms = first.elapsed().as_secs_f64() * 1e3;
    let to_first_step_s = started.elapsed().as_secs_f64();
    let step = time(
        "train step (loss + backward + AdamW)",
        batch,
        warmup.saturating_sub(1),
        iters,
        &mut run,
    );
    let timed = &phases[phases.len().saturating_sub(iters.max(1))..];
    let median = |k: usize| {
        let mut v: Vec<f64> = timed.iter().map(|p| p[k]).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let split = StepSplit {
        forward_ms: median(0),
        backward_ms: median(1),
        optimizer_ms: median(2),
        cublas_products: median(3),
        cublas_queue_wait_ms: median(4),
        cublas_gemm_ms: median(5),
    };
    match failure {
        Some(e) => anyhow::bail!("the device failed during the train step: {e:?}"),
        None => Ok(TrainTiming {
            step,
            split,
            first_step_ms,
            to_first_step_s,
        }),
    }
}

/// What `fgclip bench train` runs: `batch` clips of `frames` frames, `warmup` untimed
/// steps (the first reported apart), then `iters` timed ones.
#[derive(Clone, Copy, Debug)]
pub struct TrainBench {
    pub batch: usize,
    pub frames: usize,
    pub warmup: usize,
    pub iters: usize,
    pub precision: Precision,
    /// Hard negatives per boxed region, H (0: none).
    pub hard_negatives: usize,
    /// Captions padded to the context length (PyTorch's layout) instead of cut after
    /// their end-of-text as `fgclip train` feeds them.
    pub pad_text: bool,
}

/// Figures of `fgclip bench train`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainTiming {
    /// The steps after the first.
    pub step: Timing,
    /// Medians of the timed steps' phases.
    pub split: StepSplit,
    /// The first step alone (on a GPU: kernel compilation and autotuning included).
    pub first_step_ms: f64,
    /// From `started` (the process start) to the end of the first step: device set-up,
    /// model build and the first step.
    pub to_first_step_s: f64,
}

/// Where a train step's time goes: the loss (forward), its backward, the optimizer.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct StepSplit {
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub optimizer_ms: f64,
    /// With `--matmul cublas*` on a GPU (else 0): products per step, the host's wait for
    /// cubecl's queue before them, and their own time (`fgclip_core::gemm::CublasTotals`).
    pub cublas_products: f64,
    pub cublas_queue_wait_ms: f64,
    pub cublas_gemm_ms: f64,
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
