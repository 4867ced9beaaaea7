//! Executions as Python sees them: output streams as async iterators (bytes, or text decoded at
//! this edge), stdin, `wait()`, signals, terminal size, and close.
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
//!    itself, so none can be registered late. A forced close stops the streams first.
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use boxlite_core::exec::{Answer, AsyncDescriptor, IoCounters, Replies, Requested, CHUNK_SIZE, EXEC_ANSWER_LIMIT};
use boxlite_core::{ExecutionControl, ExitStatus as CoreExitStatus};
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use tokio::sync::{mpsc, oneshot};

use crate::channel::Channel;
use crate::dispatcher::{running_loop, set_exception, set_result, Deferred, Registered, Shared, Slot};
use crate::errors;
use crate::event::{Event, Payload};
use crate::watch::LoopWatch;

/// Where `send_input` puts data for the stdin writer task, with the sender of its outcome.
type StdinSender = mpsc::UnboundedSender<(Vec<u8>, oneshot::Sender<std::io::Result<()>>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// Output a stream may hold that the user has not taken yet.
pub const STREAM_WINDOW: usize = 8 << 20;

/// How a process ended.
#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct ExitStatus {
    /// The exit code, or -N when signal N ended the process.
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// Set when the outcome did not come from the process itself.
    pub error_message: Option<String>,
    /// The execution's timeout ended it.
    pub timed_out: bool,
    /// `close()` ended the execution before its exit was known.
    pub forced: bool,
}

#[pymethods]
impl ExitStatus {
    #[getter]
    fn success(&self) -> bool {
        self.exit_code == 0 && self.error_message.is_none()
    }

    fn __repr__(&self) -> String {
        format!(
            "ExitStatus(exit_code={}, signal={}, timed_out={}, forced={}, error_message={})",
            self.exit_code,
            self.signal.map_or_else(|| "None".to_string(), |signal| signal.to_string()),
            if self.timed_out { "True" } else { "False" },
            if self.forced { "True" } else { "False" },
            self.error_message.as_ref().map_or_else(|| "None".to_string(), |message| format!("{message:?}")),
        )
    }
}

impl From<CoreExitStatus> for ExitStatus {
    fn from(status: CoreExitStatus) -> Self {
        Self { exit_code: status.exit_code, signal: status.signal, error_message: status.error, timed_out: status.timed_out, forced: false }
    }
}

/// Incremental UTF-8 decoding (invariant 1).
#[derive(Default)]
struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    fn decode(&mut self, bytes: &[u8], last: bool) -> String {
        self.pending.extend_from_slice(bytes);
        let mut text = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match error.error_len() {
                        Some(length) => {
                            text.push('\u{FFFD}');
                            rest = &after[length..];
                        }
                        None if last => {
                            text.push('\u{FFFD}');
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        text
    }
}

#[derive(Default)]
struct StreamState {
    buffer: VecDeque<Vec<u8>>,
    /// Bytes in `buffer` (invariant 6).
    buffered: usize,
    /// The pipe (or terminal) the output comes from, until its end.
    source: Option<OwnedFd>,
    /// Whether the loop watches `source` (invariant 7).
    watched: bool,
    /// Whether `source` got the room of a stream (it does on its first watch).
    enlarged: bool,
    ended: bool,
    /// Output dropped to keep reading while the exit was awaited (invariant 6).
    dropped: u64,
    waiter: Option<Py<PyAny>>,
    /// `None` until the user takes the stream; then whether it yields text.
    text: Option<bool>,
    decoder: Utf8Decoder,
}

/// A parked reader to resolve once no lock is held: with an item, or with end of stream.
struct Resolution {
    waiter: Py<PyAny>,
    item: Option<Py<PyAny>>,
}

/// Resolves readers outside the state lock: resolving runs Python code.
fn resolve_all(py: Python<'_>, resolutions: impl IntoIterator<Item = Resolution>) {
    for Resolution { waiter, item } in resolutions {
        let waiter = waiter.bind(py);
        let _ = match item {
            Some(item) => set_result(waiter, item.into_bound(py)),
            None => set_exception(py, waiter, PyStopAsyncIteration::new_err(())),
        };
    }
}

impl StreamState {
    /// Hands the next item to a parked reader, if there is one and an item (or the end) is
    /// ready. A reader that was cancelled is dropped without consuming anything.
    fn wake(&mut self, py: Python<'_>) -> Option<Resolution> {
        let waiter = self.live_waiter(py)?;
        match self.next_item(py) {
            Some(item) => Some(Resolution { waiter, item: Some(item) }),
            None if self.ended => Some(Resolution { waiter, item: None }),
            None => {
                self.waiter = Some(waiter);
                None
            }
        }
    }

    /// The parked reader, unless it was cancelled (then it is dropped).
    fn live_waiter(&mut self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.waiter.take().filter(|waiter| !is_done(waiter.bind(py)))
    }

    /// Drops the oldest output until the window has room again (invariant 6).
    fn make_room(&mut self) {
        while self.buffered >= STREAM_WINDOW {
            let Some(chunk) = self.buffer.pop_front() else { break };
            self.buffered -= chunk.len();
            self.dropped += chunk.len() as u64;
        }
    }

    /// Turns raw chunks into the next item for the user, if one is ready. Text mode skips
    /// chunks that decode to nothing (half a character).
    fn next_item(&mut self, py: Python<'_>) -> Option<Py<PyAny>> {
        while let Some(chunk) = self.buffer.pop_front() {
            self.buffered -= chunk.len();
            if let Some(item) = self.item(py, &chunk, false) {
                return Some(item);
            }
        }
        if self.ended {
            return self.item(py, &[], true);
        }
        None
    }

    fn item(&mut self, py: Python<'_>, chunk: &[u8], last: bool) -> Option<Py<PyAny>> {
        if self.text == Some(true) {
            let text = self.decoder.decode(chunk, last);
            return (!text.is_empty()).then(|| PyString::new(py, &text).into_any().unbind());
        }
        (!chunk.is_empty()).then(|| PyBytes::new(py, chunk).into_any().unbind())
    }
}

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
        stream.source.is_some() && !stream.watched && (stream.buffered < STREAM_WINDOW || self.drops_oldest(py, kind))
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
    channel: Arc<Channel>,
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

thread_local! {
    /// Where a loop thread reads output into before copying it into a Python object: reused,
    /// so reading costs no allocation and no page faults (invariant 7).
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; CHUNK_SIZE]);
}

/// How long an execution's streams may go unwatched while nobody reads them (invariant 7):
/// a process that fills its pipe meanwhile waits at most this long.
const WATCH_DELAY: std::time::Duration = std::time::Duration::from_millis(2);
/// Reads of a stream made at once when the exit arrives, before watching it instead.
const AFTER_EXIT_READS: usize = 2;

/// Output one turn of a loop reads at most, about (invariant 7).
const READ_BUDGET: usize = 1 << 20;
/// The smallest read, however many streams a loop watches.
const MIN_READ: usize = 16 << 10;

/// What one read of a stream did to it.
enum Found {
    /// Output, delivered or buffered.
    Output,
    /// Output, and the stream's window is full: reading paused.
    Full,
    /// The end of the stream.
    End,
    /// Nothing yet.
    Nothing,
}

/// How a read of a stream's source went.
enum Read {
    Data(usize),
    End,
    NotYet,
}

fn read_into(fd: RawFd, buffer: &mut [u8]) -> Read {
    // SAFETY: reads at most `buffer.len()` bytes into memory we own.
    let count = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
    if count > 0 {
        return Read::Data(count as usize);
    }
    if count == 0 {
        return Read::End;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN | libc::EINTR) => Read::NotYet,
        // A terminal reports EIO once its last process has gone; any other error ends the
        // stream too.
        _ => Read::End,
    }
}

/// The process's stdin: its pipe until the first write, then the writer task that owns it
/// (which makes the pipe async only then).
enum Stdin {
    Idle(OwnedFd),
    Writing(StdinSender),
}

fn is_done(future: &Bound<'_, PyAny>) -> bool {
    future.call_method0("done").and_then(|done| done.is_truthy()).unwrap_or(true)
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        state.stdout.buffered >= STREAM_WINDOW && !state.stdout.watched
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
        let slot = Slot::Execution { execution: execution.clone_ref(py), event_loop: event_loop.clone().unbind() };
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

    /// The loop found the control connection readable (invariant 8): takes in what arrived,
    /// and once that is the exit, stops watching and delivers it, unless `close()` claimed it.
    fn read_control(slf: &Bound<'_, Self>) {
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
    fn unwatch_control(&self) {
        let replies = locked(&self.replies).take();
        if let Some(replies) = replies {
            self.watch.remove(replies.raw());
        }
    }

    /// Has the loop watch a stream's source, unless it does already or the stream is paused or
    /// over (invariants 6 and 7).
    /// If the loop refuses, the stream ends (so the exit can still be published) and the error
    /// is returned.
    fn watch(slf: &Bound<'_, Self>, kind: StreamKind) -> PyResult<()> {
        let this = slf.get();
        let fd = {
            let mut state = locked(&this.state);
            if !state.wants_reading(slf.py(), kind) {
                return Ok(());
            }
            let stream = state.stream(kind);
            let source = stream.source.as_ref();
            if !std::mem::replace(&mut stream.enlarged, true) {
                source.inspect(|pipe| boxlite_core::exec::enlarge_pipe(pipe));
            }
            source.map(AsRawFd::as_raw_fd)
        };
        let readable = StreamReadable { execution: slf.clone().unbind(), kind };
        match this.event_loop.bind(slf.py()).call_method1("add_reader", (fd, readable)) {
            Ok(_) => {
                locked(&this.state).stream(kind).watched = true;
                this.channel.streams_watched.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                this.unwatch(slf.py(), kind, true);
                this.publish_exit_when_streams_ended(slf.py());
                Err(error)
            }
        }
    }

    /// Takes a stream's reader off the loop; with `close`, also ends the stream and closes its
    /// source, after the reader is gone (invariant 7).
    fn unwatch(&self, py: Python<'_>, kind: StreamKind, close: bool) {
        let (fd, watched, source) = {
            let mut state = locked(&self.state);
            let stream = state.stream(kind);
            let fd = stream.source.as_ref().map(AsRawFd::as_raw_fd);
            let watched = std::mem::take(&mut stream.watched);
            let source = if close {
                stream.ended = true;
                stream.source.take()
            } else {
                None
            };
            (fd, watched, source)
        };
        if let (Some(fd), true) = (fd, watched) {
            self.channel.streams_watched.fetch_sub(1, Ordering::Relaxed);
            let _ = self.event_loop.bind(py).call_method1("remove_reader", (fd,));
        }
        drop(source);
    }

    /// The loop found a stream's source readable (invariant 7).
    fn on_readable(slf: &Bound<'_, Self>, kind: StreamKind) {
        slf.get().read_once(slf.py(), kind);
    }

    /// One read of a stream's source: handed to a parked reader at once or buffered; at the
    /// window reading pauses (invariant 6), at the end the stream ends. Returns what the read
    /// found.
    fn read_once(&self, py: Python<'_>, kind: StreamKind) -> Found {
        let mut found = Found::Nothing;
        let resolution = READ_BUFFER.with_borrow_mut(|buffer| {
            let mut state = locked(&self.state);
            let sealed = state.sealed;
            let fd = state.stream(kind).source.as_ref()?.as_raw_fd();
            // One read is smaller the more streams the loop watches, so that one turn of the
            // loop, which may find them all readable, copies about READ_BUDGET in all.
            let watched = self.channel.streams_watched.load(Ordering::Relaxed);
            let size = (READ_BUDGET / watched.max(1)).clamp(MIN_READ, buffer.len());
            match read_into(fd, &mut buffer[..size]) {
                Read::NotYet => None,
                Read::End => {
                    found = Found::End;
                    None
                }
                Read::Data(count) => {
                    self.io.received.fetch_add(count as u64, Ordering::Relaxed);
                    found = Found::Output;
                    let data = &buffer[..count];
                    if sealed {
                        return None;
                    }
                    // Asked only when this read fills the window: it calls into Python.
                    let drops_oldest = state.stream(kind).buffered + count >= STREAM_WINDOW && state.drops_oldest(py, kind);
                    let stream = state.stream(kind);
                    if stream.buffer.is_empty() {
                        if let Some(waiter) = stream.live_waiter(py) {
                            // The common case: someone waits, so the bytes go straight to them.
                            match stream.item(py, data, false) {
                                Some(item) => return Some(Resolution { waiter, item: Some(item) }),
                                None => {
                                    stream.waiter = Some(waiter); // half a character so far
                                    return None;
                                }
                            }
                        }
                    }
                    stream.buffer.push_back(data.to_vec());
                    stream.buffered += count;
                    if stream.buffered >= STREAM_WINDOW {
                        if drops_oldest {
                            stream.make_room();
                        } else {
                            found = Found::Full;
                        }
                    }
                    stream.wake(py)
                }
            }
        });
        match found {
            Found::End => {
                self.unwatch(py, kind, true);
                let resolution = locked(&self.state).stream(kind).wake(py);
                resolve_all(py, resolution);
                self.publish_exit_when_streams_ended(py);
            }
            Found::Full => self.unwatch(py, kind, false),
            Found::Output | Found::Nothing => {}
        }
        resolve_all(py, resolution);
        found
    }

    /// The exit arrived while a stream is not watched: what the process left in the pipe is
    /// read now, and the loop watches the stream only if more may come (a process it left
    /// behind holds the pipe).
    fn read_after_exit(slf: &Bound<'_, Self>, kind: StreamKind) {
        let this = slf.get();
        let mut read = 0;
        loop {
            let wants_reading = locked(&this.state).wants_reading(slf.py(), kind);
            if !wants_reading {
                return;
            }
            match this.read_once(slf.py(), kind) {
                Found::End | Found::Full => return,
                Found::Output if read + 1 < AFTER_EXIT_READS => read += 1,
                Found::Output | Found::Nothing => {
                    let _ = Self::watch(slf, kind);
                    return;
                }
            }
        }
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
    }

    /// Publishes the one exit (invariant 2), if it arrived and both streams ended; the
    /// execution's slot goes with it.
    fn publish_exit_when_streams_ended(&self, py: Python<'_>) {
        let mut resolutions = Vec::new();
        let (status, waiters) = {
            let mut state = locked(&self.state);
            if !(state.stdout.ended && state.stderr.ended) {
                return;
            }
            let Some(status) = state.arrived_exit.take() else { return };
            state.exit = Some(status.clone());
            let dropped = (state.stdout.dropped, state.stderr.dropped);
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
        if let Some(target) = self.target.get() {
            drop(self.shared.registry.take(*target));
        }
        resolve_all(py, resolutions);
        for waiter in waiters {
            if let Ok(value) = Py::new(py, status.clone()) {
                let _ = set_result(waiter.bind(py), value.into_bound(py).into_any());
            }
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

    fn take_stream(slf: &Bound<'_, Self>, kind: StreamKind, text: bool) -> PyResult<ExecStream> {
        let this = slf.get();
        let mut state = locked(&this.state);
        let stream = state.stream(kind);
        if stream.text.is_some() {
            let name = match kind {
                StreamKind::Stdout => "stdout",
                StreamKind::Stderr => "stderr",
            };
            return Err(PyRuntimeError::new_err(format!("{name} stream not available")));
        }
        stream.text = Some(text);
        Ok(ExecStream { execution: slf.clone().unbind(), kind })
    }

    /// The stdin writer task's sender, starting the task on the first write. Writes keep their
    /// order: they queue on one task.
    fn stdin_writer(&self, py: Python<'_>) -> PyResult<StdinSender> {
        let mut stdin = locked(&self.stdin);
        match stdin.take() {
            None => Err(errors::invalid_state(py, "stdin is closed")),
            Some(Stdin::Writing(sender)) => {
                *stdin = Some(Stdin::Writing(sender.clone()));
                Ok(sender)
            }
            Some(Stdin::Idle(pipe)) => {
                let (sender, mut receiver) = mpsc::unbounded_channel::<(Vec<u8>, oneshot::Sender<std::io::Result<()>>)>();
                let io = Arc::clone(&self.io);
                self.shared.spawn(async move {
                    let descriptor = match AsyncDescriptor::new(pipe) {
                        Ok(descriptor) => descriptor,
                        Err(error) => {
                            while let Some((_, done)) = receiver.recv().await {
                                let _ = done.send(Err(std::io::Error::new(error.kind(), error.to_string())));
                            }
                            return;
                        }
                    };
                    while let Some((data, done)) = receiver.recv().await {
                        let written = descriptor.write_all(&data).await;
                        if written.is_ok() {
                            io.sent.fetch_add(data.len() as u64, Ordering::Relaxed);
                        }
                        let _ = done.send(written);
                    }
                });
                *stdin = Some(Stdin::Writing(sender.clone()));
                Ok(sender)
            }
        }
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
            let paused = locked(&this.state).stream(kind).buffered >= STREAM_WINDOW;
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
        self.shared.submit(py, async move { control.kill().await.map(|()| Payload::Unit) })
    }

    /// Sends `signal` (1..=64) to the process.
    fn signal<'py>(&self, py: Python<'py>, signal: i32) -> PyResult<Bound<'py, PyAny>> {
        if !(1..=64).contains(&signal) {
            return Err(errors::invalid_argument(py, format!("signal must be between 1 and 64, got {signal}")));
        }
        self.check_open(py)?;
        let control = self.control.clone();
        self.shared.submit(py, async move { control.signal(signal).await.map(|()| Payload::Unit) })
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
        self.shared.submit(py, async move { control.resize(rows, cols).map(|()| Payload::Unit) })
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

/// What the loop calls WATCH_DELAY after an execution started (invariant 7).
#[pyclass(module = "boxlite._native", frozen)]
pub struct WatchStreams {
    execution: Py<Execution>,
}

#[pymethods]
impl WatchStreams {
    fn __call__(&self, py: Python<'_>) {
        for kind in [StreamKind::Stdout, StreamKind::Stderr] {
            let _ = Execution::watch(self.execution.bind(py), kind);
        }
    }
}

/// What an execution's connection is watched for (invariant 8).
enum Phase {
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
    shared: Weak<Shared>,
    watch: Arc<LoopWatch>,
    raw: RawFd,
    phase: Mutex<Phase>,
}

impl ControlReadable {
    fn send_and_watch(py: Python<'_>, shared: &Arc<Shared>, registered: Registered<'_>, mut requested: Requested) -> PyResult<()> {
        let Registered { target, future, event_loop, channel, watch } = registered;
        let raw = requested.raw();
        let reader = Arc::new(Self { shared: Arc::downgrade(shared), watch: Arc::clone(&watch), raw, phase: Mutex::new(Phase::Done) });
        let watched = watch.add(raw, Arc::clone(&reader)).map_err(PyErr::from).and_then(|()| {
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
                shared.complete_with(target, channel, async move { requested.run().await.map(Payload::Execution) });
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
    fn watch_running(execution: &Bound<'_, Execution>, raw: RawFd) -> PyResult<()> {
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

    /// The loop will not call this reader again (it was closed, or the runtime was): a request
    /// that got no answer is let go, and an execution that runs is ended, as asyncio ends the
    /// subprocesses of a transport it closes.
    pub fn let_go(&self, py: Python<'_>) {
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

    /// No answer within the limit: the request fails, and its connection goes.
    fn overdue(&self, py: Python<'_>) {
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

    fn unwatch(&self) {
        self.watch.remove(self.raw);
    }

    /// The watch found the connection readable.
    pub fn on_readable(self: &Arc<Self>, py: Python<'_>) {
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

    /// The answer arrived: the request resolves to the execution, whose exit this reader
    /// watches for next; or to the error, and the connection leaves the watch.
    fn answered(self: &Arc<Self>, py: Python<'_>, shared: &Arc<Shared>, target: u64, answer: Result<boxlite_core::Execution, boxlite_core::Error>) {
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
        Err(rest) => shared.complete_with(registered.target, registered.channel, async move { rest.await?.run().await.map(Payload::Execution) }),
    }
    Ok(future)
}

/// What the loop calls when a stream's source is readable (invariant 7).
#[pyclass(module = "boxlite._native", frozen)]
pub struct StreamReadable {
    execution: Py<Execution>,
    kind: StreamKind,
}

#[pymethods]
impl StreamReadable {
    fn __call__(&self, py: Python<'_>) {
        Execution::on_readable(self.execution.bind(py), self.kind);
    }
}

/// One output stream of an execution: `async for chunk in stream`.
#[pyclass(module = "boxlite._native", frozen)]
pub struct ExecStream {
    execution: Py<Execution>,
    kind: StreamKind,
}

#[pymethods]
impl ExecStream {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let execution = self.execution.get();
        let event_loop = execution.own_loop(py)?;
        {
            let mut state = locked(&execution.state);
            let sealed = state.sealed;
            let stream = state.stream(self.kind);
            if let Some(item) = stream.next_item(py) {
                drop(state);
                // Taking output may make room to read more (invariant 6). A refusal ends the
                // stream; the item is the user's either way.
                let _ = Execution::watch(self.execution.bind(py), self.kind);
                return Execution::ready_future(py, item.into_bound(py));
            }
            if stream.ended || sealed {
                return Err(PyStopAsyncIteration::new_err(()));
            }
            if stream.waiter.as_ref().is_some_and(|waiter| !is_done(waiter.bind(py))) {
                return Err(PyRuntimeError::new_err("another task is already reading this stream"));
            }
        }
        execution.shared.check_open(py)?;
        let future = event_loop.call_method0("create_future")?;
        let resolution = {
            let mut state = locked(&execution.state);
            let stream = state.stream(self.kind);
            stream.waiter = Some(future.clone().unbind());
            // Output may have arrived while the future was being made.
            stream.wake(py)
        };
        resolve_all(py, resolution);
        Execution::watch(self.execution.bind(py), self.kind)?;
        Ok(future)
    }
}

/// The process's standard input.
#[pyclass(module = "boxlite._native", frozen)]
pub struct ExecStdin {
    execution: Py<Execution>,
}

#[pymethods]
impl ExecStdin {
    /// Writes `data`; resolves once the process's pipe took all of it. Writes keep their order.
    fn send_input<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let execution = self.execution.get();
        execution.check_open(py)?;
        let sender = execution.stdin_writer(py)?;
        let (done, written) = oneshot::channel();
        sender.send((data.to_vec(), done)).map_err(|_| errors::invalid_state(py, "stdin is closed"))?;
        execution.shared.submit(py, async move {
            match written.await {
                Ok(Ok(())) => Ok(Payload::Unit),
                Ok(Err(error)) => Err(boxlite_core::Error::Execution(format!("failed to write to stdin: {error}"))),
                Err(_) => Err(boxlite_core::Error::InvalidState("stdin is closed".to_string())),
            }
        })
    }

    /// Closes stdin: the process reads end of file once earlier writes are in. Idempotent.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        drop(locked(&self.execution.get().stdin).take());
        Execution::ready_future(py, py.None().into_bound(py))
    }

    fn is_closed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let closed = locked(&self.execution.get().stdin).is_none();
        Execution::ready_future(py, closed.into_pyobject(py)?.to_owned().into_any())
    }
}
