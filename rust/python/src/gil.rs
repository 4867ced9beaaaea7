//! The one place that attaches to the Python interpreter from Rust-owned threads.
//!
//! Rules:
//! 1. No tokio worker ever attaches (docs/async-core.md, rule 1): a worker parked in Python
//!    code would stall every task of the runtime. Every
//!    attach goes through [`attach`], which counts violations instead of trusting callers; the
//!    test suite asserts the count stays 0.
//! 2. Long waits made while Python called us (blocking on the runtime, releasing payloads)
//!    release the interpreter through [`detach`], so other threads can attach meanwhile.
//!
//! Methods called from Python already hold the interpreter; they need neither.

use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::prelude::*;

static ATTACHED_ON_WORKER: AtomicUsize = AtomicUsize::new(0);

/// Runs `work` attached to the interpreter. Rule 1.
pub fn attach<R>(work: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
    if tokio::runtime::Handle::try_current().is_ok() {
        ATTACHED_ON_WORKER.fetch_add(1, Ordering::SeqCst);
        debug_assert!(false, "attached to Python from a tokio worker");
    }
    Python::attach(work)
}

/// Runs `work` with the interpreter released. Rule 2.
pub fn detach<T, F>(py: Python<'_>, work: F) -> T
where
    T: Send + pyo3::marker::Ungil,
    F: Send + FnOnce() -> T + pyo3::marker::Ungil,
{
    py.detach(work)
}

/// Locks `mutex`, releasing the interpreter while waiting for it (rule 2): a thread that holds
/// the lock may need the interpreter before it lets go.
pub fn lock<'a, T>(py: Python<'_>, mutex: &'a std::sync::Mutex<T>) -> std::sync::MutexGuard<'a, T> {
    use pyo3::sync::MutexExt;
    mutex.lock_py_attached(py).unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Attaches made on a tokio worker so far (testing; the count itself is kept in every build).
#[cfg(feature = "testing")]
pub fn violations() -> usize {
    ATTACHED_ON_WORKER.load(Ordering::SeqCst)
}
