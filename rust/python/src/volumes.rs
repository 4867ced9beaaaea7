//! `Boxlite.volumes`: named volumes, kept in the runtime's home, mounted as `volume://name`.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::backend::Backend;
use crate::dispatcher::{list, object, Deliver, Payload, Shared};
use crate::pyrepr::python_repr;
use crate::unsupported::{refuse_now, Missing};

/// One named volume.
#[pyclass(module = "boxlite._native", frozen, get_all)]
pub struct VolumeInfo {
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// Where its files are on the host.
    pub path: String,
}

impl From<boxlite_core::volumes::VolumeInfo> for VolumeInfo {
    fn from(info: boxlite_core::volumes::VolumeInfo) -> Self {
        Self { name: info.name, created_at: info.created_at, path: info.path.to_string_lossy().into_owned() }
    }
}

#[pymethods]
impl VolumeInfo {
    fn __repr__(&self) -> String {
        format!("VolumeInfo(name={}, created_at={})", python_repr(Some(&self.name)), python_repr(Some(&self.created_at)))
    }
}

impl Deliver for boxlite_core::volumes::VolumeInfo {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        object(event_loop, VolumeInfo::from(*self))
    }
}

impl Deliver for Vec<boxlite_core::volumes::VolumeInfo> {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        list(event_loop, self.into_iter().map(VolumeInfo::from))
    }
}

#[pyclass(module = "boxlite._native", frozen)]
pub struct VolumeHandle {
    shared: Arc<Shared>,
    backend: Backend,
}

/// What a REST runtime's volumes would need.
const OVER_REST: &str = "managing named volumes";

impl VolumeHandle {
    pub fn new(shared: &Arc<Shared>, backend: &Backend) -> Self {
        Self { shared: Arc::clone(shared), backend: backend.clone() }
    }
}

#[pymethods]
impl VolumeHandle {
    /// Makes an empty volume; resolves to its `VolumeInfo`. A size cannot be set here: a
    /// volume's files live on the home's filesystem.
    #[pyo3(signature = (name, *, size_gb = None))]
    fn create<'py>(&self, py: Python<'py>, name: String, size_gb: Option<u64>) -> PyResult<Bound<'py, PyAny>> {
        if size_gb.is_some() {
            return Err(refuse_now(py, Missing::VolumeSize));
        }
        let backend = self.backend.clone();
        self.shared.submit(py, async move { backend.local(OVER_REST)?.create_volume(&name).map(Payload::from) })
    }

    /// Resolves to every volume, by name.
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend.clone();
        self.shared.submit(py, async move { backend.local(OVER_REST)?.list_volumes().map(Payload::from) })
    }

    fn get<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend.clone();
        self.shared.submit(py, async move { backend.local(OVER_REST)?.get_volume(&name).map(Payload::from) })
    }

    /// Deletes a volume and its files; refused while a box mounts it.
    fn remove<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend.clone();
        self.shared.submit(py, async move { backend.local(OVER_REST)?.remove_volume(&name).await.map(Payload::from) })
    }
}
