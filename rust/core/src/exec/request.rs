//! Starting a process in a box: the request to its init, the connection the execution answers
//! on, and the init's answer.

use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxlite_protocol::{Reply, Request};

use super::control::{enforce_timeout, Control, Replies};
use super::fd::{self, Packet};
use super::{engine_error, nonblocking, output_pipe, plain_pipe, Execution, ExecSpec, IoCounters, EXEC_ANSWER_LIMIT};
use crate::error::{Error, Result};
use crate::fork::ParentOnly;

/// A new control connection to the init listening on `socket_path`.
pub(super) fn connect(socket_path: &Path) -> Result<fd::ControlSocket> {
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
    /// The requests go on the box's lifeline, which is never replaced.
    on_lifeline: bool,
}

impl Connector {
    /// For a box whose exec requests go on connections to its control socket (a detached or
    /// adopted box), connected at the first request.
    pub fn new(socket_path: PathBuf) -> Self {
        Self { socket_path, requests: Mutex::new(None), on_lifeline: false }
    }

    /// For a box tied to this runtime: its exec requests go on its `lifeline`, one descriptor
    /// for both (a running box costs the runtime's process as few descriptors as can be).
    pub fn on_lifeline(socket_path: PathBuf, lifeline: Arc<fd::ControlSocket>) -> Self {
        Self { socket_path, requests: Mutex::new(Some(lifeline)), on_lifeline: true }
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The connection exec requests travel on, connected on first use, or anew when `stale`
    /// is the one that failed.
    fn requests(&self, stale: Option<&Arc<fd::ControlSocket>>) -> Result<Arc<fd::ControlSocket>> {
        let mut requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = requests.as_ref().filter(|open| self.on_lifeline || !stale.is_some_and(|stale| Arc::ptr_eq(open, stale))) {
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
pub(super) async fn answer(socket: &fd::ControlSocket, request: &str) -> Result<Packet> {
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
type Prepared = (fd::ControlSocket, Vec<ParentOnly<OwnedFd>>, Option<[ParentOnly<OwnedFd>; 3]>);

fn prepare(tty: bool) -> Result<Prepared> {
    let (socket, theirs) = fd::ControlSocket::pair().map_err(|error| engine_error("failed to create the execution's connection", &error))?;
    let theirs = ParentOnly::new(theirs);
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
    carried: Vec<ParentOnly<OwnedFd>>,
    /// Our ends of the process's stdin, stdout and stderr; `None` with a terminal, which the
    /// init sends with its answer.
    pipes: Option<[ParentOnly<OwnedFd>; 3]>,
    timeout: Option<Duration>,
    io: Arc<IoCounters>,
    /// Counts a start that failed; taken when it runs.
    failed: Option<Box<dyn FnOnce() + Send>>,
}

/// What [`Requested::try_answer`] found.
#[expect(clippy::large_enum_variant, reason = "made once per exec and moved straight to its caller: a box would add an allocation to the exec path")]
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
        let sent = self.carried().and_then(|carried| self.connector.try_send_exec(&self.request, &carried));
        self.after_send(sent)
    }

    /// Sends the request to the init, waiting for room.
    pub async fn send(mut self) -> Result<Self> {
        let sent = match self.carried() {
            Ok(carried) => self.connector.send_exec(&self.request, &carried).await.map(|()| true),
            Err(error) => Err(error),
        };
        self.after_send(sent).map(|_| self)
    }

    /// What the request carries, as sent.
    fn carried(&self) -> Result<Vec<&OwnedFd>> {
        self.carried.iter().map(|held| held.get().ok_or_else(|| engine_error("failed to send the exec request", &crate::fork::forked_away()))).collect()
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
fn execution(socket: fd::ControlSocket, pipes: Option<[ParentOnly<OwnedFd>; 3]>, timeout: Option<Duration>, io: Arc<IoCounters>, received: std::io::Result<Packet>) -> Result<Execution> {
    let (pid, mut fds) = match received {
        Ok(Packet::Reply(Reply::Started { pid }, fds)) => (pid, fds),
        // The init's message says "not found" itself, as the error's kind does.
        Ok(Packet::Reply(Reply::Failed { message, not_found: true }, _)) => return Err(Error::NotFound(message.strip_prefix("not found: ").unwrap_or(&message).to_string())),
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
            (ParentOnly::new(writer), ParentOnly::new(nonblocking(reader)?), None, Some(ParentOnly::new(master)))
        }
    };
    let raw = socket.raw();
    let control = Control::new(Some(socket), None);
    if let Some(master) = terminal {
        let _ = control.terminal.set(master);
    }
    if let Some(timeout) = timeout {
        tokio::spawn(enforce_timeout(Arc::clone(&control), timeout));
    }
    let replies = Some(Replies { control: Arc::clone(&control), raw });
    Ok(Execution { id: crate::ids::new_box_id(), pid, io, control, stdout: Some(stdout), stderr, stdin: Some(stdin), replies })
}

