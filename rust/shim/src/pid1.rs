//! The box's pid 1: the first process of the box's own pid namespace. The init makes it and
//! stays outside that namespace, so no box process can see or signal the init.
//!
//! The kernel delivers a signal to the first process of a pid namespace only if that process
//! handles it; SIGKILL and SIGSTOP are the exception, and only when they come from an ancestor
//! namespace. So `kill -9 -1`, `kill -9 1` or `killall sh` run inside the box cannot end the
//! main process, nor the box with it. Docker's semantics are the same, since its main process
//! is pid 1 too. A box without a main process gets an idle pid 1 that only reaps orphans.
//!
//! # Steps, in order
//!
//! 1. [`FirstProcess::spawn`], in the init ahead of need, as host root: unshare the pid
//!    namespace, then fork. The init's later children (every execution) land in the new
//!    namespace too. The two talk over a socket pair, the channel.
//! 2. In pid 1: wait for the box's config, which the init sends with the main process's stdio
//!    once it opened the host's files ([`FirstProcess::configure`]).
//! 3. Build the box's root ([`jail::enter`]). Its /proc is this namespace's, mounted by a
//!    process inside it.
//! 4. Enter the box's user namespace and confine itself as the init does: capability bounding
//!    set, no_new_privs, seccomp. Turn non-dumpable.
//! 5. Join the box's cgroups (`join_cgroups`) through the membership files the init forwards
//!    once it joined them itself ([`FirstProcess::start`]), before it starts anything.
//! 6. With a main process: become it in place (`process::exec_in_place`), on a terminal of the
//!    box's devpts when it asks for one, whose master side goes to the init first. Without
//!    one: drop every privilege, close everything and reap children forever ([`idle`]). Either
//!    way the channel closes (it is close-on-exec), which tells the init that pid 1 runs; a
//!    failure at any step is written on it instead.
//!
//! The init confines itself and joins the cgroups while pid 1 builds the root, so the start
//! waits for one message each way.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use boxlite_protocol::{decode, recv_packet, recv_with_fds, send_packet, ShimConfig};

use crate::process::{self, Confinement, Launch, Stdio};
use crate::{jail, userns, users};

/// What the init sends with the cgroup membership files.
const CGROUPS: &[u8] = b"cgroups";
/// What pid 1 sends with the master side of its main process's terminal.
const TERMINAL: &[u8] = b"terminal";

/// What pid 1 says on the channel.
enum Message {
    /// Its main process's terminal, master side.
    Terminal(OwnedFd),
    /// Why it cannot go on.
    Failed(String),
    /// End of file: it runs.
    Running,
}

/// The init's side of the box's pid 1.
pub struct FirstProcess {
    pub pid: i32,
    channel: OwnedFd,
}

impl FirstProcess {
    /// Step 1. Made at the init's priority; the init gives it back its own when the box comes.
    pub fn spawn(namespaces: Option<&userns::BoxNamespaces>, filter: &[libc::sock_filter]) -> Result<Self, String> {
        let (ours, theirs) = socket_pair()?;
        // SAFETY: unshare affects this single-threaded process's next children only.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } < 0 {
            return Err(format!("failed to create the box's pid namespace: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: the init is single-threaded, so the child may run arbitrary code after fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("failed to fork the box's pid 1: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            drop(ours);
            run(&theirs, namespaces, filter)
        }
        Ok(Self { pid, channel: ours })
    }

    /// Step 2, from the init: the config as the runtime sent it, and the main process's stdin,
    /// stdout and stderr when the box has one (the init's copies are closed afterwards).
    pub fn configure(&self, config: &[u8], main_stdio: Option<[OwnedFd; 3]>) -> Result<(), String> {
        let stdio: Vec<_> = main_stdio.iter().flatten().map(AsFd::as_fd).collect();
        send_packet(self.channel.as_fd(), config, &stdio).map_err(|error| format!("failed to send the box's pid 1 its config: {error}"))
    }

    /// Steps 3 to 6, from the init: forwards the cgroup membership files, then waits until pid
    /// 1 runs (the main process, or idle) or reports why it cannot. Its pid, and its main
    /// process's terminal (master side) when it runs on one.
    /// `idle_expected`: the box has no main process.
    pub fn start(self, cgroup_files: &[OwnedFd], idle_expected: bool) -> Result<(i32, Option<OwnedFd>), String> {
        let files: Vec<_> = cgroup_files.iter().map(AsFd::as_fd).collect();
        // A pid 1 that failed already has hung up: its own account is read below.
        let _ = send_packet(self.channel.as_fd(), CGROUPS, &files);
        let mut terminal = None;
        loop {
            match self.read()? {
                Message::Terminal(master) => terminal = Some(master),
                Message::Failed(message) => return Err(message),
                Message::Running => break,
            }
        }
        // End of file: the main process runs (it may have ended already, which is its own
        // business), or pid 1 idles, unless it died before saying why.
        if !idle_expected || alive(self.pid) {
            Ok((self.pid, terminal))
        } else {
            Err("the box's pid 1 ended while it started".to_string())
        }
    }

    /// One message from pid 1.
    fn read(&self) -> Result<Message, String> {
        let mut buffer = [0u8; libc::PIPE_BUF];
        let mut received = recv_with_fds(self.channel.as_fd(), &mut buffer);
        if received.as_ref().is_err_and(|error| error.kind() == std::io::ErrorKind::ConnectionReset) {
            // pid 1 failed and left with our last message unread: the kernel reports that
            // once, ahead of what pid 1 wrote before it left, which is read next.
            received = recv_with_fds(self.channel.as_fd(), &mut buffer);
        }
        let (length, mut fds) = received.map_err(|error| format!("failed to hear from the box's pid 1: {error}"))?;
        Ok(match (&buffer[..length], fds.pop()) {
            ([], _) => Message::Running,
            (TERMINAL, Some(master)) => Message::Terminal(master),
            (text, _) => Message::Failed(String::from_utf8_lossy(text).into_owned()),
        })
    }
}

fn socket_pair() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two new descriptors, owned from here on.
    unsafe {
        if libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) < 0 {
            return Err(format!("failed to create the channel to the box's pid 1: {}", std::io::Error::last_os_error()));
        }
        // A packet must fit the sender's buffer whole: room for the largest config the runtime
        // sends (`MAX_PACKET`), where the host lets root have it.
        let room = libc::c_int::try_from(2 * boxlite_protocol::MAX_PACKET).unwrap_or(libc::c_int::MAX);
        libc::setsockopt(fds[0], libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, std::ptr::addr_of!(room).cast(), std::mem::size_of_val(&room) as libc::socklen_t);
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Steps 2 to 6, in pid 1.
fn run(channel: &OwnedFd, namespaces: Option<&userns::BoxNamespaces>, filter: &[libc::sock_filter]) -> ! {
    let mut buffer = Vec::new();
    let (config, stdio) = match recv_packet(channel.as_fd(), &mut buffer) {
        Ok((length, stdio)) if length > 0 => match decode::<ShimConfig>(&buffer[..length]) {
            Ok(config) => (config, stdio),
            Err(error) => fail(channel, &format!("bad config: {error}")),
        },
        // The init went away before its box came: nothing to do.
        // SAFETY: leaving without the exit handlers of a process forked from the init.
        _ => unsafe { libc::_exit(0) },
    };
    // Read while /proc is the host's, as the init reads its own.
    let confinement = Confinement::new(&config);
    let prepared = prepare(&config, namespaces, filter, channel);
    if let Err(message) = prepared {
        fail(channel, &message);
    }
    let Some(main) = &config.main else { idle(channel, confinement.sets_groups) };
    let identity = users::Accounts::new(config.user_namespace.map(|map| map.size)).resolve(main.user.as_deref()).unwrap_or_else(|message| fail(channel, &message));
    let mut env = main.env.clone();
    if !env.iter().any(|entry| entry.starts_with("HOME=")) {
        env.push(format!("HOME={}", identity.home));
    }
    let stdio = match (&main.tty, <[OwnedFd; 3]>::try_from(stdio)) {
        // From the box's own devpts, now that its root is built.
        (Some(size), _) => {
            let (master, slave) = process::open_pty(size).unwrap_or_else(|error| fail(channel, &error.to_string()));
            if let Err(error) = send_packet(channel.as_fd(), TERMINAL, &[master.as_fd()]) {
                fail(channel, &format!("failed to hand the init the main process's terminal: {error}"));
            }
            Stdio::Terminal { slave }
        }
        (None, Ok(pipes)) => Stdio::Pipes(pipes),
        (None, Err(_)) => fail(channel, "the main process's stdio did not come with the config"),
    };
    let launch = Launch { confinement: &confinement, argv: &main.argv, env, cwd: main.cwd.as_deref(), identity: &identity, stdio: &stdio };
    process::exec_in_place(&launch, channel.as_raw_fd())
}

/// Steps 3 to 5.
fn prepare(config: &ShimConfig, namespaces: Option<&userns::BoxNamespaces>, filter: &[libc::sock_filter], channel: &OwnedFd) -> Result<(), String> {
    jail::enter(config, namespaces).map_err(|error| error.to_string())?;
    if let Some(namespaces) = namespaces {
        userns::enter(namespaces.own())?;
    }
    Confinement::apply_to_init(config, filter)?;
    // Box processes run as the same uid in the same user namespace: they may not trace pid 1 or
    // read its memory.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let mut buffer = [0u8; 8];
    let (length, files) = recv_with_fds(channel.as_fd(), &mut buffer).map_err(|error| format!("failed to receive the box's cgroups: {error}"))?;
    if &buffer[..length] != CGROUPS {
        // The init went away, or could not go on: nothing is left to do.
        // SAFETY: leaving without the exit handlers of a process forked from the init.
        unsafe { libc::_exit(1) };
    }
    // Writing to a descriptor the runtime opened is all joining takes: the filter allows it.
    crate::join_cgroups(&files)
}

/// Writes `message` for the init and leaves.
fn fail(channel: &OwnedFd, message: &str) -> ! {
    let _ = send_packet(channel.as_fd(), message.as_bytes(), &[]);
    // SAFETY: leaving without the exit handlers of a process forked from the init.
    unsafe { libc::_exit(1) }
}

/// pid 1 of a box without a main process: box root with no capability at all, holding nothing
/// of the host's, with no signal handler (so nothing in the box can signal it); it reaps the
/// orphans the kernel gives it.
fn idle(channel: &OwnedFd, sets_groups: bool) -> ! {
    if let Err(message) = drop_privileges(sets_groups) {
        fail(channel, &message);
    }
    for target in 0..3 {
        process::redirect_to_null(target);
    }
    // SAFETY: close_range over descriptors 3 and up (the channel among them: the init reads its
    // end of file as "running"), then a blocked SIGCHLD waited for synchronously; a blocked
    // signal is queued even for pid 1, and reaping is all it does.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        // Whatever close_range did, the init must see the channel's end.
        libc::close(channel.as_raw_fd());
        let mut children: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut children);
        libc::sigaddset(&mut children, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_SETMASK, &children, std::ptr::null_mut());
        loop {
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
            libc::sigwaitinfo(&children, std::ptr::null_mut());
        }
    }
}

/// Box root (the host's unprivileged id that box root maps to), with empty capability sets and
/// no supplementary group (`sets_groups`: where the box may change them).
fn drop_privileges(sets_groups: bool) -> Result<(), String> {
    /// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
    const VERSION_3: u32 = 0x2008_0522;
    let header = [VERSION_3, 0u32];
    let data = [0u32; 6];
    // SAFETY: raw setgroups/setgid/setuid with integer arguments, and capset reading a header and
    // two data structs (three u32 each) from locals that outlive the call.
    let dropped = unsafe {
        (!sets_groups || libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0)
            && libc::syscall(libc::SYS_setgid, 0) == 0
            && libc::syscall(libc::SYS_setuid, 0) == 0
            && libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) == 0
    };
    if !dropped {
        return Err(format!("failed to drop the privileges of the box's pid 1: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether our child `pid` has not exited (it is not reaped here).
fn alive(pid: i32) -> bool {
    // SAFETY: waitid with WNOWAIT only looks; `info` is a valid out-pointer.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) == 0 && info.si_pid() == 0
    }
}

/// What `signal`, sent to pid 1 from outside the box, does to it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It would end an ordinary process (its default action terminates), and pid 1 neither
    /// catches, blocks nor ignores it. The kernel drops such a signal for pid 1; the init then
    /// ends pid 1 as the signal would have.
    Ends,
    /// As `Ends`, but pid 1 blocks it for now: the kernel queues it, and drops it when pid 1
    /// unblocks it unless pid 1 caught it meanwhile.
    Blocked,
    /// Pid 1 catches or ignores it, or it does not end a process: the kernel's business.
    Spared,
}

pub fn fate(signal: i32) -> Fate {
    let default_ignored_or_stops = [libc::SIGCHLD, libc::SIGURG, libc::SIGWINCH, libc::SIGCONT, libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];
    if default_ignored_or_stops.contains(&signal) || !(1..=64).contains(&signal) {
        return Fate::Spared;
    }
    // The init has no pid in the box's namespace, whose /proc this is: pid 1 there is the
    // box's pid 1.
    let Ok(status) = std::fs::read_to_string("/proc/1/status") else { return Fate::Spared };
    let bit = 1u64 << (signal - 1);
    let has = |field: &str| status.lines().find_map(|line| line.strip_prefix(field)).and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok()).is_none_or(|set| set & bit != 0);
    if has("SigIgn:") || has("SigCgt:") {
        Fate::Spared
    } else if has("SigBlk:") {
        Fate::Blocked
    } else {
        Fate::Ends
    }
}

/// Whether any process besides pid 1 is left in the box (orphans included, which are pid 1's
/// children and not the init's).
pub fn others_left() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().any(|entry| entry.file_name().to_str().is_some_and(|name| name != "1" && name.bytes().all(|byte| byte.is_ascii_digit())))
}
