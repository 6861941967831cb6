//! Which frames of a clip become a sample (DESIGN.md §3): the clip's extent, T uniform or
//! random positions, and key frames that replace the nearest position.

/// The frames of a clip: `first ..= last` in original-video indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub first: u64,
    pub last: u64,
}

impl Extent {
    /// Frames in the extent; never 0 (`extent` returns None instead).
    pub fn frames(&self) -> u64 {
        self.last - self.first + 1
    }

    pub fn contains(&self, frame: u64) -> bool {
        (self.first..=self.last).contains(&frame)
    }
}

/// A clip's extent: with timestamps, frames `int(start·fps) .. int(end·fps) − 1` (OpenCV's
/// `CAP_PROP_POS_FRAMES` arithmetic), cut to the video; otherwise the whole video.
/// None when nothing is left (a segment past the end, `start ≥ end`, or NaN).
pub fn extent(timestamps: Option<(f64, f64)>, fps: f64, frame_count: u64) -> Option<Extent> {
    if frame_count == 0 {
        return None;
    }
    let (first, end) = match timestamps {
        None => (0, frame_count),
        Some((start, end)) => {
            if !(start.is_finite() && end.is_finite() && fps.is_finite() && fps > 0.0) {
                return None;
            }
            if start < 0.0 || start >= end {
                return None;
            }
            let first = frame_at(start, fps);
            let end = frame_at(end, fps).min(frame_count);
            (first, end)
        }
    };
    (first < end).then(|| Extent {
        first,
        last: end - 1,
    })
}

/// Python's `int(t * fps)`: the IEEE double product, truncated. The annotations were made
/// with exactly that, and OpenCV seeks there (`CAP_PROP_POS_FRAMES`), so a product just
/// under an integer stays below it: 4.1 s at 30 fps is 122.99999999999999, frame 122.
/// Negative and NaN products give 0 (callers reject such timestamps first).
pub fn frame_at(seconds: f64, fps: f64) -> u64 {
    // `as` truncates toward zero and saturates, as int() truncates.
    (seconds * fps) as u64
}

/// The T segment centres `first + floor((j + 0.5) · len / T)` (evaluation sampling).
pub fn uniform_positions(e: Extent, t: usize) -> Vec<u64> {
    let len = e.frames() as f64;
    (0..t)
        .map(|j| e.first + (((j as f64 + 0.5) * len / t as f64).floor() as u64).min(e.frames() - 1))
        .collect()
}

/// One frame drawn uniformly from each of T equal segments (training sampling).
/// `draw(n)` returns a number in `0..n`.
pub fn random_positions(e: Extent, t: usize, mut draw: impl FnMut(u64) -> u64) -> Vec<u64> {
    let len = e.frames();
    (0..t as u64)
        .map(|j| {
            let lo = j * len / t as u64;
            let hi = ((j + 1) * len / t as u64).max(lo + 1);
            e.first + (lo + draw(hi - lo)).min(len - 1)
        })
        .collect()
}

/// Puts key frames into a sample of positions (sorted ascending on return).
///
/// `keys[i]` are region i's enabled key frames inside the extent. With at most T
/// distinct key frames, each replaces the nearest position not yet replaced. With more,
/// each region keeps at least one (its middle key frame, round robin over regions), and
/// the remaining slots are spread evenly over the remaining key frames.
pub fn place_key_frames(positions: &[u64], keys: &[Vec<u64>]) -> Vec<u64> {
    let t = positions.len();
    let mut all: Vec<u64> = keys.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    let mut out = positions.to_vec();
    if all.len() <= t {
        let mut taken = vec![false; t];
        for &k in &all {
            let slot = (0..t)
                .filter(|&j| !taken[j])
                .min_by_key(|&j| (out[j].abs_diff(k), j));
            if let Some(j) = slot {
                out[j] = k;
                taken[j] = true;
            }
        }
    } else {
        // One per region first (its middle key frame, in region order) …
        let mut chosen: Vec<u64> = Vec::with_capacity(t);
        for region in keys {
            if chosen.len() == t {
                break;
            }
            let mut k = region.clone();
            k.sort_unstable();
            k.dedup();
            if let Some(&mid) = k.get(k.len() / 2)
                && !chosen.contains(&mid)
            {
                chosen.push(mid);
            }
        }
        // … then the rest spread evenly over the remaining key frames. There are more of
        // those than free slots, so the picks are distinct.
        let rest: Vec<u64> = all
            .iter()
            .copied()
            .filter(|f| !chosen.contains(f))
            .collect();
        let need = t - chosen.len();
        for j in 0..need {
            let i = ((j as f64 + 0.5) * rest.len() as f64 / need as f64).floor() as usize;
            chosen.push(rest[i.min(rest.len() - 1)]);
        }
        out = chosen;
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_follows_opencv_arithmetic() {
        // vtest.avi: 10 fps, 795 frames.
        assert_eq!(
            extent(Some((4.5, 6.25)), 10.0, 795),
            Some(Extent {
                first: 45,
                last: 61
            })
        );
        assert_eq!(
            extent(Some((78.0, 90.0)), 10.0, 795),
            Some(Extent {
                first: 780,
                last: 794
            })
        );
        assert_eq!(
            extent(None, 10.0, 795),
            Some(Extent {
                first: 0,
                last: 794
            })
        );
        // testsrc: 30 fps; 1.9·30 is exactly 57.0 in f64.
        assert_eq!(
            extent(Some((1.9, 2.1)), 30.0, 360),
            Some(Extent {
                first: 57,
                last: 62
            })
        );
        assert_eq!(extent(Some((41.05, 42.0)), 10.0, 795).unwrap().first, 410);
        assert_eq!(frame_at(6.25, 10.0), 62);
        // Products just under an integer are truncated, as Python's int(t * fps).
        assert_eq!(frame_at(4.1, 30.0), 122);
        assert_eq!(frame_at(1.16, 25.0), 28);
        assert_eq!(frame_at(4.52, 25.0), 112);
        assert_eq!(extent(Some((4.1, 5.0)), 30.0, 360).unwrap().first, 122);
        assert_eq!(extent(Some((100.0, 120.0)), 10.0, 795), None);
        assert_eq!(extent(Some((5.0, 5.0)), 10.0, 795), None);
        assert_eq!(extent(Some((6.0, 5.0)), 10.0, 795), None);
        assert_eq!(extent(Some((f64::NAN, 5.0)), 10.0, 795), None);
        assert_eq!(extent(Some((-1.0, 5.0)), 10.0, 795), None);
        assert_eq!(extent(None, 10.0, 0), None);
    }

    #[test]
    fn uniform_positions_are_segment_centres() {
        let e = Extent {
            first: 100,
            last: 179,
        };
        assert_eq!(
            uniform_positions(e, 8),
            vec![105, 115, 125, 135, 145, 155, 165, 175]
        );
        // Shorter than T: frames repeat, never leave the extent.
        let e = Extent {
            first: 10,
            last: 12,
        };
        assert_eq!(uniform_positions(e, 4), vec![10, 11, 11, 12]);
    }

    #[test]
    fn random_positions_stay_in_their_segments() {
        let e = Extent { first: 0, last: 79 };
        let mut state = 12345u64;
        let draw = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 33) % n
        };
        let p = random_positions(e, 8, draw);
        for (j, &f) in p.iter().enumerate() {
            assert!((j as u64 * 10..(j as u64 + 1) * 10).contains(&f), "{p:?}");
        }
        assert_eq!(
            random_positions(e, 8, |n| n - 1),
            vec![9, 19, 29, 39, 49, 59, 69, 79]
        );
    }

    #[test]
    fn key_frames_replace_the_nearest_position() {
        let base = vec![105, 115, 125, 135, 145, 155, 165, 175];
        let out = place_key_frames(&base, &[vec![118], vec![121]]);
        // 118 takes 115's slot, 121 the next nearest free one (125).
        assert_eq!(out, vec![105, 118, 121, 135, 145, 155, 165, 175]);
        // A key frame shared by two regions is placed once.
        let out = place_key_frames(&base, &[vec![150], vec![150]]);
        assert_eq!(out, vec![105, 115, 125, 135, 150, 155, 165, 175]);
        assert_eq!(place_key_frames(&base, &[]), base);
    }

    #[test]
    fn more_key_frames_than_t_keep_every_region() {
        let base = vec![0, 10, 20, 30];
        // Region 0 is a long track; regions 1 and 2 have one key frame each.
        let track: Vec<u64> = (100..200).collect();
        let out = place_key_frames(&base, &[track, vec![5], vec![300]]);
        assert_eq!(out.len(), 4);
        assert!(out.contains(&5) && out.contains(&300), "{out:?}");
        assert!(
            out.iter().filter(|f| (100..200).contains(*f)).count() == 2,
            "{out:?}"
        );
        // More regions than T: the first T regions win.
        let out = place_key_frames(&[0, 1], &[vec![10], vec![20], vec![30]]);
        assert_eq!(out, vec![10, 20]);
    }
}
