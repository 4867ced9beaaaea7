//! One event loop's watch: an epoll instance that the loop watches as its one reader for this
//! runtime (the drain, `dispatcher::Drain`). It holds the loop's completion channel (its
//! eventfd) and the connections of the executions started on the loop (`execution`,
//! invariant 8). A connection joins and leaves with one `epoll_ctl`, where the loop's own
//! `add_reader`/`remove_reader` would cost more Python bookkeeping than the rest of starting
//! an execution on this side.
//!
//! # Invariants
//!
//! 1. Connections are added, removed and dispatched on the loop's thread, which holds the
//!    interpreter: their readers touch Python objects.
//! 2. A connection leaves the watch before its descriptor is closed (its reader's owner removes
//!    it first), so a number the kernel hands out again is never watched for the old reader.
//! 3. Ready readers are called outside the table's lock: a reader removes itself.
//! 4. Readiness is level-triggered: what a reader leaves unread makes it ready again next turn.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::execution::ControlReadable;

/// The epoll token of the channel's eventfd; a connection's token is its descriptor.
const CHANNEL: u64 = u64::MAX;
/// Events taken in one turn; more are reported again next turn (invariant 4).
const EVENTS: usize = 64;

pub struct LoopWatch {
    epoll: OwnedFd,
    readers: Mutex<HashMap<RawFd, Arc<ControlReadable>>>,
}

/// What one turn found ready.
pub struct Ready {
    pub channel: bool,
    pub readers: Vec<Arc<ControlReadable>>,
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
        watch.control(libc::EPOLL_CTL_ADD, channel, CHANNEL)?;
        Ok(watch)
    }

    /// The descriptor the loop watches.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn readers(&self) -> MutexGuard<'_, HashMap<RawFd, Arc<ControlReadable>>> {
        self.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn control(&self, operation: libc::c_int, fd: RawFd, token: u64) -> std::io::Result<()> {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: epoll_ctl on our epoll instance with a valid event struct.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), operation, fd, &mut event) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Calls `reader` whenever `fd` is readable, until [`LoopWatch::remove`].
    pub fn add(&self, fd: RawFd, reader: Arc<ControlReadable>) -> std::io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, fd as u64)?;
        self.readers().insert(fd, reader);
        Ok(())
    }

    /// Invariant 2: call before `fd` is closed.
    pub fn remove(&self, fd: RawFd) {
        let reader = self.readers().remove(&fd);
        if reader.is_some() {
            let _ = self.control(libc::EPOLL_CTL_DEL, fd, 0);
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
            } else if let Some(reader) = RawFd::try_from(token).ok().and_then(|fd| readers.get(&fd)) {
                ready.readers.push(Arc::clone(reader));
            }
        }
        ready
    }

    /// Lets go of every reader, for the caller to drop: the loop will not call them again.
    pub fn clear(&self) -> Vec<Arc<ControlReadable>> {
        let readers: Vec<_> = self.readers().drain().collect();
        readers
            .into_iter()
            .map(|(fd, reader)| {
                let _ = self.control(libc::EPOLL_CTL_DEL, fd, 0);
                reader
            })
            .collect()
    }
}
