//! Executions as Python sees them: output streams as async iterators (bytes, or text decoded at
//! this edge), stdin, `wait()`, signals, terminal size, and close.
//!
//! Here: the `Execution` class, its state, its exit and its close. Beside it: `stream` (output:
//! flow control, reading on the loop, the iterators), `decode` (UTF-8 at the edge), `stdin`,
//! `control` (the request and the connection the loop reads the answer and the exit from), and
//! `status` (`ExitStatus`).
//!
//! # Invariants (rule numbers refer to docs/async-core.md)
//!
//! 1. (rule 22) Output is bytes end to end; text is an incremental UTF-8 decoding here, so a
//!    character split across chunks survives and only truly invalid bytes become U+FFFD.
//! 2. (rules 23, 26, 27) Exactly one exit per execution: whoever learns it (the loop reading
//!    the execution's connection, or the driver task of a followed main process) and `close()`
//!    race on `exit_claimed`; the loser does nothing. A driver that claimed the exit is never
//!    aborted.
//! 3. (rules 24, 25) The exit is the last event: it is published only once both output streams
//!    have ended (their pipes reached end of file), and the streams are set up inside `exec()`
//!    itself, so none can be registered late. A forced close stops the streams first. A
//!    stream still open [`LEFT_BEHIND_AFTER`] the exit is held by a process the execution's
//!    process left running: what the pipe holds then (everything the exited process wrote) is
//!    delivered, whatever the window, and the stream ends for its reader; the pipe is read on
//!    and what comes is dropped, so that process neither blocks nor gets EPIPE. (Where the
//!    runtime writes the pipes itself, a relay or a main process's follower, it ends them once
//!    all the output is in; a REST server does the same as here on its side.)
//! 4. (rules 28, 29) `close()` on a process that is proven to have exited reports its real
//!    status and kills nothing; otherwise the process group is killed (hanging up the control
//!    connection) and the status says `forced`.
//! 5. (rule 31) `wait()` resolves when the exit is published, which is after every byte of
//!    output was delivered into the stream buffers, so collected output is never truncated.
//! 6. Flow control: a stream is read only while the output the user has not taken is below
//!    [`STREAM_WINDOW`]; then reading pauses until the user takes some. A process that floods
//!    output nobody reads waits, as with a plain pipe, instead of growing memory. A stream the
//!    user never took is read on while a `wait()` is pending, its oldest output dropped (the
//!    newest window is kept, and a warning logged), so `wait()` alone always returns; a stream
//!    the user took loses nothing.
//! 7. Output is read on the execution's event loop, as asyncio reads its own pipes: the loop
//!    watches a pipe (`loop.add_reader`) once someone reads the stream, or [`WATCH_DELAY`]
//!    after the start, or when the exit arrives and more may come; a short command's output is
//!    read once, when its exit arrives ([`AFTER_EXIT_READS`]). The process and the loop are
//!    the only parties, and the bytes are copied once into a buffer the loop thread reuses and
//!    once into the object the user gets. A stream's descriptor is closed only after its reader
//!    was taken off the loop, so the loop never watches a reused descriptor number. One read is
//!    smaller the more streams the loop watches ([`READ_BUDGET`]), which bounds the loop's
//!    latency while many executions stream.
//! 8. An execution started here is the loop's own business, as asyncio's subprocesses are: the
//!    request is prepared and sent from `exec()` itself (when the box runs and nothing waits,
//!    which is the usual case), and the loop reads the execution's connection through its watch
//!    (`watch`), first for the init's answer, then for the exit ([`ControlReadable`]), with no
//!    thread in between. The request goes out last, after the watch holds the connection, so
//!    the init that wakes for it finds this thread about to wait. The answer still settles the
//!    request exactly once through the registry (dispatcher invariant 3); an exec whose request
//!    was cancelled or swept lets go of its connection, and the init then kills what it
//!    started; one that gets no answer within `EXEC_ANSWER_LIMIT` fails. An exec that has to
//!    wait (the box boots first, or the init's queue is full) has tokio send it and learn the
//!    answer, which comes through the channel; the loop then reads its exit the same way. A
//!    followed main process's exit is learned by tokio and comes through the channel too.


mod control;
mod decode;
mod status;
mod stdin;
mod stream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use boxlite_core::exec::{IoCounters, Replies};
use boxlite_core::{ExecutionControl, ExitStatus as CoreExitStatus};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::asyncio::{running_loop, set_exception, set_result, Deferred};
use crate::dispatcher::{Deliver, Event, EventChannel, Listener, Payload, Shared, Slot};
use crate::errors;
use crate::watch::LoopWatch;

pub use control::{start, ControlReadable};
pub use status::ExitStatus;
pub use stream::{ExecStream, StreamKind, WatchStreams, STREAM_WINDOW};
pub use stdin::ExecStdin;
use decode::Utf8Decoder;
use stdin::Stdin;
use control::Phase;
use stream::{resolve_all, EndLeftBehind, StreamState, LEFT_BEHIND_AFTER, WATCH_DELAY};

#[derive(Default)]
struct ExecState {
    stdout: StreamState,
    stderr: StreamState,
    exit: Option<ExitStatus>,
    /// The exit, until both streams ended and it can be published (invariant 3).
    arrived_exit: Option<ExitStatus>,
    waiters: Vec<Py<PyAny>>,
    stdin_taken: bool,
    /// A forced close happened: later output events are dropped (invariant 3).
    sealed: bool,
}

impl ExecState {
    fn stream_ref(&self, kind: StreamKind) -> &StreamState {
        match kind {
            StreamKind::Stdout => &self.stdout,
            StreamKind::Stderr => &self.stderr,
        }
    }

    /// Whether a full `kind` stream drops its oldest output instead of pausing (invariant 6):
    /// nobody took it, and someone waits for the exit.
    fn drops_oldest(&self, py: Python<'_>, kind: StreamKind) -> bool {
        self.stream_ref(kind).text.is_none() && self.waiters.iter().any(|waiter| !is_done(waiter.bind(py)))
    }

    /// Whether the loop should watch `kind`'s source again (invariant 6). Asks Python only for
    /// a full stream.
    fn wants_reading(&self, py: Python<'_>, kind: StreamKind) -> bool {
        let stream = self.stream_ref(kind);
        stream.source.is_some() && !stream.watched && (!stream.window.is_full() || stream.left_behind || self.drops_oldest(py, kind))
    }

    fn stream(&mut self, kind: StreamKind) -> &mut StreamState {
        match kind {
            StreamKind::Stdout => &mut self.stdout,
            StreamKind::Stderr => &mut self.stderr,
        }
    }
}

/// A process running in a box.
#[pyclass(module = "boxlite._native", frozen)]
pub struct Execution {
    shared: Arc<Shared>,
    event_loop: Py<PyAny>,
    id: String,
    target: OnceLock<u64>,
    control: ExecutionControl,
    io: Arc<IoCounters>,
    /// The channel of the execution's loop, which counts the streams the loop watches.
    channel: Arc<EventChannel>,
    /// The watch of the execution's loop, which reads its connection (invariant 8).
    watch: Arc<LoopWatch>,
    /// Owning the core execution keeps the process alive; dropping it kills the process group.
    owner: Mutex<Option<boxlite_core::Execution>>,
    /// `None` once closed.
    stdin: Mutex<Option<Stdin>>,
    state: Mutex<ExecState>,
    exit_claimed: Arc<AtomicBool>,
    /// The control connection while the loop reads it for the exit (invariant 8).
    replies: Mutex<Option<Replies>>,
    /// The task that waits for the exit and publishes it, when tokio learns it.
    driver: Mutex<Option<tokio::task::AbortHandle>>,
}

fn is_done(future: &Bound<'_, PyAny>) -> bool {
    future.call_method0("done").and_then(|done| done.is_truthy()).unwrap_or(true)
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[pymethods]
impl Execution {
    /// The execution's id.
    fn id(&self) -> String {
        self.id.clone()
    }

    /// Takes the stdout stream: an async iterator of `str` chunks, or of `bytes` with
    /// `text=False`. With `tty=True` the terminal's output arrives here.
    #[pyo3(signature = (*, text = true))]
    fn stdout(slf: &Bound<'_, Self>, text: bool) -> PyResult<ExecStream> {
        Self::take_stream(slf, StreamKind::Stdout, text)
    }

    #[pyo3(signature = (*, text = true))]
    fn stderr(slf: &Bound<'_, Self>, text: bool) -> PyResult<ExecStream> {
        Self::take_stream(slf, StreamKind::Stderr, text)
    }

    fn stdin(slf: &Bound<'_, Self>) -> PyResult<ExecStdin> {
        let this = slf.get();
        let mut state = locked(&this.state);
        if state.stdin_taken {
            return Err(PyRuntimeError::new_err("stdin stream not available"));
        }
        state.stdin_taken = true;
        Ok(ExecStdin { execution: slf.clone().unbind() })
    }

    /// Resolves to the `ExitStatus` once the process ended and all its output was delivered.
    /// A stream paused at its full window is read on meanwhile (invariant 6).
    fn wait<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let (py, this) = (slf.py(), slf.get());
        let known = locked(&this.state).exit.clone();
        if let Some(status) = known {
            // Known: any loop may have it.
            return Self::ready_future(py, Py::new(py, status)?.into_bound(py).into_any());
        }
        this.shared.check_open(py)?;
        let future = this.own_loop(py)?.call_method0("create_future")?;
        let arrived = {
            let mut state = locked(&this.state);
            if state.exit.is_none() {
                // Cancelled waits go, so they neither pile up nor count as waiting (invariant 6).
                state.waiters.retain(|waiter| !is_done(waiter.bind(py)));
                state.waiters.push(future.clone().unbind());
            }
            state.exit.clone()
        };
        if let Some(status) = arrived {
            set_result(&future, Py::new(py, status)?.into_bound(py).into_any())?;
            return Ok(future);
        }
        for kind in [StreamKind::Stdout, StreamKind::Stderr] {
            let paused = locked(&this.state).stream(kind).window.is_full();
            if paused {
                // A refusal ends the stream, which the exit then does not wait for.
                let _ = Self::watch(slf, kind);
            }
        }
        Ok(future)
    }

    /// SIGKILL to the process and its whole process group.
    fn kill<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check_open(py)?;
        let control = self.control.clone();
        self.shared.submit(py, async move { control.kill().await.map(Payload::from) })
    }

    /// Sends `signal` (1..=64) to the process.
    fn signal<'py>(&self, py: Python<'py>, signal: i32) -> PyResult<Bound<'py, PyAny>> {
        if !(1..=64).contains(&signal) {
            return Err(errors::invalid_argument(py, format!("signal must be between 1 and 64, got {signal}")));
        }
        self.check_open(py)?;
        let control = self.control.clone();
        self.shared.submit(py, async move { control.signal(signal).await.map(Payload::from) })
    }

    /// Sets the terminal size of a `tty=True` execution.
    fn resize_tty<'py>(&self, py: Python<'py>, rows: i64, cols: i64) -> PyResult<Bound<'py, PyAny>> {
        let (Ok(rows), Ok(cols)) = (u16::try_from(rows), u16::try_from(cols)) else {
            return Err(errors::invalid_argument(py, format!("rows and cols must be between 1 and 65535, got {rows}x{cols}")));
        };
        if rows == 0 || cols == 0 {
            return Err(errors::invalid_argument(py, format!("rows and cols must be positive, got {rows}x{cols}")));
        }
        self.check_open(py)?;
        let control = self.control.clone();
        self.shared.submit(py, async move { control.resize(rows, cols).map(Payload::from) })
    }

    /// Ends the execution now (invariants 2–4): kills its process group unless it is known to
    /// have exited. Idempotent; never blocks; callable from any thread (the exit is published
    /// on the execution's event loop).
    fn close(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        locked(&this.state).sealed = true;
        let claimed = this.exit_claimed.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok();
        let exit = claimed.then(|| {
            if let Some(driver) = locked(&this.driver).take() {
                driver.abort();
            }
            if let Some(target) = this.target.get() {
                drop(this.shared.registry.take(*target));
            }
            match this.control.try_status() {
                Some(status) => (status, false),
                None => (
                    CoreExitStatus { exit_code: -1, signal: None, timed_out: false, error: Some("the execution was closed before the process exited".to_string()) },
                    true,
                ),
            }
        });
        // Whoever claimed the exit, the streams end now: output left unread (or held open by a
        // process still running) must not keep the exit from being published.
        let execution = slf.clone().unbind();
        let end = Deferred::new(move |py| {
            let this = execution.get();
            this.unwatch_control();
            for kind in [StreamKind::Stdout, StreamKind::Stderr] {
                this.unwatch(py, kind, true);
            }
            match exit {
                Some((status, forced)) => Self::deliver_exit(execution.bind(py), status, forced),
                None => this.publish_exit_when_streams_ended(py),
            }
        });
        let _ = this.event_loop.bind(py).call_method1("call_soon_threadsafe", (end,));
        drop(locked(&this.stdin).take());
        let owner = locked(&this.owner).take();
        crate::gil::detach(py, move || drop(owner));
    }

    /// Nobody received this execution (dispatcher invariant 8): it is closed.
    fn _release(slf: &Bound<'_, Self>) {
        Self::close(slf);
    }

    fn aclose<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::close(slf);
        Self::ready_future(slf.py(), slf.py().None().into_bound(slf.py()))
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::ready_future(slf.py(), slf.clone().into_any())
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(slf: &Bound<'py, Self>, _exc: &Bound<'py, pyo3::types::PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        Self::close(slf);
        let py = slf.py();
        Self::ready_future(py, false.into_pyobject(py)?.to_owned().into_any())
    }

    fn __repr__(&self) -> String {
        format!("Execution(id={:?})", self.id)
    }
}

impl Execution {
    /// The exit has arrived but waits for the end of the output to be published (testing).
    #[cfg(feature = "testing")]
    pub fn exit_withheld(&self) -> bool {
        locked(&self.state).arrived_exit.is_some()
    }

    /// Reading of stdout is paused at its full window (testing).
    #[cfg(feature = "testing")]
    pub fn stdout_paused(&self) -> bool {
        let state = locked(&self.state);
        state.stdout.window.is_full() && !state.stdout.watched
    }

    /// Wraps a started core execution, registers it for its exit, puts its output streams on
    /// the loop (invariant 7), and has the loop read its control connection (invariant 8) or,
    /// for a followed main process, starts its driver, which waits for the exit.
    /// `reader`: the loop's reader of the execution's connection, if it watched the request.
    pub fn attach(py: Python<'_>, shared: &Arc<Shared>, event_loop: &Bound<'_, PyAny>, mut core: boxlite_core::Execution, reader: Option<&Arc<ControlReadable>>) -> PyResult<Py<Self>> {
        let control = core.control();
        let mut state = ExecState::default();
        for (stream, source) in [(&mut state.stdout, core.stdout.take()), (&mut state.stderr, core.stderr.take())] {
            stream.ended = source.is_none();
            stream.source = source;
        }
        let stdin = core.stdin.take().map(Stdin::Idle);
        let replies = core.replies.take();
        let io = Arc::clone(&core.io);
        let (channel, watch) = shared.channel_and_watch(event_loop)?;
        let execution = Py::new(
            py,
            Self {
                channel: Arc::clone(&channel),
                watch,
                shared: Arc::clone(shared),
                event_loop: event_loop.clone().unbind(),
                id: core.id.clone(),
                target: OnceLock::new(),
                control: control.clone(),
                io,
                owner: Mutex::new(Some(core)),
                stdin: Mutex::new(stdin),
                state: Mutex::new(state),
                exit_claimed: Arc::new(AtomicBool::new(false)),
                replies: Mutex::new(None),
                driver: Mutex::new(None),
            },
        )?;
        let slot = Slot::Listener { listener: Arc::new(execution.clone_ref(py)), event_loop: event_loop.clone().unbind() };
        let target = shared.registry.register(slot).map_err(|_| errors::runtime_closed(py))?;
        let _ = execution.get().target.set(target);
        let this = execution.get();
        match replies {
            Some(replies) => {
                let raw = replies.raw();
                *locked(&this.replies) = Some(replies);
                let watched = match reader {
                    Some(reader) => {
                        *locked(&reader.phase) = Phase::Running(execution.clone_ref(py));
                        Ok(())
                    }
                    None => ControlReadable::watch_running(execution.bind(py), raw),
                };
                if let Err(error) = watched {
                    drop(locked(&this.replies).take());
                    drop(shared.registry.take(target));
                    return Err(error);
                }
                // The exit of a short command is often there already.
                Self::read_control(execution.bind(py));
            }
            None => {
                let claimed = Arc::clone(&this.exit_claimed);
                // Started here: its first step only subscribes to the exit, and needs no worker
                // to wake.
                let driver = shared.tasks.spawn_started(async move {
                    let status = control.wait().await;
                    if claimed.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        channel.push(Event::Exit { target, status }).await;
                    }
                });
                *locked(&this.driver) = driver;
            }
        }
        // The streams are watched when someone reads them, when the exit arrives, or after
        // WATCH_DELAY, whichever comes first: a short command's output is read once, at its
        // exit, without the loop watching its pipes (invariant 7).
        if !this.exit_claimed.load(Ordering::Acquire) {
            event_loop.call_method1("call_later", (WATCH_DELAY.as_secs_f64(), WatchStreams { execution: execution.clone_ref(py) }))?;
        }
        Ok(execution)
    }

    /// The exit arrived (or `close()` forced one, after ending the streams): it is published
    /// once both streams ended (invariant 3).
    pub fn deliver_exit(slf: &Bound<'_, Self>, status: CoreExitStatus, forced: bool) {
        let (py, this) = (slf.py(), slf.get());
        let mut status = ExitStatus::from(status);
        status.forced = forced;
        {
            let mut state = locked(&this.state);
            if state.exit.is_none() && state.arrived_exit.is_none() {
                state.arrived_exit = Some(status);
            }
        }
        for kind in [StreamKind::Stdout, StreamKind::Stderr] {
            Self::read_after_exit(slf, kind);
        }
        this.publish_exit_when_streams_ended(py);
        if locked(&this.state).arrived_exit.is_some() && !this.control.pipes_written_here() {
            let end = EndLeftBehind { execution: slf.clone().unbind() };
            let _ = this.event_loop.bind(py).call_method1("call_later", (LEFT_BEHIND_AFTER.as_secs_f64(), end));
        }
    }

    /// Publishes the one exit (invariant 2), if it arrived and both streams ended; the
    /// execution's slot goes with it, or once a process left behind lets go of its streams.
    fn publish_exit_when_streams_ended(&self, py: Python<'_>) {
        let mut resolutions = Vec::new();
        let (status, waiters) = {
            let mut state = locked(&self.state);
            if !(state.stdout.ended && state.stderr.ended) {
                return;
            }
            let Some(status) = state.arrived_exit.take() else {
                drop(state);
                self.release_when_drained();
                return;
            };
            state.exit = Some(status.clone());
            let dropped = (state.stdout.window.dropped(), state.stderr.window.dropped());
            if dropped != (0, 0) {
                log::warn!(
                    target: "boxlite",
                    "execution {}: {} bytes of stdout and {} of stderr were dropped, unread while its exit was awaited; the newest {} MiB of each were kept",
                    self.id,
                    dropped.0,
                    dropped.1,
                    STREAM_WINDOW >> 20
                );
            }
            for kind in [StreamKind::Stdout, StreamKind::Stderr] {
                resolutions.extend(state.stream(kind).wake(py));
            }
            (status, std::mem::take(&mut state.waiters))
        };
        self.release_when_drained();
        resolve_all(py, resolutions);
        for waiter in waiters {
            if let Ok(value) = Py::new(py, status.clone()) {
                let _ = set_result(waiter.bind(py), value.into_bound(py).into_any());
            }
        }
    }

    /// The execution's slot goes once its exit is published and no stream is read any more:
    /// until then a runtime that closes ends the streams a process left behind still holds
    /// (`fail_closed`, invariant 3).
    fn release_when_drained(&self) {
        let drained = {
            let state = locked(&self.state);
            state.exit.is_some() && state.stdout.source.is_none() && state.stderr.source.is_none()
        };
        if let (true, Some(target)) = (drained, self.target.get()) {
            drop(self.shared.registry.take(*target));
        }
    }

    /// The runtime closed (or the execution's loop did): every pending wait and read fails with
    /// RuntimeClosedError, and the process group is killed.
    pub fn fail_closed(&self, py: Python<'_>) {
        // The exit is never published now: a later close() must not publish the status left by
        // letting go of the connection.
        self.exit_claimed.store(true, Ordering::Release);
        self.unwatch_control();
        for kind in [StreamKind::Stdout, StreamKind::Stderr] {
            self.unwatch(py, kind, true);
        }
        let pending: Vec<Py<PyAny>> = {
            let mut state = locked(&self.state);
            state.sealed = true;
            state.arrived_exit = None;
            let mut pending = std::mem::take(&mut state.waiters);
            pending.extend(state.stdout.waiter.take());
            pending.extend(state.stderr.waiter.take());
            pending
        };
        for future in pending {
            let _ = set_exception(py, future.bind(py), errors::runtime_closed(py));
        }
        if let Some(target) = self.target.get() {
            drop(self.shared.registry.take(*target));
        }
        let owner = locked(&self.owner).take();
        crate::gil::detach(py, move || drop(owner));
    }

    fn ready_future<'py>(py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let future = running_loop(py)?.call_method0("create_future")?;
        future.call_method1("set_result", (value,))?;
        Ok(future)
    }

    /// The running loop, when it is the execution's own: its output and exit are handed over
    /// on that loop's thread, so waiting or reading from another loop is refused.
    fn own_loop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let running = running_loop(py)?;
        if !running.is(self.event_loop.bind(py)) {
            return Err(errors::invalid_state(py, format!("execution {} belongs to the event loop that started it: wait for it and read its output there", self.id)));
        }
        Ok(running)
    }

    fn check_open(&self, py: Python<'_>) -> PyResult<()> {
        self.shared.check_open(py)?;
        if locked(&self.state).sealed {
            return Err(errors::invalid_state(py, "the execution was closed"));
        }
        Ok(())
    }
}

/// The execution's slot in the registry: it receives the exit, or the close (rules 14, 16).
impl Listener for Py<Execution> {
    fn exit(&self, py: Python<'_>, status: CoreExitStatus) {
        Execution::deliver_exit(self.bind(py), status, false);
    }

    fn closed(&self, py: Python<'_>) {
        self.get().fail_closed(py);
    }
}

/// `exec()` and `attach()` resolve to an `Execution`, once its request was answered (when the
/// answer did not come through the loop's watch, see `control`).
impl Deliver for boxlite_core::Execution {
    fn into_python<'py>(self: Box<Self>, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        Ok(Execution::attach(event_loop.py(), shared, event_loop, *self, None)?.into_bound(event_loop.py()).into_any())
    }
}
