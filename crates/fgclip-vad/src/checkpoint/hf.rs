//! HF model folders: `config.json`, `model.safetensors` (or sharded with
//! `model.safetensors.index.json`) and the tokenizer files. Never unpickles.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use fgclip_core::{ClipConfig, ClipModel, Tokenizer, WeightError, WeightSource, Weights};
use safetensors::tensor::{Dtype, SafeTensors, TensorInfo, TensorView};

use super::safetensors_io::view_to_f32;

/// Buffers in HF checkpoints that are not parameters; present in older exports.
const IGNORED_KEYS: &[&str] = &[
    "text_model.embeddings.position_ids",
    "vision_model.embeddings.position_ids",
];

/// The safetensors files of an HF model folder: `model.safetensors`, or the shards its
/// `model.safetensors.index.json` names.
fn model_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.is_file() {
        Ok(vec![single])
    } else if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("reading {}", index.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", index.display()))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .with_context(|| format!("{}: no `weight_map` object", index.display()))?;
        let files: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        Ok(files.iter().map(|f| dir.join(f)).collect())
    } else if dir.join("pytorch_model.bin").is_file() {
        bail!(
            "{} has only pytorch_model.bin: pickled weights are never loaded; convert them \
             to model.safetensors (transformers: `model.save_pretrained(dir, safe_serialization=True)`)",
            dir.display()
        )
    } else {
        bail!(
            "{} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        )
    }
}

struct Shard {
    path: PathBuf,
    bytes: Vec<u8>,
    data_start: usize,
}

/// Weights from one or more safetensors files, by HF name. Records which keys were
/// read so that unexpected ones can be reported.
pub struct SafetensorsWeights {
    shards: Vec<Shard>,
    index: HashMap<String, (usize, TensorInfo)>,
    used: RefCell<BTreeSet<String>>,
}

impl SafetensorsWeights {
    /// The weights of an HF model folder.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        Self::open_files(&model_files(dir)?)
    }

    /// The weights of an HF model folder and its temporal transformer's
    /// `fusion.safetensors`, where an export has one.
    pub fn open_dir_with_fusion(dir: &Path) -> Result<Self> {
        let mut files = model_files(dir)?;
        let fusion = dir.join(FUSION_FILE);
        if fusion.is_file() {
            files.push(fusion);
        }
        Self::open_files(&files)
    }

    /// The weights of the given safetensors files; a name in two files is an error.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            files.push((path.clone(), bytes));
        }
        Self::from_bytes(files)
    }

    /// [`Self::open_files`] of files in memory: (the path that names it, its bytes).
    pub fn from_bytes(files: Vec<(PathBuf, Vec<u8>)>) -> Result<Self> {
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        for (path, bytes) in files {
            let (header_len, metadata) = SafeTensors::read_metadata(&bytes)
                .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
            let shard_id = shards.len();
            for (name, info) in metadata.tensors() {
                if let Some((other, _)) = index.insert(name.clone(), (shard_id, info.clone())) {
                    let other: &Shard = &shards[other];
                    bail!(
                        "weight `{name}` is in both {} and {}",
                        other.path.display(),
                        path.display()
                    );
                }
            }
            shards.push(Shard {
                path: path.clone(),
                bytes,
                data_start: 8 + header_len,
            });
        }
        Ok(Self {
            shards,
            index,
            used: RefCell::new(BTreeSet::new()),
        })
    }

    /// Every tensor's name with the shape its header declares.
    pub fn declared_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out: Vec<(String, Vec<usize>)> = self
            .index
            .iter()
            .map(|(k, (_, info))| (k.clone(), info.shape.clone()))
            .collect();
        out.sort();
        out
    }

    /// Keys present in the files that no module asked for.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.borrow();
        let mut out: Vec<String> = self
            .index
            .keys()
            .filter(|k| !used.contains(*k) && !IGNORED_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        out.sort();
        out
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    pub(crate) fn describe(&self) -> String {
        self.shards
            .iter()
            .map(|s| s.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl WeightSource for SafetensorsWeights {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightError> {
        let Some((shard_id, info)) = self.index.get(name) else {
            return Err(WeightError::Missing {
                name: name.to_string(),
                expected: shape.to_vec(),
            });
        };
        // A scalar may be stored as [] or [1].
        let scalar_alias = shape.is_empty() && info.shape == [1];
        if info.shape != shape && !scalar_alias {
            return Err(WeightError::Shape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        let shard = &self.shards[*shard_id];
        let (start, end) = info.data_offsets;
        let bytes = shard
            .bytes
            .get(shard.data_start + start..shard.data_start + end)
            .ok_or_else(|| WeightError::Invalid {
                name: name.to_string(),
                reason: format!("data offsets run past the end of {}", shard.path.display()),
            })?;
        let view = TensorView::new(info.dtype, info.shape.clone(), bytes).map_err(|e| {
            WeightError::Invalid {
                name: name.to_string(),
                reason: format!("{e} in {}", shard.path.display()),
            }
        })?;
        if !matches!(
            info.dtype,
            Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64
        ) {
            return Err(WeightError::Invalid {
                name: name.to_string(),
                reason: format!("dtype {:?} is not a float type", info.dtype),
            });
        }
        let values = view_to_f32(&view).map_err(|e| WeightError::Invalid {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        self.used.borrow_mut().insert(name.to_string());
        Ok(values)
    }
}

/// Reads and checks `DIR/config.json`.
pub fn read_config(path: &Path) -> Result<ClipConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_config(&text).with_context(|| format!("in {}", path.display()))
}

/// A config from JSON text, checked.
pub fn parse_config(text: &str) -> Result<ClipConfig> {
    let config: ClipConfig = serde_json::from_str(text).context("not a CLIP config")?;
    config.validate()?;
    Ok(config)
}

/// The region and hard-negative scales: FgClip's, never read by [`ClipModel`] (zero-shot
/// use of an fgclip or FG-CLIP checkpoint).
const FGCLIP_SCALE_KEYS: &[&str] = &[
    "logit_scale_region",
    "logit_scale_finegraind",
    fgclip_core::fgclip::HARD_NEGATIVE_SCALE_NAME,
];

/// FG-CLIP v1's extra tensors: present with a config that does not say `FGCLIPModel`, they
/// get a hint.
const FGCLIP_V1_KEYS: &[&str] = &[
    "text_model.embeddings.position_embedding_ori.weight",
    "text_model.embeddings.position_embedding_res.weight",
    "text_filip_projection.weight",
];

/// Fails when the files hold weights that no module read (besides `allowed`: names, or
/// prefixes ending in `*`).
fn reject_unused(
    weights: &SafetensorsWeights,
    config: &ClipConfig,
    allowed: &[&str],
) -> Result<()> {
    let unused: Vec<String> = weights
        .unused()
        .into_iter()
        .filter(|k| {
            // An entry ending in `*` allows every key it begins.
            !allowed.iter().any(|a| match a.strip_suffix('*') {
                Some(prefix) => k.starts_with(prefix),
                None => a == k,
            })
        })
        .collect();
    if unused.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = unused.iter().take(10).map(String::as_str).collect();
    let hint = if !config.is_fgclip_v1()
        && unused.iter().any(|k| FGCLIP_V1_KEYS.contains(&k.as_str()))
    {
        " (these are FG-CLIP v1 tensors: its config.json must say \"architectures\": [\"FGCLIPModel\"])"
    } else {
        ""
    };
    bail!(
        "{} has {} unexpected weight(s) for this config: {}{}{hint}",
        weights.describe(),
        unused.len(),
        shown.join(", "),
        if unused.len() > shown.len() {
            ", …"
        } else {
            ""
        }
    );
}

/// Builds a model from weights and rejects checkpoints with keys the model does not use
/// (FG-CLIP's region and hard-negative scales aside: they do not enter zero-shot use).
pub fn build_model(
    weights: &SafetensorsWeights,
    config: &ClipConfig,
    device: &Device,
) -> Result<ClipModel> {
    let model = ClipModel::load(&Weights::new(weights, device), config)
        .with_context(|| format!("loading weights from {}", weights.describe()))?;
    // A checkpoint's temporal transformer is loaded by [`load_fusion`].
    reject_unused(
        weights,
        config,
        &[FGCLIP_SCALE_KEYS, &[FUSION_KEYS]].concat(),
    )?;
    Ok(model)
}

/// An HF CLIP model folder loaded onto `device`.
pub fn load_model(dir: &Path, device: &Device) -> Result<ClipModel> {
    let config = read_config(&dir.join("config.json"))?;
    let weights = SafetensorsWeights::open_dir(dir)?;
    build_model(&weights, &config, device)
}

/// Finds and loads a tokenizer: `path` may be a `tokenizer.json`, a `vocab.json` (with
/// `merges.txt` beside it), open_clip's `bpe_simple_vocab_16e6.txt.gz`, or a folder
/// holding one of them (tried in that order).
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if path.as_os_str() == "builtin" {
        return builtin_tokenizer();
    }
    if path.is_dir() {
        for name in [
            "tokenizer.json",
            "vocab.json",
            "bpe_simple_vocab_16e6.txt.gz",
        ] {
            let candidate = path.join(name);
            if candidate.is_file() {
                return load_tokenizer(&candidate);
            }
        }
        bail!(
            "no tokenizer in {}: expected tokenizer.json, vocab.json + merges.txt, or \
             bpe_simple_vocab_16e6.txt.gz (or name one with --tokenizer)",
            path.display()
        );
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let result = if name.ends_with(".gz") {
        read_open_clip_bpe(path)
    } else if name == "merges.txt" {
        read_vocab_merges(&path.with_file_name("vocab.json"), path)
    } else {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        // vocab.json is a flat token → id map (which has a token "model"!).
        if json.get("model").is_some_and(serde_json::Value::is_object) {
            tokenizer_from_tokenizer_json(&json)
        } else {
            read_vocab_merges(path, &path.with_file_name("merges.txt"))
        }
    };
    result.with_context(|| format!("loading tokenizer {}", path.display()))
}

fn tokenizer_from_tokenizer_json(json: &serde_json::Value) -> Result<Tokenizer> {
    let model = &json["model"];
    if let Some(kind) = model.get("type").and_then(|t| t.as_str())
        && kind != "BPE"
    {
        bail!("model.type is `{kind}`, CLIP needs `BPE`");
    }
    let vocab = parse_vocab(model.get("vocab").context("no model.vocab")?)?;
    let merges = model
        .get("merges")
        .and_then(|m| m.as_array())
        .context("no model.merges array")?
        .iter()
        .enumerate()
        .map(|(i, m)| match m {
            serde_json::Value::String(s) => Ok(fgclip_core::tokenizer::parse_merge(s, i + 1)?),
            serde_json::Value::Array(pair) => match pair.as_slice() {
                [serde_json::Value::String(a), serde_json::Value::String(b)] => {
                    Ok((a.clone(), b.clone()))
                }
                _ => bail!("model.merges[{i}] is not a pair of strings"),
            },
            _ => bail!("model.merges[{i}] is neither a string nor a pair"),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tokenizer::new(vocab, merges)?)
}

fn parse_vocab(value: &serde_json::Value) -> Result<HashMap<String, u32>> {
    let map = value.as_object().context("vocab is not a JSON object")?;
    map.iter()
        .map(|(token, id)| {
            let id = id
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .with_context(|| format!("vocab entry `{token}`: id {id} is not a token id"))?;
            Ok((token.clone(), id))
        })
        .collect()
}

fn read_vocab_merges(vocab_path: &Path, merges_path: &Path) -> Result<Tokenizer> {
    let vocab_text = std::fs::read_to_string(vocab_path)
        .with_context(|| format!("reading {}", vocab_path.display()))?;
    let vocab_json: serde_json::Value = serde_json::from_str(&vocab_text)
        .with_context(|| format!("{} is not valid JSON", vocab_path.display()))?;
    let vocab = parse_vocab(&vocab_json).with_context(|| format!("in {}", vocab_path.display()))?;
    let merges_text = std::fs::read_to_string(merges_path)
        .with_context(|| format!("reading {}", merges_path.display()))?;
    let merges = merges_text
        .lines()
        .enumerate()
        .filter(|(i, line)| !(line.trim().is_empty() || (*i == 0 && line.starts_with("#version"))))
        .map(|(i, line)| fgclip_core::tokenizer::parse_merge(line, i + 1))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("in {}", merges_path.display()))?;
    Ok(Tokenizer::new(vocab, merges)?)
}

/// open_clip's CLIP BPE file, built into the binary: the tokenizer of models trained
/// from a preset (`--tokenizer builtin`).
pub const BUILTIN_BPE: &[u8] = include_bytes!("../../../../assets/bpe_simple_vocab_16e6.txt.gz");
pub const BUILTIN_BPE_NAME: &str = "bpe_simple_vocab_16e6.txt.gz";

/// The built-in CLIP tokenizer (identical ids to HF's `CLIPTokenizer`).
pub fn builtin_tokenizer() -> Result<Tokenizer> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(BUILTIN_BPE)
        .read_to_string(&mut text)
        .context("the built-in tokenizer file is damaged")?;
    Ok(Tokenizer::from_open_clip_merges(&text)?)
}

fn read_open_clip_bpe(path: &Path) -> Result<Tokenizer> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .with_context(|| format!("{} is not gzip-compressed UTF-8 text", path.display()))?;
    Ok(Tokenizer::from_open_clip_merges(&text)?)
}

use super::fusion::FUSION_KEYS;
pub use super::fusion::{FUSION_FILE, FusionInfo, load_fusion, read_fusion};

/// The file beside an exported model's HF weights that holds what `CLIPModel` has no
/// place for.
pub const FGCLIP_EXTRA: &str = "fgclip.json";

/// An FG-CLIP model from an HF folder (DESIGN.md §7): CLIP or FG-CLIP v1 weights, and the
/// region and hard-negative scales from the weights (a training checkpoint, an FG-CLIP v1
/// checkpoint), from `fgclip.json` (an fgclip export), or else from the checkpoint's own
/// `logit_scale`, as FG-CLIP's script starts them. `reset_scales`: always the latter.
pub fn load_fgclip(
    dir: &Path,
    device: &Device,
    reset_scales: bool,
) -> Result<fgclip_core::fgclip::FgClip> {
    use fgclip_core::fgclip::{HARD_NEGATIVE_SCALE_NAME, ScaleInit, Scales, region_scale_name};
    if super::fgclip2::model_kind(dir)? == fgclip_core::ModelKind::Fgclip2 {
        bail!(
            "{} is an FG-CLIP 2 model, not a CLIP or FG-CLIP v1 one",
            dir.display()
        );
    }
    let config = read_config(&dir.join("config.json"))?;
    let weights = SafetensorsWeights::open_dir_with_fusion(dir)?;
    let extra = read_extra_scales(dir)?;
    let init = |name: &str, saved: Option<f32>| {
        if reset_scales {
            ScaleInit::SameAsLogitScale
        } else if weights.names().any(|n| n == name) {
            ScaleInit::FromWeights
        } else {
            saved.map_or(ScaleInit::SameAsLogitScale, ScaleInit::Value)
        }
    };
    let scales = Scales {
        region: init(region_scale_name(&config), extra.region),
        hard_negative: init(HARD_NEGATIVE_SCALE_NAME, extra.hard_negative),
    };
    let fusion = super::fusion::fusion_of(dir, &weights, device)?;
    let model = fgclip_core::fgclip::FgClip::load(&Weights::new(&weights, device), &config, scales)
        .with_context(|| format!("loading weights from {}", weights.describe()))?
        .with_fusion(fusion);
    // Reset scales leave the checkpoint's own unread.
    let allowed: &[&str] = if reset_scales { FGCLIP_SCALE_KEYS } else { &[] };
    reject_unused(&weights, &config, allowed)?;
    Ok(model)
}

/// The scales an fgclip export keeps in `fgclip.json`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExtraScales {
    pub region: Option<f32>,
    pub hard_negative: Option<f32>,
}

/// `logit_scale_region` and `logit_scale_hardneg` from `DIR/fgclip.json` (each may be
/// absent: exports before hard negatives have only the first); none without that file.
pub fn read_extra_scales(dir: &Path) -> Result<ExtraScales> {
    let path = dir.join(FGCLIP_EXTRA);
    if !path.is_file() {
        return Ok(ExtraScales::default());
    }
    let json = crate::io::read_json(&path)?;
    let get = |key: &str| -> Result<Option<f32>> {
        match json.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x as f32)),
                _ => bail!("{}: `{key}` must be a finite number", path.display()),
            },
        }
    };
    Ok(ExtraScales {
        region: get("logit_scale_region")?,
        hard_negative: get(fgclip_core::fgclip::HARD_NEGATIVE_SCALE_NAME)?,
    })
}
