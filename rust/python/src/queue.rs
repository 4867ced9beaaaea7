//! The completion queue: every result and stream event bound for one event loop passes through
//! here, from tokio tasks to the loop's drain (see `channel` and `dispatcher`).
//!
//! # Invariants (rule numbers refer to docs/async-core.md)
//!
//! 1. (rule 3) Producers wait for room asynchronously (a semaphore of `capacity` permits); a full
//!    queue never parks a tokio worker.
//! 2. (rule 5) At most `capacity` events are queued; backpressure reaches producers, never the
//!    consumer.
//! 3. (rule 6) `closed` is set and checked under the lock that guards the events, so no event is
//!    enqueued after `close()` returns; an event that arrives late is dropped (its payload is
//!    released).
//! 4. (rule 4, rule 9) The lock is never held while an event is dropped or handed out: `close()`
//!    takes the events out and drops them after unlocking, before it returns.
//! 5. (rule 7) The consumer never waits here: it takes what is queued and is woken by its
//!    channel. Closing twice does nothing.
//! 6. (rule 10) Events leave in push order, to exactly one consumer.
//!
//! Pure Rust, no Python.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Semaphore;

pub const DEFAULT_CAPACITY: usize = 4096;

struct State<T> {
    events: VecDeque<T>,
    closed: bool,
    /// Tests hold the consumer to fill the queue deterministically.
    held: bool,
}

pub struct Queue<T> {
    state: Mutex<State<T>>,
    room: Semaphore,
    /// Producers currently waiting for room (for tests of invariant 1).
    waiting: AtomicUsize,
}

impl<T> Queue<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State { events: VecDeque::new(), closed: false, held: false }),
            room: Semaphore::new(capacity.max(1)),
            waiting: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Invariants 1–3. Returns false (and drops `event`) when the queue is closed.
    pub async fn push(&self, event: T) -> bool {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = self.room.acquire().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        let Ok(permit) = permit else {
            drop(event);
            return false;
        };
        permit.forget();
        let mut state = self.lock();
        if state.closed {
            drop(state);
            drop(event);
            return false;
        }
        state.events.push_back(event);
        true
    }

    /// Enqueues `event` only if there is room right now (for events that may be lost, like
    /// progress reports). Returns whether it was queued.
    pub fn try_push(&self, event: T) -> bool {
        let Ok(permit) = self.room.try_acquire() else { return false };
        permit.forget();
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.events.push_back(event);
        true
    }

    /// Takes up to `max` events, in order, without waiting: none while held or once closed.
    pub fn pop_batch(&self, max: usize) -> Vec<T> {
        let mut state = self.lock();
        if state.closed || state.held {
            return Vec::new();
        }
        let count = state.events.len().min(max);
        let batch: Vec<T> = state.events.drain(..count).collect();
        drop(state);
        self.room.add_permits(batch.len());
        batch
    }

    /// Invariants 3–5.
    pub fn close(&self) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.closed = true;
        let pending = std::mem::take(&mut state.events);
        drop(state);
        self.room.close();
        drop(pending);
    }

    /// While held, the consumer takes nothing (events accumulate; producers feel backpressure).
    pub fn hold(&self, held: bool) {
        self.lock().held = held;
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    pub fn waiting_producers(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;

    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
    }

    #[test]
    fn events_leave_in_push_order() {
        let queue = Queue::new(16);
        let rt = runtime();
        rt.block_on(async {
            for value in 0..10 {
                assert!(queue.push(value).await);
            }
        });
        assert_eq!(queue.pop_batch(4), vec![0, 1, 2, 3]);
        assert_eq!(queue.pop_batch(100), (4..10).collect::<Vec<_>>());
        assert!(queue.pop_batch(100).is_empty());
    }

    #[test]
    fn a_full_queue_holds_producers_without_parking_the_worker() {
        let rt = runtime();
        let queue = Arc::new(Queue::new(2));
        let producers: Vec<_> = (0..5).map(|value| rt.spawn({
            let queue = Arc::clone(&queue);
            async move { queue.push(value).await }
        })).collect();
        // The single worker still runs unrelated work while three producers wait for room.
        rt.block_on(async {
            while queue.waiting_producers() < 3 {
                tokio::task::yield_now().await;
            }
            assert_eq!(tokio::spawn(async { 42 }).await.expect("canary"), 42);
        });
        assert_eq!(queue.len(), 2);
        let mut seen = Vec::new();
        while seen.len() < 5 {
            seen.extend(queue.pop_batch(1));
        }
        for producer in producers {
            assert!(rt.block_on(producer).expect("join"));
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn close_releases_queued_and_late_payloads() {
        let rt = runtime();
        let drops = Arc::new(AtomicUsize::new(0));
        let queue = Queue::new(8);
        rt.block_on(async {
            assert!(queue.push(Counted(Arc::clone(&drops))).await);
            assert!(queue.push(Counted(Arc::clone(&drops))).await);
        });
        assert_eq!(queue.pop_batch(1).len(), 1);
        queue.close();
        assert!(queue.pop_batch(10).is_empty());
        assert!(!rt.block_on(queue.push(Counted(Arc::clone(&drops)))));
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        queue.close();
    }

    #[test]
    fn a_held_queue_hands_out_nothing() {
        let rt = runtime();
        let queue = Queue::new(8);
        queue.hold(true);
        assert!(rt.block_on(queue.push(1)));
        assert!(queue.pop_batch(10).is_empty());
        queue.hold(false);
        assert_eq!(queue.pop_batch(10), vec![1]);
    }

    #[test]
    fn close_drops_what_was_queued_before_returning() {
        let rt = runtime();
        let drops = Arc::new(AtomicUsize::new(0));
        let queue = Queue::new(8);
        rt.block_on(async {
            assert!(queue.push(Counted(Arc::clone(&drops))).await);
            assert!(queue.push(Counted(Arc::clone(&drops))).await);
        });
        queue.close();
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(queue.len(), 0);
    }
}
