//! Inference with a loaded model: the `fgclip embed` command (CLIP and FG-CLIP v1 here,
//! FG-CLIP 2 in [`fgclip2`]).

pub mod fgclip2;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use fgclip_core::ClipModel;
use fgclip_core::model::normalize;
use fgclip_core::text::LONG_CONTEXT;
use fgclip_core::tokenizer::{TRIM_MULTIPLE, trim_rows, trimmed_length};
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::hf::{load_model, load_tokenizer};
use crate::checkpoint::safetensors_io::{Array, read_arrays, write_arrays};
use crate::device::host_f32;

/// What `fgclip embed` was asked to do.
#[derive(Clone, Debug)]
pub struct EmbedRequest {
    pub model: PathBuf,
    pub pixels: Option<PathBuf>,
    pub texts: Option<PathBuf>,
    pub tokenizer: Option<PathBuf>,
    pub out: PathBuf,
    pub batch_size: usize,
    pub progress: bool,
    pub precision: fgclip_core::Precision,
    /// Every text through FG-CLIP's long path (the model must have it).
    pub long: bool,
    /// FG-CLIP 2: every text through this walk (default: short, long for texts over the
    /// short positions). For CLIP models only `long` applies (as `long`).
    pub walk: Option<fgclip_core::fgclip2::Walk>,
}

/// What `fgclip embed` wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EmbedSummary {
    pub out: PathBuf,
    pub images: usize,
    pub texts: usize,
    pub embed_dim: usize,
    pub grid_size: usize,
    /// Texts that took FG-CLIP's long path (248 positions).
    pub long_texts: usize,
    /// Texts longer than their path, cut (CLIP's tokenizer keeps the first tokens).
    pub cut_texts: usize,
}

/// Image embeddings (L2-normalised) and projected dense patch grids (not normalised),
/// row-major, for (N, 3, S, S) pixels.
pub fn embed_images(
    model: &ClipModel,
    pixels: &[f32],
    n: usize,
    batch_size: usize,
    device: &Device,
    progress: &ProgressBar,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let s = model.config().vision_config.image_size;
    let c = model.config().vision_config.num_channels;
    let per_image = c * s * s;
    let mut embeds = Vec::new();
    let mut grids = Vec::new();
    for start in (0..n).step_by(batch_size.max(1)) {
        let b = batch_size.max(1).min(n - start);
        let chunk = pixels[start * per_image..(start + b) * per_image].to_vec();
        let x = Tensor::<4>::from_data(TensorData::new(chunk, [b, c, s, s]), device);
        let out = model.encode_image(x, true);
        embeds.extend(host_f32(normalize(out.embeds))?);
        if let Some(grid) = out.patch_grid {
            grids.extend(host_f32(grid)?);
        }
        progress.inc(b as u64);
    }
    Ok((embeds, grids))
}

/// Text embeddings (L2-normalised), row-major, for (M, L) ids; `long`: through FG-CLIP's
/// long path and `text_filip_projection` (an error for a model without them). Each chunk
/// runs on its positions up to its last `eot` only (the same embeddings, less work).
#[allow(clippy::too_many_arguments)]
pub fn embed_texts(
    model: &ClipModel,
    ids: &[i64],
    m: usize,
    context_length: usize,
    long: bool,
    eot: i64,
    batch_size: usize,
    device: &Device,
    progress: &ProgressBar,
) -> Result<Vec<f32>> {
    let mut embeds = Vec::new();
    for start in (0..m).step_by(batch_size.max(1)) {
        let b = batch_size.max(1).min(m - start);
        let chunk = &ids[start * context_length..(start + b) * context_length];
        // The same embeddings from the positions up to the chunk's last end-of-text.
        let keep = trimmed_length(chunk, b, context_length, eot, TRIM_MULTIPLE);
        let chunk = trim_rows(chunk, b, context_length, keep);
        let x = Tensor::<2, Int>::from_data(TensorData::new(chunk, [b, keep]), device);
        let out = if long {
            model
                .encode_text_long(x)
                .ok_or_else(|| anyhow::anyhow!("the model has no long-text path"))?
        } else {
            model.encode_text(x)
        };
        embeds.extend(host_f32(normalize(out))?);
        progress.inc(b as u64);
    }
    Ok(embeds)
}

/// Captions embedded as `fgclip embed` routes them (CLIP and FG-CLIP v1).
pub struct CaptionEmbeddings {
    /// (M, D), L2-normalised.
    pub embeds: Vec<f32>,
    /// The ids each caption was read as, (M, width), zero-padded.
    pub ids: Vec<i64>,
    pub width: usize,
    /// Which captions took FG-CLIP's long path (248 positions).
    pub long: Vec<bool>,
    /// Captions longer than their path, cut.
    pub cut: usize,
}

/// `captions` through the short path, or FG-CLIP's long path for every caption (`long`)
/// or for those over the short path's length when the model has one (DESIGN.md §7's
/// routing). `long` on a model without the long path is an error.
pub fn embed_captions(
    model: &ClipModel,
    tokenizer: &fgclip_core::tokenizer::Tokenizer,
    captions: &[String],
    long: bool,
    batch_size: usize,
    device: &Device,
    bar: &ProgressBar,
) -> Result<CaptionEmbeddings> {
    let config = model.config();
    let (l, p) = (
        config.text_config.max_position_embeddings,
        config.projection_dim,
    );
    let has_long = model.has_long_text();
    if long && !has_long {
        bail!(
            "the model has no long-text path (FG-CLIP v1 checkpoints have one; plain CLIP does not)"
        );
    }
    let lengths: Vec<usize> = captions.iter().map(|c| tokenizer.encode(c).len()).collect();
    let is_long: Vec<bool> = lengths
        .iter()
        .map(|&n| has_long && (long || n > l))
        .collect();
    let cut = lengths
        .iter()
        .zip(&is_long)
        .filter(|&(&n, &lp)| n > if lp { LONG_CONTEXT } else { l })
        .count();
    let m = captions.len();
    let width = if is_long.contains(&true) {
        LONG_CONTEXT
    } else {
        l
    };
    let mut embeds = vec![0f32; m * p];
    let mut ids = vec![0i64; m * width];
    for path_long in [false, true] {
        let rows: Vec<usize> = (0..m).filter(|&i| is_long[i] == path_long).collect();
        if rows.is_empty() {
            continue;
        }
        let len = if path_long { LONG_CONTEXT } else { l };
        let texts: Vec<&str> = rows.iter().map(|&i| captions[i].as_str()).collect();
        let part = tokenizer.tokenize_batch(&texts, len);
        let out = embed_texts(
            model,
            &part,
            rows.len(),
            len,
            path_long,
            i64::from(tokenizer.end_of_text()),
            batch_size,
            device,
            bar,
        )?;
        for (k, &i) in rows.iter().enumerate() {
            embeds[i * p..(i + 1) * p].copy_from_slice(&out[k * p..(k + 1) * p]);
            ids[i * width..i * width + len].copy_from_slice(&part[k * len..(k + 1) * len]);
        }
    }
    Ok(CaptionEmbeddings {
        embeds,
        ids,
        width,
        long: is_long,
        cut,
    })
}

/// Reads `pixel_values` (N, C, S, S) from a safetensors file and checks it against the
/// model's geometry.
pub fn read_pixels(path: &Path, channels: usize, size: usize) -> Result<(Vec<f32>, usize)> {
    let mut arrays = read_arrays(path)?;
    let Some(array) = arrays.remove("pixel_values") else {
        let names: Vec<&String> = arrays.keys().collect();
        bail!(
            "{}: no tensor `pixel_values` (found {names:?})",
            path.display()
        );
    };
    let Array::F32 { shape, data } = array else {
        bail!("{}: `pixel_values` must be a float tensor", path.display());
    };
    match shape.as_slice() {
        [n, c, h, w] if *c == channels && *h == size && *w == size => {
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                bail!(
                    "{}: `pixel_values` image {} holds a non-finite value ({}) at flat index {i}",
                    path.display(),
                    i / (channels * size * size),
                    data[i]
                );
            }
            Ok((data, *n))
        }
        _ => bail!(
            "{}: `pixel_values` has shape {shape:?}, the model needs (N, {channels}, {size}, {size})",
            path.display()
        ),
    }
}

/// Captions from a UTF-8 file, one a line (a trailing newline adds none; `\r\n` is fine).
pub fn read_captions(path: &Path) -> Result<Vec<String>> {
    let text = crate::data::read_utf8(path)?;
    Ok(text.lines().map(str::to_string).collect())
}

pub(crate) fn progress_bar(len: usize, label: &str, visible: bool) -> ProgressBar {
    if !visible || len == 0 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Runs `fgclip embed`.
pub fn run_embed(req: &EmbedRequest, device: &Device) -> Result<EmbedSummary> {
    use crate::checkpoint::fgclip2::{ModelKind, model_kind};
    use fgclip_core::fgclip2::Walk;
    if req.pixels.is_none() && req.texts.is_none() {
        bail!("nothing to embed: give --pixels, --texts or both");
    }
    if model_kind(&req.model)? == ModelKind::Fgclip2 {
        let walk = if req.long { Some(Walk::Long) } else { req.walk };
        return fgclip2::run_embed_fgclip2(
            &EmbedRequest {
                walk,
                ..req.clone()
            },
            device,
        );
    }
    let req = &match req.walk {
        None | Some(Walk::Short) => req.clone(),
        Some(Walk::Long) => EmbedRequest {
            long: true,
            ..req.clone()
        },
        Some(Walk::Box) => bail!(
            "--walk box: {} is a CLIP model; the box walk is FG-CLIP 2's",
            req.model.display()
        ),
    };
    let mut model = load_model(&req.model, device)?;
    model.set_precision(req.precision);
    let config = model.config().clone();
    let (s, c) = (
        config.vision_config.image_size,
        config.vision_config.num_channels,
    );
    let (g, p) = (config.vision_config.grid_size(), config.projection_dim);
    let mut arrays = BTreeMap::new();
    let mut images = 0;
    if let Some(path) = &req.pixels {
        let (pixels, n) = read_pixels(path, c, s)?;
        let bar = progress_bar(n, "images", req.progress);
        let (embeds, grids) = embed_images(&model, &pixels, n, req.batch_size, device, &bar)?;
        bar.finish_and_clear();
        arrays.insert(
            "image_embeds".to_string(),
            Array::F32 {
                shape: vec![n, p],
                data: embeds,
            },
        );
        arrays.insert(
            "patch_embeds".to_string(),
            Array::F32 {
                shape: vec![n, g, g, p],
                data: grids,
            },
        );
        images = n;
    }
    let (mut texts, mut long_texts, mut cut_texts) = (0, 0, 0);
    if let Some(path) = &req.texts {
        let captions = read_captions(path)?;
        let tokenizer_path = req.tokenizer.clone().unwrap_or_else(|| req.model.clone());
        let tokenizer = load_tokenizer(&tokenizer_path)?;
        if req.long && !model.has_long_text() {
            bail!(
                "--long: {} has no long-text path (FG-CLIP v1 checkpoints have one; plain CLIP does not)",
                req.model.display()
            );
        }
        let m = captions.len();
        let bar = progress_bar(m, "texts", req.progress);
        let e = embed_captions(
            &model,
            &tokenizer,
            &captions,
            req.long,
            req.batch_size,
            device,
            &bar,
        )?;
        bar.finish_and_clear();
        long_texts = e.long.iter().filter(|&&x| x).count();
        cut_texts = e.cut;
        arrays.insert(
            "text_embeds".to_string(),
            Array::F32 {
                shape: vec![m, p],
                data: e.embeds,
            },
        );
        arrays.insert(
            "input_ids".to_string(),
            Array::I64 {
                shape: vec![m, e.width],
                data: e.ids,
            },
        );
        if long_texts > 0 {
            arrays.insert(
                "long_path".to_string(),
                Array::U8 {
                    shape: vec![m],
                    data: e.long.iter().map(|&x| u8::from(x)).collect(),
                },
            );
        }
        texts = m;
    }
    write_arrays(&req.out, &arrays)?;
    Ok(EmbedSummary {
        out: req.out.clone(),
        images,
        texts,
        embed_dim: p,
        grid_size: g,
        long_texts,
        cut_texts,
    })
}
