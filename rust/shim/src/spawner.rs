//! The shim spawner (`boxlite_protocol::SPAWNER_ARGUMENT`): a process the runtime starts once,
//! which spawns every shim of the runtime's boxes on request. It holds three descriptors, so a
//! spawn from it costs the same with 5,000 boxes running as with none; from the runtime's own
//! process, whose descriptor table grows with every box, each spawn copied that table and each
//! exec closed it, entry by entry.
//!
//! Its first argument after `SPAWNER_ARGUMENT` is the limit on open descriptors boxes get: the
//! runtime raises its own far above what a box should start with. For an ordinary user's
//! runtime, `ROOTLESS_ARGUMENT` (and that user's subordinate ids) follow: the spawner becomes
//! root of a user namespace of its own before it spawns anything
//! ([`crate::userns::become_root_of_own_namespace`]), and every shim it spawns is root there
//! from its start: no shim makes a namespace of its own, whose mapping would take the setuid
//! `newuidmap` and `newgidmap` again for every box. If it cannot, every shim requested gets
//! `error <why>`.
//!
//! A request is one packet on stdin: the shim's arguments, each ended by a NUL byte, with the
//! shim's stdin and stdout (SCM_RIGHTS). The shim is this executable: the spawner runs nothing
//! else. A shim that cannot be spawned gets `error <message>`
//! written to the stdout it was to have, where the runtime reads the shim's own status line.
//! The spawner exits when the runtime's end of stdin closes.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use boxlite_protocol::SubordinateIds;

/// Serves requests until stdin closes, then waits for the shims it spawned. `open_files`: the
/// limit on open descriptors (soft and hard) the shims, and so the boxes, get. `rootless`: the
/// spawner first becomes root of the namespace its shims share, with `subordinate` ids.
pub fn serve(open_files: Option<u64>, rootless: bool, subordinate: Option<SubordinateIds>) -> i32 {
    if let Some(limit) = open_files {
        // SAFETY: setrlimit reads one rlimit from a valid pointer. Lowering a limit is always
        // allowed; a raise this process may not make fails and changes nothing.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &libc::rlimit { rlim_cur: limit, rlim_max: limit }) };
    }
    // What the runtime's process left inheritable is no business of the spawner or its shims.
    // SAFETY: close_range closes descriptors 3 and up, none of which this process uses.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    // A session of its own, which every shim and so every box process inherits: a signal to
    // the program's process group (Ctrl-C in its terminal, `timeout`) reaches the program,
    // whose end ends its tied boxes, and never a detached box.
    // SAFETY: setsid takes no pointers; a child of the runtime's, this process leads no
    // process group, so it succeeds.
    unsafe { libc::setsid() };
    let refused = if rootless { crate::userns::become_root_of_own_namespace(subordinate).err() } else { None };
    // SAFETY: fd 0 is the request socket the runtime gave this process; borrowed for its life.
    let requests = unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) };
    // The executable's own path (not /proc/self/exe, which would name every box's processes
    // "exe" in ps), and the name it was started by.
    let Ok(program) = std::env::current_exe() else { return 1 };
    let name = std::env::args_os().next().unwrap_or_default();
    let mut buffer = Vec::new();
    let mut shims: Vec<Child> = Vec::new();
    loop {
        // Shims exit once they reported: those spawned are reaped while no request comes.
        shims.retain_mut(|shim| !matches!(shim.try_wait(), Ok(Some(_))));
        if !shims.is_empty() && !readable_within(requests, REAP_EVERY) {
            continue;
        }
        let (length, fds) = match boxlite_protocol::recv_packet(requests, &mut buffer) {
            Ok(received) => received,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if length == 0 && fds.is_empty() {
            break;
        }
        let Ok::<[OwnedFd; 2], _>([stdin, stdout]) = fds.try_into() else { continue };
        if let Some(why) = &refused {
            let _ = writeln!(std::fs::File::from(stdout), "error {why}");
            continue;
        }
        if let Some(shim) = spawn(&program, &name, &buffer[..length], stdin, stdout) {
            shims.push(shim);
        }
    }
    for mut shim in shims {
        let _ = shim.wait();
    }
    0
}

/// How often spawned shims are looked for, while some have not exited.
const REAP_EVERY: i32 = 100;

/// Whether `fd` becomes readable within `milliseconds`.
fn readable_within(fd: BorrowedFd<'_>, milliseconds: i32) -> bool {
    let mut pollfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: polls one valid pollfd.
    unsafe { libc::poll(&mut pollfd, 1, milliseconds) != 0 }
}

/// Spawns a shim (this executable, `program`, under `name`) with the arguments of `request`;
/// on failure, says why on its `stdout`. Nothing else can be spawned from here.
fn spawn(program: &std::path::Path, name: &std::ffi::OsStr, request: &[u8], stdin: OwnedFd, stdout: OwnedFd) -> Option<Child> {
    let arguments: Vec<String> = request.split(|byte| *byte == 0).filter(|argument| !argument.is_empty()).map(|argument| String::from_utf8_lossy(argument).into_owned()).collect();
    let report_to = stdout.as_fd().try_clone_to_owned().ok();
    let spawned = Command::new(program).arg0(name).args(&arguments).stdin(Stdio::from(stdin)).stdout(Stdio::from(stdout)).stderr(Stdio::null()).spawn();
    match spawned {
        Ok(shim) => Some(shim),
        Err(error) => {
            if let Some(report_to) = report_to {
                let _ = writeln!(std::fs::File::from(report_to), "error failed to run the shim {}: {error}", program.display());
            }
            None
        }
    }
}
