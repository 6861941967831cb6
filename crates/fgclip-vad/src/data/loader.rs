//! A multi-threaded prefetching loader of training samples, deterministic for a seed:
//! each sample's randomness is drawn from (seed, epoch, clip).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

use anyhow::Result;

use super::annotations::Clip;
use super::batch::{Sample, SampleConfig, Sampling, build_sample_augmented};
use super::rng::{Rng, mix};

/// Nanoseconds the loaders of this process spent decoding and sampling clips (all
/// workers summed): read before and after a run for its decode cost.
static DECODE_NANOS: AtomicU64 = AtomicU64::new(0);

/// Keeps the augmentation draws apart from the frame-sampling ones of the same clip.
const AUGMENT_STREAM: u64 = 0xA06;

/// Seconds spent decoding and sampling clips in this process so far.
pub fn decode_seconds_total() -> f64 {
    DECODE_NANOS.load(Ordering::Relaxed) as f64 * 1e-9
}

/// Where a loader starts: epoch and batch within it (for exact resume).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoaderPosition {
    pub epoch: u64,
    pub batch: usize,
}

/// A batch from the loader, with the clips that had to be skipped.
pub struct Loaded {
    pub position: LoaderPosition,
    pub samples: Vec<Sample>,
    /// (clip index, reason) of clips dropped from this batch.
    pub skipped: Vec<(usize, String)>,
}

/// The clip order of an epoch: shuffled by (seed, epoch), or in file order.
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        Rng::new(mix(&[seed, epoch])).shuffle(&mut order);
    }
    order
}

/// Loads one epoch's batches from `start` on, `workers` threads decoding ahead of the
/// consumer (at most `prefetch` samples in flight). Results come in order and are the
/// same for any number of workers: each sample's randomness is drawn from
/// (seed, epoch, clip).
pub struct Loader {
    rx: mpsc::Receiver<(usize, Result<Sample>)>,
    window: Arc<(Mutex<usize>, Condvar)>,
    order: Vec<usize>,
    clips: Arc<Vec<Clip>>,
    batch_size: usize,
    next_batch: usize,
    epoch: u64,
    pending: BTreeMap<usize, Result<Sample>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

/// How a [`Loader`] walks an epoch.
#[derive(Clone, Copy, Debug)]
pub struct LoaderSettings {
    /// Clips a batch (the global batch; each rank takes its slice).
    pub batch_size: usize,
    pub seed: u64,
    /// Shuffle the clips by (seed, epoch), else file order.
    pub shuffle: bool,
    /// Training's random frame in each segment; else the segments' centres.
    pub random_frames: bool,
    /// Decoding threads.
    pub workers: usize,
    /// Samples in flight at most (at least one batch).
    pub prefetch: usize,
    /// No short last batch (open_clip's `drop_last`).
    pub drop_last: bool,
    /// This process's rank and the number of ranks.
    pub rank: usize,
    pub world: usize,
}

impl Loader {
    pub fn new(
        clips: Arc<Vec<Clip>>,
        root: PathBuf,
        cfg: SampleConfig,
        settings: &LoaderSettings,
        start: LoaderPosition,
    ) -> Self {
        let LoaderSettings {
            batch_size,
            seed,
            shuffle,
            random_frames,
            workers,
            prefetch,
            drop_last,
            rank,
            world,
        } = *settings;
        let mut batch_size = batch_size.max(1);
        let mut order = epoch_order(clips.len(), seed, start.epoch, shuffle);
        if drop_last {
            // open_clip's DataLoader(drop_last=True): no short last batch.
            order.truncate(order.len() / batch_size * batch_size);
        }
        if world > 1 {
            // Rank r takes the r-th slice of every global batch, so the ranks' rows,
            // gathered in rank order, are the global batch in its order.
            let per = batch_size / world;
            order = order
                .chunks(batch_size)
                .flat_map(|c| {
                    c[(rank * per).min(c.len())..((rank + 1) * per).min(c.len())].to_vec()
                })
                .collect();
            batch_size = per.max(1);
        }
        let first = (start.batch * batch_size).min(order.len());
        let next_job = Arc::new(AtomicUsize::new(first));
        // The window: jobs below `consumed + prefetch` may start.
        let window = Arc::new((Mutex::new(first), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        let prefetch = prefetch.max(batch_size);
        let handles = (0..workers.max(1))
            .map(|_| {
                let (tx, clips, root, order, next_job, window) = (
                    tx.clone(),
                    clips.clone(),
                    root.clone(),
                    order.clone(),
                    next_job.clone(),
                    window.clone(),
                );
                let epoch = start.epoch;
                let cfg = cfg.clone();
                std::thread::spawn(move || {
                    loop {
                        let j = next_job.fetch_add(1, Ordering::SeqCst);
                        if j >= order.len() {
                            break;
                        }
                        {
                            let (lock, cvar) = &*window;
                            let mut consumed = match lock.lock() {
                                Ok(g) => g,
                                Err(_) => break,
                            };
                            while j >= *consumed + prefetch {
                                consumed = match cvar.wait(consumed) {
                                    Ok(g) => g,
                                    Err(_) => return,
                                };
                            }
                        }
                        let clip = &clips[order[j]];
                        let sampling = if random_frames {
                            Sampling::Random {
                                seed: mix(&[seed, epoch, clip.index as u64]),
                            }
                        } else {
                            Sampling::Uniform
                        };
                        let t0 = std::time::Instant::now();
                        let augment_seed = mix(&[seed, epoch, clip.index as u64, AUGMENT_STREAM]);
                        let result =
                            build_sample_augmented(clip, &root, &cfg, sampling, augment_seed);
                        DECODE_NANOS.fetch_add(
                            t0.elapsed().as_nanos().min(u64::MAX as u128) as u64,
                            Ordering::Relaxed,
                        );
                        if tx.send((j, result)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        Self {
            rx,
            window,
            order,
            clips,
            batch_size,
            next_batch: start.batch,
            epoch: start.epoch,
            pending: BTreeMap::new(),
            handles,
        }
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
}

impl Iterator for Loader {
    type Item = Loaded;

    fn next(&mut self) -> Option<Loaded> {
        let lo = self.next_batch * self.batch_size;
        if lo >= self.order.len() {
            return None;
        }
        let hi = (lo + self.batch_size).min(self.order.len());
        while (lo..hi).any(|j| !self.pending.contains_key(&j)) {
            match self.rx.recv() {
                Ok((j, r)) => {
                    self.pending.insert(j, r);
                }
                Err(_) => break,
            }
        }
        let mut samples = Vec::new();
        let mut skipped = Vec::new();
        for j in lo..hi {
            match self.pending.remove(&j) {
                Some(Ok(s)) => samples.push(s),
                Some(Err(e)) => skipped.push((self.clips[self.order[j]].index, format!("{e:#}"))),
                None => skipped.push((self.clips[self.order[j]].index, "worker stopped".into())),
            }
        }
        let (lock, cvar) = &*self.window;
        if let Ok(mut consumed) = lock.lock() {
            *consumed = hi;
        }
        cvar.notify_all();
        let position = LoaderPosition {
            epoch: self.epoch,
            batch: self.next_batch,
        };
        self.next_batch += 1;
        Some(Loaded {
            position,
            samples,
            skipped,
        })
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Let waiting workers run to the end of the order and exit.
        let (lock, cvar) = &*self.window;
        if let Ok(mut consumed) = lock.lock() {
            *consumed = usize::MAX / 2;
        }
        cvar.notify_all();
        // Dropping the receiver makes their next send fail.
        let (_tx, rx) = mpsc::channel();
        drop(std::mem::replace(&mut self.rx, rx));
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_deterministic_permutations() {
        let a = epoch_order(50, 7, 0, true);
        assert_eq!(a, epoch_order(50, 7, 0, true));
        assert_ne!(a, epoch_order(50, 7, 1, true));
        assert_ne!(a, epoch_order(50, 8, 0, true));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
        assert_eq!(epoch_order(5, 7, 0, false), vec![0, 1, 2, 3, 4]);
    }
}
