//! An execution's control side: the connection to the init that alone learns the exit (rule
//! 2), the signals sent on it and their acknowledgements, and the timeout (rule 4).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use boxlite_protocol::{Reply, Request};
use tokio::sync::{oneshot, watch};

use super::fd::{self, Packet};
use super::relay::RelayCommand;
use super::{engine_error, lost_status, ExitStatus, KILL_GRACE};
use crate::error::{Error, Result};

pub(super) struct Control {
    /// Unset for the replay of a main process that has ended, and until an attach made before
    /// the box started has connected.
    pub(super) socket: OnceLock<fd::ControlSocket>,
    /// Wakes an attach still waiting for its box to start when its execution is dropped.
    pub(super) abandoned: tokio::sync::Notify,
    pub(super) exit: watch::Sender<Option<ExitStatus>>,
    acks: Mutex<Acks>,
    /// Serialises "queue an ack slot + send" so acks pair with their requests.
    send_lock: tokio::sync::Mutex<()>,
    timed_out: AtomicBool,
    /// The process's terminal (master side), for its size: set when it runs on one, for an
    /// attach made before its box started once the box has.
    pub(super) terminal: OnceLock<crate::fork::ParentOnly<OwnedFd>>,
    /// Set for an execution whose process runs elsewhere: signals and resizes go to its relay.
    pub(super) relay: OnceLock<super::relay::RelayLink>,
    /// The runtime writes the output pipes itself (a relay, a main process's follower), and
    /// ends them once all the process's output is in.
    pub(super) pipes_written_here: AtomicBool,
}

/// Acknowledgements for Signal requests, in the order they were sent.
#[derive(Default)]
struct Acks {
    waiting: VecDeque<oneshot::Sender<Reply>>,
    /// Nobody reads the replies any more (rule 2).
    closed: bool,
}

impl Control {
    pub(super) fn new(socket: Option<fd::ControlSocket>, exit: Option<ExitStatus>) -> Arc<Self> {
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
            terminal: OnceLock::new(),
            relay: OnceLock::new(),
            pipes_written_here: AtomicBool::new(false),
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

/// Rule 2: the reading of an execution's control connection, which alone learns its exit.
/// Whoever takes it from [`Execution::replies`] must read: on tokio ([`Replies::read_on_tokio`]),
/// or on its own event loop, calling [`Replies::read_arrived`] whenever [`Replies::raw`] is
/// readable until it reports the exit.
pub struct Replies {
    pub(super) control: Arc<Control>,
    pub(super) raw: RawFd,
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

/// Rule 2, on tokio: reads the control connection until the exit.
pub(super) async fn read_replies(control: Arc<Control>) {
    let Some(socket) = control.socket.get() else { return };
    while !control.take(socket.recv().await) {}
}

pub(super) async fn enforce_timeout(control: Arc<Control>, timeout: Duration) {
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

/// Sends a signal and waits for the init (or the relay) to acknowledge it.
async fn signal_acknowledged(control: &Control, signal: i32, group: bool) -> Result<()> {
    if let Some(relay) = control.relay.get() {
        if control.exit.borrow().is_some() {
            return Ok(());
        }
        let (done, delivered) = oneshot::channel();
        if relay.commands.send(RelayCommand::Signal { signal, group, done }).is_err() {
            return Ok(()); // the relay ended: so did the process
        }
        return delivered.await.unwrap_or(Ok(()));
    }
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
    pub(super) control: Arc<Control>,
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

    /// Whether the runtime writes the output pipes itself (a relay of a process that runs
    /// elsewhere, the follower of a main process's log) and ends them once the process's
    /// output is all in, whatever processes it left behind.
    pub fn pipes_written_here(&self) -> bool {
        self.control.pipes_written_here.load(std::sync::atomic::Ordering::Acquire)
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
        if let Some(relay) = self.control.relay.get() {
            if !relay.tty {
                return Err(Error::InvalidState("resize_tty needs an execution started with tty=True".to_string()));
            }
            let _ = relay.commands.send(RelayCommand::Resize { rows, cols });
            return Ok(());
        }
        let terminal = self.control.terminal.get().ok_or_else(|| Error::InvalidState("resize_tty needs an execution started with tty=True".to_string()))?;
        let terminal = terminal.get().ok_or_else(|| engine_error("failed to resize the terminal", &crate::fork::forked_away()))?;
        let window = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer; the descriptor is ours.
        if unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &window) } < 0 {
            return Err(engine_error("failed to resize the terminal", &std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

