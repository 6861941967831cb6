//! Antialiased resizing of RGB24 images, the algorithm of Pillow's `Image.resize(size,
//! BICUBIC | BILINEAR)` (separable, the kernel widened by the scale factor, 22-bit
//! fixed-point weights, 8-bit rounding between the passes): bicubic is what HF's
//! `CLIPImageProcessor` uses, bilinear FG-CLIP 2's image processor. No crop: the image is
//! stretched to the target size.

/// Pillow's resampling filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Keys' cubic with a = −0.5, support 2.
    Bicubic,
    /// The triangle, support 1.
    Bilinear,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Bilinear => 1.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Bicubic => bicubic(x),
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
        }
    }
}

/// Pillow's bicubic kernel.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output coordinate, the first input index and fixed-point weights.
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    weights: Vec<Vec<i32>>,
}

/// (input size, output size, filter) of one axis.
type Geometry = (usize, usize, Filter);

thread_local! {
    /// Weights for the last few geometries: frames of a video share them.
    static CACHE: std::cell::RefCell<Vec<(Geometry, std::rc::Rc<Coefficients>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn cached(in_size: usize, out_size: usize, filter: Filter) -> std::rc::Rc<Coefficients> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let key = (in_size, out_size, filter);
        if let Some((_, k)) = c.iter().find(|(k, _)| *k == key) {
            return k.clone();
        }
        let k = std::rc::Rc::new(coefficients(in_size, out_size, filter));
        if c.len() >= 8 {
            c.remove(0);
        }
        c.push((key, k.clone()));
        k
    })
}

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for x in 0..out_size {
        let center = (x as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5).floor().max(0.0)) as usize;
        let xmax = ((center + support + 0.5).floor().min(in_size as f64)) as usize;
        let mut k: Vec<f64> = (xmin..xmax)
            .map(|i| filter.weight((i as f64 - center + 0.5) * ss))
            .collect();
        let total: f64 = k.iter().sum();
        if total != 0.0 {
            for w in &mut k {
                *w /= total;
            }
        }
        // Pillow rounds half away from zero when converting to fixed point.
        let fixed = k
            .iter()
            .map(|w| {
                let v = w * (1i64 << PRECISION_BITS) as f64;
                (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
            })
            .collect();
        bounds.push((xmin, xmax - xmin));
        weights.push(fixed);
    }
    Coefficients { bounds, weights }
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes packed RGB24 `src` (w×h) to `out_w`×`out_h` with Pillow's bicubic filter.
pub fn resize_rgb24(src: &[u8], w: usize, h: usize, out_w: usize, out_h: usize) -> Vec<u8> {
    resize_rgb24_with(src, w, h, out_w, out_h, Filter::Bicubic)
}

/// Resizes packed RGB24 `src` (w×h) to `out_w`×`out_h` with `filter`.
pub fn resize_rgb24_with(
    src: &[u8],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    // The i32 multiply-adds vectorise well only with SSE4.1's `pmulld` or AVX2, which
    // baseline x86-64 lacks: the same integer code, compiled for AVX2, is chosen at run
    // time. Integer arithmetic, so both give identical bytes.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { resize_rgb24_avx2(src, w, h, out_w, out_h, filter) };
    }
    resize_rgb24_portable(src, w, h, out_w, out_h, filter)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn resize_rgb24_avx2(
    src: &[u8],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    resize_rgb24_portable(src, w, h, out_w, out_h, filter)
}

/// The resize itself; inlined into each dispatch target so it is compiled for it.
#[inline(always)]
fn resize_rgb24_portable(
    src: &[u8],
    w: usize,
    h: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    if (w, h) == (out_w, out_h) {
        return src.to_vec();
    }
    // 22-bit weights summing to 2^22 keep 8-bit sums inside i32, as in Pillow.
    let round = 1i32 << (PRECISION_BITS - 1);
    // Horizontal pass (skipped when the width is unchanged, as Pillow does).
    let horiz = if w != out_w {
        let c = cached(w, out_w, filter);
        let mut out = vec![0u8; out_w * h * 3];
        for (row, dst) in src.chunks_exact(w * 3).zip(out.chunks_exact_mut(out_w * 3)) {
            for ((&(start, n), k), px) in
                c.bounds.iter().zip(&c.weights).zip(dst.chunks_exact_mut(3))
            {
                let (mut r, mut g, mut b) = (round, round, round);
                for (p, &kw) in row[start * 3..(start + n) * 3].chunks_exact(3).zip(k) {
                    r += kw * p[0] as i32;
                    g += kw * p[1] as i32;
                    b += kw * p[2] as i32;
                }
                px[0] = clip8(r);
                px[1] = clip8(g);
                px[2] = clip8(b);
            }
        }
        out
    } else {
        src.to_vec()
    };
    if h == out_h {
        return horiz;
    }
    let c = cached(h, out_h, filter);
    let stride = out_w * 3;
    let mut out = vec![0u8; stride * out_h];
    let mut acc = vec![0i32; stride];
    for ((&(start, n), k), dst) in c
        .bounds
        .iter()
        .zip(&c.weights)
        .zip(out.chunks_exact_mut(stride))
    {
        acc.fill(round);
        for (row, &kw) in horiz[start * stride..(start + n) * stride]
            .chunks_exact(stride)
            .zip(k)
        {
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += kw * p as i32;
            }
        }
        for (d, &a) in dst.iter_mut().zip(&acc) {
            *d = clip8(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_images_stay_constant_and_sizes_are_right() {
        let src = vec![77u8; 50 * 30 * 3];
        let out = resize_rgb24(&src, 50, 30, 20, 20);
        assert_eq!(out.len(), 20 * 20 * 3);
        assert!(out.iter().all(|&v| v == 77));
        let up = resize_rgb24(&src, 50, 30, 64, 64);
        assert!(up.iter().all(|&v| v == 77));
    }

    #[test]
    fn the_dispatched_and_portable_paths_give_the_same_bytes() {
        // A deterministic noisy image (xorshift), down- and upscaled, odd sizes too.
        let (w, h) = (97, 61);
        let mut x = 0x9e37_79b9u32;
        let src: Vec<u8> = (0..w * h * 3)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        for (ow, oh) in [(32, 32), (224, 224), (97, 20), (40, 61), (5, 3)] {
            for f in [Filter::Bicubic, Filter::Bilinear] {
                assert_eq!(
                    resize_rgb24_with(&src, w, h, ow, oh, f),
                    resize_rgb24_portable(&src, w, h, ow, oh, f),
                    "{w}x{h} -> {ow}x{oh} {f:?}"
                );
            }
        }
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o, f) in [(640, 224), (224, 640), (7, 3), (3, 7)]
            .into_iter()
            .flat_map(|(i, o)| [(i, o, Filter::Bicubic), (i, o, Filter::Bilinear)])
        {
            let c = coefficients(i, o, f);
            for k in &c.weights {
                let s: i64 = k.iter().map(|&v| v as i64).sum();
                assert!(k.iter().all(|&v| (v as i64).abs() < 1 << 23));
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= k.len() as i64,
                    "{i}->{o}: {s}"
                );
            }
        }
    }
}
