//! Reading and writing safetensors files: named f32/i64 arrays, dtype conversion,
//! atomic writes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::io::{Digest, write_atomic_with};

/// One array read from a safetensors file, converted to f32 or i64.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    I64 { shape: Vec<usize>, data: Vec<i64> },
    U8 { shape: Vec<usize>, data: Vec<u8> },
}

impl Array {
    pub fn shape(&self) -> &[usize] {
        match self {
            Array::F32 { shape, .. } | Array::I64 { shape, .. } | Array::U8 { shape, .. } => shape,
        }
    }
}

/// Float values of a tensor view as f32 (F32, F16, BF16 and F64 are accepted).
pub fn view_to_f32(view: &TensorView<'_>) -> Result<Vec<f32>> {
    let bytes = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        other => bail!("dtype {other:?} is not a float type"),
    })
}

/// Integer values of a tensor view as i64 (I64, I32, U8, BOOL are accepted).
pub fn view_to_i64(view: &TensorView<'_>) -> Result<Vec<i64>> {
    let bytes = view.data();
    Ok(match view.dtype() {
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        Dtype::I32 => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        Dtype::U8 | Dtype::BOOL => bytes.iter().map(|&b| b as i64).collect(),
        other => bail!("dtype {other:?} is not an integer type"),
    })
}

/// Reads every tensor of a safetensors file (float dtypes → F32, I32/I64 → I64,
/// U8/BOOL → U8).
pub fn read_arrays(path: &Path) -> Result<BTreeMap<String, Array>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_arrays(&bytes, path)
}

/// [`read_arrays`] of bytes in memory; `path` names them in errors.
pub fn parse_arrays(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, Array>> {
    let st = SafeTensors::deserialize(bytes)
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.iter() {
        let shape = view.shape().to_vec();
        let array = match view.dtype() {
            Dtype::U8 | Dtype::BOOL => Array::U8 {
                shape,
                data: view.data().to_vec(),
            },
            Dtype::I64 | Dtype::I32 => Array::I64 {
                shape,
                data: view_to_i64(&view)?,
            },
            _ => Array::F32 {
                shape,
                data: view_to_f32(&view)
                    .with_context(|| format!("{}: tensor `{name}`", path.display()))?,
            },
        };
        out.insert(name.to_string(), array);
    }
    Ok(out)
}

/// A tensor as safetensors' serialiser sees it when only the header is wanted: its true
/// dtype, shape and length, no bytes.
struct HeaderOnly<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    len: usize,
}

impl safetensors::tensor::View for HeaderOnly<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&[])
    }
    fn data_len(&self) -> usize {
        self.len
    }
}

/// Writes `arrays` as a safetensors file (atomically) and returns its digest. The header is
/// safetensors' own (its serialiser given every tensor's length but no bytes); the tensors
/// follow in the header's order, streamed in small pieces and hashed on the way, so a
/// checkpoint write holds one copy of the weights (the arrays), not three.
pub fn write_arrays(path: &Path, arrays: &BTreeMap<String, Array>) -> Result<Digest> {
    let views = arrays.iter().map(|(name, a)| {
        let (dtype, shape, len) = match a {
            Array::U8 { shape, data } => (Dtype::U8, shape, data.len()),
            Array::F32 { shape, data } => (Dtype::F32, shape, data.len() * 4),
            Array::I64 { shape, data } => (Dtype::I64, shape, data.len() * 8),
        };
        (name.as_str(), HeaderOnly { dtype, shape, len })
    });
    for (name, a) in arrays {
        let (n, want): (usize, usize) = match a {
            Array::U8 { shape, data } => (data.len(), shape.iter().product()),
            Array::F32 { shape, data } => (data.len(), shape.iter().product()),
            Array::I64 { shape, data } => (data.len(), shape.iter().product()),
        };
        if n != want {
            bail!("tensor `{name}` has shape {:?} and {n} values", a.shape());
        }
    }
    let prefix = safetensors::serialize(views, None)
        .with_context(|| format!("serialising {}", path.display()))?;
    let header_len = prefix
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .context("safetensors header")? as usize;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(
        prefix
            .get(8..8 + header_len)
            .context("safetensors header")?,
    )?;
    let mut order: Vec<(u64, &str)> = header
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .map(|(k, v)| {
            let start = v["data_offsets"][0].as_u64().unwrap_or(u64::MAX);
            (start, k.as_str())
        })
        .collect();
    order.sort();
    write_atomic_with(path, |w| {
        w.write_all(&prefix)?;
        let mut buf = Vec::with_capacity(1 << 16);
        for (_, name) in &order {
            match arrays.get(*name).context("a tensor the header names")? {
                Array::U8 { data, .. } => w.write_all(data)?,
                Array::F32 { data, .. } => {
                    for piece in data.chunks(1 << 14) {
                        buf.clear();
                        buf.extend(piece.iter().flat_map(|v| v.to_le_bytes()));
                        w.write_all(&buf)?;
                    }
                }
                Array::I64 { data, .. } => {
                    for piece in data.chunks(1 << 13) {
                        buf.clear();
                        buf.extend(piece.iter().flat_map(|v| v.to_le_bytes()));
                        w.write_all(&buf)?;
                    }
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed file is byte for byte what safetensors' own serialiser makes of the same
    /// tensors (mixed dtypes, so its ordering by alignment matters), and its digest is the
    /// hash of those bytes; it reads back.
    #[test]
    fn streamed_files_equal_safetensors_serialize() -> Result<()> {
        let mut arrays: BTreeMap<String, Array> = BTreeMap::new();
        let f: Vec<f32> = (0..40_000).map(|i| (i as f32 * 0.37).sin()).collect();
        arrays.insert(
            "b.weight".into(),
            Array::F32 {
                shape: vec![200, 200],
                data: f,
            },
        );
        arrays.insert(
            "a.ids".into(),
            Array::I64 {
                shape: vec![3],
                data: vec![-1, 7, 1 << 40],
            },
        );
        arrays.insert(
            "c.mask".into(),
            Array::U8 {
                shape: vec![2, 2],
                data: vec![1, 0, 0, 1],
            },
        );
        arrays.insert(
            "a.scale".into(),
            Array::F32 {
                shape: vec![1],
                data: vec![4.6052],
            },
        );
        let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = arrays
            .iter()
            .map(|(n, a)| match a {
                Array::F32 { shape, data } => (
                    n.clone(),
                    Dtype::F32,
                    shape.clone(),
                    data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
                Array::I64 { shape, data } => (
                    n.clone(),
                    Dtype::I64,
                    shape.clone(),
                    data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
                Array::U8 { shape, data } => (n.clone(), Dtype::U8, shape.clone(), data.clone()),
            })
            .collect();
        let views: Vec<(&str, TensorView<'_>)> = raw
            .iter()
            .map(|(n, d, s, b)| Ok((n.as_str(), TensorView::new(*d, s.clone(), b)?)))
            .collect::<Result<_>>()?;
        let want = safetensors::serialize(views, None)?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("m.safetensors");
        let d = write_arrays(&path, &arrays)?;
        let got = std::fs::read(&path)?;
        assert!(got == want, "{} bytes vs {}", got.len(), want.len());
        assert_eq!(d.len, want.len() as u64);
        assert_eq!(d.fnv1a, fgclip_core::weights::fnv1a(&want));
        assert_eq!(crate::io::digest_file(&path)?, d);
        let back = read_arrays(&path)?;
        assert_eq!(back.len(), 4);
        // A shape that does not hold its values is refused before anything is written.
        let mut bad = BTreeMap::new();
        bad.insert(
            "x".to_string(),
            Array::F32 {
                shape: vec![3],
                data: vec![0.0; 2],
            },
        );
        assert!(write_arrays(&dir.path().join("bad.safetensors"), &bad).is_err());
        assert!(!dir.path().join("bad.safetensors").exists());
        Ok(())
    }
}
