//! What a request made for its caller, on its way to it, and what becomes of it if the caller
//! never receives it (rule 19): a box (the payload of `create`, `get` and `get_or_create`), an
//! archive (`export`) and a snapshot (`snapshot.create`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::backend::BoxRef;
use crate::dispatcher::{object, Deliver, Shared};
use crate::tasks::Tasks;

/// What to do with a box handle that reaches no caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphan {
    /// It was made for the caller (`create`): remove it.
    Remove,
    /// It existed before (`get`, or `get_or_create` that found it): only drop the handle.
    Release,
}

/// A box handle on its way to a caller, until the caller has it: in the queue, then in the
/// `Box` object a future resolved to, until the awaiting coroutine took it (`_handover.py`). A
/// box made for a caller who never gets it is removed (the reference's OrphanGuard, applied to
/// the last step too), on the runtime's tokio while it runs, so the removal waits for the box's
/// lifecycle lock instead of skipping a box that is busy.
pub struct OwnedBox {
    handle: BoxRef,
    tasks: Weak<Tasks>,
    orphan: Orphan,
}

static ORPHANS_REMOVED: AtomicUsize = AtomicUsize::new(0);

impl OwnedBox {
    pub fn new(handle: BoxRef, tasks: Weak<Tasks>, orphan: Orphan) -> Self {
        Self { handle, tasks, orphan }
    }

    pub fn handle(&self) -> &BoxRef {
        &self.handle
    }

    /// Whether dropping this removes the box.
    pub fn removes(&self) -> bool {
        self.orphan == Orphan::Remove
    }

    /// The caller has the box now: dropping this does nothing.
    pub fn claim(mut self) {
        self.orphan = Orphan::Release;
    }
}

impl Drop for OwnedBox {
    fn drop(&mut self) {
        if self.orphan != Orphan::Remove {
            return;
        }
        ORPHANS_REMOVED.fetch_add(1, Ordering::SeqCst);
        let (handle, runtime) = (self.handle.clone(), self.handle.backend());
        let removal = async move {
            if let Err(error) = runtime.remove(handle.id(), true).await {
                if !matches!(error, boxlite_core::Error::NotFound(_)) {
                    log::warn!(target: "boxlite", "failed to remove box {} that no caller received: {error}", handle.id());
                }
            }
        };
        // A local runtime that stopped has killed its boxes' processes: what is left is on disk.
        if spawn_release(&self.tasks, &self.handle, removal).is_err() {
            if let BoxRef::Local(handle) = &self.handle {
                handle.runtime().discard(handle);
            }
        }
    }
}

/// Spawns the release of what reached no caller, counted in flight: for a remote box also while
/// the runtime drains (`tasks` invariant 3), since the server is reached only from there; for a
/// local one only while it runs, since a closed local runtime refuses the work and the caller
/// does it at once instead. `Err` gives the release back, for that.
fn spawn_release<F: std::future::Future<Output = ()> + Send + 'static>(tasks: &Weak<Tasks>, handle: &BoxRef, release: F) -> Result<(), F> {
    let Some(tasks) = tasks.upgrade() else { return Err(release) };
    match handle {
        BoxRef::Remote(_) => tasks.try_spawn_release(release),
        BoxRef::Local(_) => tasks.try_spawn(release),
    }
}

#[cfg(feature = "testing")]
pub fn orphans_removed() -> usize {
    ORPHANS_REMOVED.load(Ordering::SeqCst)
}

fn box_object<'py>(shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>, owned: OwnedBox) -> PyResult<Bound<'py, PyAny>> {
    object(event_loop, super::Box::new(shared, owned))
}

/// `create` and `get` resolve to a `Box`.
impl Deliver for OwnedBox {
    fn into_python<'py>(self: Box<Self>, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        box_object(shared, event_loop, *self)
    }
}

/// `get` of a name nobody has resolves to `None`.
impl Deliver for Option<OwnedBox> {
    fn into_python<'py>(self: Box<Self>, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match *self {
            Some(owned) => box_object(shared, event_loop, owned),
            None => Ok(event_loop.py().None().into_bound(event_loop.py())),
        }
    }
}

/// `get_or_create` resolves to `(Box, created)`.
impl Deliver for (OwnedBox, bool) {
    fn into_python<'py>(self: Box<Self>, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (owned, created) = *self;
        let py = event_loop.py();
        let value = box_object(shared, event_loop, owned)?;
        Ok(PyTuple::new(py, [value, created.into_pyobject(py)?.to_owned().into_any()])?.into_any())
    }
}

/// An archive `export` wrote, on its way to the caller: deleted if it reaches nobody (the
/// export was cancelled), as a box made for nobody is removed.
pub struct Archive(Option<std::path::PathBuf>);

impl Archive {
    pub fn new(path: std::path::PathBuf) -> Self {
        Self(Some(path))
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            if let Err(error) = std::fs::remove_file(&path) {
                log::warn!("the archive {} of a cancelled export is left: {error}", path.display());
            }
        }
    }
}

/// `export` resolves to the archive's path, a `str`.
impl Deliver for Archive {
    fn into_python<'py>(mut self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let path = self.0.take().unwrap_or_default();
        Ok(path.into_os_string().into_pyobject(event_loop.py())?.into_any())
    }
}

/// A snapshot `snapshot.create` took, on its way to the caller: removed if it reaches nobody
/// (the call was cancelled, or the runtime closed first), as a box made for nobody is.
pub struct TakenSnapshot {
    info: Option<boxlite_core::SnapshotInfo>,
    handle: BoxRef,
    tasks: Weak<Tasks>,
}

impl TakenSnapshot {
    pub fn new(info: boxlite_core::SnapshotInfo, handle: BoxRef, tasks: Weak<Tasks>) -> Self {
        Self { info: Some(info), handle, tasks }
    }
}

impl Drop for TakenSnapshot {
    fn drop(&mut self) {
        let Some(info) = self.info.take() else { return };
        let handle = self.handle.clone();
        let name = info.name.clone();
        let removal = async move {
            if let Err(error) = handle.snapshot_remove(&name).await {
                if !matches!(error, boxlite_core::Error::NotFound(_)) {
                    log::warn!(target: "boxlite", "failed to remove snapshot {name} of box {} that no caller received: {error}", handle.id());
                }
            }
        };
        // Under the box's lifecycle lock while the runtime runs; once it stopped, at once.
        if spawn_release(&self.tasks, &self.handle, removal).is_err() {
            if let BoxRef::Local(handle) = &self.handle {
                if let Err(error) = handle.snapshot_discard(&info.id) {
                    log::warn!(target: "boxlite", "snapshot {} of box {} that no caller received is left: {error}", info.name, handle.id());
                }
            }
        }
    }
}

/// `snapshot.create` resolves to a `SnapshotInfo`.
impl Deliver for TakenSnapshot {
    fn into_python<'py>(mut self: Box<Self>, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let info = self.info.take().expect("a taken snapshot is delivered once");
        Box::new(info).into_python(shared, event_loop)
    }
}
