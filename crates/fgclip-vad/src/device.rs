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
    // NVRTC compiles cubecl's kernels against these headers; the matmul kernels include
    // CCCL's <nv/target>, which cubecl looks for in include/ and include/cccl/.
    let Some(p) = cubecl_cuda::install::cuda_path() else {
        bail!(
            "device `{spec}`: no CUDA toolkit found: set CUDA_PATH to a folder with \
             include/cuda_fp16.h and CCCL (include/cccl/nv/target)"
        );
    };
    let include = p.join("include");
    if !include.join("cuda_fp16.h").is_file() {
        bail!(
            "device `{spec}`: the CUDA folder {} has no include/cuda_fp16.h: set CUDA_PATH \
             to a CUDA toolkit",
            p.display()
        );
    }
    if !include.join("nv/target").is_file() && !include.join("cccl/nv/target").is_file() {
        bail!(
            "device `{spec}`: the CUDA headers in {} lack CCCL (nv/target, in include/ or \
             include/cccl/): set CUDA_PATH to a full CUDA toolkit, or add CCCL there",
            include.display()
        );
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn cuda(spec: &str) -> Result<Device> {
    bail!("device `{spec}`: this fgclip was built without CUDA; rebuild with `--features cuda`")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(spec: &str) -> String {
        match parse_device(spec) {
            Ok(_) => String::from("ok"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn cpu_names_parse_and_unknown_devices_are_named_errors() {
        assert_eq!(message("cpu"), "ok");
        assert_eq!(message("flex"), "ok");
        assert_eq!(
            message("gpu"),
            "unknown device `gpu`: use cpu, cuda or cuda:N"
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_build_it() {
        for spec in ["cuda", "cuda:1"] {
            let m = message(spec);
            assert!(m.contains(&format!("device `{spec}`")), "{m}");
            assert!(m.contains("--features cuda"), "{m}");
        }
    }
}
