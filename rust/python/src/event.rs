//! What travels through the completion queue: pure Rust values, never Python objects.
//!
//! A payload that reaches nobody is released by dropping it (rule 18). Most payloads are plain
//! data; a box made by a `create()` whose caller never received it is removed by
//! [`OwnedBox`]'s drop (rule 19), and an execution nobody holds is killed by the core's
//! `Execution` drop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use boxlite_core::{BoxHandle, BoxInfo, BoxMetrics, ExitStatus, Runtime, RuntimeMetrics};

use crate::tasks::Tasks;

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
    #[cfg(feature = "testing")]
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

/// A box handle on its way to a caller, until the caller has it: in the queue, then in the
/// `Box` object a future resolved to, until the awaiting coroutine took it (`_handover.py`). A
/// box made for a caller who never gets it is removed (the reference's OrphanGuard, applied to
/// the last step too), on the runtime's tokio while it runs, so the removal waits for the box's
/// lifecycle lock instead of skipping a box that is busy.
pub struct OwnedBox {
    handle: Arc<BoxHandle>,
    runtime: Runtime,
    tasks: Weak<Tasks>,
    orphan: Orphan,
}

static ORPHANS_REMOVED: AtomicUsize = AtomicUsize::new(0);

impl OwnedBox {
    pub fn new(handle: BoxHandle, runtime: Runtime, tasks: Weak<Tasks>, orphan: Orphan) -> Self {
        Self { handle: Arc::new(handle), runtime, tasks, orphan }
    }

    pub fn handle(&self) -> &Arc<BoxHandle> {
        &self.handle
    }

    /// Whether dropping this removes the box.
    pub fn removes(&self) -> bool {
        self.orphan == Orphan::Remove
    }

    /// The caller has the box now: dropping this does nothing.
    pub fn claim(mut self) {
        self.orphan = Orphan::Release;
    }
}

impl Drop for OwnedBox {
    fn drop(&mut self) {
        if self.orphan != Orphan::Remove {
            return;
        }
        ORPHANS_REMOVED.fetch_add(1, Ordering::SeqCst);
        let (handle, runtime) = (Arc::clone(&self.handle), self.runtime.clone());
        let removal = async move {
            if let Err(error) = runtime.remove(handle.id(), true).await {
                if !matches!(error, boxlite_core::Error::NotFound(_)) {
                    log::warn!(target: "boxlite", "failed to remove box {} that no caller received: {error}", handle.id());
                }
            }
        };
        // Counted in flight, so a runtime that stops meanwhile lets the removal finish; once
        // it stops, its boxes' processes are gone and what is left is on disk.
        if self.tasks.upgrade().is_none_or(|tasks| tasks.try_spawn(removal).is_err()) {
            self.runtime.discard(&self.handle);
        }
    }
}

#[cfg(feature = "testing")]
pub fn orphans_removed() -> usize {
    ORPHANS_REMOVED.load(Ordering::SeqCst)
}

/// A test payload that counts, in its gate's counter, being released without delivery.
#[cfg(feature = "testing")]
pub struct Tracked {
    pub value: i64,
    released: Arc<AtomicUsize>,
    delivered: bool,
}

#[cfg(feature = "testing")]
impl Tracked {
    pub fn new(value: i64, released: Arc<AtomicUsize>) -> Self {
        Self { value, released, delivered: false }
    }

    pub fn deliver(mut self) -> i64 {
        self.delivered = true;
        self.value
    }
}

#[cfg(feature = "testing")]
impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.delivered {
            self.released.fetch_add(1, Ordering::SeqCst);
        }
    }
}
