//! Choosing the compute device from the command line.

use anyhow::{Result, bail};
use burn::tensor::Device;

/// `cpu` (burn's flex backend) or, in builds with the `cuda` feature, `cuda` / `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    match spec {
        "cpu" | "flex" => Ok(Device::flex()),
        s if s == "cuda" || s.starts_with("cuda:") => cuda(s),
        other => bail!("unknown device `{other}`: use cpu, cuda or cuda:N"),
    }
}

#[cfg(feature = "cuda")]
fn cuda(spec: &str) -> Result<Device> {
    let index = match spec.strip_prefix("cuda:") {
        Some(i) => i
            .parse::<usize>()
            .map_err(|_| anyhow::anyhow!("device `{spec}`: `{i}` is not a GPU index"))?,
        None => 0,
    };
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(spec: &str) -> Result<Device> {
    bail!("device `{spec}`: this fgclip was built without CUDA; rebuild with `--features cuda`")
}
