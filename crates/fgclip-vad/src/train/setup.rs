//! What a run starts from: its model (a folder, a checkpoint family, a preset; the frame
//! fusion the config asks for), its tokenizer, and how its clips become inputs (sampling,
//! FG-CLIP 2's image processor, the text layout).

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::Device;
use fgclip_core::fgclip::FgClip;
use fgclip_core::fgclip2::Fgclip2LossWeights;

use super::inputs::text_layout;
use super::{Fusion, ModelSource, Segments, TrainConfig, TrainRequest};
use crate::checkpoint::load_trainee;
use crate::data::annotations::Clip;
use crate::data::batch::{CaptionIds, SampleConfig, TextLayout};
use crate::data::naflex::NaflexConfig;
use crate::trainee::{Family, Trainee};

pub(super) fn initial_model(
    req: &TrainRequest,
    cfg: &TrainConfig,
    device: &Device,
    log: &dyn Fn(&str),
) -> Result<Trainee> {
    let model = match &req.model {
        ModelSource::Dir(dir) => load_trainee(dir, device, cfg.reset_region_scales)?,
        ModelSource::Preset(name) => match crate::presets::resolve_fgclip2(name) {
            Some(config) => {
                use fgclip_core::fgclip::ScaleInit;
                use fgclip_core::fgclip2::video::SCALE_INIT;
                let config = config?;
                let init = fgclip_core::fgclip2::Fgclip2RandomInit::new(&config, cfg.seed);
                Trainee::Fgclip2(fgclip_core::fgclip2::Fgclip2Video::load(
                    &fgclip_core::Weights::new(&init, device),
                    &config,
                    ScaleInit::Value(SCALE_INIT),
                    ScaleInit::Value(SCALE_INIT),
                )?)
            }
            None => {
                let config = crate::presets::resolve(name)?;
                let init = fgclip_core::RandomInit::new(&config, cfg.seed);
                Trainee::Clip(FgClip::load(
                    &fgclip_core::Weights::new(&init, device),
                    &config,
                    fgclip_core::fgclip::Scales::fresh(),
                )?)
            }
        },
    };
    with_configured_fusion(model, cfg, device, log)
}

/// The family of the model a request starts from.
pub fn requested_family(model: &ModelSource) -> Result<Family> {
    Ok(match model {
        ModelSource::Dir(dir) => crate::checkpoint::fgclip2::model_kind(dir)?,
        ModelSource::Preset(name) if crate::presets::resolve_fgclip2(name).is_some() => {
            Family::Fgclip2
        }
        ModelSource::Preset(_) => Family::Clip,
    })
}

/// The model with the frame fusion `cfg` asks for: a model's own temporal transformer is
/// kept (it must cover `frames`), a fresh one (equal to mean pooling) made where it has
/// none, and dropped with a note for `fusion: mean`.
fn with_configured_fusion(
    model: Trainee,
    cfg: &TrainConfig,
    device: &Device,
    log: &dyn Fn(&str),
) -> Result<Trainee> {
    use fgclip_core::fusion::{FusionConfig, TemporalFusion};
    match (cfg.fusion, model.fusion()) {
        (Fusion::Mean, None) => Ok(model),
        (Fusion::Mean, Some(_)) => {
            log("note: `fusion: mean`: the model's temporal transformer is not used and not saved");
            Ok(model.with_fusion(None))
        }
        (Fusion::Transformer, Some(f)) => {
            if f.config().max_frames < cfg.frames {
                bail!(
                    "the model's temporal transformer covers {} frames, the config's `frames` is {}",
                    f.config().max_frames,
                    cfg.frames
                );
            }
            Ok(model)
        }
        (Fusion::Transformer, None) => {
            let p = model.projection_dim();
            let config = FusionConfig::new(p, cfg.fusion_layers, cfg.frames);
            let fusion = TemporalFusion::init(config, cfg.seed, device)?;
            Ok(model.with_fusion(Some(fusion)))
        }
    }
}

/// Where the tokenizer comes from: `--tokenizer`, else the model folder's tokenizer files,
/// else (a preset, or a folder without them) CLIP's BPE built into the binary (`builtin`).
pub fn tokenizer_source(tokenizer: Option<&PathBuf>, model: &ModelSource) -> Result<PathBuf> {
    const FILES: [&str; 3] = [
        "tokenizer.json",
        "vocab.json",
        "bpe_simple_vocab_16e6.txt.gz",
    ];
    match (tokenizer, model) {
        (Some(t), _) => Ok(t.clone()),
        (None, ModelSource::Dir(d)) if FILES.iter().any(|f| d.join(f).is_file()) => Ok(d.clone()),
        (None, _) => Ok(PathBuf::from("builtin")),
    }
}

/// The sampling settings and text layout of a run on `clips`, by the model's family.
pub(super) fn run_inputs(
    model: &Trainee,
    source: &ModelSource,
    clips: &[Clip],
    tokenizer: &RunTokenizer,
    cfg: &TrainConfig,
    weights: &Fgclip2LossWeights,
    log: &dyn Fn(&str),
) -> Result<(SampleConfig, TextLayout)> {
    Ok(match model {
        Trainee::Clip(m) => {
            let context_length = m.clip.config().text_config.max_position_embeddings;
            let long = m
                .clip
                .has_long_text()
                .then_some(fgclip_core::text::LONG_CONTEXT);
            let layout = text_layout(
                long,
                clips,
                &|t| tokenizer.tokens(t),
                weights.hard_negative,
                context_length,
                log,
            );
            let image_size = m.clip.config().vision_config.image_size as u32;
            (sample_config(cfg, image_size, None), layout)
        }
        Trainee::Fgclip2(m) => {
            let t = &m.model.config().text_config;
            let length = |key: &str, asked: Option<usize>, most: usize| -> Result<usize> {
                match asked {
                    Some(n) if n > most => bail!(
                        "config: `{key}` {n} exceeds the model's {most} positions of that walk"
                    ),
                    Some(n) => Ok(n),
                    None => Ok(most),
                }
            };
            let short = length("text_length", cfg.text_length, t.max_position_embeddings)?;
            let long = length("long_text_length", cfg.long_text_length, t.longtext_len)?;
            let layout = text_layout(
                Some(long),
                clips,
                &|text| tokenizer.tokens(text),
                weights.hard_negative,
                short,
                log,
            );
            if cfg.preprocess != crate::data::preprocess::Preprocess::Squash {
                bail!(
                    "config: `preprocess` is for CLIP and FG-CLIP v1; FG-CLIP 2's frames go through its own image processor (`max_num_patches`)"
                );
            }
            let processor = image_processor(source, cfg)?;
            (sample_config(cfg, 0, Some(processor)), layout)
        }
    })
}

/// The sampling settings of a run: `naflex` for FG-CLIP 2's image processor.
fn sample_config(cfg: &TrainConfig, image_size: u32, naflex: Option<NaflexConfig>) -> SampleConfig {
    SampleConfig {
        frames: cfg.frames,
        image_size,
        max_anns: cfg.max_anns,
        whole_video_normals: cfg.segments == Segments::WholeVideo,
        augment: cfg.augment.clone(),
        naflex,
        preprocess: cfg.preprocess,
    }
}

/// FG-CLIP 2's image processor for a run: the model folder's (a preset: the processor's
/// defaults), with the config's patch budget settings on top.
fn image_processor(model: &ModelSource, cfg: &TrainConfig) -> Result<NaflexConfig> {
    let mut p = match model {
        ModelSource::Dir(dir) => crate::checkpoint::fgclip2::read_image_processor(dir)?,
        ModelSource::Preset(_) => NaflexConfig::default(),
    };
    if let Some(n) = cfg.max_num_patches {
        // A budget asked for is the budget (as `detect --max-num-patches`), unless the
        // config also asks for the dynamic one.
        p.max_num_patches = n;
        p.dynamic_max_patches = false;
    }
    if let Some(d) = cfg.dynamic_max_patches {
        p.dynamic_max_patches = d;
    }
    Ok(p)
}

/// The run's tokenizer: CLIP's BPE, or the `tokenizer.json` of an FG-CLIP 2 model
/// (lower-casing, as FG-CLIP 2's scripts do).
pub(super) enum RunTokenizer {
    Clip(fgclip_core::Tokenizer),
    Hf(fgclip_core::HfTokenizer),
}

impl RunTokenizer {
    pub(super) fn load(family: Family, src: &std::path::Path) -> Result<Self> {
        Ok(match family {
            Family::Clip => Self::Clip(crate::checkpoint::hf::load_tokenizer(src)?),
            Family::Fgclip2 if src.as_os_str() == "builtin" => {
                Self::Hf(crate::checkpoint::fgclip2::builtin_tokenizer()?)
            }
            Family::Fgclip2 => {
                if !src.is_dir() {
                    bail!(
                        "an FG-CLIP 2 model reads its tokenizer from a folder with tokenizer.json (or `builtin`: the small one built in); got {}",
                        src.display()
                    );
                }
                Self::Hf(crate::checkpoint::fgclip2::load_fgclip2_tokenizer(src)?)
            }
        })
    }

    pub(super) fn ids(&self) -> &dyn CaptionIds {
        match self {
            Self::Clip(t) => t,
            Self::Hf(t) => t,
        }
    }

    /// Tokens of a caption with its special tokens (to count the captions a path cuts).
    pub(super) fn tokens(&self, text: &str) -> usize {
        match self {
            Self::Clip(t) => t.encode(text).len(),
            Self::Hf(t) => t
                .lengths(&[text])
                .ok()
                .and_then(|v| v.first().copied())
                .unwrap_or(0),
        }
    }

    /// CLIP's end-of-text id (where FG-CLIP's ids may be cut); unused for FG-CLIP 2.
    pub(super) fn eot(&self) -> i64 {
        match self {
            Self::Clip(t) => i64::from(t.end_of_text()),
            Self::Hf(_) => 0,
        }
    }
}
