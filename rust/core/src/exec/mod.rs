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

pub(crate) mod fd;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use boxlite_protocol::{Reply, Request, TtySize};
use tokio::sync::{oneshot, watch};

pub use fd::{enlarge_pipe, AsyncDescriptor};
use fd::Packet;

use crate::error::{Error, Result};

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

struct Control {
    /// Unset for the replay of a main process that has ended, and until an attach made before
    /// the box started has connected.
    socket: OnceLock<fd::ControlSocket>,
    /// Wakes an attach still waiting for its box to start when its execution is dropped.
    abandoned: tokio::sync::Notify,
    exit: watch::Sender<Option<ExitStatus>>,
    acks: Mutex<Acks>,
    /// Serialises "queue an ack slot + send" so acks pair with their requests.
    send_lock: tokio::sync::Mutex<()>,
    timed_out: AtomicBool,
}

/// Acknowledgements for Signal requests, in the order they were sent.
#[derive(Default)]
struct Acks {
    waiting: VecDeque<oneshot::Sender<Reply>>,
    /// Nobody reads the replies any more (rule 2).
    closed: bool,
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
    /// The write end of the process's stdin (or the terminal), for the consumer to make async
    /// ([`AsyncDescriptor::new`]) where it writes: an execution whose stdin is never written
    /// costs the reactor nothing.
    pub stdin: Option<OwnedFd>,
    /// Rule 2: taken by whoever is to read the control connection, and so learn the exit.
    /// `None` for a followed main process, whose exit the runtime learns by itself.
    pub replies: Option<Replies>,
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
            acks: Mutex::new(Acks::default()),
            send_lock: tokio::sync::Mutex::new(()),
            timed_out: AtomicBool::new(false),
        })
    }
}

impl Control {
    fn acks(&self) -> std::sync::MutexGuard<'_, Acks> {
        self.acks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rule 2: takes in one packet from the init; true once reading is over, the exit being
    /// known (or, if the connection ended first, recorded as lost).
    fn take(&self, received: std::io::Result<Packet>) -> bool {
        let ending = match received {
            Ok(Packet::Reply(Reply::Exited { code, signal }, _)) => {
                let exit_code = match (code, signal) {
                    (_, Some(signal)) => -signal,
                    (Some(code), None) => code,
                    (None, None) => -1,
                };
                let timed_out = self.timed_out.load(Ordering::Acquire);
                self.exit.send_replace(Some(ExitStatus { exit_code, signal, timed_out, error: None }));
                None
            }
            Ok(Packet::Reply(reply, _)) => {
                if let Some(waiter) = self.acks().waiting.pop_front() {
                    let _ = waiter.send(reply);
                }
                return false;
            }
            Ok(Packet::Closed) => Some("the box's init closed the connection before the process exited".to_string()),
            Err(error) => Some(format!("lost the connection to the box's init: {error}")),
        };
        self.stop_reading(ending);
        true
    }

    /// Nobody reads the replies any more. An exit not known by then is recorded as lost, with
    /// why (`ending`), and signals still waiting for an acknowledgement succeed.
    fn stop_reading(&self, ending: Option<String>) {
        if let Some(ending) = ending {
            self.exit.send_if_modified(|status| {
                if status.is_some() {
                    return false;
                }
                *status = Some(ExitStatus { exit_code: -1, signal: None, timed_out: false, error: Some(ending) });
                true
            });
        }
        let mut acks = self.acks();
        acks.closed = true;
        acks.waiting.clear();
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

/// Control connections to one box's init. Exec requests travel on one connection kept open;
/// each carries the connection its execution answers on (our socket pair's other end), so
/// starting a process costs the init no accept and us no path lookup, and wakes the init once.
/// Each execution still has a connection of its own (rule 3).
pub struct Connector {
    socket_path: PathBuf,
    requests: Mutex<Option<Arc<fd::ControlSocket>>>,
}

impl Connector {
    pub fn new(socket_path: PathBuf) -> Self {
        Self { socket_path, requests: Mutex::new(None) }
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The connection exec requests travel on, connected on first use, or anew when `stale`
    /// is the one that failed.
    fn requests(&self, stale: Option<&Arc<fd::ControlSocket>>) -> Result<Arc<fd::ControlSocket>> {
        let mut requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = requests.as_ref().filter(|open| !stale.is_some_and(|stale| Arc::ptr_eq(open, stale))) {
            return Ok(Arc::clone(open));
        }
        let open = Arc::new(connect(&self.socket_path)?);
        *requests = Some(Arc::clone(&open));
        Ok(open)
    }

    /// Connects the request connection ahead of the first exec; a failure leaves that exec to
    /// connect (and report why it cannot).
    pub fn connect_ahead(&self) {
        let _ = self.requests(None);
    }

    /// A connection of its own, for a request that is answered on it (Shutdown, Attach).
    pub(crate) fn connect(&self) -> Result<fd::ControlSocket> {
        connect(&self.socket_path)
    }

    /// Sends an Exec request with the descriptors it carries, without waiting: false if the
    /// init's queue is full. A request connection the init closed (it drops one whose packet
    /// it could not take) is replaced once.
    fn try_send_exec(&self, request: &Request, carried: &[&OwnedFd]) -> Result<bool> {
        let requests = self.requests(None)?;
        match requests.try_send(request, carried) {
            Err(error) if matches!(error.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => {
                self.requests(Some(&requests))?.try_send(request, carried).map_err(|error| self.not_taken(&error))
            }
            sent => sent.map_err(|error| self.not_taken(&error)),
        }
    }

    /// [`Connector::try_send_exec`], waiting for room.
    async fn send_exec(&self, request: &Request, carried: &[&OwnedFd]) -> Result<()> {
        if self.try_send_exec(request, carried)? {
            return Ok(());
        }
        self.requests(None)?.send(request, carried).await.map_err(|error| self.not_taken(&error))
    }

    fn not_taken(&self, error: &std::io::Error) -> Error {
        match error.raw_os_error() {
            Some(libc::EMSGSIZE) => Error::InvalidArgument(format!("the command, its arguments and its environment are too large to send: {error}")),
            Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN) => {
                Error::InvalidState(format!("the box is not running (its init at {} took no request: {error})", self.socket_path.display()))
            }
            _ => engine_error("failed to send the exec request", error),
        }
    }
}

fn no_answer() -> Error {
    Error::Engine(format!("the box's init did not answer within {EXEC_ANSWER_LIMIT:?}"))
}

/// The init's answer to a `request` (exec or attach) just sent on `socket`.
async fn answer(socket: &fd::ControlSocket, request: &str) -> Result<Packet> {
    tokio::time::timeout(EXEC_ANSWER_LIMIT, socket.recv())
        .await
        .map_err(|_| no_answer())?
        .map_err(|error| engine_error(&format!("failed to read the {request} reply"), &error))
}

/// Prepares the request to start `spec` in the box whose init `connector` reaches: the
/// process's pipes and the connection its execution answers on. Nothing is sent until
/// [`Requested::send`]. `failed` runs if the process does not start.
pub fn request(connector: Arc<Connector>, spec: ExecSpec, io: Arc<IoCounters>, failed: Box<dyn FnOnce() + Send>) -> Result<Requested> {
    let made = prepare(spec.tty.is_some());
    let (socket, carried, pipes) = match made {
        Ok(made) => made,
        Err(error) => {
            failed();
            return Err(error);
        }
    };
    let request = Request::Exec { argv: spec.argv, env: spec.env, cwd: spec.cwd, user: spec.user, tty: spec.tty };
    Ok(Requested { connector, request, socket, carried, pipes, timeout: spec.timeout, io, failed: Some(failed) })
}

/// Our end of the execution's connection; what the request carries to the init (the other end,
/// then, without a terminal, the process's ends of its stdin, stdout and stderr); and our ends
/// of those pipes.
type Prepared = (fd::ControlSocket, Vec<OwnedFd>, Option<[OwnedFd; 3]>);

fn prepare(tty: bool) -> Result<Prepared> {
    let (socket, theirs) = fd::ControlSocket::pair().map_err(|error| engine_error("failed to create the execution's connection", &error))?;
    if tty {
        return Ok((socket, vec![theirs], None));
    }
    let (stdin_read, stdin_write) = plain_pipe()?;
    let (stdout_read, stdout_write) = output_pipe()?;
    let (stderr_read, stderr_write) = output_pipe()?;
    Ok((socket, vec![theirs, stdin_read, stdout_write, stderr_write], Some([stdin_write, stdout_read, stderr_read])))
}

/// An exec request, from its preparation until the init answers whether the process started.
pub struct Requested {
    connector: Arc<Connector>,
    request: Request,
    socket: fd::ControlSocket,
    /// Until the request is sent.
    carried: Vec<OwnedFd>,
    /// Our ends of the process's stdin, stdout and stderr; `None` with a terminal, which the
    /// init sends with its answer.
    pipes: Option<[OwnedFd; 3]>,
    timeout: Option<Duration>,
    io: Arc<IoCounters>,
    /// Counts a start that failed; taken when it runs.
    failed: Option<Box<dyn FnOnce() + Send>>,
}

/// What [`Requested::try_answer`] found.
pub enum Answer {
    Ready(Result<Execution>),
    NotYet(Requested),
}

impl Requested {
    /// The descriptor that becomes readable when the answer arrives.
    pub fn raw(&self) -> RawFd {
        self.socket.raw()
    }

    /// Sends the request to the init without waiting: false if the init's queue is full (then
    /// [`Requested::send`]). Once sent, our copies of what it carried are closed.
    pub fn try_send(&mut self) -> Result<bool> {
        let carried: Vec<&OwnedFd> = self.carried.iter().collect();
        let sent = self.connector.try_send_exec(&self.request, &carried);
        drop(carried);
        self.after_send(sent)
    }

    /// Sends the request to the init, waiting for room.
    pub async fn send(mut self) -> Result<Self> {
        let carried: Vec<&OwnedFd> = self.carried.iter().collect();
        let sent = self.connector.send_exec(&self.request, &carried).await.map(|()| true);
        drop(carried);
        self.after_send(sent).map(|_| self)
    }

    fn after_send(&mut self, sent: Result<bool>) -> Result<bool> {
        match sent {
            Ok(true) => self.carried.clear(),
            Ok(false) => {}
            Err(_) => self.count_failure(),
        }
        sent
    }

    fn count_failure(&mut self) {
        if let Some(failed) = self.failed.take() {
            failed();
        }
    }

    /// Gives up waiting for the answer (after [`EXEC_ANSWER_LIMIT`]): the error to report. The
    /// connection closes when this is dropped, and the init kills what it started.
    pub fn overdue(&mut self) -> Error {
        self.count_failure();
        no_answer()
    }

    /// The answer if it has arrived, without waiting. In tokio's context (`Handle::enter`).
    pub fn try_answer(self) -> Answer {
        match self.socket.try_recv(&mut Vec::new()) {
            Ok(None) => Answer::NotYet(self),
            Ok(Some(packet)) => Answer::Ready(self.started(Ok(packet))),
            Err(error) => Answer::Ready(self.started(Err(error))),
        }
    }

    /// Waits for the answer. The execution's replies are left for the caller to read.
    pub async fn answer(mut self) -> Result<Execution> {
        match answer(&self.socket, "exec").await {
            Ok(packet) => self.started(Ok(packet)),
            Err(error) => {
                self.count_failure();
                Err(error)
            }
        }
    }

    fn started(self, received: std::io::Result<Packet>) -> Result<Execution> {
        let Self { socket, pipes, timeout, io, failed, .. } = self;
        let started = execution(socket, pipes, timeout, io, received);
        if let (Err(_), Some(failed)) = (&started, failed) {
            failed();
        }
        started
    }

    /// Sends the request, waiting for room, then waits for the answer.
    pub async fn run(self) -> Result<Execution> {
        self.send().await?.answer().await
    }
}

/// The execution the init's answer on `socket` started; its connection is the execution's.
fn execution(socket: fd::ControlSocket, pipes: Option<[OwnedFd; 3]>, timeout: Option<Duration>, io: Arc<IoCounters>, received: std::io::Result<Packet>) -> Result<Execution> {
    let (pid, mut fds) = match received {
        Ok(Packet::Reply(Reply::Started { pid }, fds)) => (pid, fds),
        Ok(Packet::Reply(Reply::Failed { message, not_found: true }, _)) => return Err(Error::NotFound(message)),
        Ok(Packet::Reply(Reply::Failed { message, .. }, _)) => return Err(Error::Execution(message)),
        Ok(Packet::Reply(other, _)) => return Err(Error::Engine(format!("unexpected reply to exec: {other:?}"))),
        Ok(Packet::Closed) => return Err(Error::InvalidState("the box stopped while starting the process".to_string())),
        Err(error) => return Err(engine_error("failed to read the exec reply", &error)),
    };
    let (stdin, stdout, stderr, terminal) = match pipes {
        Some([stdin, stdout, stderr]) => (stdin, stdout, Some(stderr), None),
        None => {
            let master = fds.pop().ok_or_else(|| Error::Engine("the init sent no terminal".to_string()))?;
            let reader = master.try_clone().map_err(|error| engine_error("failed to duplicate the terminal", &error))?;
            let writer = master.try_clone().map_err(|error| engine_error("failed to duplicate the terminal", &error))?;
            (writer, nonblocking(reader)?, None, Some(Arc::new(master)))
        }
    };
    let raw = socket.raw();
    let control = Control::new(Some(socket), None);
    if let Some(timeout) = timeout {
        tokio::spawn(enforce_timeout(Arc::clone(&control), timeout));
    }
    let replies = Some(Replies { control: Arc::clone(&control), raw });
    Ok(Execution { id: crate::ids::new_box_id(), pid, io, control, stdout: Some(stdout), stderr, stdin: Some(stdin), replies, terminal })
}

/// Rule 2: the reading of an execution's control connection, which alone learns its exit.
/// Whoever takes it from [`Execution::replies`] must read: on tokio ([`Replies::read_on_tokio`]),
/// or on its own event loop, calling [`Replies::read_arrived`] whenever [`Replies::raw`] is
/// readable until it reports the exit.
pub struct Replies {
    control: Arc<Control>,
    raw: RawFd,
}

impl Replies {
    /// The control connection's descriptor, open as long as the execution or this is held.
    pub fn raw(&self) -> RawFd {
        self.raw
    }

    /// Takes in what the init sent, without waiting. The exit once reading is over: then the
    /// descriptor needs no more watching.
    pub fn read_arrived(&self) -> Option<ExitStatus> {
        let socket = self.control.socket.get()?;
        let mut buffer = Vec::new();
        loop {
            let received = match socket.try_recv(&mut buffer) {
                Ok(None) => return None,
                Ok(Some(packet)) => Ok(packet),
                Err(error) => Err(error),
            };
            if self.control.take(received) {
                return Some(self.control.exit.borrow().clone().unwrap_or_else(lost_status));
            }
        }
    }

    /// Reads on a tokio task until the exit. In tokio's context.
    pub fn read_on_tokio(self) {
        tokio::spawn(async move { read_replies(Arc::clone(&self.control)).await });
    }
}

impl Drop for Replies {
    /// Rule 2: once the reader lets go, nothing more is learned from the connection.
    fn drop(&mut self) {
        self.control.stop_reading(Some("the execution's connection was let go before its exit".to_string()));
    }
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
async fn connect_attached(socket_path: &Path, stdin: bool) -> Result<(fd::ControlSocket, i32, Option<OwnedFd>)> {
    let socket = connect(socket_path)?;
    socket.send(&Request::Attach { stdin }, &[]).await.map_err(|error| engine_error("failed to send the attach request", &error))?;
    let (pid, mut fds) = match answer(&socket, "attach").await? {
        Packet::Reply(Reply::Started { pid }, fds) => (pid, fds),
        Packet::Reply(Reply::Failed { message, .. }, _) => return Err(Error::InvalidState(message)),
        Packet::Reply(other, _) => return Err(Error::Engine(format!("unexpected reply to attach: {other:?}"))),
        Packet::Closed => return Err(Error::InvalidState("the box stopped while attaching".to_string())),
    };
    Ok((socket, pid, fds.pop()))
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

/// A pipe for a process's output: (read end, non-blocking, for the consumer to watch; write
/// end). The consumer gives it room for a flood once it streams ([`enlarge_pipe`]).
fn output_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let (read, write) = plain_pipe()?;
    Ok((nonblocking(read)?, write))
}

/// Rule 5, for a box that has not started yet: the execution exists at once and follows the
/// main process of the run that `started` announces, from its beginning. With `stdin`, what is
/// written meanwhile reaches the process once it runs.
pub fn attach_when_started(started: StartedRun, stdin: bool) -> Result<Execution> {
    let control = Control::new(None, None);
    let (stdout, stdout_writer) = output_pipe()?;
    let (stderr, stderr_writer) = output_pipe()?;
    let (stdout_writer, stderr_writer) = (registered(stdout_writer)?, registered(stderr_writer)?);
    let (stdin_reader, ours) = if stdin {
        let (read, write) = plain_pipe()?;
        (Some(read), Some(write))
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
    Ok(Execution { id: crate::ids::new_box_id(), pid: 0, io: Arc::default(), control, stdout: Some(stdout), stderr: Some(stderr), stdin: ours, replies: None, terminal: None })
}

/// Copies what is written to an attach's stdin into the main process's, until end of file.
async fn relay(from: OwnedFd, to: OwnedFd) {
    let (Ok(from), Ok(to)) = (AsyncDescriptor::new(from), AsyncDescriptor::new(to)) else { return };
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

fn followed(pid: i32, control: Arc<Control>, output: MainOutput, stdin: Option<OwnedFd>) -> Result<Execution> {
    let follow = |file: File| -> Result<OwnedFd> {
        let (read, write) = output_pipe()?;
        follow_into(file, control.exit.subscribe(), registered(write)?)?;
        Ok(read)
    };
    let stdout = follow(output.stdout)?;
    let stderr = follow(output.stderr)?;
    Ok(Execution { id: crate::ids::new_box_id(), pid, io: Arc::default(), control, stdout: Some(stdout), stderr: Some(stderr), stdin, replies: None, terminal: None })
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

/// Rule 2, on tokio: reads the control connection until the exit.
async fn read_replies(control: Arc<Control>) {
    let Some(socket) = control.socket.get() else { return };
    while !control.take(socket.recv().await) {}
}

async fn enforce_timeout(control: Arc<Control>, timeout: Duration) {
    let mut exit = control.exit.subscribe();
    for (delay, signal) in [(timeout, libc::SIGTERM), (KILL_GRACE, libc::SIGKILL)] {
        if tokio::time::timeout(delay, exit.wait_for(Option::is_some)).await.is_ok() {
            return;
        }
        control.timed_out.store(true, Ordering::Release);
        // Not waiting for the acknowledgement: whoever reads the replies may be busy (a blocked
        // event loop), and the grace period runs from the SIGTERM regardless.
        let _ = request_signal(&control, signal, true).await;
    }
}

/// Sends a Signal request; the acknowledgement comes through the returned receiver, `None` if
/// there is nothing left to signal (rule 2).
async fn request_signal(control: &Control, signal: i32, group: bool) -> Result<Option<oneshot::Receiver<Reply>>> {
    if control.exit.borrow().is_some() {
        return Ok(None);
    }
    let (sender, receiver) = oneshot::channel();
    let _guard = control.send_lock.lock().await;
    {
        let mut acks = control.acks();
        if acks.closed {
            return Ok(None);
        }
        acks.waiting.push_back(sender);
    }
    let socket = control.socket.get().ok_or_else(|| Error::InvalidState("the main process has not started, or has ended".to_string()))?;
    let sent = socket.send(&Request::Signal { signal, group }, &[]).await;
    if sent.is_err() {
        // No acknowledgement will come for it: the next signal's must not be taken for it.
        control.acks().waiting.pop_back();
    }
    match sent {
        Ok(()) => Ok(Some(receiver)),
        // The init closes a connection once it reported the exit: the process is gone.
        Err(error) if matches!(error.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => Ok(None),
        Err(error) => Err(engine_error("failed to send the signal", &error)),
    }
}

/// Sends a signal and waits for the init to acknowledge it.
async fn signal_acknowledged(control: &Control, signal: i32, group: bool) -> Result<()> {
    let Some(receiver) = request_signal(control, signal, group).await? else { return Ok(()) };
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
        signal_acknowledged(&self.control, signal, false).await
    }

    /// SIGKILL to the execution's whole process group.
    pub async fn kill(&self) -> Result<()> {
        signal_acknowledged(&self.control, libc::SIGKILL, true).await
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
