//! Processes named by pidfd: a pidfd pins the process it was opened on, so a signal sent
//! through it never reaches another process that reused the pid. And the start of the shim,
//! which a process forked while it was written may keep busy for an instant ([`run_shim`]), and
//! SIGPIPE kept from the threads that write to processes or sockets that may be gone.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor (owned from here on) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// SIGKILL to the process of `pidfd` (nothing if it is gone).
pub fn kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal on a pidfd we hold; no pointers beyond the null siginfo.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0) };
}

/// Blocks up to `timeout` for the process of `pidfd` to exit (a pidfd is readable then); true
/// if it has.
pub fn exited_within(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut pollfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let milliseconds = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: polls one valid pollfd.
    unsafe { libc::poll(&mut pollfd, 1, milliseconds) > 0 }
}

/// How long [`run_shim`] tries again while the shim is busy.
const SHIM_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `start`, which executes the shim, again while the kernel refuses with ETXTBSY: a
/// process this one forked (from any thread, for any runtime) while the shim was being written
/// holds the file open for writing until it executes its own program, an instant later, and
/// until then the shim cannot be executed.
pub fn run_shim<T>(mut start: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let deadline = std::time::Instant::now() + SHIM_BUSY_WAIT;
    loop {
        match start() {
            Err(error) if error.raw_os_error() == Some(libc::ETXTBSY) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            outcome => return outcome,
        }
    }
}

/// Blocks SIGPIPE in this thread, once. A splice to a socket whose peer is gone raises it (the
/// kernel sends no MSG_NOSIGNAL there, as a send from Rust does), as does a write to a pipe
/// whose reader is gone (a shim that exited), and a program that embeds the runtime may have
/// given it back its default action (`signal(SIGPIPE, SIG_DFL)` is common in command-line
/// tools), which ends the process. Blocked, the call fails with EPIPE; programs the thread
/// starts get an empty mask from std's `Command`.
pub fn keep_sigpipe_from_this_thread() {
    thread_local!(static BLOCKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    BLOCKED.with(|blocked| {
        if blocked.replace(true) {
            return;
        }
        // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask changes
        // this thread's mask only and reads one valid set.
        unsafe {
            let mut set = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
    });
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A program still open for writing somewhere cannot be executed (ETXTBSY) until it is
    /// closed: `run_shim` waits that out.
    #[test]
    fn a_program_busy_for_an_instant_is_run_once_it_is_free() {
        let path = std::env::temp_dir().join(format!("boxlite-busy-{}-{}", std::process::id(), rand::random::<u64>()));
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let writer = std::fs::OpenOptions::new().write(true).open(&path).expect("open for writing");
        let busy = std::process::Command::new(&path).status().expect_err("a program open for writing");
        assert_eq!(busy.raw_os_error(), Some(libc::ETXTBSY));
        let closing = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(writer);
        });
        let status = run_shim(|| std::process::Command::new(&path).status()).expect("run once free");
        assert!(status.success());
        closing.join().expect("join");
        std::fs::remove_file(&path).expect("cleanup");
    }
}
