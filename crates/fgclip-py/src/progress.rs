//! Progress of long calls for Python: the Rust code advances an indicatif bar (hidden: it
//! draws nothing) on a worker thread while this thread, the GIL released between looks,
//! reports its position to a Python callable `progress(done, total, message)` ten times a
//! second (the Python side turns `progress=True` into a tqdm bar). Without a callable the
//! work runs on this thread with the GIL released.

use std::time::Duration;

use indicatif::ProgressBar;
use pyo3::prelude::*;

/// Runs `work` with a bar, reporting to `progress` when given.
pub fn with_progress<T: Send>(
    py: Python<'_>,
    progress: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce(&ProgressBar) -> T + Send,
) -> PyResult<T> {
    let bar = ProgressBar::hidden();
    let Some(report) = progress else {
        return Ok(py.detach(|| work(&bar)));
    };
    std::thread::scope(|s| {
        let worker = s.spawn(|| work(&bar));
        loop {
            let finished = py.detach(|| {
                for _ in 0..10 {
                    if worker.is_finished() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                worker.is_finished()
            });
            let (done, total) = (bar.position(), bar.length().unwrap_or(0));
            if let Err(e) = report.call1((done, total, bar.message().to_string())) {
                // A failing callback does not stop the work: it is reported once it ends.
                let _ = worker.join();
                return Err(e);
            }
            if finished {
                break;
            }
        }
        worker
            .join()
            .map_err(|_| crate::errors::FgclipError::new_err("the worker thread panicked"))
    })
}
