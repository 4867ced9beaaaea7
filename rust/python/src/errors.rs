//! Errors cross into Python here, and only here. The exception classes are declared once, in
//! `boxlite/errors.py`; this module maps each core error kind to its class by name.

use boxlite_core::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn class_name(error: &Error) -> &'static str {
    match error {
        Error::NotFound(_) => "NotFoundError",
        Error::AlreadyExists(_) => "AlreadyExistsError",
        Error::InvalidState(_) => "InvalidStateError",
        Error::InvalidArgument(_) => "InvalidArgumentError",
        Error::Config(_) => "ConfigError",
        Error::Storage(_) => "StorageError",
        Error::Image(_) => "ImageError",
        Error::Network(_) => "NetworkError",
        Error::Execution(_) => "ExecutionError",
        Error::Stopped(_) => "StoppedError",
        Error::Engine(_) => "EngineError",
        Error::Unsupported(_) => "UnsupportedError",
        Error::Internal(_) => "InternalError",
    }
}

/// An instance of `boxlite.errors.<name>` with `message`.
pub fn exception(py: Python<'_>, name: &str, message: String) -> PyErr {
    let module = ERRORS_MODULE.get_or_try_init(py, || py.import("boxlite.errors").map(Bound::unbind));
    match module.and_then(|module| module.bind(py).getattr(name)) {
        Ok(class) => PyErr::from_type(class.cast_into().unwrap_or_else(|_| py.get_type::<PyRuntimeError>()), message),
        Err(_) => PyRuntimeError::new_err(message),
    }
}

pub fn to_py(py: Python<'_>, error: &Error) -> PyErr {
    exception(py, class_name(error), error.to_string())
}

pub fn runtime_closed(py: Python<'_>) -> PyErr {
    exception(py, "RuntimeClosedError", "runtime closed: the Boxlite runtime was closed".to_string())
}

pub fn invalid_argument(py: Python<'_>, message: impl Into<String>) -> PyErr {
    exception(py, "InvalidArgumentError", format!("invalid argument: {}", message.into()))
}

pub fn invalid_state(py: Python<'_>, message: impl Into<String>) -> PyErr {
    exception(py, "InvalidStateError", format!("invalid state: {}", message.into()))
}
