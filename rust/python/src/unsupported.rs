//! The API of features this engine does not have yet (an inbound allow-list, REST-only image
//! management). Each is present, so code written for BoxLite finds it, and each call fails with `UnsupportedError` saying why ([`Missing`]) —
//! through an awaitable for the async methods, as the real ones would — never silently doing
//! nothing.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::asyncio::running_loop;
use crate::dispatcher::Shared;
use crate::errors;

/// What this engine lacks, each with the reason a refusal gives: the one table every
/// `UnsupportedError` of this module comes from.
#[derive(Debug, Clone, Copy)]
pub enum Missing {
    InboundPolicy,
    VolumeSize,
    RestOnlyImages,
    ImagesNotServed,
    RegistryCredentials,
}

impl Missing {
    fn reason(self) -> &'static str {
        match self {
            Self::InboundPolicy => "an inbound allow-list is not built yet: published ports accept every peer",
            Self::VolumeSize => "a volume's size cannot be set: its files live on the home's filesystem, without a disk of their own to size",
            Self::RestOnlyImages => "this image operation is only available on a REST runtime",
            Self::ImagesNotServed => "image usage, aliases and registry credentials are not served by `boxlite serve` yet",
            Self::RegistryCredentials => "registry credentials are kept by a REST server; configure Options(image_registries=...) instead",
        }
    }
}

/// An awaitable that has already failed with `UnsupportedError`, as the real method's would:
/// no task is started. A closed runtime refuses first, as for any call.
pub fn refuse<'py>(shared: &Arc<Shared>, py: Python<'py>, missing: Missing) -> PyResult<Bound<'py, PyAny>> {
    shared.check_open(py)?;
    let future = running_loop(py)?.call_method0("create_future")?;
    future.call_method1("set_exception", (refuse_now(py, missing).into_value(py),))?;
    Ok(future)
}

/// `UnsupportedError`, raised at once.
pub fn refuse_now(py: Python<'_>, missing: Missing) -> PyErr {
    errors::to_py(py, &boxlite_core::Error::Unsupported(missing.reason().to_string()))
}

macro_rules! placeholder_options {
    ($($name:ident),*) => {$(
        /// An options placeholder of BoxLite's API; it has no fields.
        #[pyclass(module = "boxlite._native", frozen)]
        #[derive(Default)]
        pub struct $name;

        #[pymethods]
        impl $name {
            #[new]
            fn new() -> Self {
                Self
            }

            fn __repr__(&self) -> &'static str {
                concat!(stringify!($name), "()")
            }
        }
    )*};
}

placeholder_options!(SnapshotOptions, ExportOptions, CloneOptions);
