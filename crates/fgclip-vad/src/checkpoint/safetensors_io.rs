//! Reading and writing safetensors files: named f32/i64 arrays, dtype conversion,
//! atomic writes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::io::write_atomic;

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

/// Writes arrays to `path` atomically: a temporary file beside it, fsync, rename.
pub fn write_arrays(path: &Path, arrays: &BTreeMap<String, Array>) -> Result<()> {
    let raw: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = arrays
        .iter()
        .map(|(name, a)| match a {
            Array::U8 { shape, data } => (name.clone(), Dtype::U8, shape.clone(), data.clone()),
            Array::F32 { shape, data } => (
                name.clone(),
                Dtype::F32,
                shape.clone(),
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            Array::I64 { shape, data } => (
                name.clone(),
                Dtype::I64,
                shape.clone(),
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let views = raw
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.as_str(), v))
                .with_context(|| {
                    format!(
                        "tensor `{name}` has shape {shape:?} and {} bytes",
                        bytes.len()
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let buffer = safetensors::serialize(views, None)
        .with_context(|| format!("serialising {}", path.display()))?;
    write_atomic(path, &buffer)
}
