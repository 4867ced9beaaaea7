//! The box's user namespace. It is made first, by a helper child, while the shim is still host
//! root in the host's namespaces; the shim writes the helper's id maps (it may: it is root in
//! the parent namespace), keeps a descriptor of the namespace, and lets the helper go.
//!
//! The box's other namespaces stay owned by the host's user namespace: the init builds the
//! root as host root and enters the user namespace only afterwards ([`enter`]). So root in a
//! box holds capabilities over its own user namespace only — not over its mounts, hostname or
//! network — and is an unprivileged host user.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use boxlite_protocol::IdMap;

use crate::process;

pub fn create(map: &IdMap) -> Result<OwnedFd, String> {
    let (ready_read, ready_write) = process::pipe().map_err(|error| error.to_string())?;
    let (release_read, release_write) = process::pipe().map_err(|error| error.to_string())?;
    // SAFETY: the shim is single-threaded here; the child only calls unshare, write, read and
    // _exit.
    let helper = unsafe { libc::fork() };
    if helper < 0 {
        return Err(format!("failed to fork the user namespace helper: {}", std::io::Error::last_os_error()));
    }
    if helper == 0 {
        drop((ready_read, release_write));
        // SAFETY: see above; this block ends in _exit.
        unsafe {
            let status = if libc::unshare(libc::CLONE_NEWUSER) == 0 { b"y" } else { b"n" };
            libc::write(ready_write.as_raw_fd(), status.as_ptr().cast(), 1);
            let mut byte = 0u8;
            libc::read(release_read.as_raw_fd(), std::ptr::addr_of_mut!(byte).cast(), 1);
            libc::_exit(0);
        }
    }
    drop((ready_write, release_read));
    let made = map_and_open(helper, map, ready_read);
    drop(release_write);
    let mut status = 0;
    // SAFETY: reaping our own helper, which exits once `release_write` is closed.
    unsafe { libc::waitpid(helper, &mut status, 0) };
    made
}

fn map_and_open(helper: i32, map: &IdMap, ready: OwnedFd) -> Result<OwnedFd, String> {
    let mut answer = [0u8; 1];
    let read = File::from(ready).read(&mut answer).unwrap_or(0);
    if read != 1 || answer[0] != b'y' {
        return Err("failed to create the box's user namespace (are user namespaces enabled?)".to_string());
    }
    let line = format!("0 {} {}\n", map.host_base, map.size);
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{helper}/{file}");
        File::options()
            .write(true)
            .open(&path)
            .and_then(|mut map_file| map_file.write_all(line.as_bytes()))
            .map_err(|error| format!("failed to write {path}: {error}"))?;
    }
    let path = format!("/proc/{helper}/ns/user");
    File::open(&path).map(OwnedFd::from).map_err(|error| format!("failed to open {path}: {error}"))
}

/// Moves the calling (single-threaded) init into the box's user namespace.
pub fn enter(namespace: &OwnedFd) -> Result<(), String> {
    // SAFETY: setns on a namespace descriptor we hold.
    if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWUSER) } < 0 {
        return Err(format!("failed to enter the box's user namespace: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
