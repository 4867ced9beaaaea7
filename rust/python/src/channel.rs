//! One event loop's completion channel: the bounded queue tokio tasks push that loop's events
//! (`dispatcher::Event`) into, and the eventfd that wakes the loop to drain it on its own thread (the drain is in
//! `dispatcher`). A result thus crosses threads once: from the tokio worker that produced it
//! straight to the loop that awaits it.
//!
//! # Invariants
//!
//! 1. No event is left queued without a wake: a producer queues, then sets `armed` and writes
//!    the eventfd if `armed` was clear; the drain clears the eventfd, then `armed`, then takes
//!    events. Whatever a producer queued before the drain cleared `armed` is taken by that
//!    drain; whatever it queued after finds `armed` clear and wakes the loop again.
//! 2. At most one wake is outstanding (`armed`), so a flood of events costs one eventfd write
//!    per drain, not one per event.
//! 3. `close()` releases the queued events before it returns (the queue's invariant 3) and wakes
//!    the drain, which then takes its reader off the loop; the eventfd is closed when the last
//!    owner lets go, so the loop never watches a descriptor number that was reused.
//!
//! Pure Rust, no Python: tokio tasks hold channels.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::queue::Queue;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Channels not yet dropped (tests check they end with their runtime).
#[cfg(feature = "testing")]
pub fn live_channels() -> usize {
    LIVE.load(Ordering::SeqCst)
}

pub struct Channel<T> {
    queue: Queue<T>,
    wake: OwnedFd,
    armed: AtomicBool,
    /// Output streams the loop watches (`execution` sizes its reads by it).
    pub streams_watched: AtomicUsize,
}

impl<T> Channel<T> {
    pub fn new(capacity: usize, held: bool) -> std::io::Result<Self> {
        // SAFETY: eventfd returns a new descriptor (owned from here on) or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let queue = Queue::new(capacity);
        queue.hold(held);
        LIVE.fetch_add(1, Ordering::SeqCst);
        // SAFETY: see above.
        Ok(Self { queue, wake: unsafe { OwnedFd::from_raw_fd(fd) }, armed: AtomicBool::new(false), streams_watched: AtomicUsize::new(0) })
    }

    /// The descriptor the loop watches.
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Queues `event`, waiting for room (queue invariant 1), and wakes the loop. False (the
    /// event released) once the channel is closed.
    pub async fn push(&self, event: T) -> bool {
        let queued = self.queue.push(event).await;
        if queued {
            self.wake();
        }
        queued
    }

    /// Queues `event` only if there is room now (lossy events such as progress reports).
    pub fn try_push(&self, event: T) -> bool {
        let queued = self.queue.try_push(event);
        if queued {
            self.wake();
        }
        queued
    }

    /// Invariants 1 and 2: makes the eventfd readable unless a wake is outstanding.
    pub fn wake(&self) {
        if !self.armed.swap(true, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a local to our eventfd. It cannot block (EFD_NONBLOCK)
            // and cannot overflow: at most one wake is outstanding.
            unsafe { libc::write(self.wake.as_raw_fd(), std::ptr::addr_of!(one).cast(), 8) };
        }
    }

    /// The drain's side of invariant 1: consumes the outstanding wake. Take events afterwards.
    pub fn begin_drain(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a local from our non-blocking eventfd.
        unsafe { libc::read(self.wake.as_raw_fd(), std::ptr::addr_of_mut!(count).cast(), 8) };
        self.armed.store(false, Ordering::SeqCst);
    }

    /// Takes up to `max` events, in order, without waiting.
    pub fn take(&self, max: usize) -> Vec<T> {
        self.queue.pop_batch(max)
    }

    /// Invariant 3.
    pub fn close(&self) {
        self.queue.close();
        self.armed.store(false, Ordering::SeqCst);
        self.wake();
    }

    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// While held, the drain takes nothing (tests fill the queue deterministically this way).
    pub fn hold(&self, held: bool) {
        self.queue.hold(held);
        if !held {
            self.wake();
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn waiting_producers(&self) -> usize {
        self.queue.waiting_producers()
    }
}

impl<T> Drop for Channel<T> {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(channel: &Channel<u64>) -> bool {
        let mut pollfd = libc::pollfd { fd: channel.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: polls one valid pollfd without waiting.
        unsafe { libc::poll(&mut pollfd, 1, 0) > 0 }
    }

    #[test]
    fn a_queued_event_always_has_a_wake_and_a_flood_costs_one() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let channel = Channel::new(16, false).expect("eventfd");
        assert!(!readable(&channel));
        rt.block_on(async {
            for target in 0..5 {
                assert!(channel.push(target).await);
            }
        });
        assert!(readable(&channel));
        channel.begin_drain();
        assert!(!readable(&channel));
        assert_eq!(channel.take(3).len(), 3);
        // Queued after the drain began: wakes again.
        assert!(channel.try_push(9));
        assert!(readable(&channel));
        channel.begin_drain();
        assert_eq!(channel.take(10).len(), 3);
        assert!(!readable(&channel));
    }

    #[test]
    fn close_wakes_the_drain_and_refuses_later_events() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let channel = Channel::new(4, false).expect("eventfd");
        rt.block_on(channel.push(1));
        channel.begin_drain();
        channel.close();
        assert!(readable(&channel));
        assert!(channel.is_closed() && channel.len() == 0);
        assert!(!rt.block_on(channel.push(2)));
    }
}
