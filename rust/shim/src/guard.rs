//! The guardian of a runtime's detached boxes' networks (`boxlite_protocol::GUARD_ARGUMENT`):
//! it waits for its runtime to be gone, then becomes the keeper that serves those networks
//! (`boxlite_core`'s `keeper` module says how the two meet).
//!
//! It must outlive its runtime's process however that ends, and be nobody's business
//! meanwhile: it forks once and its first process exits (the runtime reaps that at once; the
//! keeper it becomes is then no process's child, so no one's zombie), leaves the runtime's
//! session (a Ctrl-C at the runtime's terminal is not for it) and its working directory.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;

/// Waits on stdin for the runtime's word, then execs `keeper` (its program, then its
/// arguments) unless the word was `GUARD_QUIT`. Returns only on failure, or to quit.
pub fn run(keeper: &[std::ffi::OsString]) -> i32 {
    let Some((program, arguments)) = keeper.split_first() else { return 1 };
    // What the runtime's process left inheritable is no business of the guardian or the keeper.
    // SAFETY: close_range closes descriptors 3 and up, none of which this process uses.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    // SAFETY: fork in a process with one thread; the child only makes system calls and execs.
    match unsafe { libc::fork() } {
        -1 => return 1,
        0 => {}
        _ => return 0,
    }
    // SAFETY: setsid takes no pointers; this child leads no process group, so it succeeds.
    unsafe { libc::setsid() };
    let _ = std::env::set_current_dir("/");
    // SAFETY: fd 0 is the runtime's socket, given to this process as its stdin; owned from here.
    let mut runtime = unsafe { std::fs::File::from_raw_fd(libc::STDIN_FILENO) };
    let mut word = [0u8; 1];
    let said = loop {
        match runtime.read(&mut word) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    if matches!(said, Ok(1)) && word[0] == boxlite_protocol::GUARD_QUIT {
        // The socket is left for the kernel to close as this process ends, after its memory
        // is gone: the runtime, which waits for the socket's end, then finds no guardian.
        std::mem::forget(runtime);
        // SAFETY: _exit ends this process at once; it holds nothing that needs flushing.
        unsafe { libc::_exit(0) };
    }
    // The keeper reads nothing from the runtime's socket: its stdin is /dev/null.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // SAFETY: dup2 of a descriptor this process owns onto stdin, which the runtime's
        // socket held (closed by dup2 itself).
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDIN_FILENO) };
        std::mem::forget(runtime);
    }
    let error = std::process::Command::new(program).args(arguments).exec();
    eprintln!("boxlite guardian: cannot run the keeper {}: {error}", program.to_string_lossy());
    1
}
