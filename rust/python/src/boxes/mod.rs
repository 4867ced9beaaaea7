//! `Box`: a handle to one box.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxlite_core::{ExecRequest, TtySize};
use pyo3::prelude::*;

use crate::backend::BoxRef;
use crate::dispatcher::{Payload, Shared};
use crate::errors;
use crate::options::CopyOptions;
use crate::unsupported::{CloneOptions, ExportOptions};

mod network;
mod owned;
mod snapshots;
mod tunnel;

pub use network::NetworkHandle;
pub use snapshots::{SnapshotHandle, SnapshotInfo};
pub use tunnel::{BoxConnection, BoxTunnel, SocketAddress, TunnelForwarder};
#[cfg(feature = "testing")]
pub use owned::orphans_removed;
pub use owned::{Orphan, OwnedBox};

#[pyclass(module = "boxlite._native", frozen, name = "Box")]
pub struct Box {
    shared: Arc<Shared>,
    handle: BoxRef,
    /// A box made for this caller (dispatcher invariant 8): removed by `_release()`, kept when
    /// this object goes.
    made: Mutex<Option<OwnedBox>>,
}

impl Box {
    pub fn new(shared: &Arc<Shared>, owned: OwnedBox) -> Self {
        let handle = owned.handle().clone();
        let made = if owned.removes() {
            Some(owned)
        } else {
            owned.claim();
            None
        };
        Self { shared: Arc::clone(shared), handle, made: Mutex::new(made) }
    }

    fn take_made(&self) -> Option<OwnedBox> {
        self.made.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

impl Drop for Box {
    /// A box outlives its handles: whoever else finds it (`get`, `list_info`) may use it.
    fn drop(&mut self) {
        if let Some(owned) = self.take_made() {
            owned.claim();
        }
    }
}

/// Terminal size for `tty=True` executions until `resize_tty()`.
const DEFAULT_TTY: TtySize = TtySize { rows: 24, cols: 80 };

#[pymethods]
impl Box {
    #[getter]
    fn id(&self) -> String {
        self.handle.id().to_string()
    }

    #[getter]
    fn name(&self) -> Option<String> {
        self.handle.name()
    }

    /// Resolves to this box's `BoxInfo` (works on a stopped handle too).
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.info().await.map(Payload::from) })
    }

    /// Boots the box; a running box is left as it is.
    fn start<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.start().await.map(Payload::from) })
    }

    /// Stops the box (SIGTERM, then SIGKILL after 10 s) and spends this handle.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.stop().await.map(Payload::from) })
    }

    /// Starts `command` with `args`; resolves to an `Execution` as soon as it runs.
    #[pyo3(signature = (command, args = None, env = None, tty = false, user = None, timeout_secs = None, cwd = None))]
    #[expect(clippy::too_many_arguments, reason = "mirrors BoxLite's Box.exec")]
    fn exec<'py>(
        &self,
        py: Python<'py>,
        command: String,
        args: Option<Vec<String>>,
        env: Option<Vec<(String, String)>>,
        tty: bool,
        user: Option<String>,
        timeout_secs: Option<f64>,
        cwd: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = match timeout_secs.map(|seconds| (seconds, Duration::try_from_secs_f64(seconds))) {
            None => None,
            Some((_, Ok(timeout))) if !timeout.is_zero() => Some(timeout),
            Some((seconds, _)) => return Err(errors::invalid_argument(py, format!("timeout_secs must be a positive number of seconds that a duration holds, got {seconds}"))),
        };
        if command.is_empty() {
            return Err(errors::invalid_argument(py, "command must not be empty"));
        }
        let request = ExecRequest {
            command,
            args: args.unwrap_or_default(),
            env: env.unwrap_or_default(),
            cwd,
            user,
            tty: tty.then_some(DEFAULT_TTY),
            timeout,
        };
        match &self.handle {
            BoxRef::Local(handle) => {
                let handle = Arc::clone(handle);
                crate::execution::start(py, &self.shared, async move { handle.request_exec(request).await })
            }
            BoxRef::Remote(remote) => {
                let remote = Arc::clone(remote);
                self.shared.submit_handover(py, async move { remote.exec(request).await.map(Payload::from) })
            }
        }
    }

    /// Follows the box's main process: its output from the start of the current (or last) run,
    /// then as it comes, and its exit. With `stdin`, the first attach gets its stdin. On a REST
    /// runtime, `execution_id` attaches to that execution instead (one the server keeps).
    #[pyo3(signature = (execution_id = None, stdin = true))]
    fn attach<'py>(&self, py: Python<'py>, execution_id: Option<String>, stdin: bool) -> PyResult<Bound<'py, PyAny>> {
        match (&self.handle, execution_id) {
            (BoxRef::Local(_), Some(_)) => Err(errors::to_py(py, &boxlite_core::Error::Unsupported("reattaching to an execution by id needs a REST runtime; attach() follows the main process".to_string()))),
            (BoxRef::Local(handle), None) => {
                let handle = Arc::clone(handle);
                self.shared.submit(py, async move { handle.attach(stdin).await.map(Payload::from) })
            }
            (BoxRef::Remote(remote), execution_id) => {
                let remote = Arc::clone(remote);
                self.shared.submit(py, async move {
                    match execution_id {
                        Some(execution_id) => remote.reattach(&execution_id, stdin).await,
                        None => remote.attach(stdin).await,
                    }
                    .map(Payload::from)
                })
            }
        }
    }

    /// Copies a host file or directory into the box (`docker cp` conventions).
    #[pyo3(signature = (host_path, container_dest, copy_options = None))]
    fn copy_in<'py>(&self, py: Python<'py>, host_path: std::path::PathBuf, container_dest: String, copy_options: Option<&CopyOptions>) -> PyResult<Bound<'py, PyAny>> {
        let options = CopyOptions::to_core(copy_options);
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.copy_in(host_path, container_dest, options).await.map(Payload::from) })
    }

    /// Copies a file or directory out of the box (`docker cp` conventions).
    #[pyo3(signature = (container_src, host_dest, copy_options = None))]
    fn copy_out<'py>(&self, py: Python<'py>, container_src: String, host_dest: std::path::PathBuf, copy_options: Option<&CopyOptions>) -> PyResult<Bound<'py, PyAny>> {
        let options = CopyOptions::to_core(copy_options);
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.copy_out(container_src, host_dest, options).await.map(Payload::from) })
    }

    /// The box's outbound policy, changed while it runs, and its tunnels.
    #[getter]
    fn network(&self) -> NetworkHandle {
        NetworkHandle { shared: Arc::clone(&self.shared), handle: self.handle.clone() }
    }

    /// The box's snapshots.
    #[getter]
    fn snapshot(&self) -> SnapshotHandle {
        SnapshotHandle { shared: Arc::clone(&self.shared), handle: self.handle.clone() }
    }

    /// Resolves to the path of a new `.boxlite` archive of the box at `dest` (in it, as
    /// `<name or id>.boxlite`, when `dest` is a directory); a running box is frozen while its
    /// files are copied. An archive nobody awaits any more is deleted.
    #[pyo3(signature = (*, dest, options = None))]
    fn export<'py>(&self, py: Python<'py>, dest: std::path::PathBuf, options: Option<&Bound<'py, ExportOptions>>) -> PyResult<Bound<'py, PyAny>> {
        let _ = options;
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.export(dest).await.map(|path| Payload::from(owned::Archive::new(path))) })
    }

    /// Resolves to a new, stopped box with this box's options and a copy of its files (a
    /// running box is frozen for the copy); its snapshots stay here.
    #[pyo3(signature = (*, name = None, options = None))]
    fn clone_box<'py>(&self, py: Python<'py>, name: Option<String>, options: Option<&Bound<'py, CloneOptions>>) -> PyResult<Bound<'py, PyAny>> {
        let _ = options;
        self.shared.check_open(py)?;
        let handle = self.handle.clone();
        let owner = Arc::downgrade(&self.shared.tasks);
        self.shared.submit_handover(py, async move {
            let cloned = handle.clone_box(name).await?;
            Ok(Payload::from(OwnedBox::new(cloned, owner, Orphan::Remove)))
        })
    }

    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.metrics().await.map(Payload::from) })
    }

    /// `async with box:` starts the box and gives back this same object.
    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let handle = this.handle.clone();
        let future = this.shared.submit(slf.py(), async move { handle.start().await.map(Payload::from) })?;
        let identity = slf.clone().into_any().unbind();
        chain_result(slf.py(), &future, identity)
    }

    /// Stops the box. Never suppresses the exception of the `async with` body.
    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(&self, py: Python<'py>, _exc: &Bound<'py, pyo3::types::PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        self.stop(py)
    }

    /// The coroutine this box was made for will never receive it: it is removed (in the
    /// background). Only a box made for the caller is.
    fn _release(&self) {
        drop(self.take_made());
    }

    fn __repr__(&self) -> String {
        format!("Box(id=\"{}\")", self.handle.id())
    }
}

/// A future that resolves to `value` once `first` succeeded (or fails as `first` did).
fn chain_result<'py>(py: Python<'py>, first: &Bound<'py, PyAny>, value: Py<PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let outer = crate::asyncio::running_loop(py)?.call_method0("create_future")?;
    let target = outer.clone().unbind();
    let relay = crate::asyncio::Deferred::new_with_arg(move |py, done: &Bound<'_, PyAny>| {
        let target = target.bind(py);
        if done.call_method0("cancelled").and_then(|cancelled| cancelled.is_truthy()).unwrap_or(true) {
            let _ = target.call_method0("cancel");
            return;
        }
        let _ = match done.call_method0("exception") {
            Ok(error) if !error.is_none() => crate::asyncio::set_exception(py, target, PyErr::from_value(error)),
            _ => crate::asyncio::set_result(target, value.bind(py).clone()),
        };
    });
    first.call_method1("add_done_callback", (relay,))?;
    Ok(outer)
}
