//! Executions: processes started in a running box through its init.
//!
//! # Rules
//!
//! 1. Output is bytes, forwarded exactly as the process wrote it.
//! 2. Each execution has exactly one exit status, cached: every `wait()`, concurrent or later,
//!    sees the same value. A wait never blocks `signal`/`kill`/`resize`.
//! 3. An execution never outlives its [`Execution`]: dropping it hangs up the control
//!    connection, and the init kills the process group.
//! 4. A timeout sends SIGTERM to the whole process group, then SIGKILL after [`KILL_GRACE`].
//! 5. An attached execution follows a box's main process without owning it: its output is read
//!    back from the files the process writes (from the start of the run, so nothing is missed),
//!    and each stream ends once the exit is known and its file is read to the end.

pub(crate) mod fd;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use boxlite_protocol::{Reply, Request, TtySize};
use tokio::sync::{oneshot, watch};

pub use fd::AsyncDescriptor;

use crate::error::{Error, Result};

/// Time between SIGTERM and SIGKILL when a timeout ends an execution.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long `start` waits for the box's init to report the process started.
const EXEC_ANSWER_LIMIT: Duration = Duration::from_secs(30);
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

struct Control {
    /// Unset for the replay of a main process that has ended, and until an attach made before
    /// the box started has connected.
    socket: OnceLock<fd::ControlSocket>,
    /// Wakes an attach still waiting for its box to start when its execution is dropped.
    abandoned: tokio::sync::Notify,
    exit: watch::Sender<Option<ExitStatus>>,
    /// Acknowledgements for Signal requests, in the order they were sent.
    acks: Mutex<VecDeque<oneshot::Sender<Reply>>>,
    /// Serialises "queue an ack slot + send" so acks pair with their requests.
    send_lock: tokio::sync::Mutex<()>,
    timed_out: AtomicBool,
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
    /// [`AsyncDescriptor::new`] for tokio).
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub stdin: Option<AsyncDescriptor>,
    terminal: Option<Arc<OwnedFd>>,
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

impl Control {
    fn new(socket: Option<fd::ControlSocket>, exit: Option<ExitStatus>) -> Arc<Self> {
        let connected = OnceLock::new();
        if let Some(socket) = socket {
            let _ = connected.set(socket);
        }
        Arc::new(Self {
            socket: connected,
            abandoned: tokio::sync::Notify::new(),
            exit: watch::channel(exit).0,
            acks: Mutex::new(VecDeque::new()),
            send_lock: tokio::sync::Mutex::new(()),
            timed_out: AtomicBool::new(false),
        })
    }
}

fn engine_error(what: &str, error: &std::io::Error) -> Error {
    Error::Engine(format!("{what}: {error}"))
}

/// A new control connection to the init listening on `socket_path`.
fn connect(socket_path: &Path) -> Result<fd::ControlSocket> {
    fd::ControlSocket::connect(socket_path).map_err(|error| {
        Error::InvalidState(format!("the box is not running (cannot reach its init at {}: {error})", socket_path.display()))
    })
}

/// Control connections to one box's init. One is kept connected ahead of need: the init
/// accepts it while idle, so an exec's request is the only message on the exec's critical
/// path. Each execution still has a connection of its own (rule 3).
pub struct Connector {
    socket_path: PathBuf,
    spare: Mutex<Option<fd::ControlSocket>>,
}

impl Connector {
    pub fn new(socket_path: PathBuf) -> Self {
        Self { socket_path, spare: Mutex::new(None) }
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    fn spare(&self) -> std::sync::MutexGuard<'_, Option<fd::ControlSocket>> {
        self.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connects the next spare unless one is waiting. Called in tokio's context (the socket
    /// registers with its reactor); a failure leaves the next exec to connect for itself.
    pub fn refill(&self) {
        let mut spare = self.spare();
        if spare.is_none() {
            *spare = fd::ControlSocket::connect(&self.socket_path).ok();
        }
    }

    /// Sends `request` on a connection of its own: the spare, or, if there is none or it went
    /// stale (its init ended), a new one. With `more`, the next spare is connected before the
    /// request goes out: the init accepts it in the same wake-up in which it reads the request.
    pub(crate) async fn open_with(&self, request: &Request, fds: &[&OwnedFd], more: bool) -> Result<fd::ControlSocket> {
        let spare = self.spare().take();
        if more {
            self.refill();
        }
        if let Some(socket) = spare {
            if socket.send(request, fds).await.is_ok() {
                return Ok(socket);
            }
        }
        let socket = connect(&self.socket_path)?;
        socket.send(request, fds).await.map_err(|error| engine_error("failed to send the request", &error))?;
        Ok(socket)
    }
}

/// The init's answer to a `request` (exec or attach) just sent on `socket`; `None` if it hung up.
async fn answer(socket: &fd::ControlSocket, request: &str) -> Result<Option<(Reply, Vec<OwnedFd>)>> {
    tokio::time::timeout(EXEC_ANSWER_LIMIT, socket.recv())
        .await
        .map_err(|_| Error::Engine(format!("the box's init did not answer within {EXEC_ANSWER_LIMIT:?}")))?
        .map_err(|error| engine_error(&format!("failed to read the {request} reply"), &error))
}

/// Starts `spec` in the box whose init `connector` reaches.
pub async fn start(connector: &Connector, spec: ExecSpec) -> Result<Execution> {
    let request = Request::Exec { argv: spec.argv.clone(), env: spec.env, cwd: spec.cwd, user: spec.user, tty: spec.tty.clone() };
    let mut ours = (None, None, None);
    let socket = if spec.tty.is_some() {
        connector.open_with(&request, &[], true).await?
    } else {
        let (stdin_read, stdin_write) = plain_pipe()?;
        let (stdout_read, stdout_write) = stream_pipe()?;
        let (stderr_read, stderr_write) = stream_pipe()?;
        let socket = connector.open_with(&request, &[&stdin_read, &stdout_write, &stderr_write], true).await?;
        ours = (Some(stdin_write), Some(stdout_read), Some(stderr_read));
        socket
    };
    let (pid, mut fds) = match answer(&socket, "exec").await? {
        Some((Reply::Started { pid }, fds)) => (pid, fds),
        Some((Reply::Failed { message, not_found: true }, _)) => return Err(Error::NotFound(message)),
        Some((Reply::Failed { message, .. }, _)) => return Err(Error::Execution(message)),
        Some((other, _)) => return Err(Error::Engine(format!("unexpected reply to exec: {other:?}"))),
        None => return Err(Error::InvalidState("the box stopped while starting the process".to_string())),
    };
    let wrap = |fd: Option<OwnedFd>| fd.map(registered).transpose();
    let output = |fd: Option<OwnedFd>| fd.map(nonblocking).transpose();
    let (stdin, stdout, stderr, terminal) = if spec.tty.is_some() {
        let master = fds.pop().ok_or_else(|| Error::Engine("the init sent no terminal".to_string()))?;
        let reader = master.try_clone().map_err(|error| engine_error("failed to duplicate the terminal", &error))?;
        let writer = master.try_clone().map_err(|error| engine_error("failed to duplicate the terminal", &error))?;
        (wrap(Some(writer))?, output(Some(reader))?, None, Some(Arc::new(master)))
    } else {
        (wrap(ours.0)?, output(ours.1)?, output(ours.2)?, None)
    };
    let control = Control::new(Some(socket), None);
    tokio::spawn(read_replies(Arc::clone(&control)));
    if let Some(timeout) = spec.timeout {
        tokio::spawn(enforce_timeout(Arc::clone(&control), timeout));
    }
    Ok(Execution { id: crate::ids::new_box_id(), pid, io: Arc::default(), control, stdout, stderr, stdin, terminal })
}

/// The host files a box's main process writes, opened before asking the init about the process,
/// so its output stays readable even if the box is removed once the process ends.
#[derive(Debug)]
pub struct MainOutput {
    pub stdout: File,
    pub stderr: File,
    pub status: File,
}

impl MainOutput {
    pub fn open(stdout: &Path, stderr: &Path, status: &Path) -> Result<Self> {
        let open = |path: &Path| File::open(path).map_err(|error| Error::storage("open", path, &error));
        Ok(Self { stdout: open(stdout)?, stderr: open(stderr)?, status: open(status)? })
    }

    /// The exit the init recorded, once the process has ended.
    pub fn recorded_exit(&self) -> Option<i32> {
        read_recorded_exit(&self.status)
    }
}

/// The exit code the init wrote to a main process's status file (`-N` after signal N), if it
/// did.
pub fn read_recorded_exit(mut status: &File) -> Option<i32> {
    let mut text = String::new();
    status.seek(std::io::SeekFrom::Start(0)).ok()?;
    status.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

impl ExitStatus {
    /// The status of a main process from the exit code the init recorded.
    fn recorded(exit_code: i32) -> Self {
        Self { exit_code, signal: (exit_code < 0).then_some(-exit_code), timed_out: false, error: None }
    }
}

/// Rule 5: follows the main process of the box whose init listens on `socket_path`. With
/// `stdin`, the first attach gets the process's stdin; later ones get none.
pub async fn attach(socket_path: &Path, output: MainOutput, stdin: bool) -> Result<Execution> {
    let (socket, pid, stdin) = connect_attached(socket_path, stdin).await?;
    let control = Control::new(Some(socket), None);
    tokio::spawn(read_replies(Arc::clone(&control)));
    followed(pid, control, output, stdin)
}

/// The Attach exchange: the control connection, the main process's pid, and its stdin if asked
/// for and still free.
async fn connect_attached(socket_path: &Path, stdin: bool) -> Result<(fd::ControlSocket, i32, Option<AsyncDescriptor>)> {
    let socket = connect(socket_path)?;
    socket.send(&Request::Attach { stdin }, &[]).await.map_err(|error| engine_error("failed to send the attach request", &error))?;
    let (pid, mut fds) = match answer(&socket, "attach").await? {
        Some((Reply::Started { pid }, fds)) => (pid, fds),
        Some((Reply::Failed { message, .. }, _)) => return Err(Error::InvalidState(message)),
        Some((other, _)) => return Err(Error::Engine(format!("unexpected reply to attach: {other:?}"))),
        None => return Err(Error::InvalidState("the box stopped while attaching".to_string())),
    };
    let stdin = fds.pop().map(registered).transpose()?;
    Ok((socket, pid, stdin))
}

/// Where an attach made before its box started finds the run once it started: the init's
/// socket and the main process's output. `None` when the box went away first.
pub type StartedRun = std::pin::Pin<Box<dyn std::future::Future<Output = Option<(std::path::PathBuf, MainOutput)>> + Send>>;

/// An output stream's read end, ready for its consumer.
fn nonblocking(fd: OwnedFd) -> Result<OwnedFd> {
    fd::set_nonblocking(fd.as_raw_fd()).map_err(|error| engine_error("failed to set up a stream", &error))?;
    Ok(fd)
}

fn registered(fd: OwnedFd) -> Result<AsyncDescriptor> {
    AsyncDescriptor::new(fd).map_err(|error| engine_error("failed to register a stream", &error))
}

fn plain_pipe() -> Result<(OwnedFd, OwnedFd)> {
    fd::pipe().map_err(|error| engine_error("failed to create a pipe", &error))
}

/// A pipe for a process's output: (read end, write end), with room for a flood of it.
fn stream_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let pair = plain_pipe()?;
    fd::enlarge_pipe(&pair.0);
    Ok(pair)
}

/// Rule 5, for a box that has not started yet: the execution exists at once and follows the
/// main process of the run that `started` announces, from its beginning. With `stdin`, what is
/// written meanwhile reaches the process once it runs.
pub fn attach_when_started(started: StartedRun, stdin: bool) -> Result<Execution> {
    let control = Control::new(None, None);
    let (stdout, stdout_writer) = stream_pipe()?;
    let (stderr, stderr_writer) = stream_pipe()?;
    let (stdout_writer, stderr_writer) = (registered(stdout_writer)?, registered(stderr_writer)?);
    let (ours, stdin_reader) = if stdin {
        let (read, write) = plain_pipe()?;
        (Some(registered(write)?), Some(registered(read)?))
    } else {
        (None, None)
    };
    let task_control = Arc::clone(&control);
    tokio::spawn(async move {
        let control = task_control;
        let run = tokio::select! {
            run = started => run,
            () = control.abandoned.notified() => return,
        };
        let followed = match run {
            None => Err(Error::NotFound("the box was removed before it started".to_string())),
            Some((socket_path, output)) => match connect_attached(&socket_path, stdin_reader.is_some()).await {
                Ok((socket, _, main_stdin)) => {
                    let _ = control.socket.set(socket);
                    tokio::spawn(read_replies(Arc::clone(&control)));
                    if let (Some(from), Some(to)) = (stdin_reader, main_stdin) {
                        tokio::spawn(relay(from, to));
                    }
                    Ok(output)
                }
                // Its main process ended already: what it wrote and its exit are on record.
                Err(error) => match output.recorded_exit() {
                    Some(code) => {
                        control.exit.send_replace(Some(ExitStatus::recorded(code)));
                        Ok(output)
                    }
                    None => Err(error),
                },
            },
        };
        match followed {
            Ok(output) => {
                let _ = follow_into(output.stdout, control.exit.subscribe(), stdout_writer);
                let _ = follow_into(output.stderr, control.exit.subscribe(), stderr_writer);
            }
            Err(error) => {
                control.exit.send_replace(Some(ExitStatus { exit_code: -1, signal: None, timed_out: false, error: Some(error.to_string()) }));
            }
        }
    });
    Ok(Execution { id: crate::ids::new_box_id(), pid: 0, io: Arc::default(), control, stdout: Some(nonblocking(stdout)?), stderr: Some(nonblocking(stderr)?), stdin: ours, terminal: None })
}

/// Copies what is written to an attach's stdin into the main process's, until end of file.
async fn relay(from: AsyncDescriptor, to: AsyncDescriptor) {
    while let Ok(Some(chunk)) = from.read_chunk(CHUNK_SIZE).await {
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

/// Rule 5, for a main process that has ended: its recorded output, then its exit.
pub fn replay(output: MainOutput, exit_code: i32) -> Result<Execution> {
    let control = Control::new(None, Some(ExitStatus::recorded(exit_code)));
    followed(0, control, output, None)
}

fn followed(pid: i32, control: Arc<Control>, output: MainOutput, stdin: Option<AsyncDescriptor>) -> Result<Execution> {
    let follow = |file: File| -> Result<OwnedFd> {
        let (read, write) = stream_pipe()?;
        follow_into(file, control.exit.subscribe(), registered(write)?)?;
        nonblocking(read)
    };
    let stdout = follow(output.stdout)?;
    let stderr = follow(output.stderr)?;
    Ok(Execution { id: crate::ids::new_box_id(), pid, io: Arc::default(), control, stdout: Some(stdout), stderr: Some(stderr), stdin, terminal: None })
}

/// Feeds `writer` (a pipe) with `file`'s content as it grows, until the exit is known and the
/// file is read to its end. Growth is noticed through inotify, watched before the first read,
/// so no write between a read and the wait goes unseen.
fn follow_into(file: File, mut ended: watch::Receiver<Option<ExitStatus>>, writer: AsyncDescriptor) -> Result<()> {
    let changes = watch_modifications(&file).map_err(|error| engine_error("failed to watch the main process's output", &error))?;
    tokio::spawn(async move {
        let mut buffer = vec![0u8; CHUNK_SIZE];
        let mut reader = &file;
        loop {
            let finished = ended.borrow().is_some();
            // Reads of a regular file come from the page cache the process just wrote.
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(count) => {
                        if writer.write_all(&buffer[..count]).await.is_err() {
                            return; // nobody reads this stream any more
                        }
                    }
                    Err(_) => return,
                }
            }
            if finished {
                return;
            }
            tokio::select! {
                _ = changes.read_chunk(4096) => {}
                changed = ended.changed() => {
                    if changed.is_err() {
                        return; // the execution is gone
                    }
                }
            }
        }
    });
    Ok(())
}

/// An inotify descriptor that becomes readable whenever `file` is written.
fn watch_modifications(file: &File) -> std::io::Result<AsyncDescriptor> {
    // SAFETY: inotify_init1 returns a new descriptor, owned from here on.
    let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: see above.
    let inotify = unsafe { OwnedFd::from_raw_fd(raw) };
    // The file's own descriptor names it, even if the box's directory was renamed meanwhile.
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap_or_default();
    // SAFETY: the path is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    AsyncDescriptor::new(inotify)
}

/// Rule 2: the only reader of the control connection; it publishes the exit and routes acks.
async fn read_replies(control: Arc<Control>) {
    let Some(socket) = control.socket.get() else { return };
    let ending = loop {
        match socket.recv().await {
            Ok(Some((Reply::Exited { code, signal }, _))) => {
                let exit_code = match (code, signal) {
                    (_, Some(signal)) => -signal,
                    (Some(code), None) => code,
                    (None, None) => -1,
                };
                let timed_out = control.timed_out.load(Ordering::Acquire);
                control.exit.send_replace(Some(ExitStatus { exit_code, signal, timed_out, error: None }));
            }
            Ok(Some((reply, _))) => {
                let waiter = control.acks.lock().ok().and_then(|mut acks| acks.pop_front());
                if let Some(waiter) = waiter {
                    let _ = waiter.send(reply);
                }
            }
            Ok(None) => break "the box's init closed the connection before the process exited".to_string(),
            Err(error) => break format!("lost the connection to the box's init: {error}"),
        }
    };
    control.exit.send_if_modified(|status| {
        if status.is_some() {
            return false;
        }
        *status = Some(ExitStatus { exit_code: -1, signal: None, timed_out: false, error: Some(ending.clone()) });
        true
    });
    if let Ok(mut acks) = control.acks.lock() {
        acks.clear();
    }
}

async fn enforce_timeout(control: Arc<Control>, timeout: Duration) {
    let mut exit = control.exit.subscribe();
    for (delay, signal) in [(timeout, libc::SIGTERM), (KILL_GRACE, libc::SIGKILL)] {
        if tokio::time::timeout(delay, exit.wait_for(Option::is_some)).await.is_ok() {
            return;
        }
        control.timed_out.store(true, Ordering::Release);
        let _ = send_signal(&control, signal, true).await;
    }
}

async fn send_signal(control: &Control, signal: i32, group: bool) -> Result<()> {
    if control.exit.borrow().is_some() {
        return Ok(());
    }
    let (sender, receiver) = oneshot::channel();
    {
        let _guard = control.send_lock.lock().await;
        control.acks.lock().map_err(|_| Error::Internal("ack queue poisoned".to_string()))?.push_back(sender);
        let socket = control.socket.get().ok_or_else(|| Error::InvalidState("the main process has not started, or has ended".to_string()))?;
        socket
            .send(&Request::Signal { signal, group }, &[])
            .await
            .map_err(|error| engine_error("failed to send the signal", &error))?;
    }
    match receiver.await {
        Ok(Reply::Done) | Err(_) => Ok(()),
        Ok(Reply::Refused { message }) => Err(Error::Execution(message)),
        Ok(other) => Err(Error::Engine(format!("unexpected reply to a signal: {other:?}"))),
    }
}

/// Cheap, cloneable access to an execution's control side, for use after its streams were
/// taken (waits, signals, resizes).
#[derive(Clone)]
pub struct ExecutionControl {
    control: Arc<Control>,
    terminal: Option<Arc<OwnedFd>>,
}

impl Execution {
    pub fn control(&self) -> ExecutionControl {
        ExecutionControl { control: Arc::clone(&self.control), terminal: self.terminal.clone() }
    }
}

impl ExecutionControl {
    /// Rule 2.
    pub async fn wait(&self) -> ExitStatus {
        let mut exit = self.control.exit.subscribe();
        let status = match exit.wait_for(Option::is_some).await {
            Ok(status) => status.clone(),
            Err(_) => None,
        };
        status.unwrap_or_else(lost_status)
    }

    /// The exit status if the process has already ended.
    pub fn try_status(&self) -> Option<ExitStatus> {
        self.control.exit.borrow().clone()
    }

    pub async fn signal(&self, signal: i32) -> Result<()> {
        if !(1..=64).contains(&signal) {
            return Err(Error::InvalidArgument(format!("signal must be between 1 and 64, got {signal}")));
        }
        send_signal(&self.control, signal, false).await
    }

    /// SIGKILL to the execution's whole process group.
    pub async fn kill(&self) -> Result<()> {
        send_signal(&self.control, libc::SIGKILL, true).await
    }

    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Err(Error::InvalidArgument(format!("rows and cols must be positive, got {rows}x{cols}")));
        }
        let terminal = self.terminal.as_ref().ok_or_else(|| Error::InvalidState("resize_tty needs an execution started with tty=True".to_string()))?;
        let window = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer; the descriptor is ours.
        if unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &window) } < 0 {
            return Err(engine_error("failed to resize the terminal", &std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

fn lost_status() -> ExitStatus {
    ExitStatus { exit_code: -1, signal: None, timed_out: false, error: Some("the execution's status was lost".to_string()) }
}
