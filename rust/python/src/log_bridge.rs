//! The runtime's log records, delivered to Python's `logging` (logger `boxlite`).
//!
//! # Rules
//!
//! 1. Logging never blocks the thread that logs and never attaches to Python there (tokio
//!    workers log too): a record is queued (bounded; when full, it is dropped and counted) and
//!    one thread of its own delivers the queue to `logging.getLogger("boxlite")`.
//! 2. Only records of boxlite's own crates are forwarded: a dependency's debug output could
//!    carry registry credentials.
//! 3. Once Python's `atexit` hooks ran, records are dropped: the interpreter is going away and
//!    the delivery thread must not attach to it. The hook waits (with the interpreter released)
//!    for a delivery in progress to end; deliveries hold `DELIVERING` and check the stop under it.
//! 4. Records below the level of logger `boxlite` when a runtime is created are not made at all,
//!    so an application that does not log pays nothing for them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;

use pyo3::prelude::*;

/// Records waiting for the delivery thread, at most.
const QUEUE: usize = 1024;

struct Record {
    level: u8,
    message: String,
}

struct Bridge {
    queue: SyncSender<Record>,
}

static BRIDGE: OnceLock<Bridge> = OnceLock::new();
static STOPPED: AtomicBool = AtomicBool::new(false);
static DELIVERING: std::sync::Mutex<()> = std::sync::Mutex::new(());
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Python's numeric logging level for a record.
fn python_level(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 40,
        log::Level::Warn => 30,
        log::Level::Info => 20,
        log::Level::Debug => 10,
        log::Level::Trace => 5,
    }
}

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("boxlite") && !STOPPED.load(Ordering::Relaxed)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let record = Record { level: python_level(record.level()), message: record.args().to_string() };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.queue.try_send(record) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

fn deliver(records: Receiver<Record>) {
    while let Ok(record) = records.recv() {
        let _delivering = DELIVERING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if STOPPED.load(Ordering::Acquire) {
            continue;
        }
        crate::gil::attach(|py| {
            let _ = emit(py, &record);
            let dropped = DROPPED.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                let _ = emit(py, &Record { level: 30, message: format!("{dropped} log records were dropped: the queue was full") });
            }
        });
    }
}

fn emit(py: Python<'_>, record: &Record) -> PyResult<()> {
    let logger = py.import("logging")?.call_method1("getLogger", ("boxlite",))?;
    logger.call_method1("log", (record.level, "%s", &record.message))?;
    Ok(())
}

/// Rule 3.
#[pyfunction]
fn stop_logging(py: Python<'_>) {
    STOPPED.store(true, Ordering::Release);
    crate::gil::detach(py, || drop(DELIVERING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)));
}

/// Rule 4: makes the records that logger `boxlite` would show now, and no others.
pub fn follow_python_level(py: Python<'_>) -> PyResult<()> {
    let level: u32 = py.import("logging")?.call_method1("getLogger", ("boxlite",))?.call_method0("getEffectiveLevel")?.extract()?;
    log::set_max_level(match level {
        0..=5 => log::LevelFilter::Trace,
        6..=10 => log::LevelFilter::Debug,
        11..=20 => log::LevelFilter::Info,
        21..=30 => log::LevelFilter::Warn,
        31..=40 => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    });
    Ok(())
}

/// Installs the bridge as the `log` crate's logger (once per process) and the atexit hook of
/// rule 3.
pub fn install(py: Python<'_>) -> PyResult<()> {
    let mut fresh = false;
    BRIDGE.get_or_init(|| {
        fresh = true;
        let (queue, records) = sync_channel(QUEUE);
        let _ = std::thread::Builder::new().name("boxlite-log".to_string()).spawn(move || deliver(records));
        Bridge { queue }
    });
    if fresh {
        if let Some(bridge) = BRIDGE.get() {
            let _ = log::set_logger(bridge);
        }
        follow_python_level(py)?;
        let hook = wrap_pyfunction!(stop_logging, py)?;
        py.import("atexit")?.call_method1("register", (hook,))?;
    }
    Ok(())
}
