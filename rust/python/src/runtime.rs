//! `Boxlite`: the runtime object.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;

use crate::backend::Backend;
use crate::boxes::{Orphan, OwnedBox};
use crate::dispatcher::{Payload, Shared};
use crate::errors;
use crate::options::{BoxOptions, Options};

#[pyclass(module = "boxlite._native", frozen)]
pub struct Boxlite {
    shared: Arc<Shared>,
    backend: Backend,
    /// A REST runtime's credential, whose token each call renews when it is due.
    credential: Option<Arc<crate::rest::PyCredential>>,
}

/// The process-wide runtime of `Boxlite.default()`, and the options it will be made with.
/// The options `init_default` set, and the process-wide runtime once `default()` opened it.
type DefaultRuntime = (Option<Options>, Option<(Arc<Shared>, boxlite_core::Runtime)>);
static DEFAULT: Mutex<DefaultRuntime> = Mutex::new((None, None));

/// A program's runtime, whose detached boxes' networks `python -m boxlite._keeper` serves once
/// it is gone (`boxlite_core::keeper`), run by this interpreter.
pub fn program_role(py: Python<'_>) -> PyResult<boxlite_core::Role> {
    let executable: Option<std::path::PathBuf> = py.import("sys")?.getattr("executable")?.extract()?;
    let keeper = executable.filter(|path| !path.as_os_str().is_empty()).map(|path| vec![path.into_os_string(), "-m".into(), "boxlite._keeper".into()]);
    Ok(boxlite_core::Role::Program { keeper })
}

fn open(py: Python<'_>, options: &Options) -> PyResult<(Arc<Shared>, boxlite_core::Runtime)> {
    crate::log_bridge::follow_python_level(py)?;
    let home = options.resolved_home();
    let registries = options.registries(py)?;
    let role = program_role(py)?;
    let shared = Shared::start().map_err(|error| errors::to_py(py, &boxlite_core::Error::Internal(format!("failed to start the runtime: {error}"))))?;
    let handle = shared.tasks.handle.clone();
    let opened = crate::gil::detach(py, move || {
        let _context = handle.enter();
        boxlite_core::Runtime::open(&home, registries, role)
    });
    match opened {
        Ok(core) => Ok((shared, core)),
        Err(error) => {
            shared.close(py);
            Err(errors::to_py(py, &error))
        }
    }
}

impl Boxlite {
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The backend for a call: a REST runtime's token renewed first if it is due.
    fn backend_for_call(&self, py: Python<'_>) -> PyResult<Backend> {
        if let Some(credential) = &self.credential {
            credential.renew(py)?;
        }
        Ok(self.backend.clone())
    }
}

#[pymethods]
impl Boxlite {
    /// Opens a runtime on `options.home_dir` (one runtime per home directory at a time).
    #[new]
    fn new(py: Python<'_>, options: &Options) -> PyResult<Self> {
        let (shared, core) = open(py, options)?;
        Ok(Self { shared, backend: Backend::Local(core), credential: None })
    }

    /// The process-wide runtime on the default home; every call wraps the same runtime.
    #[staticmethod]
    fn default(py: Python<'_>) -> PyResult<Self> {
        // Taken without the interpreter: a thread opening the runtime below releases it, and a
        // second thread waiting here must not hold it meanwhile.
        let mut default = crate::gil::lock(py, &DEFAULT);
        if let Some((shared, core)) = default.1.as_ref().filter(|(shared, _)| !shared.is_closed()) {
            return Ok(Self { shared: Arc::clone(shared), backend: Backend::Local(core.clone()), credential: None });
        }
        let options = default.0.as_ref().map(|options| options.clone_ref(py)).unwrap_or_else(|| Options { home_dir: None, image_registries: Vec::new() });
        let (shared, core) = open(py, &options)?;
        default.1 = Some((Arc::clone(&shared), core.clone()));
        Ok(Self { shared, backend: Backend::Local(core), credential: None })
    }

    /// Sets the options of the default runtime; only before the first `default()`.
    #[staticmethod]
    fn init_default(py: Python<'_>, options: &Options) -> PyResult<()> {
        let mut default = crate::gil::lock(py, &DEFAULT);
        if default.1.is_some() {
            return Err(errors::exception(py, errors::Kind::Internal, "internal error: Default runtime already initialized; call init_default() before default()".to_string()));
        }
        default.0 = Some(options.clone_ref(py));
        Ok(())
    }

    /// Creates a box (state `configured`); resolves to its `Box`. A box whose `create()` was
    /// cancelled is removed, never leaked.
    #[pyo3(signature = (options, name = None))]
    fn create<'py>(slf: &Bound<'py, Self>, options: &BoxOptions, name: Option<String>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        this.shared.check_open(py)?;
        let (options, lifecycle) = options.for_backend(py, &this.backend).map_err(|error| errors::to_py(py, &error))?;
        let backend = this.backend_for_call(py)?;
        let owner = Arc::downgrade(&this.shared.tasks);
        this.shared.submit_handover(py, async move {
            let handle = backend.create(options, lifecycle, name).await?;
            Ok(Payload::from(OwnedBox::new(handle, owner, Orphan::Remove)))
        })
    }

    /// Resolves to `(box, created)`: the box named `name` if it exists, else a new one.
    #[pyo3(signature = (options, name = None))]
    fn get_or_create<'py>(&self, py: Python<'py>, options: &BoxOptions, name: Option<String>) -> PyResult<Bound<'py, PyAny>> {
        self.shared.check_open(py)?;
        let (options, lifecycle) = options.for_backend(py, &self.backend).map_err(|error| errors::to_py(py, &error))?;
        let backend = self.backend_for_call(py)?;
        let owner = Arc::downgrade(&self.shared.tasks);
        self.shared.submit_handover(py, async move {
            let (handle, created) = backend.get_or_create(options, lifecycle, name).await?;
            let orphan = if created { Orphan::Remove } else { Orphan::Release };
            Ok(Payload::from((OwnedBox::new(handle, owner, orphan), created)))
        })
    }

    /// Resolves to the `Box` with this id or name, or `None`.
    fn get<'py>(&self, py: Python<'py>, id_or_name: String) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend_for_call(py)?;
        let owner = Arc::downgrade(&self.shared.tasks);
        self.shared.submit(py, async move { Ok(Payload::from(backend.get(&id_or_name).await?.map(|handle| OwnedBox::new(handle, owner, Orphan::Release)))) })
    }

    fn get_info<'py>(&self, py: Python<'py>, id_or_name: String) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend_for_call(py)?;
        self.shared.submit(py, async move { backend.get_info(&id_or_name).await.map(Payload::from) })
    }

    /// Resolves to every box's `BoxInfo`, newest first.
    #[pyo3(signature = (_state = None))]
    fn list_info<'py>(&self, py: Python<'py>, _state: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend_for_call(py)?;
        self.shared.submit(py, async move { backend.list_info().await.map(Payload::from) })
    }

    /// Deletes a box; a running one needs `force=True`.
    #[pyo3(signature = (id_or_name, force = false))]
    fn remove<'py>(&self, py: Python<'py>, id_or_name: String, force: bool) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend_for_call(py)?;
        self.shared.submit(py, async move { backend.remove(&id_or_name, force).await.map(Payload::from) })
    }

    /// Named volumes, kept in the home and mounted as `volume://name`.
    #[getter]
    fn volumes(&self) -> crate::volumes::VolumeHandle {
        crate::volumes::VolumeHandle::new(&self.shared, &self.backend)
    }

    /// Resolves to a new, stopped box made from the `.boxlite` archive at `archive_path`,
    /// verified as it is read; `untrusted` also refuses host paths, host ports, capabilities
    /// beyond the default set and disk images.
    #[pyo3(signature = (archive_path, name = None, *, untrusted = false))]
    fn import_box<'py>(&self, py: Python<'py>, archive_path: std::path::PathBuf, name: Option<String>, untrusted: bool) -> PyResult<Bound<'py, PyAny>> {
        self.shared.check_open(py)?;
        let backend = self.backend_for_call(py)?;
        let owner = Arc::downgrade(&self.shared.tasks);
        self.shared.submit_handover(py, async move {
            let handle = backend.import_box(archive_path, name, untrusted).await?;
            Ok(Payload::from(OwnedBox::new(handle, owner, Orphan::Remove)))
        })
    }

    /// A runtime whose boxes live on the REST server `options` names (`boxlite serve`, or
    /// BoxLite's). Contacts nobody until the first call.
    #[staticmethod]
    fn rest(py: Python<'_>, options: Bound<'_, PyAny>) -> PyResult<Self> {
        crate::log_bridge::follow_python_level(py)?;
        let shared = Shared::start().map_err(|error| errors::to_py(py, &boxlite_core::Error::Internal(format!("failed to start the runtime: {error}"))))?;
        let (client, credential) = match crate::rest::client(py, &options, &shared.tasks) {
            Ok(made) => made,
            Err(error) => {
                shared.close(py);
                return Err(error);
            }
        };
        Ok(Self { shared, backend: Backend::Remote(client), credential })
    }

    /// A runtime whose boxes live on the nodes of a Ray cluster (`boxlite.ray`, Python by
    /// nature: host actors each own a local runtime on their node).
    #[staticmethod]
    fn ray<'py>(py: Python<'py>, options: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        py.import("boxlite.ray")?.getattr("RayBoxlite")?.call1((options,))
    }

    #[getter]
    fn images(&self, py: Python<'_>) -> PyResult<crate::images::ImageHandle> {
        self.shared.check_open(py)?;
        Ok(crate::images::ImageHandle::new(&self.shared, &self.backend_for_call(py)?))
    }

    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend_for_call(py)?;
        self.shared.submit(py, async move { backend.metrics().await.map(Payload::from) })
    }

    /// Stops every box that is not detached (`timeout` seconds each before SIGKILL; default
    /// 10, -1 waits forever), then refuses new boxes with StoppedError. Idempotent.
    #[pyo3(signature = (timeout = None))]
    fn shutdown<'py>(&self, py: Python<'py>, timeout: Option<i64>) -> PyResult<Bound<'py, PyAny>> {
        let grace = match timeout {
            None => None,
            Some(-1) => Some(Duration::from_secs(u64::from(u32::MAX))),
            Some(seconds) if seconds >= 0 => Some(Duration::from_secs(seconds.unsigned_abs())),
            Some(seconds) => return Err(errors::invalid_argument(py, format!("timeout must be -1 or at least 0, got {seconds}"))),
        };
        let backend = self.backend_for_call(py)?;
        self.shared.submit(py, async move {
            match backend {
                Backend::Local(core) => core.shutdown(grace).await.map(Payload::from),
                // The server's boxes are the server's: a client has nothing of its own to stop.
                Backend::Remote(_) => Ok(Payload::from(())),
            }
        })
    }

    /// Closes the runtime now: every pending awaitable fails with RuntimeClosedError, boxes
    /// that are not detached are killed, and later calls fail at once. Idempotent.
    fn close(&self, py: Python<'_>) {
        if self.shared.is_closed() {
            return;
        }
        if self.shared.forked() {
            self.shared.close_forked_copy();
            return;
        }
        self.shared.close(py);
        match &self.backend {
            Backend::Local(core) => {
                let core = core.clone();
                crate::gil::detach(py, move || core.close());
            }
            Backend::Remote(client) => client.close(),
        }
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let open = if self.shared.is_closed() { "false" } else { "true" };
        match &self.backend {
            Backend::Local(_) => format!("Boxlite(open={open})"),
            Backend::Remote(client) => format!("Boxlite(rest={:?}, open={open})", client.url_root()),
        }
    }
}
