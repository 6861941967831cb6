//! NumPy `.npy` files (format version 1.0, little-endian, C order): the array format
//! that VAD feature pipelines exchange.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::io::write_atomic;

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut text = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + text + '\n' is a multiple of 64.
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((text.len() as u16).to_le_bytes());
    out.extend(text.as_bytes());
    out
}

/// The number of values of `shape`; an error when it overflows.
fn count(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .with_context(|| format!("array shape {shape:?} is too large"))
}

fn check_len(shape: &[usize], len: usize) -> Result<()> {
    let n = count(shape)?;
    if n != len {
        bail!("array of shape {shape:?} needs {n} values, got {len}");
    }
    Ok(())
}

/// `.npy` bytes of a uint8 array.
pub fn npy_u8(shape: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    check_len(shape, data.len())?;
    let mut out = header("|u1", shape);
    out.extend_from_slice(data);
    Ok(out)
}

/// `.npy` bytes of a float32 array.
pub fn npy_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    check_len(shape, data.len())?;
    let mut out = header("<f4", shape);
    out.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    Ok(out)
}

/// Writes a uint8 array whose values are the bytes of the file `body`, atomically and
/// streaming (bounded memory however large the array).
pub fn write_u8_from_file(path: &Path, shape: &[usize], body: &Path) -> Result<()> {
    use std::io::Write;
    let n = count(shape)?;
    let len = std::fs::metadata(body)
        .with_context(|| format!("reading {}", body.display()))?
        .len();
    if len != n as u64 {
        bail!(
            "array of shape {shape:?} needs {n} values, {} holds {len}",
            body.display()
        );
    }
    let tmp = path.with_extension("npy.tmp");
    let result = (|| -> Result<()> {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        out.write_all(&header("|u1", shape))?;
        let mut src =
            std::fs::File::open(body).with_context(|| format!("reading {}", body.display()))?;
        std::io::copy(&mut src, &mut out)?;
        out.into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {}", tmp.display(), e.error()))?
            .sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

/// Writes a uint8 array atomically.
pub fn write_u8(path: &Path, shape: &[usize], data: &[u8]) -> Result<()> {
    write_atomic(path, &npy_u8(shape, data)?)
}

/// Writes a float32 array atomically.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    write_atomic(path, &npy_f32(shape, data)?)
}

/// Reads a float array (`<f4`, `<f8`, or `|u1`) as f32 with its shape.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_f32(&bytes).with_context(|| format!("{} is not a readable .npy array", path.display()))
}

/// [`read_f32`] of bytes in memory.
pub fn parse_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>)> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("no .npy magic");
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => bail!("unsupported .npy version {v}"),
    };
    let text = bytes
        .get(start..start + len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .context("truncated header")?;
    let field = |key: &str| -> Option<&str> {
        let at = text.find(&format!("'{key}'"))? + key.len() + 2;
        Some(text[at..].trim_start_matches([':', ' ']))
    };
    let descr = field("descr")
        .and_then(|d| d.strip_prefix('\''))
        .and_then(|d| d.split('\'').next())
        .context("no descr")?;
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        bail!("Fortran-ordered arrays are not supported");
    }
    let shape_text = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .context("no shape")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().context("bad shape"))
        .collect::<Result<Vec<_>>>()?;
    let n = count(&shape)?;
    let body = &bytes[start + len..];
    let data: Vec<f32> = match descr {
        "<f4" => body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        "<f8" => body
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        "|u1" => body.iter().map(|&b| f32::from(b)).collect(),
        other => bail!("dtype {other} is not supported (use float32, float64 or uint8)"),
    };
    if data.len() < n {
        bail!(
            "shape {shape:?} needs {n} values, the file holds {}",
            data.len()
        );
    }
    Ok((shape, data[..n].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_round_trips() {
        let bytes = npy_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(
            parse_f32(&bytes).unwrap(),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        let bytes = npy_u8(&[4], &[1, 2, 3, 250]).unwrap();
        assert!(
            std::str::from_utf8(&bytes[10..74])
                .unwrap()
                .contains("'shape': (4,)")
        );
        assert_eq!(parse_f32(&bytes).unwrap().1, vec![1.0, 2.0, 3.0, 250.0]);
        assert!(npy_u8(&[2, 2], &[1]).is_err());
        assert!(parse_f32(b"\x93NUMPY\x01\x00\xff\x00{").is_err());
        assert!(parse_f32(b"garbage").is_err());
        // A shape whose size overflows is an error, not a panic.
        let mut huge = b"\x93NUMPY\x01\x00".to_vec();
        let text = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }\n";
        huge.extend((text.len() as u16).to_le_bytes());
        huge.extend(text.as_bytes());
        let e = parse_f32(&huge).unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
    }
}
