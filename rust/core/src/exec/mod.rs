//! Executions: processes started in a running box through its init.
//!
//! # Rules
//!
//! 1. Output is bytes, forwarded exactly as the process wrote it.
//! 2. Each execution has exactly one exit status, cached: every `wait()`, concurrent or later,
//!    sees the same value. A wait never blocks `signal`/`kill`/`resize`. The status is learned
//!    by the one reader of the control connection ([`Replies`]), which reads until the exit or
//!    the end of the connection; a signal asked for after that has nothing left to reach.
//! 3. An execution never outlives its [`Execution`]: dropping it hangs up the control
//!    connection, and the init kills the process group.
//! 4. A timeout sends SIGTERM to the whole process group, then SIGKILL after [`KILL_GRACE`].
//! 5. An attached execution follows a box's main process without owning it: its output is read
//!    back from the files the process writes (from the start of the run, so nothing is missed),
//!    and each stream ends once the exit is known and its file is read to the end.
//!
//! `request` starts a process through the init and takes its answer; `control` reads the
//! execution's connection (the exit) and sends signals on it; `follow` follows a main process
//! (rule 5); `relay` makes the same execution for a process that runs elsewhere (a remote
//! box); `fd` holds the descriptors they use.

mod control;
pub(crate) mod fd;
mod follow;
mod relay;
mod request;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use boxlite_protocol::TtySize;

pub use control::{ExecutionControl, Replies};
use control::Control;
pub use fd::{enlarge_pipe, pipe, AsyncDescriptor};
pub use follow::{attach, attach_when_started, read_recorded_exit, replay, MainOutput, StartedRun};
pub use relay::{relayed, Relay, RelayCommand};
pub use request::{request, Answer, Connector, Requested};

use crate::error::{Error, Result};
use crate::fork::ParentOnly;

/// Time between SIGTERM and SIGKILL when a timeout ends an execution.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long an exec waits for the box's init to report the process started.
pub const EXEC_ANSWER_LIMIT: Duration = Duration::from_secs(30);
/// Largest chunk read from a process's output at once: a quarter of the 1 MiB pipe, so a
/// flood of output costs few events, while small writes still arrive as they are.
pub const CHUNK_SIZE: usize = 256 * 1024;

/// A fully resolved request: the box's defaults are already merged in.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub tty: Option<TtySize>,
    pub timeout: Option<Duration>,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, or `-N` when signal N killed the process.
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// The execution's timeout ended it.
    pub timed_out: bool,
    /// Set when the outcome is not known from the process itself (the box went away).
    pub error: Option<String>,
}

/// Bytes that went to and came from a box's processes, for its metrics.
#[derive(Debug, Default)]
pub struct IoCounters {
    /// Written to the processes' stdin.
    pub sent: AtomicU64,
    /// Read from their stdout, stderr and terminals.
    pub received: AtomicU64,
}

pub struct Execution {
    pub id: String,
    pub pid: i32,
    /// Where the bytes of this execution are counted (its box's counters).
    pub io: Arc<IoCounters>,
    control: Arc<Control>,
    /// Taken by whoever consumes the output (the process's stdout, or the terminal): read ends,
    /// non-blocking, for the consumer to watch with its own event loop (see
    /// [`AsyncDescriptor::new`] for tokio). Like every end of a process's pipes or terminal
    /// the runtime holds, kept by this process alone (`crate::fork`): a forked child that
    /// lives on keeps no stream open.
    pub stdout: Option<ParentOnly<OwnedFd>>,
    pub stderr: Option<ParentOnly<OwnedFd>>,
    /// The write end of the process's stdin (or the terminal), for the consumer to make async
    /// ([`AsyncDescriptor::new`]) where it writes: an execution whose stdin is never written
    /// costs the reactor nothing.
    pub stdin: Option<ParentOnly<OwnedFd>>,
    /// Rule 2: taken by whoever is to read the control connection, and so learn the exit.
    /// `None` for a followed main process, whose exit the runtime learns by itself.
    pub replies: Option<Replies>,
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Execution").field("id", &self.id).field("pid", &self.pid).finish_non_exhaustive()
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        if let Some(socket) = self.control.socket.get() {
            socket.hang_up();
        }
        self.control.abandoned.notify_one();
    }
}

impl Execution {
    pub fn control(&self) -> ExecutionControl {
        ExecutionControl { control: Arc::clone(&self.control) }
    }
}

impl ExitStatus {
    /// The status of a main process from the exit code the init recorded.
    fn recorded(exit_code: i32) -> Self {
        Self { exit_code, signal: (exit_code < 0).then_some(-exit_code), timed_out: false, error: None }
    }
}

fn lost_status() -> ExitStatus {
    ExitStatus { exit_code: -1, signal: None, timed_out: false, error: Some("the execution's status was lost".to_string()) }
}

fn engine_error(what: &str, error: &std::io::Error) -> Error {
    Error::Engine(format!("{what}: {error}"))
}

/// An output stream's read end, ready for its consumer.
fn nonblocking(fd: OwnedFd) -> Result<OwnedFd> {
    fd::set_nonblocking(fd.as_raw_fd()).map_err(|error| engine_error("failed to set up a stream", &error))?;
    Ok(fd)
}

fn registered(fd: ParentOnly<OwnedFd>) -> Result<AsyncDescriptor> {
    AsyncDescriptor::new(fd).map_err(|error| engine_error("failed to register a stream", &error))
}

/// A pipe between a process and the runtime: (read end, write end), both kept by this process
/// alone until the one for the process is sent to its init.
fn plain_pipe() -> Result<(ParentOnly<OwnedFd>, ParentOnly<OwnedFd>)> {
    let (read, write) = fd::pipe().map_err(|error| engine_error("failed to create a pipe", &error))?;
    Ok((ParentOnly::new(read), ParentOnly::new(write)))
}

/// A pipe for a process's output: (read end, non-blocking, for the consumer to watch; write
/// end). The consumer gives it room for a flood once it streams ([`enlarge_pipe`]).
fn output_pipe() -> Result<(ParentOnly<OwnedFd>, ParentOnly<OwnedFd>)> {
    let (read, write) = fd::pipe().map_err(|error| engine_error("failed to create a pipe", &error))?;
    Ok((ParentOnly::new(nonblocking(read)?), ParentOnly::new(write)))
}
