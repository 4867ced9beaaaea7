//! A loop's drain: it takes its channel's events on the loop's thread and hands each to whoever
//! waits for it (dispatcher invariants 1, 2, 4 and 6), and calls the readers of the connections
//! the loop's watch found ready.

use std::sync::{Arc, Weak};

use pyo3::prelude::*;

use crate::asyncio::{set_exception, set_result};
use crate::errors;
use crate::gil;
use crate::watch::LoopWatch;

use super::{forked_from, Event, EventChannel, Payload, Shared, Slot, DRAIN_EVENTS, TAKE};

/// A loop's drain of its channel, and the dispatch of its watched connections: the loop calls
/// it when the watch is readable (invariants 1, 2 and 6). It holds the runtime weakly, so a
/// loop that outlives its runtime keeps nothing of it but the channel and the watch.
#[pyclass(module = "boxlite._native", frozen)]
pub struct Drain {
    pub(super) shared: Weak<Shared>,
    pub(super) channel: Arc<EventChannel>,
    pub(super) watch: Arc<LoopWatch>,
    pub(super) event_loop: Py<PyAny>,
    /// The runtime's process ([`forked_from`]); the drain may outlive the runtime's `Shared`.
    pub(super) owner: u32,
}

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) {
        if forked_from(self.owner) {
            // A forked child that runs its copy of the loop sees the watch ready too (the
            // kernel's epoll instances are shared with the parent): it takes nothing that the
            // runtime's process waits for.
            return;
        }
        let ready = self.watch.ready();
        if ready.channel {
            self.drain_channel(py);
        }
        for (fd, reader) in ready.readers {
            Arc::clone(&reader).on_readable(py);
            self.watch.rearm(fd, &reader);
        }
    }
}

impl Drain {
    fn drain_channel(&self, py: Python<'_>) {
        self.channel.begin_drain();
        let shared = self.shared.upgrade().filter(|_| !self.channel.is_closed());
        let Some(shared) = shared else {
            // Invariant 3 of `channel`: the loop lets go of the drain, and with it the eventfd
            // and the watch; the connections' readers are never called again.
            let _ = self.event_loop.bind(py).call_method1("remove_reader", (self.watch.fd(),));
            self.watch.clear(py);
            return;
        };
        let mut unclaimed = Vec::new();
        let mut events = 0;
        while events < DRAIN_EVENTS {
            let batch = self.channel.take(TAKE);
            if batch.is_empty() {
                break;
            }
            events += batch.len();
            for event in batch {
                unclaimed.extend(handle(py, &shared, event));
            }
        }
        if events >= DRAIN_EVENTS {
            // Stopped by the budget, not for want of events: come back after other callbacks.
            self.channel.wake();
        }
        // Rule 18: results nobody waits for are released here, without the interpreter.
        gil::detach(py, move || drop(unclaimed));
    }
}

impl Drop for Drain {
    /// The loop let go of the drain (it was closed, or the reader removed): nobody will drain
    /// the channel again, so it is closed, releasing what waits in it and its producers.
    /// Closing releases payloads, which never needs the interpreter (rule 18). Nobody will call
    /// the watch's readers either: requests still waiting for an answer let go of it. Nothing
    /// can be handed over on this loop anymore: its requests' slots go (and with their futures
    /// the runtime their cancel hooks hold), and its executions end.
    fn drop(&mut self) {
        if forked_from(self.owner) {
            // A forked child's copy: the watch's entries and the requests are the runtime's
            // process's (the kernel's epoll instance is shared with it).
            return;
        }
        gil::attach(|py| {
            self.watch.clear(py);
            let Some(shared) = self.shared.upgrade() else { return };
            let this_loop = self.event_loop.as_ptr();
            let abandoned = shared.registry.take_where(|slot| match slot {
                Slot::Request { event_loop, .. } | Slot::Listener { event_loop, .. } => event_loop.as_ptr() == this_loop,
            });
            for slot in abandoned {
                if let Slot::Listener { listener, .. } = slot {
                    listener.closed(py);
                }
            }
        });
        self.channel.close();
    }
}

/// Hands one event to whoever waits for it; gives back a result nobody can take (rules 17, 18).
fn handle(py: Python<'_>, shared: &Arc<Shared>, event: Event) -> Option<Result<Payload, boxlite_core::Error>> {
    match event {
        Event::Complete { target, result } => return complete(py, shared, target, *result),
        Event::Exit { target, status } => {
            // The slot stays until the exit is published (after the output ended): until then a
            // close still finds the execution and fails its waiters (rule 16).
            let listener = shared.registry.inspect(target, |slot| match slot {
                Slot::Listener { listener, .. } => Some(Arc::clone(listener)),
                Slot::Request { .. } => None,
            });
            if let Some(Some(listener)) = listener {
                listener.exit(py, status);
            }
        }
        Event::Progress { target, layer, done, total } => {
            let callback = shared.registry.inspect(target, |slot| match slot {
                Slot::Request { progress, .. } => progress.as_ref().map(|callback| callback.clone_ref(py)),
                Slot::Listener { .. } => None,
            });
            if let Some(Some(callback)) = callback {
                if let Err(error) = callback.bind(py).call1((layer, done, total)) {
                    error.write_unraisable(py, Some(callback.bind(py)));
                }
            }
        }
    }
    None
}

/// Resolves a request; gives back the result when nobody can take it (rules 17, 18).
pub(super) fn complete(py: Python<'_>, shared: &Arc<Shared>, target: u64, result: Result<Payload, boxlite_core::Error>) -> Option<Result<Payload, boxlite_core::Error>> {
    let Some((future, event_loop)) = claim(py, shared, target) else {
        return Some(result);
    };
    let future = future.bind(py);
    let outcome = match result {
        Ok(payload) => payload.into_python(shared, event_loop.bind(py)),
        Err(error) => Err(errors::to_py(py, &error)),
    };
    let _ = match outcome {
        Ok(value) => set_result(future, value),
        Err(error) => set_exception(py, future, error),
    };
    None
}

/// Claims request `target` for its result (rule 17): its future and event loop, unless it is
/// gone or done.
pub fn claim(py: Python<'_>, shared: &Arc<Shared>, target: u64) -> Option<(Py<PyAny>, Py<PyAny>)> {
    let Some(Slot::Request { future, event_loop, .. }) = shared.registry.take(target) else {
        return None;
    };
    match future.bind(py).call_method0("done").and_then(|done| done.is_truthy()) {
        Ok(false) => Some((future, event_loop)),
        _ => None,
    }
}

/// Runs when a request's future is done; if it was cancelled, claims the slot (rule 20). It
/// also keeps the runtime's core alive while the request is pending, so a `Boxlite` object that
/// is dropped right after a call (`await Boxlite(options).list_info()`) still resolves it.
#[pyclass(module = "boxlite._native", frozen)]
pub struct CancelHook {
    pub(super) shared: Arc<Shared>,
    pub(super) target: u64,
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
