//! `boxlite-shim`: the first process of a box. The executable (`main.rs`) only calls [`main`];
//! the code is a library so that packaging sees the crate as a dependency of `boxlite-core`,
//! whose build script builds and embeds the executable.
//!
//! The runtime spawns it ahead of need with the start-up protocol of `boxlite_protocol`. It
//! makes the box's namespaces (mount, uts, ipc, net and pid; the init makes the user namespaces,
//! [`userns`]), forks the init (pid 1 of the new pid namespace), reports the init's pid and exits, so
//! the init belongs to no runtime process and can outlive it when the box is detached. The
//! init waits for its box's config, has the box's own pid 1 build the root in a pid namespace
//! nested in the init's ([`pid1`], [`jail::enter`]), reports ready and serves executions
//! ([`init::serve`]). For an ordinary user's runtime whose boxes have its subordinate ids, it
//! also does, one task a run, what that runtime may not with their files ([`subordinate`]).

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!("boxlite builds for Linux on x86_64 only: the box's seccomp filter names x86_64's system calls and ABIs");

mod capabilities;
mod disk;
mod guard;
mod init;
mod main_process;
mod jail;
mod netlink;
mod network;
mod nftables;
mod pid1;
mod process;
mod seccomp;
mod spawner;
mod subordinate;
mod sys;
mod users;
mod userns;

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use boxlite_protocol::{ShimConfig, SubordinateIds};

/// The start-up socket (stdin), read without a buffer: the descriptors that follow the config
/// must stay in the socket for [`join_cgroups`].
fn startup_socket() -> std::mem::ManuallyDrop<File> {
    // SAFETY: fd 0 stays open for the life of the process (it becomes the lifeline); the
    // ManuallyDrop never closes it.
    std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(libc::STDIN_FILENO) })
}

/// The config (one packet), and its bytes as they came (for the box's pid 1).
fn read_config() -> Result<(ShimConfig, Vec<u8>), String> {
    let mut bytes = Vec::new();
    let (length, _) = boxlite_protocol::recv_packet(startup_socket().as_fd(), &mut bytes).map_err(|error| format!("failed to read the config: {error}"))?;
    if length == 0 {
        return Err("the runtime went away before sending the config".to_string());
    }
    bytes.truncate(length);
    let config = serde_json::from_slice(&bytes).map_err(|error| format!("bad config: {error}"))?;
    Ok((config, bytes))
}

fn open_log(config: &ShimConfig) -> Result<(), String> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(&config.log_path)
        .map_err(|error| format!("failed to open {}: {error}", config.log_path.display()))?;
    // SAFETY: dup2 onto stderr; `log` stays a valid descriptor until it is dropped afterwards.
    unsafe { libc::dup2(log.as_raw_fd(), libc::STDERR_FILENO) };
    Ok(())
}

fn listen(config: &ShimConfig) -> Result<UnixListener, String> {
    let path = &config.socket_path;
    let _ = std::fs::remove_file(path);
    // SAFETY: socket/bind/listen on a fresh descriptor; the sockaddr is built from a path whose
    // length is checked against sun_path before copying.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("failed to create the control socket: {}", std::io::Error::last_os_error()));
        }
        let socket = OwnedFd::from_raw_fd(fd);
        let mut address: libc::sockaddr_un = std::mem::zeroed();
        address.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        if bytes.len() >= address.sun_path.len() {
            return Err(format!("control socket path too long: {}", path.display()));
        }
        for (slot, byte) in address.sun_path.iter_mut().zip(bytes) {
            *slot = *byte as libc::c_char;
        }
        let length = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
        if libc::bind(fd, std::ptr::addr_of!(address).cast(), length as libc::socklen_t) < 0
            || libc::listen(fd, 128) < 0
        {
            return Err(format!("failed to listen on {}: {}", path.display(), std::io::Error::last_os_error()));
        }
        Ok(UnixListener::from(socket))
    }
}

/// The init must survive out-of-memory kills inside its box (its processes reset this to 0).
fn protect_from_oom_killer() {
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
}

/// Only stdin (the lifeline), stdout (the status line) and stderr may cross into the box: any
/// other descriptor the runtime's process left inheritable is closed at the next exec, before
/// a box process can use it (a directory descriptor would lead out of the box).
fn close_inherited_descriptors() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors 3 and up.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
}

/// Runs in the first process: makes the namespaces and forks the init. Returns the status
/// line for the runtime; the init never returns from here.
fn prepare(arguments: &Arguments) -> String {
    close_inherited_descriptors();
    protect_from_oom_killer();
    // The runtime's working directory is no business of a box, and would stay pinned.
    let _ = std::env::set_current_dir("/");
    // Made ahead of need, while the runtime may be busy with boxes that run: the preparation
    // yields the processor to them. The init takes its priority back once it has its box.
    // Not an ordinary user's shim: its capabilities are those of a user namespace, and taking
    // a priority back takes CAP_SYS_NICE in the host's.
    let priority = (arguments.ahead_of_need && !arguments.rootless).then(Priority::lower).flatten();
    // An ordinary user's shim is root of the namespace of the runtime's spawner, which spawned
    // it (an ordinary user has euid 0 only in a user namespace that maps it so).
    // SAFETY: geteuid cannot fail.
    if arguments.rootless && unsafe { libc::geteuid() } != 0 {
        return "error an ordinary user's shim must be spawned by the runtime's spawner, root of the user namespace its boxes share".to_string();
    }
    // SAFETY: unshare affects only this (single-threaded) process; the new pid namespace applies
    // to the child forked below, the first process forked from here on.
    if unsafe { libc::unshare(jail::NAMESPACES) } < 0 {
        return format!("error failed to create the box's namespaces: {}", std::io::Error::last_os_error());
    }
    // The box's sockets: sent to the runtime, and kept by the init for the next runtime.
    let mut network = None;
    if arguments.network {
        let prepared = network::prepare_interface().and_then(network::BoxSockets::new).and_then(|sockets| {
            nftables::load_rules()?;
            boxlite_protocol::send_packet(startup_socket().as_fd(), &[boxlite_protocol::BOX_SOCKETS], &sockets.descriptors())
                .map_err(|source| sys::SysError { operation: "failed to hand the box's sockets to the runtime".to_string(), source })?;
            Ok(sockets)
        });
        match prepared {
            Ok(sockets) => network = Some(sockets),
            Err(error) => return format!("error {error}"),
        }
    }
    // SAFETY: this process is single-threaded, so the child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return format!("error failed to fork the box's init: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        // Ahead of the config too: what no box setting changes.
        init::reset_signal_dispositions();
        // Before the box's pid 1 exists: an exit it makes at once must wake the init.
        let signals = init::block_signals();
        let ahead = jail::bring_up_loopback().map_err(|error| error.to_string()).map(|()| seccomp::compile()).and_then(|filter| {
            let namespaces = arguments.user_namespace.then(|| userns::BoxNamespaces::create(arguments.rootless)).transpose()?;
            let first = pid1::FirstProcess::spawn(namespaces.as_ref(), &filter)?;
            Ok((filter, namespaces, first))
        });
        let outcome = ahead.and_then(|(filter, namespaces, first)| configure(namespaces, arguments, priority.as_ref(), &filter, signals, first, network));
        let line = match &outcome {
            Ok(_) => "ready".to_string(),
            Err(message) => format!("error {message}"),
        };
        report(&line);
        match outcome {
            Ok(init) => {
                // The status pipe is the runtime's; the init must not hold it open.
                process::redirect_to_null(libc::STDOUT_FILENO);
                init.serve()
            }
            // SAFETY: the forked init leaves without running the first process's exit handlers
            // or flushing buffers it inherited.
            Err(_) => unsafe { libc::_exit(1) },
        }
    }
    format!("warm {pid}")
}

/// Runs in the init: waits for the box's config, then has the box's pid 1 (made ahead of need)
/// build the box and start its main process. Host paths (the log, the control socket, the main
/// process's files) are opened before the root is pivoted away from the host.
fn configure(
    namespaces: Option<userns::BoxNamespaces>,
    arguments: &Arguments,
    priority: Option<&Priority>,
    filter: &[libc::sock_filter],
    signals: OwnedFd,
    first: pid1::FirstProcess,
    network: Option<network::BoxSockets>,
) -> Result<init::Init, String> {
    let (config, config_bytes) = read_config()?;
    if config.network != arguments.network {
        return Err("the box's network does not match the one its shim was made with".to_string());
    }
    if config.rootless != arguments.rootless {
        return Err("the box's runtime does not run as the user its shim was made for".to_string());
    }
    // Before pid 1 uses them: it builds the root with the box's ids.
    match (&namespaces, config.user_namespace) {
        (Some(namespaces), Some(map)) => namespaces.map(map)?,
        (None, None) => {}
        _ => return Err("the box's user namespace does not match the one its shim was made for".to_string()),
    }
    // The box's pid 1 too, before it has to wake for the config.
    if let Some(priority) = priority {
        priority.restore(0)?;
        priority.restore(first.pid)?;
    }
    open_log(&config)?;
    let listener = listen(&config)?;
    let main_files = config.main.as_ref().map(main_process::MainFiles::open).transpose()?;
    // Read while /proc is the host's: the box's /proc shows no process of the init's namespace.
    let confinement = process::Confinement::new(&config);
    let (main_stdio, main) = match main_files {
        Some(files) => {
            let (stdio, main) = files.split().map_err(|error| error.to_string())?;
            (stdio, Some(main))
        }
        None => (None, None),
    };
    first.configure(&config_bytes, main_stdio)?;
    // While pid 1 builds the root as host root, the init is done with the host: from here on it
    // is root of the box's user namespace only, and confined.
    if let Some(namespaces) = &namespaces {
        userns::enter(namespaces.own())?;
    }
    drop(namespaces);
    process::Confinement::apply_to_init(&config, filter)?;
    // Before `Init::new`, which covers a detached box's stdin with /dev/null.
    let cgroups = receive_cgroups()?;
    join_cgroups(&cgroups)?;
    let (first, terminal) = first.start(&cgroups, config.main.is_none())?;
    let main = match (main, terminal) {
        (Some(main), Some(master)) => Some(main.on_terminal(master)?),
        (Some(main), None) if main.wants_terminal() => return Err("the main process's terminal did not come from the box's pid 1".to_string()),
        (main, _) => main,
    };
    Ok(init::Init::new(&config, init::Held { confinement, signals, listener, network }, first, main))
}

/// The runtime makes the box's cgroups while the root is built, and sends their membership
/// files (`boxlite_protocol::JOIN_CGROUPS`).
fn receive_cgroups() -> Result<Vec<OwnedFd>, String> {
    let mut byte = [0u8; 1];
    let (length, files) = boxlite_protocol::recv_with_fds(startup_socket().as_fd(), &mut byte)
        .map_err(|error| format!("failed to receive the box's cgroups: {error}"))?;
    match (length, byte[0]) {
        (1, boxlite_protocol::JOIN_CGROUPS) => Ok(files),
        (0, _) => Err("the runtime went away while the box started".to_string()),
        _ => Err("unexpected start-up message from the runtime".to_string()),
    }
}

/// Joins the box's cgroups by writing `0` to their membership files, which moves the writing
/// thread: the init and the box's pid 1 are single-threaded (`init` rule 4), so that is the
/// whole process. Each joins before it forks anything, so everything it starts runs inside.
fn join_cgroups(files: &[OwnedFd]) -> Result<(), String> {
    for file in files {
        // SAFETY: write(2) of one byte from a static buffer to a descriptor we hold.
        if unsafe { libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) } != 1 {
            return Err(format!("failed to join the box's cgroups: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// The scheduling priority the shim was started with, while it prepares ahead of need.
struct Priority(libc::c_int);

impl Priority {
    /// Lowers this process's priority as far as it goes, if it can take it back later (that
    /// takes CAP_SYS_NICE); returns the one to go back to.
    fn lower() -> Option<Self> {
        if !boxlite_protocol::capability_number("SYS_NICE").is_some_and(has_capability) {
            return None;
        }
        // SAFETY: getpriority/setpriority on this process, integer arguments only. errno is
        // cleared first: -1 is a valid priority.
        unsafe {
            *libc::__errno_location() = 0;
            let current = libc::getpriority(libc::PRIO_PROCESS, 0);
            if *libc::__errno_location() != 0 || libc::setpriority(libc::PRIO_PROCESS, 0, 19) != 0 {
                return None;
            }
            Some(Self(current))
        }
    }

    /// For `pid` (0: this process). The init still has CAP_SYS_NICE here: it is host root in
    /// the host's user namespace until its root is built.
    fn restore(&self, pid: libc::pid_t) -> Result<(), String> {
        // SAFETY: setpriority on a process of ours, integer arguments only.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, self.0) } != 0 {
            return Err(format!("failed to restore the box's scheduling priority: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Whether `capability` is in this process's effective set.
fn has_capability(capability: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status.lines().find_map(|line| line.strip_prefix("CapEff:")).and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
    effective.is_some_and(|set| set & (1 << capability) != 0)
}

fn report(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// What the runtime asked for on the command line.
struct Arguments {
    /// `--user-namespace`: the box gets user namespaces, mapped once its config came.
    user_namespace: bool,
    /// `--ahead-of-need`: no box waits for this shim yet, so it prepares at low priority.
    ahead_of_need: bool,
    /// `--network`: the box gets an interface.
    network: bool,
    /// `--rootless`: the runtime runs as an ordinary user, who is root of the user namespace
    /// the spawner made ([`spawner`]).
    rootless: bool,
}

fn arguments() -> Result<Arguments, String> {
    let mut parsed = Arguments { user_namespace: false, ahead_of_need: false, network: false, rootless: false };
    for argument in std::env::args().skip(1) {
        if argument == boxlite_protocol::ROOTLESS_ARGUMENT {
            parsed.rootless = true;
        } else if argument == boxlite_protocol::AHEAD_OF_NEED_ARGUMENT {
            parsed.ahead_of_need = true;
        } else if argument == boxlite_protocol::USER_NAMESPACE_ARGUMENT {
            parsed.user_namespace = true;
        } else if argument == boxlite_protocol::NETWORK_ARGUMENT {
            parsed.network = true;
        } else {
            return Err(format!("unexpected argument {argument:?}"));
        }
    }
    Ok(parsed)
}

/// The shim's whole life: a probe of user namespaces, the spawning of other shims, or the
/// making of one box.
pub fn main() {
    if std::env::args().nth(1).as_deref() == Some(boxlite_protocol::SPAWNER_ARGUMENT) {
        let open_files = std::env::args().nth(2).and_then(|limit| limit.parse().ok());
        let rootless = std::env::args().nth(3).as_deref() == Some(boxlite_protocol::ROOTLESS_ARGUMENT);
        let subordinate = std::env::args().nth(4).as_deref().and_then(SubordinateIds::parse);
        std::process::exit(spawner::serve(open_files, rootless, subordinate));
    }
    if std::env::args().nth(1).as_deref() == Some(boxlite_protocol::GUARD_ARGUMENT) {
        let keeper: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
        std::process::exit(guard::run(&keeper));
    }
    if std::env::args().nth(1).as_deref() == Some(boxlite_protocol::PROBE_USER_NAMESPACE) {
        let rootless = std::env::args().nth(2).as_deref() == Some(boxlite_protocol::ROOTLESS_ARGUMENT);
        let subordinate = std::env::args().nth(3).as_deref().and_then(SubordinateIds::parse);
        let outcome = userns::probe(rootless, subordinate);
        if let Err(message) = &outcome {
            report(message);
        }
        std::process::exit(i32::from(outcome.is_err()));
    }
    if let Some(task) = std::env::args().nth(1).filter(|first| boxlite_protocol::subordinate_tasks::ALL.contains(&first.as_str())) {
        std::process::exit(subordinate::run(&task));
    }
    let line = match arguments() {
        Ok(arguments) => prepare(&arguments),
        Err(message) => format!("error {message}"),
    };
    report(&line);
    std::process::exit(i32::from(line.starts_with("error")));
}
