//! `fgclip` for Python: thin PyO3 bindings over the library and application crates, numpy
//! arrays in and out. Every function here checks what Python handed it (shapes, dtypes,
//! paths), calls the Rust code the command line runs, and turns its errors into Python
//! exceptions; the work itself stays in `fgclip-vad` and `fgclip-core`. The Python side
//! (`python/fgclip/__init__.py`) adds docstrings' examples and small conveniences.

use pyo3::prelude::*;

mod errors;
mod functions;
mod inputs;
mod model;
mod progress;
mod train;

#[pymodule]
fn _fgclip(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FgclipError", m.py().get_type::<errors::FgclipError>())?;
    m.add_class::<model::Model>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(functions::read_frames, m)?)?;
    m.add_function(wrap_pyfunction!(functions::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(functions::validate, m)?)?;
    m.add_function(wrap_pyfunction!(functions::detect, m)?)?;
    m.add_function(wrap_pyfunction!(functions::extract, m)?)?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
