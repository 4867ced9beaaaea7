//! An execution's output streams: their state and flow control (invariant 6), their reading
//! by the event loop (invariant 7), and the async iterators the user reads them with.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;

use boxlite_core::exec::CHUNK_SIZE;
use boxlite_core::ParentOnly;
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::asyncio::{set_exception, set_result};

use super::{is_done, locked, Execution, Utf8Decoder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// Output a stream may hold that the user has not taken yet.
pub const STREAM_WINDOW: usize = 8 << 20;

/// Output read from a stream that the user has not taken yet (invariant 6): its chunks in
/// order, how many bytes they hold, and how many were dropped to keep reading.
#[derive(Default)]
pub(super) struct Window {
    chunks: VecDeque<Vec<u8>>,
    held: usize,
    dropped: u64,
}

impl Window {
    pub(super) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Whether reading should pause (or make room).
    pub(super) fn is_full(&self) -> bool {
        self.held >= STREAM_WINDOW
    }

    /// Whether `count` more bytes would fill it.
    pub(super) fn fills_with(&self, count: usize) -> bool {
        self.held + count >= STREAM_WINDOW
    }

    pub(super) fn push(&mut self, data: &[u8]) {
        self.held += data.len();
        self.chunks.push_back(data.to_vec());
    }

    pub(super) fn pop(&mut self) -> Option<Vec<u8>> {
        let chunk = self.chunks.pop_front()?;
        self.held -= chunk.len();
        Some(chunk)
    }

    /// Drops the oldest output until there is room again.
    pub(super) fn make_room(&mut self) {
        while self.is_full() {
            let Some(chunk) = self.pop() else { break };
            self.dropped += chunk.len() as u64;
        }
    }

    /// Bytes dropped by [`Window::make_room`] so far.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[derive(Default)]
pub(super) struct StreamState {
    pub(super) window: Window,
    /// The pipe (or terminal) the output comes from, until its end.
    pub(super) source: Option<ParentOnly<OwnedFd>>,
    /// Whether the loop watches `source` (invariant 7).
    pub(super) watched: bool,
    /// Whether `source` got the room of a stream (it does on its first watch).
    pub(super) enlarged: bool,
    pub(super) ended: bool,
    /// The stream ended for its reader while a process the execution's process left behind
    /// still holds `source`: what that process writes is read and dropped (invariant 3).
    pub(super) left_behind: bool,
    pub(super) waiter: Option<Py<PyAny>>,
    /// `None` until the user takes the stream; then whether it yields text.
    pub(super) text: Option<bool>,
    pub(super) decoder: Utf8Decoder,
}

/// A parked reader to resolve once no lock is held: with an item, or with end of stream.
pub(super) struct Resolution {
    pub(super) waiter: Py<PyAny>,
    pub(super) item: Option<Py<PyAny>>,
}

/// Resolves readers outside the state lock: resolving runs Python code.
pub(super) fn resolve_all(py: Python<'_>, resolutions: impl IntoIterator<Item = Resolution>) {
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
    pub(super) fn wake(&mut self, py: Python<'_>) -> Option<Resolution> {
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
    pub(super) fn live_waiter(&mut self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.waiter.take().filter(|waiter| !is_done(waiter.bind(py)))
    }

    /// Turns raw chunks into the next item for the user, if one is ready. Text mode skips
    /// chunks that decode to nothing (half a character).
    pub(super) fn next_item(&mut self, py: Python<'_>) -> Option<Py<PyAny>> {
        while let Some(chunk) = self.window.pop() {
            if let Some(item) = self.item(py, &chunk, false) {
                return Some(item);
            }
        }
        if self.ended {
            return self.item(py, &[], true);
        }
        None
    }

    pub(super) fn item(&mut self, py: Python<'_>, chunk: &[u8], last: bool) -> Option<Py<PyAny>> {
        if self.text == Some(true) {
            let text = self.decoder.decode(chunk, last);
            return (!text.is_empty()).then(|| PyString::new(py, &text).into_any().unbind());
        }
        (!chunk.is_empty()).then(|| PyBytes::new(py, chunk).into_any().unbind())
    }
}

thread_local! {
    /// Where a loop thread reads output into before copying it into a Python object: reused,
    /// so reading costs no allocation and no page faults (invariant 7).
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; CHUNK_SIZE]);
}

/// How long an execution's streams may go unwatched while nobody reads them (invariant 7):
/// a process that fills its pipe meanwhile waits at most this long.
pub(super) const WATCH_DELAY: std::time::Duration = std::time::Duration::from_millis(2);

/// Reads of a stream made at once when the exit arrives, before watching it instead.
pub(super) const AFTER_EXIT_READS: usize = 2;

/// How long after the exit a stream may stay open before it is taken to be held by a process
/// the execution's process left behind (invariant 3).
pub(super) const LEFT_BEHIND_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// Most reads of a left-behind stream before it ends: more than a pipe's (or a terminal's
/// buffers') content takes, read MIN_READ or more (a terminal: its 4 KiB) at a time.
const LEFT_BEHIND_READS: usize = 1024;

/// Output one turn of a loop reads at most, about (invariant 7).
pub(super) const READ_BUDGET: usize = 1 << 20;

/// The smallest read, however many streams a loop watches.
pub(super) const MIN_READ: usize = 16 << 10;

/// What one read of a stream did to it.
pub(super) enum Found {
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
pub(super) enum Read {
    Data(usize),
    End,
    NotYet,
}

pub(super) fn read_into(fd: RawFd, buffer: &mut [u8]) -> Read {
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

/// What the loop calls LEFT_BEHIND_AFTER the exit arrived with a stream still open.
#[pyclass(module = "boxlite._native", frozen)]
pub struct EndLeftBehind {
    pub(super) execution: Py<Execution>,
}

#[pymethods]
impl EndLeftBehind {
    fn __call__(&self, py: Python<'_>) {
        let execution = self.execution.bind(py);
        for kind in [StreamKind::Stdout, StreamKind::Stderr] {
            Execution::end_left_behind(execution, kind);
        }
        execution.get().publish_exit_when_streams_ended(py);
    }
}

/// What the loop calls WATCH_DELAY after an execution started (invariant 7).
#[pyclass(module = "boxlite._native", frozen)]
pub struct WatchStreams {
    pub(super) execution: Py<Execution>,
}

#[pymethods]
impl WatchStreams {
    fn __call__(&self, py: Python<'_>) {
        for kind in [StreamKind::Stdout, StreamKind::Stderr] {
            let _ = Execution::watch(self.execution.bind(py), kind);
        }
    }
}

/// What the loop calls when a stream's source is readable (invariant 7).
#[pyclass(module = "boxlite._native", frozen)]
pub struct StreamReadable {
    pub(super) execution: Py<Execution>,
    pub(super) kind: StreamKind,
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
    pub(super) execution: Py<Execution>,
    pub(super) kind: StreamKind,
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

impl Execution {
    /// Has the loop watch a stream's source, unless it does already or the stream is paused or
    /// over (invariants 6 and 7).
    /// If the loop refuses, the stream ends (so the exit can still be published) and the error
    /// is returned.
    pub(super) fn watch(slf: &Bound<'_, Self>, kind: StreamKind) -> PyResult<()> {
        let this = slf.get();
        let fd = {
            let mut state = locked(&this.state);
            if !state.wants_reading(slf.py(), kind) {
                return Ok(());
            }
            let stream = state.stream(kind);
            let source = stream.source.as_ref().and_then(ParentOnly::get);
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
    pub(super) fn unwatch(&self, py: Python<'_>, kind: StreamKind, close: bool) {
        let (fd, watched, source) = {
            let mut state = locked(&self.state);
            let stream = state.stream(kind);
            let fd = stream.source.as_ref().and_then(ParentOnly::get).map(AsRawFd::as_raw_fd);
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
    pub(super) fn on_readable(slf: &Bound<'_, Self>, kind: StreamKind) {
        slf.get().read_once(slf.py(), kind);
    }

    /// One read of a stream's source: handed to a parked reader at once or buffered; at the
    /// window reading pauses (invariant 6), at the end the stream ends. Returns what the read
    /// found.
    pub(super) fn read_once(&self, py: Python<'_>, kind: StreamKind) -> Found {
        let mut found = Found::Nothing;
        let resolution = READ_BUFFER.with_borrow_mut(|buffer| {
            let mut state = locked(&self.state);
            let sealed = state.sealed;
            let fd = state.stream(kind).source.as_ref()?.get()?.as_raw_fd();
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
                    if sealed || state.stream(kind).left_behind {
                        return None;
                    }
                    // Asked only when this read fills the window: it calls into Python.
                    let drops_oldest = state.stream(kind).window.fills_with(count) && state.drops_oldest(py, kind);
                    let stream = state.stream(kind);
                    if stream.window.is_empty() {
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
                    stream.window.push(data);
                    if stream.window.is_full() {
                        if drops_oldest {
                            stream.window.make_room();
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
    pub(super) fn read_after_exit(slf: &Bound<'_, Self>, kind: StreamKind) {
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

    /// `LEFT_BEHIND_AFTER` the exit, a stream still open: what its source holds now (all the
    /// exited process wrote, and more) is read into the stream whatever its window, and, unless
    /// that reached the end, the stream ends for its reader and what comes later is dropped,
    /// read on while the process left behind holds the source (invariant 3).
    pub(super) fn end_left_behind(slf: &Bound<'_, Self>, kind: StreamKind) {
        let (py, this) = (slf.py(), slf.get());
        if locked(&this.state).stream_ref(kind).ended {
            return;
        }
        // Read until the source has nothing more now. Not a count asked of it first: a
        // terminal tells only its line discipline's share. Bounded, as a process left behind
        // may write as fast as it is read.
        for _ in 0..LEFT_BEHIND_READS {
            match this.read_once(py, kind) {
                Found::End => return,
                Found::Nothing => break,
                Found::Output | Found::Full => {}
            }
        }
        let resolution = {
            let mut state = locked(&this.state);
            let stream = state.stream(kind);
            if stream.ended || stream.source.is_none() {
                return;
            }
            stream.left_behind = true;
            stream.ended = true;
            stream.wake(py)
        };
        resolve_all(py, resolution);
        // Drained (never paused) until the process left behind lets go of it.
        let _ = Self::watch(slf, kind);
    }

    pub(super) fn take_stream(slf: &Bound<'_, Self>, kind: StreamKind, text: bool) -> PyResult<ExecStream> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(chunks: u8) -> Window {
        let mut window = Window::default();
        for index in 0..chunks {
            window.push(&vec![index; 1 << 20]);
        }
        window
    }

    #[test]
    fn a_window_is_full_at_its_size_and_gives_chunks_back_in_order() {
        let mut window = filled(7);
        assert!(!window.is_full() && window.fills_with(1 << 20) && !window.fills_with((1 << 20) - 1));
        window.push(&[7; 1 << 20]);
        assert!(window.is_full());
        assert_eq!(window.pop().map(|chunk| chunk[0]), Some(0));
        assert!(!window.is_full());
    }

    #[test]
    fn making_room_drops_the_oldest_output_and_leaves_the_window_not_full() {
        let mut window = filled(20);
        window.make_room();
        assert!(!window.is_full());
        let kept: Vec<u8> = std::iter::from_fn(|| window.pop()).map(|chunk| chunk[0]).collect();
        assert_eq!(kept, (20 - kept.len() as u8..20).collect::<Vec<u8>>(), "the newest chunks, in order");
        assert_eq!(window.dropped(), (20 - kept.len() as u64) << 20);
    }
}
