//! An execution's request and connection (invariant 8): the request sent from `exec()`, the
//! init's answer and the exit read by the loop through its watch.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use boxlite_core::exec::{Answer, Requested, EXEC_ANSWER_LIMIT};
use pyo3::prelude::*;

use crate::asyncio::{set_exception, set_result, Deferred};
use crate::dispatcher::{Payload, Registered, Shared};
use crate::watch::{LoopWatch, Reader};

use super::{locked, Execution};

/// What an execution's connection is watched for (invariant 8).
pub(super) enum Phase {
    /// The init's answer to the request `target`, until `deadline` (a loop timer) fires.
    Answer { target: u64, requested: Box<Requested>, deadline: Py<PyAny> },
    /// The execution's exit.
    Running(Py<Execution>),
    /// Nothing: the connection is off the loop (or the reader is between phases).
    Done,
}

/// The loop's reader of one execution's connection, from the request to the exit (invariant
/// 8), called through the loop's watch (`watch`). It holds the runtime weakly, as the drain
/// does.
pub struct ControlReadable {
    pub(super) shared: Weak<Shared>,
    pub(super) watch: Arc<LoopWatch>,
    pub(super) raw: RawFd,
    pub(super) phase: Mutex<Phase>,
}

impl ControlReadable {
    pub(super) fn send_and_watch(py: Python<'_>, shared: &Arc<Shared>, registered: Registered<'_>, mut requested: Requested) -> PyResult<()> {
        let Registered { target, future, event_loop, channel, watch } = registered;
        let raw = requested.raw();
        let reader = Arc::new(Self { shared: Arc::downgrade(shared), watch: Arc::clone(&watch), raw, phase: Mutex::new(Phase::Done) });
        let watched = watch.add(raw, Arc::clone(&reader) as Arc<dyn Reader>).map_err(PyErr::from).and_then(|()| {
            // A request cancelled or swept before its answer lets go of its connection.
            let abandoned = Arc::clone(&reader);
            future.call_method1("add_done_callback", (Deferred::new_with_arg(move |py, _future| abandoned.release(py)),))
        });
        if let Err(error) = watched {
            reader.unwatch();
            drop(shared.registry.take(target));
            return Err(error);
        }
        match requested.try_send() {
            Ok(true) => {
                let overdue = Arc::clone(&reader);
                match event_loop.call_method1("call_later", (EXEC_ANSWER_LIMIT.as_secs_f64(), Deferred::new(move |py| overdue.overdue(py)))) {
                    Ok(deadline) => *locked(&reader.phase) = Phase::Answer { target, requested: Box::new(requested), deadline: deadline.unbind() },
                    Err(error) => {
                        reader.unwatch();
                        drop(requested);
                        drop(shared.registry.take(target));
                        return Err(error);
                    }
                }
            }
            // The init's queue is full: tokio sends it once there is room, and waits for the answer.
            Ok(false) => {
                reader.unwatch();
                shared.complete_with(target, channel, async move { requested.run().await.map(Payload::from) });
            }
            Err(error) => {
                reader.unwatch();
                drop(requested);
                shared.complete_here(py, target, Err(error));
            }
        }
        Ok(())
    }

    /// Watches an attached execution's connection for its exit.
    pub(super) fn watch_running(execution: &Bound<'_, Execution>, raw: RawFd) -> PyResult<()> {
        let this = execution.get();
        let reader = Self { shared: Arc::downgrade(&this.shared), watch: Arc::clone(&this.watch), raw, phase: Mutex::new(Phase::Running(execution.clone().unbind())) };
        this.watch.add(raw, Arc::new(reader))?;
        Ok(())
    }

    /// Lets go of the request, if no answer came (it was cancelled or swept, or the loop will
    /// not call again): its slot goes, the connection leaves the watch, then closes, and the
    /// init kills what it started. An execution that runs keeps its reader.
    pub fn release(&self, py: Python<'_>) {
        let phase = std::mem::replace(&mut *locked(&self.phase), Phase::Done);
        match phase {
            Phase::Answer { target, requested, deadline } => {
                self.unwatch();
                let _ = deadline.bind(py).call_method0("cancel");
                let slot = self.shared.upgrade().and_then(|shared| shared.registry.take(target));
                crate::gil::detach(py, move || drop(requested));
                drop(slot);
            }
            other => *locked(&self.phase) = other,
        }
    }

    /// No answer within the limit: the request fails, and its connection goes.
    pub(super) fn overdue(&self, py: Python<'_>) {
        let phase = std::mem::replace(&mut *locked(&self.phase), Phase::Done);
        match phase {
            Phase::Answer { target, mut requested, .. } => {
                self.unwatch();
                let error = requested.overdue();
                crate::gil::detach(py, move || drop(requested));
                if let Some(shared) = self.shared.upgrade() {
                    shared.complete_here(py, target, Err(error));
                }
            }
            other => *locked(&self.phase) = other,
        }
    }

    pub(super) fn unwatch(&self) {
        self.watch.remove(self.raw);
    }

    /// The answer arrived: the request resolves to the execution, whose exit this reader
    /// watches for next; or to the error, and the connection leaves the watch.
    pub(super) fn answered(self: &Arc<Self>, py: Python<'_>, shared: &Arc<Shared>, target: u64, answer: Result<boxlite_core::Execution, boxlite_core::Error>) {
        let core = match answer {
            Ok(core) => core,
            Err(error) => {
                self.unwatch();
                shared.complete_here(py, target, Err(error));
                return;
            }
        };
        let Some((future, event_loop)) = crate::dispatcher::claim(py, shared, target) else {
            self.unwatch();
            crate::gil::detach(py, move || drop(core));
            return;
        };
        let future = future.bind(py);
        match Execution::attach(py, shared, event_loop.bind(py), core, Some(self)) {
            Ok(execution) => {
                let _ = set_result(future, execution.into_bound(py).into_any());
            }
            Err(error) => {
                self.unwatch();
                let _ = set_exception(py, future, error);
            }
        }
    }
}

/// Starts an execution (invariant 8): `requesting` prepares the request, in one step taken
/// here when the box runs; the loop's watch takes the execution's connection, then the request
/// goes out, last, so the init that wakes for it finds this thread about to wait. If a step
/// has to wait, the rest runs on tokio and the answer comes through the channel. Resolves to
/// the `Execution`.
pub fn start<'py, F>(py: Python<'py>, shared: &Arc<Shared>, requesting: F) -> PyResult<Bound<'py, PyAny>>
where
    F: std::future::Future<Output = Result<Requested, boxlite_core::Error>> + Send + 'static,
{
    let registered = shared.register_handover(py)?;
    let future = registered.future.clone();
    match shared.tasks.step_here(requesting) {
        Ok(Ok(requested)) => ControlReadable::send_and_watch(py, shared, registered, requested)?,
        Ok(Err(error)) => shared.complete_here(py, registered.target, Err(error)),
        Err(rest) => shared.complete_with(registered.target, registered.channel, async move { rest.await?.run().await.map(Payload::from) }),
    }
    Ok(future)
}

impl Execution {
    /// The loop found the control connection readable (invariant 8): takes in what arrived,
    /// and once that is the exit, stops watching and delivers it, unless `close()` claimed it.
    pub(super) fn read_control(slf: &Bound<'_, Self>) {
        let this = slf.get();
        let status = match locked(&this.replies).as_ref() {
            Some(replies) => replies.read_arrived(),
            None => return,
        };
        let Some(status) = status else { return };
        this.unwatch_control();
        if this.exit_claimed.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            Self::deliver_exit(slf, status, false);
        }
    }

    /// Takes the control connection off the loop's watch, before its descriptor can close
    /// (it stays open as long as the execution lives, in `control`).
    pub(super) fn unwatch_control(&self) {
        let replies = locked(&self.replies).take();
        if let Some(replies) = replies {
            self.watch.remove(replies.raw());
        }
    }
}

impl Reader for ControlReadable {
    /// The watch found the connection readable.
    fn on_readable(self: Arc<Self>, py: Python<'_>) {
        let phase = std::mem::replace(&mut *locked(&self.phase), Phase::Done);
        match phase {
            Phase::Answer { target, requested, deadline } => {
                let Some(shared) = self.shared.upgrade() else {
                    *locked(&self.phase) = Phase::Answer { target, requested, deadline };
                    self.release(py);
                    return;
                };
                let answer = {
                    let _runtime = shared.tasks.handle.enter();
                    (*requested).try_answer()
                };
                match answer {
                    Answer::NotYet(requested) => *locked(&self.phase) = Phase::Answer { target, requested: Box::new(requested), deadline },
                    Answer::Ready(answer) => {
                        let _ = deadline.bind(py).call_method0("cancel");
                        self.answered(py, &shared, target, answer);
                    }
                }
            }
            Phase::Running(execution) => {
                *locked(&self.phase) = Phase::Running(execution.clone_ref(py));
                Execution::read_control(execution.bind(py));
            }
            Phase::Done => {}
        }
    }

    /// The loop will not call this reader again (it was closed, or the runtime was): a request
    /// that got no answer is let go, and an execution that runs is ended, as asyncio ends the
    /// subprocesses of a transport it closes.
    fn let_go(&self, py: Python<'_>) {
        let running = match &*locked(&self.phase) {
            Phase::Running(execution) => Some(execution.clone_ref(py)),
            Phase::Answer { .. } | Phase::Done => None,
        };
        match running {
            Some(execution) => {
                *locked(&self.phase) = Phase::Done;
                execution.get().fail_closed(py);
            }
            None => self.release(py),
        }
    }
}
