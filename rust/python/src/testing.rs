//! `boxlite._native._testing`: hooks the test suite uses to drive the async core
//! deterministically (gates instead of sleeps, counters instead of guesses). Nothing here is
//! part of the public API.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::sync::watch;

use crate::backend::BoxRef;
use crate::boxes::{Orphan, OwnedBox};
use crate::dispatcher::{Deliver, Event, Payload, Shared, NEXT_CAPACITY};
use crate::options::BoxOptions;
use crate::runtime::Boxlite;

/// Holds test operations until opened, and counts their results released undelivered.
#[pyclass(module = "boxlite._native._testing", frozen)]
pub struct Gate {
    open: Arc<watch::Sender<bool>>,
    released: Arc<AtomicUsize>,
}

impl Gate {
    fn waiter(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut receiver = self.open.subscribe();
        async move {
            let _ = receiver.wait_for(|open| *open).await;
        }
    }
}

#[pymethods]
impl Gate {
    #[new]
    fn new() -> Self {
        Self { open: Arc::new(watch::channel(false).0), released: Arc::new(AtomicUsize::new(0)) }
    }

    fn open(&self) {
        self.open.send_replace(true);
    }

    /// Results of this gate's operations that reached nobody and were released.
    fn released(&self) -> usize {
        self.released.load(Ordering::SeqCst)
    }
}

static CANARY_TICKS: AtomicU64 = AtomicU64::new(0);

/// An operation that waits for `gate`, then resolves to `value` (a payload that counts its
/// drops when nobody takes it), or fails with InvalidStateError when `fail` is set.
#[pyfunction]
#[pyo3(signature = (runtime, gate, value, fail = false))]
fn gated<'py>(py: Python<'py>, runtime: &Boxlite, gate: &Gate, value: i64, fail: bool) -> PyResult<Bound<'py, PyAny>> {
    let opened = gate.waiter();
    let released = Arc::clone(&gate.released);
    runtime.shared().submit(py, async move {
        opened.await;
        if fail {
            return Err(boxlite_core::Error::InvalidState(format!("gated failure {value}")));
        }
        Ok(Payload::from(Tracked::new(value, released)))
    })
}

/// The local runtime under `runtime` (the hooks below test the local engine).
fn local_core(py: Python<'_>, runtime: &Boxlite) -> PyResult<boxlite_core::Runtime> {
    runtime.backend().local("this test hook").cloned().map_err(|error| crate::errors::to_py(py, &error))
}

/// A real `create()` that waits for `gate` first.
#[pyfunction]
fn gated_create<'py>(py: Python<'py>, runtime: &Boxlite, gate: &Gate, options: &BoxOptions) -> PyResult<Bound<'py, PyAny>> {
    let opened = gate.waiter();
    let options = options.to_core(py).map_err(|error| crate::errors::to_py(py, &error))?;
    let core = local_core(py, runtime)?;
    let owner = Arc::downgrade(&runtime.shared().tasks);
    runtime.shared().submit_handover(py, async move {
        opened.await;
        let handle = core.create(options, None).await?;
        Ok(Payload::from(OwnedBox::new(BoxRef::Local(Arc::new(handle)), owner, Orphan::Remove)))
    })
}

/// A real `get_or_create()` that waits for `gate` first.
#[pyfunction]
fn gated_get_or_create<'py>(py: Python<'py>, runtime: &Boxlite, gate: &Gate, options: &BoxOptions, name: String) -> PyResult<Bound<'py, PyAny>> {
    let opened = gate.waiter();
    let options = options.to_core(py).map_err(|error| crate::errors::to_py(py, &error))?;
    let core = local_core(py, runtime)?;
    let owner = Arc::downgrade(&runtime.shared().tasks);
    runtime.shared().submit_handover(py, async move {
        opened.await;
        let (handle, created) = core.get_or_create(options, Some(name)).await?;
        let orphan = if created { Orphan::Remove } else { Orphan::Release };
        Ok(Payload::from((OwnedBox::new(BoxRef::Local(Arc::new(handle)), owner, orphan), created)))
    })
}

/// `count` requests completed by one task, in order (rule 10).
#[pyfunction]
fn ordered<'py>(py: Python<'py>, runtime: &Boxlite, count: usize) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let shared = runtime.shared();
    let mut targets = Vec::with_capacity(count);
    let mut futures = Vec::with_capacity(count);
    // All registered on the running loop: one channel.
    let mut channel = None;
    for _ in 0..count {
        let crate::dispatcher::Registered { target, future, channel: registered, .. } = shared.register(py)?;
        targets.push(target);
        futures.push(future);
        channel = Some(registered);
    }
    let Some(channel) = channel else { return Ok(futures) };
    let released = Arc::new(AtomicUsize::new(0));
    shared.spawn(async move {
        for (index, target) in targets.into_iter().enumerate() {
            let value = i64::try_from(index).unwrap_or(i64::MAX);
            channel.push(Event::Complete { target, result: Box::new(Ok(Payload::from(Tracked::new(value, Arc::clone(&released))))) }).await;
        }
    });
    Ok(futures)
}

/// Starts a tokio task that counts milliseconds, to show workers keep running.
#[pyfunction]
fn start_canary(runtime: &Boxlite) {
    runtime.shared().tasks.handle.spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            CANARY_TICKS.fetch_add(1, Ordering::SeqCst);
        }
    });
}

#[pyfunction]
fn canary_ticks() -> u64 {
    CANARY_TICKS.load(Ordering::SeqCst)
}

#[pyfunction]
fn hold_drains(py: Python<'_>, runtime: &Boxlite, hold: bool) {
    runtime.shared().hold_drains(py, hold);
}

#[pyfunction]
fn queue_len(py: Python<'_>, runtime: &Boxlite) -> usize {
    runtime.shared().queued(py)
}

#[pyfunction]
fn waiting_producers(py: Python<'_>, runtime: &Boxlite) -> usize {
    runtime.shared().waiting_producers(py)
}

#[pyfunction]
fn pending_requests(runtime: &Boxlite) -> usize {
    runtime.shared().registry.len()
}

#[pyfunction]
fn set_queue_capacity(capacity: usize) {
    NEXT_CAPACITY.store(capacity.max(1), Ordering::SeqCst);
}

#[pyfunction]
fn gil_on_worker_violations() -> usize {
    crate::gil::violations()
}

#[pyfunction]
fn spawned_tasks() -> usize {
    crate::tasks::spawned_tasks()
}

#[pyfunction]
fn live_channels() -> usize {
    crate::channel::live_channels()
}

/// Pids of inits the runtime made ahead of need (they belong to no box yet).
#[pyfunction]
fn warm_inits(py: Python<'_>, runtime: &Boxlite) -> PyResult<Vec<i32>> {
    let core = local_core(py, runtime)?;
    Ok(crate::gil::detach(py, move || core.warm_init_pid().into_iter().collect()))
}

/// The pid of the runtime's spawner of shims, while it runs.
#[pyfunction]
fn spawner_pid(runtime: &Boxlite) -> Option<u32> {
    runtime.backend().local("").ok().and_then(boxlite_core::Runtime::spawner_pid)
}

/// Whether `execution`'s exit has arrived and waits for the end of its output.
#[pyfunction]
fn exit_withheld(execution: &Bound<'_, crate::execution::Execution>) -> bool {
    execution.get().exit_withheld()
}

#[pyfunction]
fn stdout_paused(execution: &Bound<'_, crate::execution::Execution>) -> bool {
    execution.get().stdout_paused()
}

#[pyfunction]
fn orphans_removed() -> usize {
    crate::boxes::orphans_removed()
}

/// A test payload that counts, in its gate's counter, being released without delivery.
struct Tracked {
    value: i64,
    released: Arc<AtomicUsize>,
    delivered: bool,
}

impl Tracked {
    fn new(value: i64, released: Arc<AtomicUsize>) -> Self {
        Self { value, released, delivered: false }
    }

}

impl Deliver for Tracked {
    fn into_python<'py>(mut self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.delivered = true;
        Ok(self.value.into_pyobject(event_loop.py())?.into_any())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.delivered {
            self.released.fetch_add(1, Ordering::SeqCst);
        }
    }
}

pub fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let module = PyModule::new(py, "_testing")?;
    module.add_class::<Gate>()?;
    for function in [
        wrap_pyfunction!(gated, &module)?,
        wrap_pyfunction!(gated_create, &module)?,
        wrap_pyfunction!(gated_get_or_create, &module)?,
        wrap_pyfunction!(ordered, &module)?,
        wrap_pyfunction!(start_canary, &module)?,
        wrap_pyfunction!(canary_ticks, &module)?,
        wrap_pyfunction!(hold_drains, &module)?,
        wrap_pyfunction!(queue_len, &module)?,
        wrap_pyfunction!(waiting_producers, &module)?,
        wrap_pyfunction!(pending_requests, &module)?,
        wrap_pyfunction!(set_queue_capacity, &module)?,
        wrap_pyfunction!(gil_on_worker_violations, &module)?,
        wrap_pyfunction!(spawned_tasks, &module)?,
        wrap_pyfunction!(live_channels, &module)?,
        wrap_pyfunction!(orphans_removed, &module)?,
        wrap_pyfunction!(stdout_paused, &module)?,
        wrap_pyfunction!(warm_inits, &module)?,
        wrap_pyfunction!(spawner_pid, &module)?,
        wrap_pyfunction!(exit_withheld, &module)?,
    ] {
        module.add_function(function)?;
    }
    Ok(module)
}
