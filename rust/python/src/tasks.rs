//! The runtime's tokio and its count of tasks in flight: what the async core spawns work on.
//! Pure Rust: nothing here holds a Python object, so the runtime's work can outlive or be
//! released without the interpreter.
//!
//! # Invariants
//!
//! 1. A task is counted in flight from the moment it is spawned until it ends or is dropped.
//! 2. Stopping first takes the tokio runtime out of its slot, under the lock a spawn takes:
//!    a task is either spawned and counted before that, and the stop lets it finish (bounded
//!    by [`DRAIN_LIMIT`]), or it is refused ([`Tasks::try_spawn`]) and its caller does the work
//!    some other way. Nothing is spawned onto a runtime that is going away.
//! 3. The release of what a request made for a caller who never received it (rule 19) may
//!    come while the runtime drains: it is spawned then too ([`Tasks::try_spawn_release`]),
//!    counted, until the stop has seen no task in flight and set `stopped`, under the lock
//!    that spawn takes; so a release is either drained or refused, never cut off.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a stopping runtime lets tasks in flight finish before tokio is stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

static SPAWNED: AtomicUsize = AtomicUsize::new(0);

/// Tasks spawned by every runtime of this process (testing).
#[cfg(feature = "testing")]
pub fn spawned_tasks() -> usize {
    SPAWNED.load(Ordering::SeqCst)
}

pub struct Tasks {
    pub handle: tokio::runtime::Handle,
    /// Until the runtime stops (invariant 2).
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    in_flight: Arc<AtomicUsize>,
    /// Set once tokio stops for good (invariant 3).
    stopped: Arc<Mutex<bool>>,
}

impl Tasks {
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("boxlite-worker").enable_all().build()?;
        Ok(Self { handle: runtime.handle().clone(), runtime: Mutex::new(Some(runtime)), in_flight: Arc::new(AtomicUsize::new(0)), stopped: Arc::new(Mutex::new(false)) })
    }

    fn runtime(&self) -> MutexGuard<'_, Option<tokio::runtime::Runtime>> {
        self.runtime.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `task` on tokio, counted in flight (invariant 1).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(self.counted(task));
    }

    /// [`Tasks::spawn`], unless the runtime is stopping: then `task` comes back (invariant 2).
    pub fn try_spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) -> Result<(), F> {
        let runtime = self.runtime();
        if runtime.is_none() {
            return Err(task);
        }
        self.handle.spawn(self.counted(task));
        drop(runtime);
        Ok(())
    }

    /// [`Tasks::spawn`], while the runtime runs or drains (invariant 3); once it stopped,
    /// `task` comes back.
    pub fn try_spawn_release<F: Future<Output = ()> + Send + 'static>(&self, task: F) -> Result<(), F> {
        let stopped = self.stopped.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *stopped {
            return Err(task);
        }
        self.handle.spawn(self.counted(task));
        drop(stopped);
        Ok(())
    }

    /// [`Tasks::spawn`], but the task takes its first step here ([`Tasks::step_here`]).
    /// Returns the task's abort handle, or `None` if it already ended.
    pub fn spawn_started(&self, task: impl Future<Output = ()> + Send + 'static) -> Option<tokio::task::AbortHandle> {
        self.step_here(self.counted(task)).err().map(|rest| self.handle.spawn(rest).abort_handle())
    }

    /// Takes the first step of `work` on the caller's thread, in tokio's context: its output
    /// if that finished it, otherwise the rest of it. Only for work whose first step never
    /// blocks and is short (socket and pipe calls, an uncontended lock).
    pub fn step_here<T>(&self, work: impl Future<Output = T> + Send + 'static) -> Result<T, Pin<Box<dyn Future<Output = T> + Send>>> {
        let mut work: Pin<Box<dyn Future<Output = T> + Send>> = Box::pin(work);
        let _runtime = self.handle.enter();
        // A future is polled again after any wake it registers, whatever the waker: tokio
        // polls a spawned rest at once, so nothing the first step waits for is missed.
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match work.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => Ok(output),
            std::task::Poll::Pending => Err(work),
        }
    }

    /// `task`, counted as spawned and as in flight until it is dropped.
    fn counted(&self, task: impl Future<Output = ()> + Send + 'static) -> impl Future<Output = ()> + Send + 'static {
        SPAWNED.fetch_add(1, Ordering::SeqCst);
        let in_flight = InFlight::enter(&self.in_flight);
        async move {
            let _in_flight = in_flight;
            task.await;
        }
    }

    /// Lets the tasks in flight run to their end, then stops tokio. Never blocks the caller:
    /// the waiting happens on a thread of its own, bounded by [`DRAIN_LIMIT`]. Idempotent.
    pub fn stop(&self) {
        let Some(runtime) = self.runtime().take() else { return };
        let (in_flight, stopped) = (Arc::clone(&self.in_flight), Arc::clone(&self.stopped));
        let stopper = std::thread::Builder::new().name("boxlite-stop".to_string()).spawn(move || {
            let deadline = Instant::now() + DRAIN_LIMIT;
            loop {
                let drained = || in_flight.load(Ordering::SeqCst) == 0 || Instant::now() >= deadline;
                if drained() {
                    // Checked again under the lock a release's spawn takes (invariant 3).
                    let mut stopped = stopped.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if drained() {
                        *stopped = true;
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            runtime.shutdown_background();
        });
        if let Err(error) = stopper {
            eprintln!("boxlite: could not start the thread that stops a runtime: {error}");
        }
    }
}

/// One task counted in flight, until it is dropped (it ended, or was aborted).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_runtime_refuses_new_tasks_and_finishes_counted_ones() {
        let tasks = Tasks::start().expect("tokio");
        let (sender, receiver) = std::sync::mpsc::channel();
        let finished = sender.clone();
        assert!(tasks.try_spawn(async move { finished.send("counted").expect("send") }).is_ok());
        tasks.stop();
        assert!(tasks.try_spawn(async move { sender.send("refused").expect("send") }).is_err());
        assert_eq!(receiver.recv_timeout(Duration::from_secs(5)), Ok("counted"));
    }

    #[test]
    fn a_release_is_spawned_while_the_runtime_drains_and_refused_once_it_stopped() {
        let tasks = Tasks::start().expect("tokio");
        let (go, held) = std::sync::mpsc::channel::<()>();
        // A task in flight keeps the stopping runtime draining until it is let go.
        tasks.spawn(async move {
            let _ = tokio::task::spawn_blocking(move || held.recv()).await;
        });
        tasks.stop();
        assert!(tasks.try_spawn(async {}).is_err(), "new work is refused while it drains");
        let (sender, receiver) = std::sync::mpsc::channel();
        assert!(tasks.try_spawn_release(async move { sender.send("released").expect("send") }).is_ok());
        assert_eq!(receiver.recv_timeout(Duration::from_secs(5)), Ok("released"));
        go.send(()).expect("let go");
        let deadline = Instant::now() + Duration::from_secs(5);
        while tasks.try_spawn_release(async {}).is_ok() {
            assert!(Instant::now() < deadline, "the drained runtime never stopped");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
