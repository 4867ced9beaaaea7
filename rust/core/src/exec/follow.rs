//! Rule 5: following a box's main process without owning it, from the files it writes.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use boxlite_protocol::{Reply, Request};
use tokio::sync::watch;

use super::control::{read_replies, Control};
use super::fd::{self, AsyncDescriptor, Packet};
use super::request::{answer, connect};
use super::{engine_error, output_pipe, plain_pipe, registered, Execution, ExitStatus, CHUNK_SIZE};
use crate::error::{Error, Result};
use crate::fork::ParentOnly;

/// The host files a box's main process writes, opened before asking the init about the process,
/// so its output stays readable even if the box is removed once the process ends.
#[derive(Debug)]
pub struct MainOutput {
    pub stdout: File,
    pub stderr: File,
    pub status: File,
}

impl MainOutput {
    pub fn open(stdout: &Path, stderr: &Path, status: &Path) -> Result<Self> {
        let open = |path: &Path| File::open(path).map_err(|error| Error::storage("open", path, &error));
        Ok(Self { stdout: open(stdout)?, stderr: open(stderr)?, status: open(status)? })
    }

    /// The exit the init recorded, once the process has ended.
    pub fn recorded_exit(&self) -> Option<i32> {
        read_recorded_exit(&self.status)
    }
}

/// The exit code the init wrote to a main process's status file (`-N` after signal N), if it
/// did.
pub fn read_recorded_exit(mut status: &File) -> Option<i32> {
    let mut text = String::new();
    status.seek(std::io::SeekFrom::Start(0)).ok()?;
    status.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Rule 5: follows the main process of the box whose init listens on `socket_path`. With
/// `stdin`, the first attach gets the process's stdin; later ones get none. A process on a
/// terminal (`tty`) gives every attach its terminal: its size, and its input with `stdin`.
pub async fn attach(socket_path: &Path, output: MainOutput, stdin: bool, tty: bool) -> Result<Execution> {
    let Attached { socket, pid, stdin, terminal } = connect_attached(socket_path, stdin, tty).await?;
    let control = Control::new(Some(socket), None);
    if let Some(master) = terminal {
        let _ = control.terminal.set(master);
    }
    tokio::spawn(read_replies(Arc::clone(&control)));
    followed(pid, control, output, stdin)
}

/// What the Attach exchange gives: the control connection, the main process's pid, its stdin
/// if asked for and free, and its terminal if it runs on one.
struct Attached {
    socket: fd::ControlSocket,
    pid: i32,
    stdin: Option<ParentOnly<OwnedFd>>,
    terminal: Option<ParentOnly<OwnedFd>>,
}

async fn connect_attached(socket_path: &Path, stdin: bool, tty: bool) -> Result<Attached> {
    let socket = connect(socket_path)?;
    socket.send(&Request::Attach { stdin }, &[]).await.map_err(|error| engine_error("failed to send the attach request", &error))?;
    let (pid, mut fds) = match answer(&socket, "attach").await? {
        Packet::Reply(Reply::Started { pid }, fds) => (pid, fds),
        Packet::Reply(Reply::Failed { message, .. }, _) => return Err(Error::InvalidState(message)),
        Packet::Reply(other, _) => return Err(Error::Engine(format!("unexpected reply to attach: {other:?}"))),
        Packet::Closed => return Err(Error::InvalidState("the box stopped while attaching".to_string())),
    };
    if !tty {
        return Ok(Attached { socket, pid, stdin: fds.pop().map(ParentOnly::new), terminal: None });
    }
    let terminal = fds.pop().ok_or_else(|| Error::Engine("the init sent no terminal for the main process".to_string()))?;
    let stdin = if stdin { Some(ParentOnly::new(terminal.try_clone().map_err(|error| engine_error("failed to duplicate the terminal", &error))?)) } else { None };
    Ok(Attached { socket, pid, stdin, terminal: Some(ParentOnly::new(terminal)) })
}

/// Where an attach made before its box started finds the run once it started: the init's
/// socket and the main process's output. `None` when the box went away first.
pub type StartedRun = std::pin::Pin<Box<dyn std::future::Future<Output = Option<(std::path::PathBuf, MainOutput)>> + Send>>;

/// Rule 5, for a box that has not started yet: the execution exists at once and follows the
/// main process of the run that `started` announces, from its beginning. With `stdin`, what is
/// written meanwhile reaches the process once it runs.
pub fn attach_when_started(started: StartedRun, stdin: bool, tty: bool) -> Result<Execution> {
    let control = Control::new(None, None);
    let (stdout, stdout_writer) = output_pipe()?;
    let (stderr, stderr_writer) = output_pipe()?;
    let (stdout_writer, stderr_writer) = (registered(stdout_writer)?, registered(stderr_writer)?);
    let (stdin_reader, ours) = if stdin {
        let (read, write) = plain_pipe()?;
        (Some(read), Some(write))
    } else {
        (None, None)
    };
    let task_control = Arc::clone(&control);
    tokio::spawn(async move {
        let control = task_control;
        let run = tokio::select! {
            run = started => run,
            () = control.abandoned.notified() => return,
        };
        let followed = match run {
            None => Err(Error::NotFound("the box was removed before it started".to_string())),
            Some((socket_path, output)) => match connect_attached(&socket_path, stdin_reader.is_some(), tty).await {
                Ok(Attached { socket, stdin: main_stdin, terminal, .. }) => {
                    let _ = control.socket.set(socket);
                    if let Some(master) = terminal {
                        let _ = control.terminal.set(master);
                    }
                    tokio::spawn(read_replies(Arc::clone(&control)));
                    if let (Some(from), Some(to)) = (stdin_reader, main_stdin) {
                        tokio::spawn(relay(from, to));
                    }
                    Ok(output)
                }
                // Its main process ended already: what it wrote and its exit are on record.
                Err(error) => match output.recorded_exit() {
                    Some(code) => {
                        control.exit.send_replace(Some(ExitStatus::recorded(code)));
                        Ok(output)
                    }
                    None => Err(error),
                },
            },
        };
        match followed {
            Ok(output) => {
                let _ = follow_into(output.stdout, control.exit.subscribe(), stdout_writer);
                let _ = follow_into(output.stderr, control.exit.subscribe(), stderr_writer);
            }
            Err(error) => {
                control.exit.send_replace(Some(ExitStatus { exit_code: -1, signal: None, timed_out: false, error: Some(error.to_string()) }));
            }
        }
    });
    Ok(Execution { id: crate::ids::new_box_id(), pid: 0, io: Arc::default(), control, stdout: Some(stdout), stderr: Some(stderr), stdin: ours, replies: None })
}

/// Copies what is written to an attach's stdin into the main process's, until end of file.
async fn relay(from: ParentOnly<OwnedFd>, to: ParentOnly<OwnedFd>) {
    let (Ok(from), Ok(to)) = (AsyncDescriptor::new(from), AsyncDescriptor::new(to)) else { return };
    while let Ok(Some(chunk)) = from.read_chunk(CHUNK_SIZE).await {
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

/// Rule 5, for a main process that has ended: its recorded output, then its exit.
pub fn replay(output: MainOutput, exit_code: i32) -> Result<Execution> {
    let control = Control::new(None, Some(ExitStatus::recorded(exit_code)));
    followed(0, control, output, None)
}

fn followed(pid: i32, control: Arc<Control>, output: MainOutput, stdin: Option<ParentOnly<OwnedFd>>) -> Result<Execution> {
    control.pipes_written_here.store(true, std::sync::atomic::Ordering::Release);
    let follow = |file: File| -> Result<ParentOnly<OwnedFd>> {
        let (read, write) = output_pipe()?;
        follow_into(file, control.exit.subscribe(), registered(write)?)?;
        Ok(read)
    };
    let stdout = follow(output.stdout)?;
    let stderr = follow(output.stderr)?;
    Ok(Execution { id: crate::ids::new_box_id(), pid, io: Arc::default(), control, stdout: Some(stdout), stderr: Some(stderr), stdin, replies: None })
}

/// Feeds `writer` (a pipe) with `file`'s content as it grows, until the exit is known and the
/// file is read to its end. Growth is noticed through inotify, watched before the first read,
/// so no write between a read and the wait goes unseen.
fn follow_into(file: File, mut ended: watch::Receiver<Option<ExitStatus>>, writer: AsyncDescriptor) -> Result<()> {
    let changes = watch_modifications(&file).map_err(|error| engine_error("failed to watch the main process's output", &error))?;
    tokio::spawn(async move {
        let mut buffer = vec![0u8; CHUNK_SIZE];
        let mut reader = &file;
        loop {
            let finished = ended.borrow().is_some();
            // Reads of a regular file come from the page cache the process just wrote.
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(count) => {
                        if writer.write_all(&buffer[..count]).await.is_err() {
                            return; // nobody reads this stream any more
                        }
                    }
                    Err(_) => return,
                }
            }
            if finished {
                return;
            }
            tokio::select! {
                _ = changes.read_chunk(4096) => {}
                changed = ended.changed() => {
                    if changed.is_err() {
                        return; // the execution is gone
                    }
                }
            }
        }
    });
    Ok(())
}

/// An inotify descriptor that becomes readable whenever `file` is written.
fn watch_modifications(file: &File) -> std::io::Result<AsyncDescriptor> {
    // SAFETY: inotify_init1 returns a new descriptor, owned from here on.
    let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: see above.
    let inotify = unsafe { OwnedFd::from_raw_fd(raw) };
    // The file's own descriptor names it, even if the box's directory was renamed meanwhile.
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap_or_default();
    // SAFETY: the path is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    AsyncDescriptor::new(ParentOnly::new(inotify))
}

