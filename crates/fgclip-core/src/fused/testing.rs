//! Inputs and read-back shared by the fused kernels' tests.

use burn::tensor::Tensor;

/// `n` values of a xorshift sequence seeded with `seed`, each `(u / u32::MAX − 0.5) ·
/// spread + offset`: reproducible, both signs, no library RNG.
pub fn xorshift(n: usize, seed: u32, spread: f32, offset: f32) -> Vec<f32> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32 - 0.5) * spread + offset
        })
        .collect()
}

/// The f32 values of a tensor.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}
