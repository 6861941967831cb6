//! What a run feeds the loss: batches as the model's tensors, a sidecar's hard negatives
//! joined to the annotations, and the text layout (long path, H, cut captions).

use anyhow::{Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use fgclip_core::fgclip::{HardNegatives, LongCaptions, VideoBatch};
use fgclip_core::fgclip2::{Fgclip2VideoBatch, NaflexPixels};

use crate::data::annotations;
use crate::data::batch::{Batch, TextLayout};

/// The positions region captions (rows of `len` ids) and their hard negatives (none
/// when `hard` is empty) keep: they share a text-tower pass, so one length for both, up to
/// the last `eot` of any of their rows.
pub(crate) fn region_text_length(region: &[i64], hard: &[i64], len: usize, eot: i64) -> usize {
    use fgclip_core::tokenizer::{TRIM_MULTIPLE, trimmed_length};
    let cut = |ids: &[i64]| trimmed_length(ids, ids.len() / len.max(1), len, eot, TRIM_MULTIPLE);
    let lr = cut(region);
    if hard.is_empty() {
        lr
    } else {
        lr.max(cut(hard))
    }
}

/// A collated batch as the model's tensors. Every id tensor is cut after the last
/// `eot` of its rows ([`fgclip_core::tokenizer::trimmed_length`]): the same embeddings,
/// less text-tower work than the padded length.
pub(super) fn to_video_batch(batch: &Batch, eot: i64, device: &Device) -> VideoBatch {
    use fgclip_core::tokenizer::{TRIM_MULTIPLE, trim_rows, trimmed_length};
    let (b, t, n, s, l) = (batch.b, batch.t, batch.n, batch.s, batch.context_length);
    let trim = |ids: &[i64], rows: usize, len: usize| -> (Vec<i64>, usize) {
        let keep = trimmed_length(ids, rows, len, eot, TRIM_MULTIPLE);
        (trim_rows(ids, rows, len, keep), keep)
    };
    let global_long = (batch.long_length > 0).then(|| {
        let (ids, ll) = trim(&batch.global_long_input_ids, b, batch.long_length);
        LongCaptions {
            input_ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [b, ll]), device),
            mask: batch.global_long_mask.clone(),
        }
    });
    let (global, lg) = trim(&batch.global_input_ids, b, l);
    let lr = region_text_length(&batch.region_input_ids, &batch.hard_input_ids, l, eot);
    let hard_negatives = (batch.h > 0).then(|| HardNegatives {
        input_ids: Tensor::<4, Int>::from_data(
            TensorData::new(
                trim_rows(&batch.hard_input_ids, b * n * batch.h, l, lr),
                [b, n, batch.h, lr],
            ),
            device,
        ),
        mask: batch.hard_mask.clone(),
    });
    VideoBatch {
        pixel_values: Tensor::from_data(
            TensorData::new(batch.pixel_values.clone(), [b, t, 3, s, s]),
            device,
        ),
        global_input_ids: Tensor::<2, Int>::from_data(TensorData::new(global, [b, lg]), device),
        region_input_ids: Tensor::<3, Int>::from_data(
            TensorData::new(trim_rows(&batch.region_input_ids, b * n, l, lr), [b, n, lr]),
            device,
        ),
        boxes: batch.boxes.clone(),
        bbox_mask: batch.bbox_mask.clone(),
        global_long,
        hard_negatives,
    }
}

/// Reads a hard-negative sidecar and adds its negatives to the annotations' regions. An
/// item with an error stops the run (a region must not train without its negatives
/// unnoticed); items that match no clip or region are counted in one warning.
pub(super) fn join_hard_negatives(
    dataset: &mut annotations::Dataset,
    path: &std::path::Path,
    log: &dyn Fn(&str),
) -> Result<()> {
    let sidecar = crate::data::hard_negatives::load(path)?;
    if sidecar.errors() > 0 {
        bail!(
            "{} error(s) in the hard-negative file (run `fgclip validate --hard-negatives`): {}",
            sidecar.errors(),
            sidecar.describe_errors(3)
        );
    }
    let report = crate::data::hard_negatives::join(&mut dataset.clips, &sidecar);
    log(&format!(
        "hard negatives: {} of {} item(s) of {} joined ({} captions)",
        report.matched,
        sidecar.items.len(),
        path.display(),
        sidecar.negatives()
    ));
    if let Some((item, why)) = report.unmatched.first() {
        log(&format!(
            "warning: {} hard-negative item(s) match no clip or region of {} (item {item}: {why})",
            report.unmatched.len(),
            dataset.path.display()
        ));
    }
    Ok(())
}

/// The text layout of a run (DESIGN.md §7) and its one-time notes: long captions need the
/// model's long path (`long_length`, none without one); H is the most negatives any region
/// has (0 when μ = 0); captions longer than their path are cut, and counted once
/// (`tokens` counts a caption's tokens).
pub(super) fn text_layout(
    long_length: Option<usize>,
    clips: &[annotations::Clip],
    tokens: &dyn Fn(&str) -> usize,
    hard_negative_weight: f64,
    context_length: usize,
    log: &dyn Fn(&str),
) -> TextLayout {
    let with_long = clips.iter().filter(|c| c.long_caption.is_some()).count();
    if long_length.is_none() && with_long > 0 {
        log(&format!(
            "warning: {with_long} clip(s) have a long_caption, but the model has no long-text path (plain CLIP): long captions are ignored"
        ));
    }
    let hard_negatives = if hard_negative_weight > 0.0 {
        clips
            .iter()
            .flat_map(|c| c.regions.iter().map(|r| r.hard_negatives.len()))
            .max()
            .unwrap_or(0)
    } else {
        0
    };
    let too_long = |text: &str, limit: usize| tokens(text) > limit;
    let mut cut = 0usize;
    for c in clips {
        cut += usize::from(too_long(&c.global_caption, context_length));
        for r in &c.regions {
            cut += usize::from(too_long(&r.caption, context_length));
            cut += r
                .hard_negatives
                .iter()
                .filter(|n| too_long(n, context_length))
                .count();
        }
        if let (Some(text), Some(ll)) = (&c.long_caption, long_length) {
            cut += usize::from(too_long(text, ll));
        }
    }
    if cut > 0 {
        log(&format!(
            "note: {cut} caption(s) are longer than their path ({context_length} tokens; long captions {}) and are cut, as the model's tokenizer cuts them",
            long_length.map_or("ignored".into(), |l| l.to_string())
        ));
    }
    TextLayout {
        context_length,
        long_length,
        hard_negatives,
    }
}

/// A collated batch in FG-CLIP 2's tensors: the frames' patches as the image processor
/// lays them out, ids at their full padded length (FG-CLIP 2's text tower pools the last
/// position, so no cut).
pub(super) fn to_fgclip2_batch(batch: &Batch, device: &Device) -> Fgclip2VideoBatch {
    let (b, t, n, l) = (batch.b, batch.t, batch.n, batch.context_length);
    let p = batch.patches;
    let dim = batch.pixel_values.len() / (b * t * p).max(1);
    let ids2 = |v: &[i64], len: usize| {
        Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), [b, len]), device)
    };
    Fgclip2VideoBatch {
        pixels: NaflexPixels {
            pixel_values: Tensor::from_data(
                TensorData::new(batch.pixel_values.clone(), [b * t, p, dim]),
                device,
            ),
            spatial_shapes: batch.spatial_shapes.clone(),
        },
        frames: t,
        global_input_ids: ids2(&batch.global_input_ids, l),
        region_input_ids: Tensor::<3, Int>::from_data(
            TensorData::new(batch.region_input_ids.clone(), [b, n, l]),
            device,
        ),
        boxes: batch.boxes.clone(),
        bbox_mask: batch.bbox_mask.clone(),
        global_long: (batch.long_length > 0).then(|| LongCaptions {
            input_ids: ids2(&batch.global_long_input_ids, batch.long_length),
            mask: batch.global_long_mask.clone(),
        }),
        hard_negatives: (batch.h > 0).then(|| HardNegatives {
            input_ids: Tensor::<4, Int>::from_data(
                TensorData::new(batch.hard_input_ids.clone(), [b, n, batch.h, l]),
                device,
            ),
            mask: batch.hard_mask.clone(),
        }),
    }
}
