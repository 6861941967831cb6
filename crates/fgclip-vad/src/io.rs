//! Small file I/O shared by every writer (plots, arrays, checkpoints, reports).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// A file's length and FNV-1a hash (what a checkpoint's `state.json` records of each file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    pub len: u64,
    pub fnv1a: u64,
}

/// A writer that hashes what goes through it.
struct Hashing<W> {
    inner: W,
    digest: Digest,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.fnv1a = fgclip_core::weights::fnv1a_update(self.digest.fnv1a, &buf[..n]);
        self.digest.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The digest of a file on disk, read in 1 MiB pieces.
pub fn digest_file(path: &Path) -> Result<Digest> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut d = Digest {
        len: 0,
        fnv1a: fgclip_core::weights::FNV1A_START,
    };
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(d);
        }
        d.fnv1a = fgclip_core::weights::fnv1a_update(d.fnv1a, &buf[..n]);
        d.len += n as u64;
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| Ok(w.write_all(bytes)?)).map(|_| ())
}

/// Writes `path` through `fill` (buffered) so that a crash leaves either the old file or
/// the new one, and returns the digest of the bytes as they were written: a large file is
/// streamed and hashed on the way, never held whole.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<Digest> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<Digest> {
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = Hashing {
            inner: std::io::BufWriter::with_capacity(1 << 20, file),
            digest: Digest {
                len: 0,
                fnv1a: fgclip_core::weights::FNV1A_START,
            },
        };
        fill(&mut w).with_context(|| format!("writing {}", tmp.display()))?;
        w.flush()
            .with_context(|| format!("writing {}", tmp.display()))?;
        let digest = w.digest;
        let file = w
            .inner
            .into_inner()
            .map_err(|e| anyhow::anyhow!("writing {}: {}", tmp.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
        drop(file);
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(digest)
    })();
    // A failed write (a full disk) leaves neither a partial file nor its temporary one.
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

/// A JSON file's value; errors name the file.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}
