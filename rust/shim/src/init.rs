//! The box's init: pid 1 of the namespace the shim made. The box's own pid namespace is nested
//! in it, with the box's pid 1 first (`pid1`); the init is invisible from there.
//!
//! # Rules
//!
//! 1. It reaps every process it started, and reports the exit of each to the connection that
//!    asked for it, exactly once. (Orphans in the box are reaped by the box's pid 1.)
//! 2. An execution is tied to its connection: when the connection closes before the process
//!    exits, the process's whole group is killed.
//! 3. It shuts the box down on `Shutdown`, on SIGTERM, and — unless the box is detached — when
//!    the lifeline (stdin, which also carries the runtime's exec requests) closes: SIGTERM to
//!    every process, SIGKILL once the grace period ends, and it exits when no process is left.
//!    The kernel then tears down the namespaces and the box's mounts with them. The box's pid 1
//!    ends once nothing else is left in the box, or, when it is the main process, as soon as
//!    SIGTERM would end an ordinary process (rule 7).
//! 4. It is single-threaded and, once serving, never blocks except in `poll`.
//! 5. Every process it starts runs with the box's capability bounding set (Docker's default
//!    by default), no_new_privs and the seccomp filter of `seccomp.rs`, all inherited from the
//!    init, which set them on itself before serving; the init itself is not dumpable, so box
//!    processes cannot trace it.
//! 6. The box's main process, if it has one, is the box's pid 1, started before the init
//!    reports ready. When it exits, the kernel ends every other process of the box (whose
//!    exits are reported first), then its status is written to the status file, then every
//!    attached connection hears of it, and the box stops, as a container does when its main
//!    process ends. A main process on a terminal has its output copied from the terminal's
//!    master side into its stdout file as it comes, and what the terminal still holds when
//!    the process ends is copied before its status is written.
//! 7. Signals the runtime sends the main process (a stop's SIGTERM, `signal()` through attach)
//!    act as on an ordinary process: the kernel drops a signal pid 1 leaves at its default
//!    action, so when that action would end it, the init ends it with SIGKILL and records the
//!    signal that was asked for. One that pid 1 blocks when it is asked for is looked at again
//!    each turn until pid 1 unblocks it (the kernel then drops it) or catches or ignores it.
//!    Signals from inside the box get the kernel's pid 1 treatment.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use boxlite_protocol::{decode, encode, recv_packet, send_packet, Reply, Request, ShimConfig};

use crate::main_process::{Followed, Main};
use crate::process::{self, Launch, Stdio};
use crate::users;

struct Connection {
    socket: OwnedFd,
    /// The running process this connection started or follows, until its exit is reported.
    pid: Option<i32>,
    /// Whether the process belongs to this connection (rule 2), rather than being followed.
    owns: bool,
    /// The lifeline (rule 3): exec requests come on it, nothing is sent on it, and its end
    /// shuts the box down.
    lifeline: bool,
}

/// What the init holds from its making on.
pub struct Held {
    pub confinement: process::Confinement,
    /// Its signalfd.
    pub signals: OwnedFd,
    /// Its control socket.
    pub listener: UnixListener,
    /// The sockets of a box with a network ([`Request::Network`]).
    pub network: Option<crate::network::BoxSockets>,
}

pub struct Init {
    confinement: process::Confinement,
    network: Option<crate::network::BoxSockets>,
    listener: Option<UnixListener>,
    signals: OwnedFd,
    connections: Vec<Connection>,
    shutdown: Option<Shutdown>,
    buffer: Vec<u8>,
    main: Option<Main>,
    /// The box's pid 1 (`pid1`), until it is reaped.
    first: Option<i32>,
    /// The signal rule 7 ended the main process for, recorded as its end.
    ended_for: Option<i32>,
    /// Signals asked for the main process while it blocked them (rule 7), looked at each turn.
    blocked_for_first: Vec<i32>,
    accounts: users::Accounts,
    stack: process::ChildStack,
}

/// How often a shutdown, or a signal the main process blocked, looks again at the box's pid 1
/// (`Init::end_first_when_due`, `Init::end_first_when_unblocked`).
const SHUTDOWN_CHECK: Duration = Duration::from_millis(10);

struct Shutdown {
    deadline: Instant,
    killed: bool,
}

fn log(message: &str) {
    eprintln!("boxlite-shim[init]: {message}");
}

/// Every disposition at its default, so a child only has to clear the signal mask
/// (`process::launch`): ignored dispositions would survive its exec. (The C library's own
/// real-time signals and SIGKILL/SIGSTOP refuse the call; they need no reset.)
pub fn reset_signal_dispositions() {
    for signal in 1..=libc::SIGRTMAX() {
        // SAFETY: signal(2) with the default disposition, no handler pointer.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

pub fn block_signals() -> OwnedFd {
    // SAFETY: builds a signal set, blocks it for this thread, and opens a signalfd for it; the
    // returned descriptor is owned by the caller.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        // SIGPIPE is blocked, not ignored: a write to a closed pipe fails with EPIPE instead.
        let mut blocked = set;
        libc::sigaddset(&mut blocked, libc::SIGPIPE);
        libc::sigprocmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            log(&format!("signalfd failed: {}", std::io::Error::last_os_error()));
            libc::_exit(1);
        }
        OwnedFd::from_raw_fd(fd)
    }
}

impl Init {
    pub fn new(config: &ShimConfig, held: Held, first: i32, main: Option<Main>) -> Self {
        let Held { confinement, signals, listener, network } = held;
        // SAFETY: fd 0 is the lifeline socket inherited from the first process; we take ownership.
        let stdin = unsafe { OwnedFd::from_raw_fd(libc::STDIN_FILENO) };
        let mut connections = Vec::new();
        if config.detached {
            // Not closed but covered: a free fd 0 would be handed out to the next pipe, and a
            // process given it as a source of its stdio would lose it at exec.
            // The descriptor is replaced in place: dup2 closes the lifeline socket.
            std::mem::forget(stdin);
            process::redirect_to_null(libc::STDIN_FILENO);
        } else {
            connections.push(Connection { socket: stdin, pid: None, owns: false, lifeline: true });
        }
        // Box processes run as the same uid as the init; a non-dumpable init cannot be ptraced or
        // have its memory read through /proc by them.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        Self {
            confinement,
            network,
            listener: Some(listener),
            signals,
            connections,
            shutdown: None,
            buffer: Vec::new(),
            main: main.map(|main| main.started(first)),
            first: Some(first),
            ended_for: None,
            blocked_for_first: Vec::new(),
            accounts: users::Accounts::new(config.user_namespace.map(|map| map.size)),
            stack: process::ChildStack::new(),
        }
    }

    pub fn serve(mut self) -> ! {
        loop {
            self.turn();
        }
    }

    fn turn(&mut self) {
        let mut pollfds = vec![pollfd(self.signals.as_fd())];
        let listener_index = self.listener.as_ref().map(|listener| {
            pollfds.push(pollfd(listener.as_fd()));
            pollfds.len() - 1
        });
        let terminal_index = self.main.as_ref().and_then(Main::terminal_to_poll).map(|master| {
            pollfds.push(pollfd(master));
            pollfds.len() - 1
        });
        let first_connection = pollfds.len();
        pollfds.extend(self.connections.iter().map(|connection| pollfd(connection.socket.as_fd())));
        let timeout = self.shutdown.as_ref().filter(|shutdown| !shutdown.killed).map_or(-1, |shutdown| {
            let mut left = shutdown.deadline.saturating_duration_since(Instant::now());
            if self.first.is_some() && (self.main.is_none() || self.ended_for.is_none()) {
                // What `end_first_when_due` waits for wakes nobody here: orphans are pid 1's
                // children, and a signal mask is no event.
                left = left.min(SHUTDOWN_CHECK);
            }
            i32::try_from(left.as_millis()).unwrap_or(i32::MAX)
        });
        // The same for a signal the main process blocked when it was asked for.
        let check = i32::try_from(SHUTDOWN_CHECK.as_millis()).unwrap_or(i32::MAX);
        let timeout = if self.blocked_for_first.is_empty() || (0..=check).contains(&timeout) { timeout } else { check };
        // SAFETY: pollfds is a valid array of its stated length for the duration of the call.
        let ready = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
        if ready < 0 {
            return; // EINTR
        }
        let readable = |index: usize| pollfds[index].revents != 0;
        if readable(0) {
            self.handle_signals();
        }
        if terminal_index.is_some_and(readable) {
            self.copy_terminal_output();
        }
        // Connections first: the indices below refer to the list as it was polled.
        let ready_connections: Vec<usize> =
            (0..self.connections.len()).filter(|index| readable(first_connection + index)).collect();
        for index in ready_connections.into_iter().rev() {
            self.handle_connection(index);
        }
        if let Some(index) = listener_index {
            if readable(index) {
                self.accept();
            }
        }
        if let Some(shutdown) = &mut self.shutdown {
            if !shutdown.killed && Instant::now() >= shutdown.deadline {
                shutdown.killed = true;
                // SAFETY: kill(-1) from the pid namespace's init signals every other process in it.
                unsafe { libc::kill(-1, libc::SIGKILL) };
            }
        }
        self.reap();
        self.end_first_when_due();
        self.end_first_when_unblocked();
    }

    /// Rules 3 and 7, while a shutdown waits: an idle pid 1 ends, taking the box's pid
    /// namespace with it, once nothing else is left in the box; a main process ends as the
    /// shutdown's SIGTERM would end an ordinary process, once it leaves SIGTERM at its default
    /// action. Looked at again on every turn: a shell blocks signals for a moment while it
    /// forks, and the SIGTERM the kernel queued then is dropped when it unblocks them.
    fn end_first_when_due(&mut self) {
        let shutting_down = self.shutdown.as_ref().is_some_and(|shutdown| !shutdown.killed);
        let Some(first) = self.first.filter(|_| shutting_down) else { return };
        let due = if self.main.is_none() {
            !crate::pid1::others_left()
        } else {
            self.ended_for.is_none() && crate::pid1::fate(libc::SIGTERM) == crate::pid1::Fate::Ends
        };
        if due {
            if self.main.is_some() {
                self.ended_for = Some(libc::SIGTERM);
            }
            // SAFETY: kill(2) of our own child, reaped by `reap`.
            unsafe { libc::kill(first, libc::SIGKILL) };
        }
    }

    /// Rule 7: the main process ends as a signal asked for while it blocked the signal would
    /// have ended an ordinary process, once it unblocks it at its default action; one it
    /// catches or ignores by then is the kernel's to deliver.
    fn end_first_when_unblocked(&mut self) {
        if self.blocked_for_first.is_empty() {
            return;
        }
        let Some(first) = self.first.filter(|_| self.ended_for.is_none()) else {
            self.blocked_for_first.clear();
            return;
        };
        let mut ends = None;
        self.blocked_for_first.retain(|signal| match crate::pid1::fate(*signal) {
            crate::pid1::Fate::Blocked => true,
            crate::pid1::Fate::Ends => {
                ends = ends.or(Some(*signal));
                false
            }
            crate::pid1::Fate::Spared => false,
        });
        if let Some(signal) = ends {
            self.ended_for = Some(signal);
            self.blocked_for_first.clear();
            // SAFETY: kill(2) of our own child, reaped by `reap`.
            unsafe { libc::kill(first, libc::SIGKILL) };
        }
    }

    /// Rule 7: sends `signal` to the main process (or its group) as to an ordinary process.
    fn signal_main(&mut self, pid: i32, signal: i32, group: bool) -> std::io::Result<()> {
        if self.first == Some(pid) {
            match crate::pid1::fate(signal) {
                crate::pid1::Fate::Ends => {
                    self.ended_for = Some(signal);
                    // SAFETY: kill(2) of our own child, reaped by `reap`.
                    return if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
                }
                // Queued by the kernel too, for a handler installed before it is unblocked.
                crate::pid1::Fate::Blocked => self.blocked_for_first.push(signal),
                crate::pid1::Fate::Spared => {}
            }
        }
        let target = if group { -pid } else { pid };
        // SAFETY: plain kill(2) of a process this init started and has not reaped.
        if unsafe { libc::kill(target, signal) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    fn handle_signals(&mut self) {
        let mut info: libc::signalfd_siginfo = unsafe_zeroed();
        loop {
            // SAFETY: reads whole signalfd_siginfo records into a properly sized local.
            let size = unsafe {
                libc::read(self.signals.as_raw_fd(), std::ptr::addr_of_mut!(info).cast(), std::mem::size_of_val(&info))
            };
            if size <= 0 {
                break;
            }
            let signal = info.ssi_signo as i32;
            if signal == libc::SIGTERM || signal == libc::SIGINT || signal == libc::SIGHUP {
                self.begin_shutdown(Duration::from_secs(10));
            }
        }
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else { return };
        // SAFETY: accept4 returns a new descriptor owned from here on.
        let fd = unsafe { libc::accept4(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
        if fd >= 0 {
            // SAFETY: see above.
            self.connections.push(Connection { socket: unsafe { OwnedFd::from_raw_fd(fd) }, pid: None, owns: false, lifeline: false });
        }
    }

    fn handle_connection(&mut self, index: usize) {
        let received = recv_packet(self.connections[index].socket.as_fd(), &mut self.buffer);
        let (length, fds) = match received {
            Ok((0, fds)) if fds.is_empty() => {
                self.close_connection(index);
                return;
            }
            Ok(packet) => packet,
            Err(error) => {
                log(&format!("dropping a connection: {error}"));
                self.close_connection(index);
                return;
            }
        };
        let request: Request = match decode(&self.buffer[..length]) {
            Ok(request) => request,
            Err(error) => {
                self.reply(index, &Reply::Refused { message: error.to_string() }, &[]);
                return;
            }
        };
        match request {
            Request::Exec { argv, env, cwd, user, tty } => {
                // The first descriptor is the connection the execution answers on.
                let mut fds = fds.into_iter();
                let Some(socket) = fds.next() else {
                    log("dropping an exec request that came without its connection");
                    return;
                };
                self.connections.push(Connection { socket, pid: None, owns: false, lifeline: false });
                self.exec(self.connections.len() - 1, &argv, env, cwd.as_deref(), user.as_deref(), tty, fds.collect());
            }
            Request::Attach { stdin } => {
                // A connection follows one process; only then may it take the main stdin.
                let free = self.connections[index].pid.is_none();
                match self.main.as_mut().filter(|_| free).and_then(|main| main.follow(stdin)) {
                    Some(Followed { pid, stdin, terminal }) => {
                        self.connections[index].pid = Some(pid);
                        let attached: Vec<BorrowedFd<'_>> = stdin.iter().chain(terminal.iter()).map(AsFd::as_fd).collect();
                        self.reply(index, &Reply::Started { pid }, &attached);
                    }
                    _ => {
                        self.reply(index, &Reply::Failed { message: "the box has no running main process".to_string(), not_found: false }, &[]);
                    }
                }
            }
            Request::Signal { signal, group } => {
                let reply = match self.connections[index].pid {
                    Some(pid) => match self.signal_main(pid, signal, group) {
                        Ok(()) => Reply::Done,
                        Err(error) => Reply::Refused { message: format!("failed to send signal {signal}: {error}") },
                    },
                    None => Reply::Refused { message: "this connection has no process to signal".to_string() },
                };
                self.reply(index, &reply, &[]);
            }
            Request::Shutdown { grace_ms } => {
                self.reply(index, &Reply::Done, &[]);
                self.begin_shutdown(Duration::from_millis(grace_ms));
            }
            Request::Ping => {
                self.reply(index, &Reply::Done, &[]);
            }
            Request::Root => {
                // The init's root is the box's: pid 1's pivot_root moved every process of the
                // mount namespace whose root was the host's.
                let root = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open("/");
                match root.map(OwnedFd::from) {
                    Ok(root) => self.reply(index, &Reply::Done, &[root.as_fd()]),
                    Err(error) => self.reply(index, &Reply::Refused { message: format!("failed to open the box's root: {error}") }, &[]),
                };
            }
            Request::Network => {
                match self.network.as_ref().map(crate::network::BoxSockets::try_clone) {
                    Some(Ok(sockets)) => self.reply(index, &Reply::Done, &sockets.descriptors()),
                    Some(Err(error)) => self.reply(index, &Reply::Refused { message: format!("failed to hand over the box's sockets: {error}") }, &[]),
                    None => self.reply(index, &Reply::Refused { message: "the box has no network".to_string() }, &[]),
                };
            }
            Request::Socket { datagram } => {
                let kind = if datagram { libc::SOCK_DGRAM } else { libc::SOCK_STREAM };
                match crate::network::socket(kind) {
                    Ok(socket) => self.reply(index, &Reply::Done, &[socket.as_fd()]),
                    Err(error) => self.reply(index, &Reply::Refused { message: error.to_string() }, &[]),
                };
            }
        }
    }

    #[expect(clippy::too_many_arguments, reason = "the fields of one Exec request")]
    fn exec(
        &mut self,
        index: usize,
        argv: &[String],
        mut env: Vec<String>,
        cwd: Option<&str>,
        user: Option<&str>,
        tty: Option<boxlite_protocol::TtySize>,
        fds: Vec<OwnedFd>,
    ) {
        if self.shutdown.is_some() {
            self.refuse(index, Reply::Failed { message: "the box is stopping".to_string(), not_found: false });
            return;
        }
        let identity = match self.accounts.resolve(user) {
            Ok(identity) => identity,
            Err(message) => {
                self.refuse(index, Reply::Failed { message, not_found: false });
                return;
            }
        };
        if !env.iter().any(|entry| entry.starts_with("HOME=")) {
            env.push(format!("HOME={}", identity.home));
        }
        let (stdio, master) = match tty {
            Some(size) => match process::open_pty(&size) {
                Ok((master, slave)) => (Stdio::Terminal { slave }, Some(master)),
                Err(error) => {
                    self.refuse(index, Reply::Failed { message: error.to_string(), not_found: false });
                    return;
                }
            },
            None => match <[OwnedFd; 3]>::try_from(fds) {
                Ok(pipes) => (Stdio::Pipes(pipes), None),
                Err(_) => {
                    self.refuse(index, Reply::Failed { message: "exec needs stdin, stdout and stderr".to_string(), not_found: false });
                    return;
                }
            },
        };
        // The answer goes out before the init's copies of the process's stdio are closed.
        match process::launch(Launch { confinement: &self.confinement, argv, env, cwd, identity: &identity, stdio: &stdio }, &mut self.stack) {
            Ok(pid) => {
                self.connections[index].pid = Some(pid);
                self.connections[index].owns = true;
                let attached: Vec<BorrowedFd<'_>> = master.iter().map(AsFd::as_fd).collect();
                self.reply(index, &Reply::Started { pid }, &attached);
            }
            Err(error) => self.refuse(index, Reply::Failed { message: error.message, not_found: error.not_found }),
        }
    }

    /// Answers an exec that starts nothing; its connection has nothing left to carry.
    fn refuse(&mut self, index: usize, failure: Reply) {
        if self.reply(index, &failure, &[]) {
            self.connections.swap_remove(index);
        }
    }

    /// Sends `reply` on a connection; one that cannot take it is closed (rule 2). Whether it
    /// was sent.
    fn reply(&mut self, index: usize, reply: &Reply, fds: &[BorrowedFd<'_>]) -> bool {
        if self.connections[index].lifeline {
            // The runtime reads nothing there: what would be said is logged.
            log(&format!("not answered on the lifeline: {reply:?}"));
            return true;
        }
        let sent = send_packet(self.connections[index].socket.as_fd(), &encode(reply), fds).is_ok();
        if !sent {
            self.close_connection(index);
        }
        sent
    }

    /// Rule 2: a connection that goes away takes its running process group with it.
    fn close_connection(&mut self, index: usize) {
        let connection = self.connections.swap_remove(index);
        if connection.lifeline {
            // Covered, not closed (see `Init::new`); then rule 3.
            std::mem::forget(connection.socket);
            process::redirect_to_null(libc::STDIN_FILENO);
            self.begin_shutdown(Duration::from_secs(2));
            return;
        }
        if let Some(pid) = connection.pid.filter(|_| connection.owns) {
            // SAFETY: kill(2) of the group this init started; it is reaped by `reap`.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }

    fn begin_shutdown(&mut self, grace: Duration) {
        if self.shutdown.is_some() {
            return;
        }
        self.listener = None;
        self.shutdown = Some(Shutdown { deadline: Instant::now() + grace, killed: false });
        // SAFETY: see `turn`.
        unsafe { libc::kill(-1, libc::SIGTERM) };
        // A main process that handles SIGTERM has it now; for one that leaves it at its default
        // action the kernel dropped it (rule 7).
        self.end_first_when_due();
    }

    /// Rule 1: reap everything; report the processes we started.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid on any child; `status` is a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == 0 {
                return;
            }
            if pid < 0 {
                if self.shutdown.is_some() {
                    // SAFETY: nothing is left in the box: leaving ends the namespaces.
                    unsafe { libc::_exit(0) };
                }
                return;
            }
            let first_ended = self.first == Some(pid);
            let ended_for = self.ended_for.filter(|_| first_ended && libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
            let reply = if let Some(signal) = ended_for {
                Reply::Exited { code: None, signal: Some(signal) }
            } else if libc::WIFSIGNALED(status) {
                Reply::Exited { code: None, signal: Some(libc::WTERMSIG(status)) }
            } else {
                Reply::Exited { code: Some(libc::WEXITSTATUS(status)), signal: None }
            };
            if first_ended {
                self.first = None;
                if self.main.is_some() {
                    // What the terminal still holds goes to the file before the exit does.
                    self.copy_terminal_output();
                    self.record_main_exit(&reply);
                }
            }
            // Descending, so a connection closed here does not shift the rest. After its exit
            // report a connection has nothing left to carry: it is closed.
            for index in (0..self.connections.len()).rev() {
                if self.connections[index].pid == Some(pid) {
                    self.connections[index].pid = None;
                    if self.reply(index, &reply, &[]) {
                        self.connections.swap_remove(index);
                    }
                }
            }
            if first_ended {
                // The kernel ended every process of the box with its pid 1.
                self.begin_shutdown(Duration::ZERO);
            }
        }
    }

    fn copy_terminal_output(&mut self) {
        if let Some(Err(error)) = self.main.as_mut().map(Main::copy_terminal_output) {
            log(&format!("failed to record the main process's output: {error}"));
        }
    }

    /// Rule 6: the status file learns of the exit before anything else does.
    fn record_main_exit(&mut self, exit: &Reply) {
        let Some(main) = &mut self.main else { return };
        let code = match exit {
            Reply::Exited { signal: Some(signal), .. } => -signal,
            Reply::Exited { code: Some(code), .. } => *code,
            _ => -1,
        };
        if let Err(error) = main.record_exit(code) {
            log(&format!("failed to record the main process's exit: {error}"));
        }
    }
}

fn pollfd(fd: BorrowedFd<'_>) -> libc::pollfd {
    libc::pollfd { fd: fd.as_raw_fd() as RawFd, events: libc::POLLIN, revents: 0 }
}

fn unsafe_zeroed<T: Copy>() -> T {
    // SAFETY: only used for plain-data kernel structs (signalfd_siginfo), valid when zeroed.
    unsafe { std::mem::zeroed() }
}
