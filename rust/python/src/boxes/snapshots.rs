//! `Box.snapshot`: point-in-time copies of a box's writable layer (the core's `snapshots`).

use std::sync::Arc;

use crate::backend::BoxRef;
use pyo3::prelude::*;

use crate::dispatcher::{list, object, Deliver, Payload, Shared};
use crate::pyrepr::python_repr;
use crate::unsupported::SnapshotOptions;

/// One snapshot of a box.
#[pyclass(module = "boxlite._native", frozen, get_all)]
pub struct SnapshotInfo {
    pub id: String,
    pub box_id: String,
    pub name: String,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// What the box's layer held: file contents, or its disk's size.
    pub container_disk_bytes: u64,
    /// What the snapshot takes on the host.
    pub size_bytes: u64,
}

impl From<boxlite_core::SnapshotInfo> for SnapshotInfo {
    fn from(info: boxlite_core::SnapshotInfo) -> Self {
        Self {
            id: info.id,
            box_id: info.box_id,
            name: info.name,
            created_at: info.created_at,
            container_disk_bytes: info.container_disk_bytes,
            size_bytes: info.size_bytes,
        }
    }
}

#[pymethods]
impl SnapshotInfo {
    fn __repr__(&self) -> String {
        format!("SnapshotInfo(name={}, box_id={}, created_at={})", python_repr(Some(&self.name)), python_repr(Some(&self.box_id)), self.created_at)
    }
}

impl Deliver for boxlite_core::SnapshotInfo {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        object(event_loop, SnapshotInfo::from(*self))
    }
}

impl Deliver for Option<boxlite_core::SnapshotInfo> {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match *self {
            Some(info) => object(event_loop, SnapshotInfo::from(info)),
            None => Ok(event_loop.py().None().into_bound(event_loop.py())),
        }
    }
}

impl Deliver for Vec<boxlite_core::SnapshotInfo> {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        list(event_loop, self.into_iter().map(SnapshotInfo::from))
    }
}

/// `Box.snapshot`.
#[pyclass(module = "boxlite._native", frozen)]
pub struct SnapshotHandle {
    pub shared: Arc<Shared>,
    pub handle: BoxRef,
}

#[pymethods]
impl SnapshotHandle {
    /// Takes a snapshot of the box's files (a running box is frozen for the copy); resolves to
    /// its `SnapshotInfo`.
    #[pyo3(signature = (*, name, options = None))]
    fn create<'py>(&self, py: Python<'py>, name: String, options: Option<&Bound<'py, SnapshotOptions>>) -> PyResult<Bound<'py, PyAny>> {
        let _ = options;
        let (handle, tasks) = (self.handle.clone(), Arc::downgrade(&self.shared.tasks));
        self.shared.submit(py, async move { handle.snapshot_create(&name).await.map(|info| Payload::from(super::owned::TakenSnapshot::new(info, handle, tasks))) })
    }

    /// The box's snapshots, newest first.
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.snapshot_list().await.map(Payload::from) })
    }

    /// The snapshot named `name`, or None.
    fn get<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.snapshot_get(&name).await.map(Payload::from) })
    }

    fn remove<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.snapshot_remove(&name).await.map(Payload::from) })
    }

    /// Brings the box's files back to the snapshot; the box must be stopped.
    fn restore<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.snapshot_restore(&name).await.map(Payload::from) })
    }
}
