//! `fgclip embed` for FG-CLIP 2 folders.
//!
//! Images arrive as FG-CLIP 2's processor returns them: `pixel_values` (N, P, C·p·p),
//! `spatial_shapes` (N, 2) and optionally `pixel_attention_mask` (N, P). The output holds
//! `image_embeds` (N, D, normalised), `dense_embeds` (N, P, D: `dense_feature_head`'s
//! feature of each patch, not normalised, zero on padding rows; image n's grid is its first
//! rows · columns rows, row-major) with `spatial_shapes`; and for texts `text_embeds`
//! (M, D, normalised), `input_ids` (M, 64, or 196 when any text took the long walk; shorter
//! rows padded on the right with the pad id) and `walk` (M: 0 short, 1 long, 2 box).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use fgclip_core::fgclip2::{Fgclip2Model, NaflexPixels, Walk};
use fgclip_core::model::normalize;

use super::{EmbedRequest, EmbedSummary, progress_bar, read_captions};
use crate::checkpoint::fgclip2::{load_fgclip2, load_fgclip2_tokenizer};
use crate::checkpoint::safetensors_io::{Array, read_arrays, write_arrays};
use crate::device::host_f32;

/// Images as FG-CLIP 2's processor lays them out, read from a safetensors file.
pub struct NaflexFile {
    pub pixel_values: Vec<f32>,
    pub n: usize,
    pub budget: usize,
    pub spatial_shapes: Vec<(usize, usize)>,
}

/// An integer tensor (int32 files are read as int64).
fn ints(array: &Array) -> Option<(Vec<usize>, Vec<i64>)> {
    match array {
        Array::I64 { shape, data } => Some((shape.clone(), data.clone())),
        Array::U8 { shape, data } => {
            Some((shape.clone(), data.iter().map(|&v| i64::from(v)).collect()))
        }
        _ => None,
    }
}

/// Reads and checks `pixel_values`, `spatial_shapes` and (if present) `pixel_attention_mask`.
pub fn read_naflex_pixels(path: &Path, patch_dim: usize) -> Result<NaflexFile> {
    let arrays = read_arrays(path)?;
    let name = path.display();
    let Some(Array::F32 { shape, data }) = arrays.get("pixel_values") else {
        bail!(
            "{name}: no float tensor `pixel_values` (N, P, {patch_dim}), as FG-CLIP 2's processor returns it"
        );
    };
    let &[n, budget, dim] = shape.as_slice() else {
        bail!("{name}: `pixel_values` has shape {shape:?}, FG-CLIP 2 needs (N, P, {patch_dim})");
    };
    if dim != patch_dim {
        bail!(
            "{name}: `pixel_values` has {dim} values a patch, the model's patches have {patch_dim}"
        );
    }
    let Some((sshape, sdata)) = arrays.get("spatial_shapes").and_then(ints) else {
        bail!("{name}: no integer tensor `spatial_shapes` (N, 2)");
    };
    if sshape != [n, 2] {
        bail!("{name}: `spatial_shapes` has shape {sshape:?}, expected [{n}, 2]");
    }
    let mut spatial_shapes = Vec::with_capacity(n);
    for (i, hw) in sdata.chunks_exact(2).enumerate() {
        let (h, w) = (hw[0], hw[1]);
        if h < 1 || w < 1 || (h * w) as usize > budget {
            bail!("{name}: image {i}: spatial shape ({h}, {w}) does not fit {budget} patches");
        }
        spatial_shapes.push((h as usize, w as usize));
    }
    if let Some(mask) = arrays.get("pixel_attention_mask") {
        let Some((mshape, mdata)) = ints(mask) else {
            bail!("{name}: `pixel_attention_mask` must be an integer tensor");
        };
        if mshape != [n, budget] {
            bail!("{name}: `pixel_attention_mask` has shape {mshape:?}, expected [{n}, {budget}]");
        }
        for (i, (row, &(h, w))) in mdata.chunks_exact(budget).zip(&spatial_shapes).enumerate() {
            if row
                .iter()
                .enumerate()
                .any(|(j, &m)| (m != 0) != (j < h * w))
            {
                bail!(
                    "{name}: image {i}: `pixel_attention_mask` is not {} ones then zeros, as its spatial shape ({h}, {w}) says",
                    h * w
                );
            }
        }
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{name}: `pixel_values` image {} holds a non-finite value ({})",
            i / (budget * dim),
            data[i]
        );
    }
    Ok(NaflexFile {
        pixel_values: data.clone(),
        n,
        budget,
        spatial_shapes,
    })
}

/// Normalised image embeddings (N, D) and dense features (N, P, D; zero on padding rows).
pub fn embed_naflex(
    model: &Fgclip2Model,
    file: &NaflexFile,
    batch_size: usize,
    device: &Device,
    progress: &indicatif::ProgressBar,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (p, dim) = (
        file.budget,
        file.pixel_values.len() / (file.n * file.budget).max(1),
    );
    let mut embeds = Vec::new();
    let mut dense = Vec::new();
    for start in (0..file.n).step_by(batch_size.max(1)) {
        let b = batch_size.max(1).min(file.n - start);
        let chunk = file.pixel_values[start * p * dim..(start + b) * p * dim].to_vec();
        let shapes = file.spatial_shapes[start..start + b].to_vec();
        let x = NaflexPixels {
            pixel_values: Tensor::from_data(TensorData::new(chunk, [b, p, dim]), device),
            spatial_shapes: shapes.clone(),
        };
        let (pooled, features) = model.image_and_dense_features(&x);
        embeds.extend(host_f32(normalize(pooled))?);
        let mut features = host_f32(features)?;
        let d = features.len() / (b * p);
        for (k, &(h, w)) in shapes.iter().enumerate() {
            features[(k * p + h * w) * d..(k + 1) * p * d].fill(0.0);
        }
        dense.extend(features);
        progress.inc(b as u64);
    }
    Ok((embeds, dense))
}

/// Captions embedded by FG-CLIP 2 as `fgclip embed` routes them.
pub struct Fgclip2Captions {
    /// (M, D), L2-normalised.
    pub embeds: Vec<f32>,
    /// The ids each caption was read as, (M, width), padded with the tokenizer's pad id.
    pub ids: Vec<i64>,
    pub width: usize,
    /// The walk each caption took.
    pub walks: Vec<Walk>,
    /// Captions longer than their walk, cut.
    pub cut: usize,
}

/// `captions` through `walk` (None: the short walk, the long one for a caption over the
/// short walk's positions), `batch_size` at a time.
pub fn embed_captions_fgclip2(
    model: &Fgclip2Model,
    tokenizer: &fgclip_core::HfTokenizer,
    captions: &[String],
    walk: Option<Walk>,
    batch_size: usize,
    device: &Device,
    bar: &indicatif::ProgressBar,
) -> Result<Fgclip2Captions> {
    let d = model.config().vision_config.hidden_size;
    let short_len = model.text_model.max_length(Walk::Short);
    let lengths = tokenizer.lengths(captions)?;
    let walks: Vec<Walk> = lengths
        .iter()
        .map(|&n| match walk {
            Some(w) => w,
            None if n > short_len => Walk::Long,
            None => Walk::Short,
        })
        .collect();
    let cut = lengths
        .iter()
        .zip(&walks)
        .filter(|&(&n, &w)| n > model.text_model.max_length(w))
        .count();
    let m = captions.len();
    let width = if walks.contains(&Walk::Long) {
        model.text_model.max_length(Walk::Long)
    } else {
        short_len
    };
    let mut embeds = vec![0f32; m * d];
    let mut ids = vec![i64::from(tokenizer.pad_id()); m * width];
    for w in [Walk::Short, Walk::Long, Walk::Box] {
        let rows: Vec<usize> = (0..m).filter(|&i| walks[i] == w).collect();
        let len = model.text_model.max_length(w);
        for chunk in rows.chunks(batch_size.max(1)) {
            let texts: Vec<&str> = chunk.iter().map(|&i| captions[i].as_str()).collect();
            let part = tokenizer.tokenize_batch(&texts, len)?;
            let x = Tensor::<2, Int>::from_data(
                TensorData::new(part.clone(), [chunk.len(), len]),
                device,
            );
            let out = host_f32(normalize(model.text_features(x, w)))?;
            for (k, &i) in chunk.iter().enumerate() {
                embeds[i * d..(i + 1) * d].copy_from_slice(&out[k * d..(k + 1) * d]);
                ids[i * width..i * width + len].copy_from_slice(&part[k * len..(k + 1) * len]);
            }
            bar.inc(chunk.len() as u64);
        }
    }
    Ok(Fgclip2Captions {
        embeds,
        ids,
        width,
        walks,
        cut,
    })
}

/// Runs `fgclip embed` on an FG-CLIP 2 folder.
pub fn run_embed_fgclip2(req: &EmbedRequest, device: &Device) -> Result<EmbedSummary> {
    let mut model = load_fgclip2(&req.model, device)?;
    model.set_precision(req.precision);
    let config = model.config().clone();
    let d = config.vision_config.hidden_size;
    let mut arrays = BTreeMap::new();
    let mut images = 0;
    if let Some(path) = &req.pixels {
        let file = read_naflex_pixels(path, config.vision_config.patch_dim())?;
        let bar = progress_bar(file.n, "images", req.progress);
        let (embeds, dense) = embed_naflex(&model, &file, req.batch_size, device, &bar)?;
        bar.finish_and_clear();
        let n = file.n;
        arrays.insert(
            "image_embeds".into(),
            Array::F32 {
                shape: vec![n, d],
                data: embeds,
            },
        );
        arrays.insert(
            "dense_embeds".into(),
            Array::F32 {
                shape: vec![n, file.budget, d],
                data: dense,
            },
        );
        arrays.insert(
            "spatial_shapes".into(),
            Array::I64 {
                shape: vec![n, 2],
                data: file
                    .spatial_shapes
                    .iter()
                    .flat_map(|&(h, w)| [h as i64, w as i64])
                    .collect(),
            },
        );
        images = n;
    }
    let (mut texts, mut long_texts, mut cut_texts) = (0, 0, 0);
    if let Some(path) = &req.texts {
        let captions = read_captions(path)?;
        let tokenizer = load_fgclip2_tokenizer(req.tokenizer.as_deref().unwrap_or(&req.model))?;
        let m = captions.len();
        let bar = progress_bar(m, "texts", req.progress);
        let e = embed_captions_fgclip2(
            &model,
            &tokenizer,
            &captions,
            req.walk,
            req.batch_size,
            device,
            &bar,
        )?;
        bar.finish_and_clear();
        let (walks, width, embeds, ids) = (e.walks, e.width, e.embeds, e.ids);
        cut_texts = e.cut;
        long_texts = walks.iter().filter(|&&w| w == Walk::Long).count();
        arrays.insert(
            "text_embeds".into(),
            Array::F32 {
                shape: vec![m, d],
                data: embeds,
            },
        );
        arrays.insert(
            "input_ids".into(),
            Array::I64 {
                shape: vec![m, width],
                data: ids,
            },
        );
        arrays.insert(
            "walk".into(),
            Array::U8 {
                shape: vec![m],
                data: walks
                    .iter()
                    .map(|w| match w {
                        Walk::Short => 0,
                        Walk::Long => 1,
                        Walk::Box => 2,
                    })
                    .collect(),
            },
        );
        texts = m;
    }
    write_arrays(&req.out, &arrays)?;
    Ok(EmbedSummary {
        out: req.out.clone(),
        images,
        texts,
        embed_dim: d,
        grid_size: 0,
        long_texts,
        cut_texts,
    })
}
