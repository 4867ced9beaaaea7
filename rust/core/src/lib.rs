//! boxlite's runtime, in Rust alone: images, the box store, the namespace engine and exec.
//! The Python binding (`rust/python`) is a thin layer over [`Runtime`] and [`BoxHandle`].

mod boxes;
mod cgroups;
pub mod clock;
mod error;
pub mod files;
mod fork;
pub mod exec;
mod home;
mod host;
mod idmap;
mod ids;
pub mod keeper;
mod process;
mod secret;
pub mod network;
pub mod image;
pub mod volumes;

pub use boxes::{
    export_destination, export_partial, link_into_place, BoxHandle, BoxInfo, BoxMetrics, BoxOptions, BoxStatus, ExecRequest, HealthCheck, HealthState, HealthStatus, ProcessLimits, Runtime, RuntimeMetrics, SnapshotInfo, Volume,
    DEFAULT_CPUS, DEFAULT_MEMORY_MIB, DEFAULT_PIDS_LIMIT, DEFAULT_STOP_GRACE,
};
pub use boxlite_protocol::TtySize;
pub use error::{Error, Result};
pub use keeper::Role;
pub use image::{Credentials, ImageRecord, PullProgress, RegistryConfig};
pub use secret::Secret;
pub use exec::{ExecutionControl, Execution, ExitStatus};
pub use fork::ParentOnly;

/// A mutex's guard, also when a thread panicked holding it: the state it guards stays
/// consistent at every point a panic could leave it.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
