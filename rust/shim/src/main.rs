//! `boxlite-shim`: the first process of a box.
//!
//! The runtime spawns it with the start-up protocol of `boxlite_protocol` (config on stdin, one
//! status line on stdout). It unshares the box's namespaces, forks the init (pid 1 of the new pid
//! namespace), which builds the root ([`jail::enter`]) and then serves executions
//! ([`init::serve`]). The first process reports the init's pid and exits, so the init belongs to
//! no runtime process and can outlive it when the box is detached.

mod capabilities;
mod init;
mod jail;
mod process;
mod seccomp;
mod sys;
mod users;
mod userns;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use boxlite_protocol::ShimConfig;

fn read_config() -> Result<ShimConfig, String> {
    let mut stdin = std::io::stdin().lock();
    let mut length = [0u8; 4];
    stdin.read_exact(&mut length).map_err(|error| format!("failed to read the config length: {error}"))?;
    let mut bytes = vec![0u8; u32::from_le_bytes(length) as usize];
    stdin.read_exact(&mut bytes).map_err(|error| format!("failed to read the config: {error}"))?;
    serde_json::from_slice(&bytes).map_err(|error| format!("bad config: {error}"))
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

fn join_cgroups(config: &ShimConfig) -> Result<(), String> {
    let pid = std::process::id().to_string();
    for procs in &config.cgroup_procs {
        std::fs::write(procs, &pid).map_err(|error| format!("failed to join cgroup {}: {error}", procs.display()))?;
    }
    Ok(())
}

/// Only stdin (the lifeline), stdout (the status line) and stderr may cross into the box: any
/// other descriptor the runtime's process left inheritable is closed at the next exec, before
/// a box process can use it (a directory descriptor would lead out of the box).
fn close_inherited_descriptors() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors 3 and up.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
}

/// Runs in the first process; returns the status line for the runtime.
fn start() -> String {
    close_inherited_descriptors();
    let config = match read_config() {
        Ok(config) => config,
        Err(message) => return format!("error {message}"),
    };
    protect_from_oom_killer();
    let prepared = open_log(&config).and_then(|()| join_cgroups(&config)).and_then(|()| listen(&config));
    let listener = match prepared {
        Ok(listener) => listener,
        Err(message) => return format!("error {message}"),
    };
    let main_files = match config.main.as_ref().map(init::MainFiles::open).transpose() {
        Ok(files) => files,
        Err(message) => return format!("error {message}"),
    };
    let user_namespace = match config.user_namespace.as_ref().map(userns::create).transpose() {
        Ok(namespace) => namespace,
        Err(message) => return format!("error {message}"),
    };
    // SAFETY: unshare affects only this (single-threaded) process; the new pid namespace applies
    // to the children forked below.
    if unsafe { libc::unshare(jail::NAMESPACES) } < 0 {
        return format!("error failed to create the box's namespaces: {}", std::io::Error::last_os_error());
    }
    let (ready_read, ready_write) = match process::pipe() {
        Ok(pair) => pair,
        Err(error) => return format!("error {error}"),
    };
    // SAFETY: this process is single-threaded, so the child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return format!("error failed to fork the box's init: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        drop(ready_read);
        let mut ready = File::from(ready_write);
        // The status pipe belongs to the first process; the init must not hold it open.
        process::redirect_to_null(libc::STDOUT_FILENO);
        let started = jail::enter(&config, user_namespace.as_ref()).map_err(|error| error.to_string()).and_then(|()| {
            // Last: the root is built as host root; from here on the init is root of the box's
            // user namespace only.
            if let Some(namespace) = &user_namespace {
                userns::enter(namespace)?;
            }
            process::Confinement::apply_to_init(&config)?;
            let mut init = init::Init::new(&config, listener);
            if let (Some(main), Some(files)) = (&config.main, main_files) {
                init.start_main(main, files)?;
            }
            Ok(init)
        });
        match started {
            Ok(init) => {
                let _ = ready.write_all(b"ok");
                drop(ready);
                init.serve();
            }
            Err(message) => {
                let _ = ready.write_all(message.as_bytes());
                // SAFETY: the forked init leaves without running the first process's exit
                // handlers or flushing buffers it inherited.
                unsafe { libc::_exit(1) };
            }
        }
    }
    drop(ready_write);
    drop(listener);
    drop(main_files);
    drop(user_namespace);
    let mut answer = String::new();
    let _ = File::from(ready_read).read_to_string(&mut answer);
    if answer == "ok" {
        format!("ready {pid}")
    } else {
        let mut status = 0;
        // SAFETY: reaping our own failed child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        format!("error {}", if answer.is_empty() { "the box's init died while building the root".to_string() } else { answer })
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(boxlite_protocol::PROBE_USER_NAMESPACE) {
        let probed = userns::create(&boxlite_protocol::IdMap::BOXES);
        std::process::exit(i32::from(probed.is_err()));
    }
    let line = start();
    let failed = line.starts_with("error");
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
    std::process::exit(i32::from(failed));
}
