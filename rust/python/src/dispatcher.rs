//! The per-runtime async core: a tokio runtime for the work, the completion queue, the
//! pending-request registry, and the one dispatcher thread that hands results to asyncio.
//!
//! # Invariants (numbers refer to reference/async-core-invariants.md §2)
//!
//! 1. (rules 1, 2) Tokio tasks carry only Rust values; they never hold a Python object and never
//!    attach. Python-visible work (resolving futures, feeding streams) runs on the event loop's
//!    thread, scheduled by the dispatcher with `call_soon_threadsafe`.
//! 2. (rule 10) One dispatcher thread per runtime; it forwards events in queue order, one batch
//!    per loop at a time, and `call_soon_threadsafe` keeps that order on each loop.
//! 3. (rule 11) An accepted request produces exactly one completion event. Argument errors are
//!    raised before anything is registered or spawned.
//! 4. (rules 17, 18, 20) Cancelling an awaitable only claims its slot; the work runs on, and its
//!    result, finding no slot, is released by dropping it (outside the interpreter).
//! 6. A delivery carries at most [`DELIVERY_BYTES`] of output, and the dispatcher sends the next
//!    one only when the loop has run the previous (or after [`DELIVERY_WAIT`]), so a flood of
//!    output is handed over in slices between which the loop runs its other callbacks: the
//!    loop's latency stays bounded while many executions stream.
//! 5. (rules 16, 21) `close()`: refuse new requests and sweep the registry under one lock, fail
//!    every swept awaitable with `RuntimeClosedError`, then close the queue (releasing queued
//!    payloads before returning) and stop the dispatcher, then the tokio runtime in the
//!    background. Later calls fail at once.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::errors;
use crate::event::{Event, Payload};
use crate::gil;
use crate::queue::Queue;
use crate::registry::Registry;

/// Who waits for a target id.
pub enum Slot {
    /// An awaitable request, and a callable for its progress reports, if it makes any.
    Request { future: Py<PyAny>, event_loop: Py<PyAny>, progress: Option<Py<PyAny>> },
    /// An execution receiving output and its exit.
    Execution { execution: Py<crate::execution::Execution>, event_loop: Py<PyAny> },
}

impl Slot {
    fn event_loop(&self) -> &Py<PyAny> {
        match self {
            Self::Request { event_loop, .. } | Self::Execution { event_loop, .. } => event_loop,
        }
    }
}

const BATCH: usize = 256;
/// Output bytes one delivery hands to the loop at most (invariant 6).
const DELIVERY_BYTES: usize = 1 << 20;
/// How long the dispatcher waits for the loop to run its previous delivery (invariant 6).
const DELIVERY_WAIT: Duration = Duration::from_millis(50);
/// How long a closed runtime lets in-flight requests finish before tokio is stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

static SPAWNED: AtomicUsize = AtomicUsize::new(0);
static LIVE_DISPATCHERS: AtomicUsize = AtomicUsize::new(0);
/// Queue capacity for runtimes created from now on (tests lower it).
pub static NEXT_CAPACITY: AtomicUsize = AtomicUsize::new(crate::queue::DEFAULT_CAPACITY);

pub fn spawned_tasks() -> usize {
    SPAWNED.load(Ordering::SeqCst)
}

pub fn live_dispatchers() -> usize {
    LIVE_DISPATCHERS.load(Ordering::SeqCst)
}

pub struct Shared {
    pub queue: Arc<Queue<Event>>,
    pub registry: Arc<Registry<Slot>>,
    pub handle: tokio::runtime::Handle,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    closed: AtomicBool,
    /// Tasks started by [`Shared::spawn`] that have not ended.
    in_flight: Arc<AtomicUsize>,
    /// Deliveries scheduled on a loop and not yet run (invariant 6).
    unrun: (Mutex<usize>, Condvar),
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `asyncio.get_running_loop()`: raises RuntimeError("no running event loop") outside a loop.
pub fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let function = GET_RUNNING_LOOP.get_or_try_init(py, || {
        py.import("asyncio").and_then(|module| module.getattr("get_running_loop")).map(Bound::unbind)
    })?;
    function.bind(py).call0()
}

impl Shared {
    pub fn start() -> std::io::Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("boxlite-worker")
            .enable_all()
            .build()?;
        let shared = Arc::new(Self {
            queue: Arc::new(Queue::new(NEXT_CAPACITY.load(Ordering::SeqCst))),
            registry: Arc::new(Registry::default()),
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            closed: AtomicBool::new(false),
            in_flight: Arc::new(AtomicUsize::new(0)),
            unrun: (Mutex::new(0), Condvar::new()),
            dispatcher: Mutex::new(None),
        });
        let weak = Arc::downgrade(&shared);
        let queue = Arc::clone(&shared.queue);
        let registry = Arc::clone(&shared.registry);
        LIVE_DISPATCHERS.fetch_add(1, Ordering::SeqCst);
        let thread = std::thread::Builder::new()
            .name("boxlite-dispatch".to_string())
            .spawn(move || {
                dispatch(&weak, &queue, &registry);
                LIVE_DISPATCHERS.fetch_sub(1, Ordering::SeqCst);
            })?;
        *shared.dispatcher.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(thread);
        Ok(shared)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn check_open(&self, py: Python<'_>) -> PyResult<()> {
        if self.is_closed() {
            return Err(errors::runtime_closed(py));
        }
        Ok(())
    }

    /// Registers a request on the running loop: its target id and the future it resolves.
    pub fn register<'py>(self: &Arc<Self>, py: Python<'py>) -> PyResult<(u64, Bound<'py, PyAny>)> {
        self.register_with_progress(py, None)
    }

    /// [`Shared::register`], with a callable that `Event::Progress` reports go to.
    pub fn register_with_progress<'py>(self: &Arc<Self>, py: Python<'py>, progress: Option<Py<PyAny>>) -> PyResult<(u64, Bound<'py, PyAny>)> {
        self.check_open(py)?;
        let event_loop = running_loop(py)?;
        let future = event_loop.call_method0("create_future")?;
        let slot = Slot::Request { future: future.clone().unbind(), event_loop: event_loop.unbind(), progress };
        let target = self.registry.register(slot).map_err(|_| errors::runtime_closed(py))?;
        let hook = CancelHook { shared: Arc::clone(self), target };
        future.call_method1("add_done_callback", (hook,))?;
        Ok((target, future))
    }

    /// Runs `task` on tokio, counted as in flight until it ends (see [`Shared::close`]).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        SPAWNED.fetch_add(1, Ordering::SeqCst);
        let in_flight = Arc::clone(&self.in_flight);
        in_flight.fetch_add(1, Ordering::SeqCst);
        self.handle.spawn(async move {
            task.await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Starts `work` on tokio and returns the asyncio future its one completion resolves.
    pub fn submit<'py, F>(self: &Arc<Self>, py: Python<'py>, work: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = Result<Payload, boxlite_core::Error>> + Send + 'static,
    {
        let (target, future) = self.register(py)?;
        self.complete_with(target, work);
        Ok(future)
    }

    /// Runs `work` on tokio; its result becomes the one completion of the registered `target`.
    pub fn complete_with<F>(&self, target: u64, work: F)
    where
        F: Future<Output = Result<Payload, boxlite_core::Error>> + Send + 'static,
    {
        let queue = Arc::clone(&self.queue);
        self.spawn(async move {
            let result = work.await;
            queue.push(Event::Complete { target, result: Box::new(result) }).await;
        });
    }

    /// Invariant 5. Idempotent.
    pub fn close(&self, py: Python<'_>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for slot in self.registry.close_sweep() {
            fail_closed(py, slot);
        }
        let queue = Arc::clone(&self.queue);
        gil::detach(py, move || queue.close());
        let dispatcher = self.dispatcher.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(thread) = dispatcher {
            if thread.thread().id() != std::thread::current().id() {
                gil::detach(py, move || {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while !thread.is_finished() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                });
            }
        }
        self.stop_runtime();
    }

    /// Lets in-flight requests run to their end (their results are released into the closed
    /// queue, so a box made for a swept `create()` is removed), then stops tokio. Never blocks
    /// the caller: the waiting happens on a thread of its own, bounded by [`DRAIN_LIMIT`].
    fn stop_runtime(&self) {
        let runtime = self.runtime.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let Some(runtime) = runtime else { return };
        let in_flight = Arc::clone(&self.in_flight);
        let stopper = std::thread::Builder::new().name("boxlite-stop".to_string()).spawn(move || {
            let deadline = Instant::now() + DRAIN_LIMIT;
            while in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            runtime.shutdown_background();
        });
        if let Err(error) = stopper {
            eprintln!("boxlite: could not start the thread that stops a runtime: {error}");
        }
    }

    pub fn hold_dispatcher(&self, hold: bool) {
        self.queue.hold(hold);
    }
}

impl Shared {
    /// Invariant 6: waits (without the interpreter) until no delivery is waiting to run, or
    /// [`DELIVERY_WAIT`] passed, then counts one more.
    fn pace_delivery(&self, py: Python<'_>) {
        let (count, ran) = &self.unrun;
        gil::detach(py, || {
            let mut unrun = count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *unrun > 0 {
                unrun = ran.wait_timeout_while(unrun, DELIVERY_WAIT, |unrun| *unrun > 0).unwrap_or_else(std::sync::PoisonError::into_inner).0;
            }
            *unrun += 1;
        });
    }

    fn delivery_ran(&self) {
        let (count, ran) = &self.unrun;
        let mut unrun = count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *unrun = unrun.saturating_sub(1);
        ran.notify_all();
    }
}

/// Splits one loop's events into slices of at most [`DELIVERY_BYTES`] of output each.
fn slices(events: Vec<Event>) -> Vec<Vec<Event>> {
    let mut slices = vec![Vec::new()];
    let mut bytes = 0;
    for event in events {
        let size = match &event {
            Event::Chunk { data, .. } => data.len(),
            _ => 0,
        };
        if bytes + size > DELIVERY_BYTES && slices.last().is_some_and(|slice| !slice.is_empty()) {
            slices.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(slice) = slices.last_mut() {
            slice.push(event);
        }
    }
    slices
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        self.queue.close();
        self.stop_runtime();
    }
}

/// Fails whatever waits on `slot` with RuntimeClosedError, on its own loop.
fn fail_closed(py: Python<'_>, slot: Slot) {
    let (event_loop, action) = match slot {
        Slot::Request { future, event_loop, .. } => (event_loop, Deferred::new(move |py| {
            let _ = set_exception(py, future.bind(py), errors::runtime_closed(py));
        })),
        Slot::Execution { execution, event_loop } => (event_loop, Deferred::new(move |py| {
            execution.get().fail_closed(py);
        })),
    };
    let _ = event_loop.bind(py).call_method1("call_soon_threadsafe", (action,));
}

pub fn set_exception(py: Python<'_>, future: &Bound<'_, PyAny>, error: PyErr) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    future.call_method1("set_exception", (error.into_value(py),))?;
    Ok(())
}

pub fn set_result(future: &Bound<'_, PyAny>, value: Bound<'_, PyAny>) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    future.call_method1("set_result", (value,))?;
    Ok(())
}

/// The dispatcher thread's loop (invariants 1 and 2).
fn dispatch(shared: &Weak<Shared>, queue: &Queue<Event>, registry: &Registry<Slot>) {
    loop {
        let Some(batch) = queue.pop_batch(BATCH) else { return };
        let Some(shared) = shared.upgrade() else { return };
        let unclaimed = gil::attach(|py| forward(py, &shared, registry, batch));
        drop(shared);
        // Rule 18: results nobody waits for are released here, without the interpreter.
        drop(unclaimed);
    }
}

/// Groups a batch by event loop and schedules one delivery per loop. Returns the events whose
/// target is gone.
fn forward(py: Python<'_>, shared: &Arc<Shared>, registry: &Registry<Slot>, batch: Vec<Event>) -> Vec<Event> {
    let mut unclaimed = Vec::new();
    let mut groups: Vec<(Py<PyAny>, Vec<Event>)> = Vec::new();
    for event in batch {
        let Some(event_loop) = registry.inspect(event.target(), |slot| slot.event_loop().clone_ref(py)) else {
            unclaimed.push(event);
            continue;
        };
        match groups.iter_mut().find(|(existing, _)| existing.is(&event_loop)) {
            Some((_, events)) => events.push(event),
            None => groups.push((event_loop, vec![event])),
        }
    }
    for (event_loop, events) in groups {
        for slice in slices(events) {
            shared.pace_delivery(py);
            let delivery = Delivery { shared: Arc::clone(shared), events: Mutex::new(slice), ran: AtomicBool::new(false) };
            let delivery = match Py::new(py, delivery) {
                Ok(delivery) => delivery,
                Err(_) => {
                    shared.delivery_ran();
                    continue;
                }
            };
            if event_loop.bind(py).call_method1("call_soon_threadsafe", (delivery.clone_ref(py),)).is_err() {
                // The loop is closed: nobody can receive these. Claim their slots and release them.
                delivery.get().mark_ran();
                let events = delivery.get().take();
                for event in &events {
                    drop(registry.take(event.target()));
                }
                unclaimed.extend(events);
            }
        }
    }
    unclaimed
}

/// A batch of events for one loop, run there by `call_soon_threadsafe`.
#[pyclass(module = "boxlite._native", frozen)]
pub struct Delivery {
    shared: Arc<Shared>,
    events: Mutex<Vec<Event>>,
    ran: AtomicBool,
}

impl Delivery {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Counts this delivery as run (once), whether the loop ran it or never will.
    fn mark_ran(&self) {
        if !self.ran.swap(true, Ordering::AcqRel) {
            self.shared.delivery_ran();
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.mark_ran();
    }
}

#[pymethods]
impl Delivery {
    fn __call__(&self, py: Python<'_>) {
        let mut unclaimed = Vec::new();
        let events = self.take();
        self.mark_ran();
        for event in events {
            match event {
                Event::Complete { target, result } => {
                    if let Some(result) = self.complete(py, target, *result) {
                        unclaimed.push(result);
                    }
                }
                Event::Chunk { target, stream, data } => {
                    if let Some(execution) = self.execution(py, target) {
                        execution.get().deliver_chunk(py, stream, data);
                    }
                }
                Event::StreamEnd { target, stream } => {
                    if let Some(execution) = self.execution(py, target) {
                        execution.get().deliver_end(py, stream);
                    }
                }
                Event::Exit { target, status } => {
                    if let Some(Slot::Execution { execution, .. }) = self.shared.registry.take(target) {
                        execution.get().deliver_exit(py, status, false);
                    }
                }
                Event::Progress { target, layer, done, total } => {
                    let callback = self.shared.registry.inspect(target, |slot| match slot {
                        Slot::Request { progress, .. } => progress.as_ref().map(|callback| callback.clone_ref(py)),
                        Slot::Execution { .. } => None,
                    });
                    if let Some(Some(callback)) = callback {
                        if let Err(error) = callback.bind(py).call1((layer, done, total)) {
                            error.write_unraisable(py, Some(callback.bind(py)));
                        }
                    }
                }
            }
        }
        gil::detach(py, move || drop(unclaimed));
    }
}

impl Delivery {
    fn execution(&self, py: Python<'_>, target: u64) -> Option<Py<crate::execution::Execution>> {
        self.shared.registry.inspect(target, |slot| match slot {
            Slot::Execution { execution, .. } => Some(execution.clone_ref(py)),
            Slot::Request { .. } => None,
        })?
    }

    /// Resolves a request; gives back the result when nobody can take it (rules 17, 18).
    fn complete(
        &self,
        py: Python<'_>,
        target: u64,
        result: Result<Payload, boxlite_core::Error>,
    ) -> Option<Result<Payload, boxlite_core::Error>> {
        let Some(Slot::Request { future, event_loop, .. }) = self.shared.registry.take(target) else {
            return Some(result);
        };
        let future = future.bind(py);
        match future.call_method0("done").and_then(|done| done.is_truthy()) {
            Ok(false) => {}
            _ => return Some(result),
        }
        let outcome = match result {
            Ok(payload) => crate::convert::payload_to_py(py, &self.shared, event_loop.bind(py), payload),
            Err(error) => Err(errors::to_py(py, &error)),
        };
        let _ = match outcome {
            Ok(value) => set_result(future, value),
            Err(error) => set_exception(py, future, error),
        };
        None
    }
}

/// Runs when a request's future is done; if it was cancelled, claims the slot (rule 20). It
/// also keeps the runtime's core alive while the request is pending, so a `Boxlite` object that
/// is dropped right after a call (`await Boxlite(options).list_info()`) still resolves it.
#[pyclass(module = "boxlite._native", frozen)]
pub struct CancelHook {
    shared: Arc<Shared>,
    target: u64,
}

#[pymethods]
impl CancelHook {
    fn __call__(&self, future: &Bound<'_, PyAny>) -> PyResult<()> {
        if future.call_method0("cancelled")?.is_truthy()? {
            drop(self.shared.registry.take(self.target));
        }
        Ok(())
    }
}

type DeferredWork = Box<dyn for<'py> FnOnce(Python<'py>, Option<&Bound<'py, PyAny>>) + Send + Sync>;

/// A piece of Rust work scheduled on an event loop (or run as a done-callback, which passes
/// the finished future).
#[pyclass(module = "boxlite._native", frozen)]
pub struct Deferred {
    work: Mutex<Option<DeferredWork>>,
}

impl Deferred {
    pub fn new(work: impl FnOnce(Python<'_>) + Send + Sync + 'static) -> Self {
        Self { work: Mutex::new(Some(Box::new(move |py, _| work(py)))) }
    }

    pub fn new_with_arg(work: impl for<'py> FnOnce(Python<'py>, &Bound<'py, PyAny>) + Send + Sync + 'static) -> Self {
        Self {
            work: Mutex::new(Some(Box::new(move |py, argument| {
                if let Some(argument) = argument {
                    work(py, argument);
                }
            }))),
        }
    }
}

#[pymethods]
impl Deferred {
    #[pyo3(signature = (*arguments))]
    fn __call__(&self, py: Python<'_>, arguments: &Bound<'_, pyo3::types::PyTuple>) {
        let work = self.work.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(work) = work {
            let first = arguments.get_item(0).ok();
            work(py, first.as_ref());
        }
    }
}
