//! Errors cross into Python here, and only here. The exception classes are declared once, in
//! `boxlite/errors.py`; [`resolve`] looks each kind's class up once, when the module is
//! imported, so a name missing there fails the import instead of a user's error path.

use boxlite_core::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The kinds of error the binding raises, each a class of `boxlite/errors.py`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    AlreadyExists,
    InvalidState,
    InvalidArgument,
    Config,
    Storage,
    Image,
    Network,
    Execution,
    Stopped,
    Engine,
    Unsupported,
    Internal,
    ResourceExhausted,
    RuntimeClosed,
}

/// Every kind with its class's name, in [`Kind`]'s order (a kind is its index here).
const CLASSES: [(Kind, &str); 15] = [
    (Kind::NotFound, "NotFoundError"),
    (Kind::AlreadyExists, "AlreadyExistsError"),
    (Kind::InvalidState, "InvalidStateError"),
    (Kind::InvalidArgument, "InvalidArgumentError"),
    (Kind::Config, "ConfigError"),
    (Kind::Storage, "StorageError"),
    (Kind::Image, "ImageError"),
    (Kind::Network, "NetworkError"),
    (Kind::Execution, "ExecutionError"),
    (Kind::Stopped, "StoppedError"),
    (Kind::Engine, "EngineError"),
    (Kind::Unsupported, "UnsupportedError"),
    (Kind::Internal, "InternalError"),
    (Kind::ResourceExhausted, "ResourceExhaustedError"),
    (Kind::RuntimeClosed, "RuntimeClosedError"),
];

static RESOLVED: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

/// Looks every class up; called when `boxlite._native` is imported.
pub fn resolve(py: Python<'_>) -> PyResult<()> {
    RESOLVED
        .get_or_try_init(py, || {
            let module = py.import("boxlite.errors")?;
            CLASSES.iter().map(|(_, name)| Ok(module.getattr(*name)?.cast_into::<PyType>()?.unbind())).collect::<PyResult<Vec<_>>>()
        })
        .map(|_| ())
}

fn kind_of(error: &Error) -> Kind {
    match error {
        Error::NotFound(_) => Kind::NotFound,
        Error::AlreadyExists(_) => Kind::AlreadyExists,
        Error::InvalidState(_) => Kind::InvalidState,
        Error::InvalidArgument(_) => Kind::InvalidArgument,
        Error::Config(_) => Kind::Config,
        Error::Storage(_) => Kind::Storage,
        Error::Image(_) => Kind::Image,
        Error::Network(_) => Kind::Network,
        Error::Execution(_) => Kind::Execution,
        Error::Stopped(_) => Kind::Stopped,
        Error::Engine(_) => Kind::Engine,
        Error::Unsupported(_) => Kind::Unsupported,
        Error::Internal(_) => Kind::Internal,
        Error::ResourceExhausted(_) => Kind::ResourceExhausted,
    }
}

/// An instance of `kind`'s class with `message`.
pub fn exception(py: Python<'_>, kind: Kind, message: String) -> PyErr {
    match RESOLVED.get(py).and_then(|classes| classes.get(kind as usize)) {
        Some(class) => PyErr::from_type(class.bind(py).clone(), message),
        // Only before the module finished importing.
        None => PyRuntimeError::new_err(message),
    }
}

pub fn to_py(py: Python<'_>, error: &Error) -> PyErr {
    exception(py, kind_of(error), error.to_string())
}

pub fn runtime_closed(py: Python<'_>) -> PyErr {
    exception(py, Kind::RuntimeClosed, "runtime closed: the Boxlite runtime was closed".to_string())
}

pub fn runtime_of_another_process(py: Python<'_>) -> PyErr {
    exception(py, Kind::RuntimeClosed, "runtime closed: this process was forked from the one that opened the runtime, and cannot use it; open a runtime of its own, on a home of its own".to_string())
}

pub fn invalid_argument(py: Python<'_>, message: impl Into<String>) -> PyErr {
    exception(py, Kind::InvalidArgument, format!("invalid argument: {}", message.into()))
}

pub fn invalid_state(py: Python<'_>, message: impl Into<String>) -> PyErr {
    exception(py, Kind::InvalidState, format!("invalid state: {}", message.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_its_index_in_the_class_table() {
        assert_eq!(CLASSES.len(), Kind::RuntimeClosed as usize + 1);
        for (index, (kind, _)) in CLASSES.iter().enumerate() {
            assert_eq!(*kind as usize, index, "{kind:?}");
        }
    }
}
