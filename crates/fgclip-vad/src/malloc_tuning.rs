//! glibc malloc settings for tensor work.
//!
//! Every burn-flex op returns a fresh buffer of up to tens of MiB. glibc serves blocks above
//! its mmap threshold (128 KiB at start, adapting up to 32 MiB) with `mmap` and gives them
//! back with `munmap` on free, and trims the heap's top above 128 KiB: each matmul output
//! then lands on fresh pages that the kernel faults in and zeroes. Measured on the dev VM
//! (`fgclip bench embed --preset vit-b-32 --batch 16`): 2.75 M minor page faults and 7.5 s
//! of system time per run, 0.16 M and 1.3 s with the settings below, the image forward
//! ~10 % faster (BENCHMARKS.md). Freed blocks are kept for reuse instead; peak RSS is the
//! same, since it is set by the largest live set of tensors.

/// Applies the settings unless the user set `GLIBC_TUNABLES` or `MALLOC_*` themselves.
/// Returns whether they were applied.
pub fn tune_for_tensors() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::vars_os().any(|(k, _)| {
            let k = k.to_string_lossy();
            k == "GLIBC_TUNABLES" || k.starts_with("MALLOC_")
        });
        if user_set {
            return false;
        }
        // SAFETY: mallopt only changes allocator parameters; called once at start, before
        // any other thread exists.
        unsafe {
            // Every block from the heap, none mmapped (AdamW's moments of the token
            // embedding are 100 MiB each, beyond any mmap threshold glibc accepts)...
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                // ...and the heap never trimmed (-1: "disables trimming completely").
                && libc::mallopt(libc::M_TRIM_THRESHOLD, -1) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
