//! Choosing the compute device from the command line, and the GPU kernel caches.
//!
//! On a GPU, burn's CubeCL runtime compiles every kernel with NVRTC and benchmarks
//! candidate kernels (autotune) the first time a shape is seen: minutes on a bare machine.
//! Both results are kept on disk in one folder (CubeCL's "environment"), so later runs
//! start in seconds.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::tensor::Device;

/// How the GPU runtime is set up; ignored on the CPU.
#[derive(Clone, Debug, Default)]
pub struct DeviceOptions {
    /// Cache folder; `None` takes [`default_kernel_cache`].
    pub kernel_cache: Option<PathBuf>,
    /// Compile kernels afresh in every run.
    pub no_kernel_cache: bool,
    /// `minimal`, `balanced`, `extensive` or `full`; `None` keeps CubeCL's choice
    /// (`balanced`, or `CUBECL_AUTOTUNE_LEVEL`).
    pub autotune: Option<String>,
}

/// `cpu` (burn's flex backend) or, in builds with the `cuda` feature, `cuda` / `cuda:N`.
pub fn parse_device(spec: &str) -> Result<Device> {
    open_device(spec, &DeviceOptions::default())
}

/// [`parse_device`] with the GPU runtime configured by `options`.
pub fn open_device(spec: &str, options: &DeviceOptions) -> Result<Device> {
    match spec {
        "cpu" | "flex" => Ok(Device::flex()),
        s if s == "cuda" || s.starts_with("cuda:") => cuda(s, options),
        other => bail!("unknown device `{other}`: use cpu, cuda or cuda:N"),
    }
}

/// The kernel cache folder: `explicit` (`--kernel-cache`), else `$FGCLIP_KERNEL_CACHE`,
/// else `$XDG_CACHE_HOME/fgclip/kernels`, else `$HOME/.cache/fgclip/kernels`; `None`
/// without any of them (CubeCL then uses its own default beside the nearest `target/`).
pub fn default_kernel_cache(
    explicit: Option<&Path>,
    fgclip_kernel_cache: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = fgclip_kernel_cache.filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    // The XDG spec ignores relative values.
    let xdg = xdg_cache_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        home.map(PathBuf::from)
            .filter(|p| !p.as_os_str().is_empty())
            .map(|h| h.join(".cache"))
    })?;
    Some(base.join("fgclip").join("kernels"))
}

#[cfg(feature = "cuda")]
fn cuda(spec: &str, options: &DeviceOptions) -> Result<Device> {
    let index = match spec.strip_prefix("cuda:") {
        Some(i) => i
            .parse::<usize>()
            .map_err(|_| anyhow::anyhow!("device `{spec}`: `{i}` is not a GPU index"))?,
        None => 0,
    };
    check_cuda_install(spec)?;
    configure_cubecl(options)?;
    Ok(Device::cuda(index))
}

/// Sets CubeCL's runtime configuration before the first device opens: the cache folder,
/// kernel caching and the autotune level. A `cubecl.toml` and the `CUBECL_*` variables
/// are read first, so they still set everything else.
#[cfg(feature = "cuda")]
fn configure_cubecl(options: &DeviceOptions) -> Result<()> {
    use anyhow::Context;
    use cubecl_runtime::config::autotune::AutotuneLevel;
    use cubecl_runtime::config::cache::CacheConfig;
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};

    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    if let Some(level) = options.autotune.as_deref() {
        config.autotune.level = match level {
            "minimal" => AutotuneLevel::Minimal,
            "balanced" => AutotuneLevel::Balanced,
            "extensive" => AutotuneLevel::Extensive,
            "full" => AutotuneLevel::Full,
            other => bail!("autotune level `{other}`: use minimal, balanced, extensive or full"),
        };
    }
    config.compilation.cache = !options.no_kernel_cache;
    let dir = default_kernel_cache(
        options.kernel_cache.as_deref(),
        std::env::var_os("FGCLIP_KERNEL_CACHE"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    );
    if let Some(dir) = dir {
        std::fs::create_dir_all(&dir).with_context(|| {
            format!(
                "kernel cache folder {}: cannot create it (choose another with \
                 --kernel-cache or FGCLIP_KERNEL_CACHE)",
                dir.display()
            )
        })?;
        config.environment.path = CacheConfig::Directory(dir);
    }
    // Already set: a second device in the same process shares the first one's settings.
    let _ = CubeClRuntimeConfig::try_set(config);
    Ok(())
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
fn cuda(spec: &str, _options: &DeviceOptions) -> Result<Device> {
    bail!("device `{spec}`: this fgclip was built without CUDA; rebuild with `--features cuda`")
}

/// Reads a tensor back to the host as f32 (a cast where a backend computes in f16). A
/// device failure (on a GPU, say, a kernel that does not compile) is an error here rather
/// than burn's panic in `into_data`.
pub fn host_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> anyhow::Result<Vec<f32>> {
    host_data(t)?
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("reading a model output back: {e:?}"))
}

/// The first value of a one-element tensor (a loss, a norm), as f64; NaN if empty.
pub fn host_scalar(t: burn::tensor::Tensor<1>) -> anyhow::Result<f64> {
    Ok(host_f32(t)?.first().copied().unwrap_or(f32::NAN) as f64)
}

/// `try_into_data` with the device's failure as an error.
pub fn host_data<const D: usize>(
    t: burn::tensor::Tensor<D>,
) -> anyhow::Result<burn::tensor::TensorData> {
    t.try_into_data()
        .map_err(|e| anyhow::anyhow!("the compute device failed: {e}"))
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

    #[test]
    fn kernel_cache_follows_flag_then_xdg_then_home() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            default_kernel_cache(Some(Path::new("k")), os("/e"), os("/x"), os("/h")),
            Some(PathBuf::from("k"))
        );
        assert_eq!(
            default_kernel_cache(None, os("/e"), os("/x"), os("/h")),
            Some(PathBuf::from("/e"))
        );
        assert_eq!(
            default_kernel_cache(None, os(""), os("/x"), os("/h")),
            Some(PathBuf::from("/x/fgclip/kernels"))
        );
        // A relative XDG_CACHE_HOME is ignored, as the XDG spec says.
        assert_eq!(
            default_kernel_cache(None, None, os("rel"), os("/h")),
            Some(PathBuf::from("/h/.cache/fgclip/kernels"))
        );
        assert_eq!(default_kernel_cache(None, None, None, os("")), None);
        assert_eq!(default_kernel_cache(None, None, None, None), None);
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
