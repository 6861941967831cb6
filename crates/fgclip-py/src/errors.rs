//! fgclip's errors as Python exceptions: a missing file is `FileNotFoundError`, a wrong
//! array or argument `ValueError` (raised where the bindings check them), anything else
//! `fgclip.FgclipError`, each with the command line's message.

use pyo3::PyErr;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyValueError};

pyo3::create_exception!(
    fgclip,
    FgclipError,
    PyException,
    "An fgclip operation failed (a damaged video, a model that does not load, …); the message is the command line's."
);

/// An error of the Rust code as the Python exception it is.
pub fn to_py(e: anyhow::Error) -> PyErr {
    let message = format!("{e:#}");
    let missing = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    });
    if missing {
        PyFileNotFoundError::new_err(message)
    } else {
        FgclipError::new_err(message)
    }
}

pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}

/// `path` must exist (FileNotFoundError naming it otherwise).
pub fn must_exist(path: &std::path::Path, what: &str) -> Result<(), PyErr> {
    if path.exists() {
        Ok(())
    } else {
        Err(PyFileNotFoundError::new_err(format!(
            "{what} {} does not exist",
            path.display()
        )))
    }
}
