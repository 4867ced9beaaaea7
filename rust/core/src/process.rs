//! Processes named by pidfd: a pidfd pins the process it was opened on, so a signal sent
//! through it never reaches another process that reused the pid.

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
