//! `_keep_detached_networks()`: the work of `python -m boxlite._keeper HOME`
//! (`boxlite_core::keeper`), on a tokio runtime of its own: the keeper's process does nothing
//! else.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::errors;

/// Serves the networks of `home_dir`'s detached boxes until a runtime opens the home or none
/// with a network runs. Blocks, without the interpreter.
#[pyfunction]
#[pyo3(name = "_keep_detached_networks")]
pub fn keep_detached_networks(py: Python<'_>, home_dir: PathBuf) -> PyResult<()> {
    crate::log_bridge::follow_python_level(py)?;
    let failed = |error: boxlite_core::Error| errors::to_py(py, &error);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("boxlite-keeper")
        .enable_all()
        .build()
        .map_err(|error| failed(boxlite_core::Error::Internal(format!("failed to start the keeper's runtime: {error}"))))?;
    let kept = crate::gil::detach(py, || {
        let kept = tokio.block_on(boxlite_core::keeper::keep(home_dir));
        // The boxes' watches wait, on blocking threads, for inits that outlive the keeper.
        tokio.shutdown_background();
        kept
    });
    kept.map_err(failed)
}
