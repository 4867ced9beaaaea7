//! The API of features this engine does not have yet (VM snapshots, export, clone and import,
//! tunnels, named volumes, REST-only image management). Each is present, so code written for
//! BoxLite finds it, and each call fails with `UnsupportedError` saying why — asynchronously
//! for the async methods, as the real ones would — never silently doing nothing.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::dispatcher::Shared;
use crate::errors;

const SNAPSHOTS: &str = "snapshots need the VM engine; boxes run on the namespace engine here";
const EXPORT: &str = "exporting a box to a .boxlite archive needs the VM engine; boxes run on the namespace engine here";
const CLONE: &str = "cloning a box needs the VM engine; boxes run on the namespace engine here";
const IMPORT: &str = "importing a .boxlite archive needs the VM engine; boxes run on the namespace engine here";
const TUNNELS: &str = "tunnels need a box network, and boxes have a loopback interface only";
const NETWORK_UPDATES: &str = "network policies need a box network, and boxes have a loopback interface only";
const VOLUMES: &str = "named volumes are not supported yet; mount host directories with BoxOptions(volumes=...)";
pub const REST_ONLY_IMAGES: &str = "this image operation is only available on a REST runtime";

/// An awaitable that fails with `UnsupportedError(reason)`.
pub fn refuse<'py>(shared: &Arc<Shared>, py: Python<'py>, reason: &'static str) -> PyResult<Bound<'py, PyAny>> {
    shared.submit(py, async move { Err(boxlite_core::Error::Unsupported(reason.to_string())) })
}

/// `UnsupportedError(reason)`, raised at once.
pub fn refuse_now(py: Python<'_>, reason: &str) -> PyErr {
    errors::to_py(py, &boxlite_core::Error::Unsupported(reason.to_string()))
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

/// `Box.snapshot`.
#[pyclass(module = "boxlite._native", frozen)]
pub struct SnapshotHandle {
    pub shared: Arc<Shared>,
}

#[pymethods]
impl SnapshotHandle {
    #[pyo3(signature = (*, name, options = None))]
    fn create<'py>(&self, py: Python<'py>, name: String, options: Option<&Bound<'py, SnapshotOptions>>) -> PyResult<Bound<'py, PyAny>> {
        let _ = (name, options);
        refuse(&self.shared, py, SNAPSHOTS)
    }

    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        refuse(&self.shared, py, SNAPSHOTS)
    }

    fn get<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let _ = name;
        refuse(&self.shared, py, SNAPSHOTS)
    }

    fn remove<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let _ = name;
        refuse(&self.shared, py, SNAPSHOTS)
    }

    fn restore<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let _ = name;
        refuse(&self.shared, py, SNAPSHOTS)
    }
}

/// `Box.network`: tunnels and network policy updates.
#[pyclass(module = "boxlite._native", frozen)]
pub struct NetworkHandle {
    pub shared: Arc<Shared>,
}

fn check_port(port: i64) -> PyResult<()> {
    if !(1..=65535).contains(&port) {
        return Err(PyValueError::new_err(format!("port must be an integer between 1 and 65535, got {port}")));
    }
    Ok(())
}

#[pymethods]
impl NetworkHandle {
    fn tunnel<'py>(&self, py: Python<'py>, port: i64) -> PyResult<Bound<'py, PyAny>> {
        check_port(port)?;
        refuse(&self.shared, py, TUNNELS)
    }

    fn revoke_tunnel<'py>(&self, py: Python<'py>, port: i64) -> PyResult<Bound<'py, PyAny>> {
        check_port(port)?;
        refuse(&self.shared, py, TUNNELS)
    }

    fn update_inbound<'py>(&self, py: Python<'py>, spec: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let _ = spec;
        refuse(&self.shared, py, NETWORK_UPDATES)
    }

    fn update_outbound<'py>(&self, py: Python<'py>, spec: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let _ = spec;
        refuse(&self.shared, py, NETWORK_UPDATES)
    }
}

/// `Boxlite.volumes`: named volumes.
#[pyclass(module = "boxlite._native", frozen)]
pub struct VolumeHandle {
    pub shared: Arc<Shared>,
}

#[pymethods]
impl VolumeHandle {
    #[pyo3(signature = (name, *, size_gb = None))]
    fn create<'py>(&self, py: Python<'py>, name: String, size_gb: Option<u64>) -> PyResult<Bound<'py, PyAny>> {
        let _ = (name, size_gb);
        refuse(&self.shared, py, VOLUMES)
    }

    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        refuse(&self.shared, py, VOLUMES)
    }

    fn get<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let _ = name;
        refuse(&self.shared, py, VOLUMES)
    }

    fn remove<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let _ = name;
        refuse(&self.shared, py, VOLUMES)
    }
}

/// For `Box.export`, `Box.clone_box` and `Boxlite.import_box`.
pub fn refuse_export<'py>(shared: &Arc<Shared>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    refuse(shared, py, EXPORT)
}

pub fn refuse_clone<'py>(shared: &Arc<Shared>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    refuse(shared, py, CLONE)
}

pub fn refuse_import<'py>(shared: &Arc<Shared>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    refuse(shared, py, IMPORT)
}
