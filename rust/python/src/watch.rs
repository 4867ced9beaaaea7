//! One event loop's watch: an epoll instance that the loop watches as its one reader for this
//! runtime (the drain, `dispatcher::Drain`). It holds the loop's completion channel (its
//! eventfd) and the connections of the executions started on the loop (`execution`,
//! invariant 8), each through its [`Reader`]. A connection joins and leaves with one
//! `epoll_ctl`, where the loop's own `add_reader`/`remove_reader` would cost more Python
//! bookkeeping than the rest of starting an execution on this side.
//!
//! # Invariants
//!
//! 1. Readers are called on the loop's thread, which holds the interpreter: they touch Python
//!    objects. The table is locked for every change, so a runtime closing elsewhere may empty
//!    it.
//! 2. A connection leaves the watch before its descriptor is closed, so a number the kernel
//!    hands out again is never watched for the old reader. Where a failure closes it first,
//!    the kernel drops the entry with the file, unless a forked child still holds the file:
//!    then the entry, being one-shot, fires at most once more, and the reader then found under
//!    that number (if any) reads nothing.
//! 3. Ready readers are called outside the table's lock: a reader removes itself.
//! 4. A connection's entry is one-shot, re-armed after its reader ran if it is still watched:
//!    what a reader leaves unread makes it ready again next turn. The channel's entry is
//!    level-triggered.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::Python;


/// The epoll token of the channel's eventfd; a connection's token is its descriptor.
const CHANNEL: u64 = u64::MAX;
/// Events taken in one turn; more are reported again next turn.
const EVENTS: usize = 64;
/// How a connection is watched (invariants 2 and 4).
const ONE_SHOT: u32 = (libc::EPOLLIN | libc::EPOLLONESHOT) as u32;

/// What the watch calls for a ready connection, on the loop's thread (invariant 1).
pub trait Reader: Send + Sync {
    /// The connection is readable.
    fn on_readable(self: Arc<Self>, py: Python<'_>);
    /// The watch lets go of the reader: it will not be called again.
    fn let_go(&self, py: Python<'_>);
}

pub struct LoopWatch {
    epoll: OwnedFd,
    readers: Mutex<HashMap<RawFd, Arc<dyn Reader>>>,
}

/// What one turn found ready.
pub struct Ready {
    pub channel: bool,
    /// Each with its descriptor, for [`LoopWatch::rearm`].
    pub readers: Vec<(RawFd, Arc<dyn Reader>)>,
}

impl LoopWatch {
    /// A watch holding the channel whose eventfd is `channel`.
    pub fn new(channel: RawFd) -> std::io::Result<Self> {
        // SAFETY: epoll_create1 returns a new descriptor, owned from here on, or -1.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: see above.
        let watch = Self { epoll: unsafe { OwnedFd::from_raw_fd(raw) }, readers: Mutex::new(HashMap::new()) };
        watch.control(libc::EPOLL_CTL_ADD, channel, libc::EPOLLIN as u32, CHANNEL)?;
        Ok(watch)
    }

    /// The descriptor the loop watches.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn readers(&self) -> MutexGuard<'_, HashMap<RawFd, Arc<dyn Reader>>> {
        self.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn control(&self, operation: libc::c_int, fd: RawFd, events: u32, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: epoll_ctl on our epoll instance with a valid event struct.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), operation, fd, &mut event) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Calls `reader` whenever `fd` is readable, until [`LoopWatch::remove`].
    pub fn add(&self, fd: RawFd, reader: Arc<dyn Reader>) -> std::io::Result<()> {
        let mut readers = self.readers();
        self.control(libc::EPOLL_CTL_ADD, fd, ONE_SHOT, fd as u64)?;
        readers.insert(fd, reader);
        Ok(())
    }

    /// Invariant 2: call before `fd` is closed.
    pub fn remove(&self, fd: RawFd) {
        let mut readers = self.readers();
        if readers.remove(&fd).is_some() {
            let _ = self.control(libc::EPOLL_CTL_DEL, fd, 0, 0);
        }
    }

    /// Invariant 4: after `reader` ran for `fd`, watches `fd` again if it is still its reader's.
    pub fn rearm(&self, fd: RawFd, reader: &Arc<dyn Reader>) {
        let readers = self.readers();
        if readers.get(&fd).is_some_and(|watched| Arc::ptr_eq(watched, reader)) {
            let _ = self.control(libc::EPOLL_CTL_MOD, fd, ONE_SHOT, fd as u64);
        }
    }

    /// What is ready now, without waiting (invariant 3: the caller calls the readers).
    pub fn ready(&self) -> Ready {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        // SAFETY: epoll_wait writes at most EVENTS events into the local array, without waiting.
        let count = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), EVENTS as libc::c_int, 0) };
        let events = &events[..usize::try_from(count).unwrap_or(0)];
        let readers = self.readers();
        let mut ready = Ready { channel: false, readers: Vec::with_capacity(events.len()) };
        for event in events {
            let token = event.u64;
            if token == CHANNEL {
                ready.channel = true;
            } else if let Some((fd, reader)) = RawFd::try_from(token).ok().and_then(|fd| Some((fd, readers.get(&fd)?))) {
                ready.readers.push((fd, Arc::clone(reader)));
            }
        }
        ready
    }

    /// Lets go of every reader: the loop will not call them again ([`Reader::let_go`]).
    pub fn clear(&self, py: Python<'_>) {
        let readers: Vec<_> = {
            let mut readers = self.readers();
            readers.drain().inspect(|(fd, _)| drop(self.control(libc::EPOLL_CTL_DEL, *fd, 0, 0))).collect()
        };
        for (_, reader) in readers {
            reader.let_go(py);
        }
    }
}
