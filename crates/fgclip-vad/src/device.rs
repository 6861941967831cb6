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
    check_cuda_install(spec)?;
    Ok(Device::cuda(index))
}

/// cudarc and cubecl panic in a worker thread when the driver, NVRTC or the CUDA headers
/// are missing; look for them first so the error says what to install.
#[cfg(feature = "cuda")]
fn check_cuda_install(spec: &str) -> Result<()> {
    // SAFETY: loading these libraries runs only their own initialisers.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        bail!(
            "device `{spec}`: the NVIDIA driver library (libcuda.so) was not found: \
             this needs a machine with an NVIDIA GPU and its driver"
        );
    }
    // SAFETY: as above.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        bail!(
            "device `{spec}`: NVRTC (libnvrtc.so) was not found: add the `lib` folder of a \
             CUDA 13 toolkit, or of Python's nvidia/cu13 wheels, to LD_LIBRARY_PATH"
        );
    }
    match cubecl_cuda::install::cuda_path() {
        Some(p) if p.join("include/cuda_fp16.h").is_file() => Ok(()),
        Some(p) => bail!(
            "device `{spec}`: the CUDA folder {} has no include/cuda_fp16.h: set CUDA_PATH \
             to a CUDA toolkit (or Python's nvidia/cu13 folder)",
            p.display()
        ),
        None => bail!(
            "device `{spec}`: no CUDA toolkit found: set CUDA_PATH to a folder with \
             include/cuda_fp16.h (a CUDA toolkit, or Python's nvidia/cu13 folder)"
        ),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda(spec: &str) -> Result<Device> {
    bail!("device `{spec}`: this fgclip was built without CUDA; rebuild with `--features cuda`")
}
