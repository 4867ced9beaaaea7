//! The per-runtime async core: a tokio runtime for the work, the pending-request registry, and
//! the dispatch of results to asyncio: each event loop the runtime serves has a completion
//! channel (`channel`), and the loop itself drains it on its own thread ([`Drain`]). The drain
//! also serves the connections of the executions started on the loop, which the loop reads
//! itself (`watch`, and `execution` invariant 8).
//!
//! # Invariants (rule numbers refer to docs/async-core.md)
//!
//! 1. (rules 1, 2) Tokio tasks carry only Rust values; they never hold a Python object and never
//!    attach. Python-visible work (resolving futures, publishing exits) runs on the event loop's
//!    thread, in [`Drain`], which the loop calls when its watch (holding the channel's eventfd)
//!    is readable (`loop.add_reader`): each loop drains a channel of its own.
//! 2. (rule 10) One channel per loop and one drain per channel: a loop's events are handled in
//!    push order, on that loop. A request or execution pushes to the channel of the loop it was
//!    made on.
//! 3. (rule 11) An accepted request produces exactly one completion event. Argument errors are
//!    raised before anything is registered or spawned.
//! 4. (rules 17, 18, 20) Cancelling an awaitable only claims its slot; the work runs on, and its
//!    result, finding no slot, is released by dropping it (outside the interpreter).
//! 5. (rules 16, 21) `close()`: refuse new requests and sweep the registry under one lock, fail
//!    every swept awaitable with `RuntimeClosedError`, let go of every watched connection, then
//!    close every channel (releasing queued payloads before returning; each drain then takes
//!    its reader off its loop), then stop the tokio runtime in the background. Later calls fail
//!    at once.
//! 6. One drain handles at most [`DRAIN_EVENTS`] events, then wakes its loop again if more is
//!    queued, so the loop runs its other callbacks in between and its latency stays bounded.
//!    (Output does not come through here: each execution's streams are read by the loop
//!    itself, see `execution`.)
//! 7. A channel whose loop was closed is closed (when the closed loop lets go of its drain, and
//!    when the runtime next registers on a loop), so its producers are released and its
//!    payloads disposed of instead of waiting for a drain that will never come.
//! 8. (rule 19) A request that makes a box or an execution for its caller resolves a
//!    `Handover` future (`python/boxlite/_handover.py`): what it made is the caller's once the
//!    awaiting coroutine received it; a cancellation that lands after the result arrived but
//!    before the coroutine ran again releases it, as a cancellation before the result does. An
//!    archive (`export`) or a snapshot (`snapshot.create`) that reaches no caller is released
//!    by its payload when dropped (`boxes::owned`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use boxlite_core::ExitStatus;

use crate::asyncio::{running_loop, set_exception, Deferred};
use crate::channel::Channel;
use crate::errors;
use crate::gil;
use crate::registry::Registry;
use crate::tasks::Tasks;
use crate::watch::LoopWatch;

mod drain;
mod event;

pub use drain::claim;
use drain::{complete, CancelHook, Drain};
pub use event::{list, object, Deliver, Event, Payload};

/// A loop's completion channel: the events of the requests and executions made on it.
pub type EventChannel = Channel<Event>;

/// A request registered on the running loop: its target id, the future it resolves, its loop,
/// and that loop's channel and watch.
pub struct Registered<'py> {
    pub target: u64,
    pub future: Bound<'py, PyAny>,
    pub event_loop: Bound<'py, PyAny>,
    pub channel: Arc<EventChannel>,
    pub watch: Arc<LoopWatch>,
}

/// Who waits for a target id.
pub enum Slot {
    /// An awaitable request, and a callable for its progress reports, if it makes any.
    Request { future: Py<PyAny>, event_loop: Py<PyAny>, progress: Option<Py<PyAny>> },
    /// What receives an exit (an execution), and fails when the runtime or its loop closes.
    Listener { listener: Arc<dyn Listener>, event_loop: Py<PyAny> },
}

/// What a [`Slot::Listener`] does, on its loop's thread: takes its one exit (rule 14), or
/// fails its waiters when the runtime or its loop closes first (rule 16).
pub trait Listener: Send + Sync {
    fn exit(&self, py: Python<'_>, status: ExitStatus);
    fn closed(&self, py: Python<'_>);
}

/// Events one drain takes from its channel at a time.
const TAKE: usize = 16;
/// Events one drain handles at most before letting the loop run other callbacks (invariant 6).
const DRAIN_EVENTS: usize = 64;

/// Queue capacity for runtimes created from now on (tests lower it).
pub static NEXT_CAPACITY: AtomicUsize = AtomicUsize::new(crate::queue::DEFAULT_CAPACITY);

/// An event loop this runtime delivers to, its channel (invariant 2), and its watch.
struct LoopChannel {
    event_loop: Py<PyAny>,
    channel: Arc<EventChannel>,
    watch: Arc<LoopWatch>,
}

pub struct Shared {
    pub registry: Arc<Registry<Slot>>,
    pub tasks: Arc<Tasks>,
    closed: AtomicBool,
    capacity: usize,
    channels: Mutex<Vec<LoopChannel>>,
    /// Tests hold the drains to fill channels deterministically.
    held: AtomicBool,
    /// The process that opened the runtime. A process forked from it has a copy of the
    /// runtime but none of its threads or descriptors (core's `fork`): it cannot use it.
    owner: u32,
}

static HANDOVER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Which future a request resolves.
enum FutureKind {
    /// The loop's own (`loop.create_future()`).
    Plain,
    /// `boxlite._handover.Handover`: its value is released unless the caller received it.
    Handover,
}

/// Looks up the Python classes the async core makes; called when `boxlite._native` is
/// imported, so a missing one fails the import.
pub fn resolve(py: Python<'_>) -> PyResult<()> {
    handover_class(py).map(|_| ())
}

fn handover_class(py: Python<'_>) -> PyResult<&'static Py<PyAny>> {
    HANDOVER.get_or_try_init(py, || py.import("boxlite._handover").and_then(|module| module.getattr("Handover")).map(Bound::unbind))
}

fn handover_future<'py>(event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = event_loop.py();
    let class = handover_class(py)?;
    let arguments = pyo3::types::PyDict::new(py);
    arguments.set_item("loop", event_loop)?;
    class.bind(py).call((), Some(&arguments))
}

/// Whether this process is a child forked from the process `owner` (a runtime's, recorded when
/// it opened): such a child has a copy of the runtime's memory but none of its threads.
pub(super) fn forked_from(owner: u32) -> bool {
    std::process::id() != owner
}

impl Shared {
    pub fn start() -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            registry: Arc::new(Registry::default()),
            tasks: Arc::new(Tasks::start()?),
            closed: AtomicBool::new(false),
            capacity: NEXT_CAPACITY.load(Ordering::SeqCst),
            channels: Mutex::new(Vec::new()),
            held: AtomicBool::new(false),
            owner: std::process::id(),
        }))
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether this process was forked from the one that opened the runtime.
    pub fn forked(&self) -> bool {
        forked_from(self.owner)
    }

    pub fn check_open(&self, py: Python<'_>) -> PyResult<()> {
        if self.is_closed() {
            return Err(errors::runtime_closed(py));
        }
        if self.forked() {
            return Err(errors::runtime_of_another_process(py));
        }
        Ok(())
    }

    /// In a process forked from the one that opened the runtime, its `close()`: the runtime is
    /// refused from then on, and nothing of it is touched (its boxes and requests are the
    /// other process's, and its threads are not here to stop).
    pub fn close_forked_copy(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// The channels, locked; waiting for the lock releases the interpreter, since its holder
    /// may be calling Python (a loop's `add_reader`) and need it.
    fn channels(&self, py: Python<'_>) -> std::sync::MutexGuard<'_, Vec<LoopChannel>> {
        gil::lock(py, &self.channels)
    }

    /// The channel of `event_loop`, made (and its drain put on the loop) on first use. Called on
    /// that loop's thread. Invariants 2 and 7.
    pub fn channel(self: &Arc<Self>, event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<EventChannel>> {
        self.channel_and_watch(event_loop).map(|(channel, _)| channel)
    }

    /// [`Shared::channel`] and the loop's watch (`watch`), made with it.
    pub fn channel_and_watch(self: &Arc<Self>, event_loop: &Bound<'_, PyAny>) -> PyResult<(Arc<EventChannel>, Arc<LoopWatch>)> {
        let py = event_loop.py();
        let mut channels = self.channels(py);
        // Under the lock `close()` takes the channels with: a channel made after it did would
        // be nobody's to close, and its reader would stay on the loop.
        self.check_open(py)?;
        if let Some(known) = channels.iter().find(|known| known.event_loop.bind(py).is(event_loop)) {
            return Ok((Arc::clone(&known.channel), Arc::clone(&known.watch)));
        }
        let (open, abandoned): (Vec<LoopChannel>, Vec<LoopChannel>) = std::mem::take(&mut *channels)
            .into_iter()
            .partition(|known| known.event_loop.bind(py).call_method0("is_closed").and_then(|closed| closed.is_truthy()).is_ok_and(|closed| !closed));
        *channels = open;
        let made = EventChannel::new(self.capacity, self.held.load(Ordering::SeqCst)).map_err(PyErr::from).and_then(|channel| {
            let channel = Arc::new(channel);
            let watch = Arc::new(LoopWatch::new(channel.fd())?);
            let drain = Drain { shared: Arc::downgrade(self), channel: Arc::clone(&channel), watch: Arc::clone(&watch), event_loop: event_loop.clone().unbind(), owner: self.owner };
            event_loop.call_method1("add_reader", (watch.fd(), drain))?;
            channels.push(LoopChannel { event_loop: event_loop.clone().unbind(), channel: Arc::clone(&channel), watch: Arc::clone(&watch) });
            Ok((channel, watch))
        });
        drop(channels);
        // The readers of a closed loop are never called again.
        abandoned.iter().for_each(|gone| gone.watch.clear(py));
        gil::detach(py, move || abandoned.iter().for_each(|gone| gone.channel.close()));
        made
    }

    /// Registers a request on the running loop ([`Registered`]).
    pub fn register<'py>(self: &Arc<Self>, py: Python<'py>) -> PyResult<Registered<'py>> {
        self.register_future(py, None, FutureKind::Plain)
    }

    /// [`Shared::register`] for a request that makes something for its caller (invariant 8).
    pub fn register_handover<'py>(self: &Arc<Self>, py: Python<'py>) -> PyResult<Registered<'py>> {
        self.register_future(py, None, FutureKind::Handover)
    }

    /// [`Shared::register`], with a callable that `Event::Progress` reports go to.
    pub fn register_with_progress<'py>(self: &Arc<Self>, py: Python<'py>, progress: Option<Py<PyAny>>) -> PyResult<Registered<'py>> {
        self.register_future(py, progress, FutureKind::Plain)
    }

    fn register_future<'py>(self: &Arc<Self>, py: Python<'py>, progress: Option<Py<PyAny>>, kind: FutureKind) -> PyResult<Registered<'py>> {
        self.check_open(py)?;
        let event_loop = running_loop(py)?;
        let (channel, watch) = self.channel_and_watch(&event_loop)?;
        let future = match kind {
            FutureKind::Plain => event_loop.call_method0("create_future")?,
            FutureKind::Handover => handover_future(&event_loop)?,
        };
        let slot = Slot::Request { future: future.clone().unbind(), event_loop: event_loop.clone().unbind(), progress };
        let target = self.registry.register(slot).map_err(|_| errors::runtime_closed(py))?;
        let hook = CancelHook { shared: Arc::clone(self), target };
        future.call_method1("add_done_callback", (hook,))?;
        Ok(Registered { target, future, event_loop, channel, watch })
    }

    /// Runs `task` on tokio, counted as in flight until it ends or is aborted (see
    /// [`Shared::close`]).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Starts `work` on tokio and returns the asyncio future its one completion resolves.
    pub fn submit<'py, F>(self: &Arc<Self>, py: Python<'py>, work: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = Result<Payload, boxlite_core::Error>> + Send + 'static,
    {
        Ok(self.complete_registered(self.register(py)?, work))
    }

    /// [`Shared::submit`] for work that makes something for its caller (invariant 8).
    pub fn submit_handover<'py, F>(self: &Arc<Self>, py: Python<'py>, work: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = Result<Payload, boxlite_core::Error>> + Send + 'static,
    {
        Ok(self.complete_registered(self.register_handover(py)?, work))
    }

    /// Runs `work` on tokio for `registered`; returns the future it will resolve.
    fn complete_registered<'py, F>(&self, registered: Registered<'py>, work: F) -> Bound<'py, PyAny>
    where
        F: Future<Output = Result<Payload, boxlite_core::Error>> + Send + 'static,
    {
        self.complete_with(registered.target, registered.channel, work);
        registered.future
    }

    /// Runs `work` on tokio; its result becomes the one completion of the registered `target`.
    pub fn complete_with<F>(&self, target: u64, channel: Arc<EventChannel>, work: F)
    where
        F: Future<Output = Result<Payload, boxlite_core::Error>> + Send + 'static,
    {
        self.spawn(completion(target, channel, work));
    }

    /// The one completion of `target`, made on its loop's thread: handled at once, as the drain
    /// would (invariant 3).
    pub fn complete_here(self: &Arc<Self>, py: Python<'_>, target: u64, result: Result<Payload, boxlite_core::Error>) {
        let unclaimed = complete(py, self, target, result);
        gil::detach(py, move || drop(unclaimed));
    }

    /// Invariant 5. Idempotent.
    pub fn close(&self, py: Python<'_>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for slot in self.registry.close_sweep() {
            fail_closed(py, slot);
        }
        let channels = std::mem::take(&mut *self.channels(py));
        // The readers of a loop that is closed go now; a running loop's drain lets go of its
        // own, on its thread, once it finds the channel closed.
        for known in &channels {
            if known.event_loop.bind(py).call_method0("is_closed").and_then(|closed| closed.is_truthy()).unwrap_or(true) {
                known.watch.clear(py);
            }
        }
        gil::detach(py, || channels.iter().for_each(|known| known.channel.close()));
        drop(channels);
        // In-flight requests run to their end: their results are released into the closed
        // channels, so a box made for a swept `create()` is removed.
        self.tasks.stop();
    }

    #[cfg(feature = "testing")]
    pub fn hold_drains(&self, py: Python<'_>, held: bool) {
        self.held.store(held, Ordering::SeqCst);
        self.channels(py).iter().for_each(|known| known.channel.hold(held));
    }

    /// Events queued in all channels.
    #[cfg(feature = "testing")]
    pub fn queued(&self, py: Python<'_>) -> usize {
        self.channels(py).iter().map(|known| known.channel.len()).sum()
    }

    /// Producers waiting for room in any channel.
    #[cfg(feature = "testing")]
    pub fn waiting_producers(&self, py: Python<'_>) -> usize {
        self.channels(py).iter().map(|known| known.channel.waiting_producers()).sum()
    }
}

/// `work`, then its result as the one completion of `target` (invariant 3).
async fn completion<F>(target: u64, channel: Arc<EventChannel>, work: F)
where
    F: Future<Output = Result<Payload, boxlite_core::Error>> + Send + 'static,
{
    let result = work.await;
    channel.push(Event::Complete { target, result: Box::new(result) }).await;
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Release);
        let channels = self.channels.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        channels.iter().for_each(|known| known.channel.close());
        self.tasks.stop();
    }
}

/// Fails whatever waits on `slot` with RuntimeClosedError, on its own loop.
fn fail_closed(py: Python<'_>, slot: Slot) {
    let (event_loop, action) = match slot {
        Slot::Request { future, event_loop, .. } => (event_loop, Deferred::new(move |py| {
            let _ = set_exception(py, future.bind(py), errors::runtime_closed(py));
        })),
        Slot::Listener { listener, event_loop } => (event_loop, Deferred::new(move |py| listener.closed(py))),
    };
    let _ = event_loop.bind(py).call_method1("call_soon_threadsafe", (action,));
}
