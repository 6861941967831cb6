//! The data's randomness: one portable stream per (seed, epoch, clip), so sampling and
//! augmentation are the same for any worker count, platform or dependency version.

use fgclip_core::weights::SplitMix64;

/// A small generator with a portable, fixed sequence (sampling must not change with a
/// dependency's version): the library's SplitMix64.
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Mixes values into one seed, so each (seed, epoch, clip) draws its own stream.
pub fn mix(parts: &[u64]) -> u64 {
    parts.iter().fold(0x243f_6a88_85a3_08d3u64, |h, &p| {
        let mut r = Rng::new(h ^ p.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next_u64()
    })
}
