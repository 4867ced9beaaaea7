//! What travels through the completion queue: pure Rust values, never Python objects.
//!
//! A payload that reaches nobody is released by dropping it (rule 18). Most payloads are plain
//! data; a box made by a `create()` whose caller went away is removed by [`OwnedBox`]'s drop
//! (rule 19), and an execution nobody holds is killed by the core's `Execution` drop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use boxlite_core::{BoxHandle, BoxInfo, BoxMetrics, ExitStatus, Runtime, RuntimeMetrics};

pub enum Event {
    /// The result of one request. Boxed: the queue's slots are as large as the largest event.
    Complete { target: u64, result: Box<Result<Payload, boxlite_core::Error>> },
    /// The one exit of an execution (its output is read on the loop: see `execution`).
    Exit { target: u64, status: ExitStatus },
    /// How far a pull's download of one layer got (lossy: dropped when the queue is full).
    Progress { target: u64, layer: String, done: u64, total: u64 },
}

pub enum Payload {
    Unit,
    Box(OwnedBox),
    MaybeBox(Option<OwnedBox>),
    BoxCreated(OwnedBox, bool),
    Info(Option<BoxInfo>),
    InfoList(Vec<BoxInfo>),
    RuntimeMetrics(RuntimeMetrics),
    BoxMetrics(BoxMetrics),
    Execution(boxlite_core::Execution),
    ImagePulled(boxlite_core::ImageRecord),
    Images(Vec<boxlite_core::ImageRecord>),
    Count(usize),
    Tracked(Tracked),
}

/// What to do with a box handle that reaches no caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphan {
    /// It was made for the caller (`create`): remove it.
    Remove,
    /// It existed before (`get`, or `get_or_create` that found it): only drop the handle.
    Release,
}

/// A box handle in flight to a caller; removes the box if the caller is gone and it was made
/// for them (the reference's OrphanGuard).
pub struct OwnedBox {
    handle: Option<BoxHandle>,
    runtime: Runtime,
    orphan: Orphan,
}

static ORPHANS_REMOVED: AtomicUsize = AtomicUsize::new(0);

impl OwnedBox {
    pub fn new(handle: BoxHandle, runtime: Runtime, orphan: Orphan) -> Self {
        Self { handle: Some(handle), runtime, orphan }
    }

    /// Hands the box to its caller; dropping afterwards does nothing.
    pub fn disarm(mut self) -> Option<BoxHandle> {
        self.handle.take()
    }
}

impl Drop for OwnedBox {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            if self.orphan == Orphan::Remove {
                ORPHANS_REMOVED.fetch_add(1, Ordering::SeqCst);
                self.runtime.discard(&handle);
            }
        }
    }
}

pub fn orphans_removed() -> usize {
    ORPHANS_REMOVED.load(Ordering::SeqCst)
}

/// A test payload that counts, in its gate's counter, being released without delivery.
pub struct Tracked {
    pub value: i64,
    released: Arc<AtomicUsize>,
    delivered: bool,
}

impl Tracked {
    pub fn new(value: i64, released: Arc<AtomicUsize>) -> Self {
        Self { value, released, delivered: false }
    }

    pub fn deliver(mut self) -> i64 {
        self.delivered = true;
        self.value
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.delivered {
            self.released.fetch_add(1, Ordering::SeqCst);
        }
    }
}
