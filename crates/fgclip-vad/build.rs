// With the `cuda` feature, cubecl pulls in an LLVM-based compiler whose symbols are
// never called (kernels go through NVRTC, cubecl-cuda's `cpp` compiler). The LLVM
// bundle cannot be downloaded offline, so those symbols are left unresolved and bound
// lazily; see ../../BENCHMARKS.md ("GPU build") for the full recipe.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-arg=-Wl,--unresolved-symbols=ignore-all");
        println!("cargo:rustc-link-arg=-Wl,-z,lazy");
    }
}
