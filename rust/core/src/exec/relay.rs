//! Executions whose process runs elsewhere (a box of a remote runtime), relayed into the same
//! [`Execution`] a local process gives: its consumer reads the output from pipes, writes stdin
//! to a pipe and waits, signals and resizes through [`ExecutionControl`], and cannot tell the
//! difference. Whoever carries the process's traffic (the REST client) holds the [`Relay`]: it
//! writes what the process printed into the output pipes, forwards what the consumer wrote to
//! stdin, carries out the [`RelayCommand`]s, and reports the exit once.
//!
//! Rule 3 of `exec` holds for relays too: dropping the [`Execution`] wakes
//! [`Relay::abandoned`], and the relay ends the process (a remote one, by deleting its
//! execution on the server).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::control::Control;
use super::fd::AsyncDescriptor;
use super::{output_pipe, plain_pipe, registered, Execution, ExitStatus};
use crate::error::{Error, Result};
use crate::fork::ParentOnly;

/// What the consumer of a relayed execution asks of its process.
#[derive(Debug)]
pub enum RelayCommand {
    /// A signal, to the process (or its whole group); `done` says whether it was delivered.
    Signal { signal: i32, group: bool, done: oneshot::Sender<Result<()>> },
    /// The terminal's new size (only sent for an execution on a terminal).
    Resize { rows: u16, cols: u16 },
}

/// How the control side reaches a relayed process.
pub(super) struct RelayLink {
    pub(super) commands: mpsc::UnboundedSender<RelayCommand>,
    pub(super) tty: bool,
}

/// The relay's side of a relayed execution.
pub struct Relay {
    control: Arc<Control>,
    /// Where the process's output goes: stdout (or the terminal), and stderr.
    pub stdout: AsyncDescriptor,
    pub stderr: AsyncDescriptor,
    /// What the consumer writes to the process's stdin; end of file when it closes stdin.
    /// `None` when the execution was made without stdin.
    pub stdin: Option<AsyncDescriptor>,
}

impl Relay {
    /// The process ended: every later `wait()` sees `status`. Only the first report counts.
    pub fn finish(&self, status: ExitStatus) {
        self.control.exit.send_if_modified(|known| {
            if known.is_some() {
                return false;
            }
            *known = Some(status);
            true
        });
    }

    /// Resolves once the consumer dropped the execution: the process is to be ended.
    pub async fn abandoned(&self) {
        self.control.abandoned.notified().await;
    }

    /// Whether the exit is known (reported, or lost).
    pub fn finished(&self) -> bool {
        self.control.exit.borrow().is_some()
    }
}

/// A new relayed execution named `id`: the consumer's half, the relay's, and the commands the
/// relay is to carry out. Its bytes are counted where the process runs, not here. In tokio's
/// context (the output pipes are registered with its reactor).
pub fn relayed(id: String, tty: bool, stdin: bool) -> Result<(Execution, Relay, mpsc::UnboundedReceiver<RelayCommand>)> {
    let control = Control::new(None, None);
    let (commands, receiver) = mpsc::unbounded_channel();
    if control.relay.set(RelayLink { commands, tty }).is_err() {
        return Err(Error::Engine("a new execution already had a relay".to_string()));
    }
    control.pipes_written_here.store(true, std::sync::atomic::Ordering::Release);
    let (stdout, stdout_writer) = output_pipe()?;
    let (stderr, stderr_writer) = output_pipe()?;
    let (stdin_reader, stdin_writer): (Option<ParentOnly<OwnedFd>>, Option<ParentOnly<OwnedFd>>) = if stdin {
        let (read, write) = plain_pipe()?;
        (Some(read), Some(write))
    } else {
        (None, None)
    };
    let relay = Relay {
        control: Arc::clone(&control),
        stdout: registered(stdout_writer)?,
        stderr: registered(stderr_writer)?,
        stdin: stdin_reader.map(registered).transpose()?,
    };
    let execution = Execution { id, pid: 0, io: Arc::default(), control, stdout: Some(stdout), stderr: Some(stderr), stdin: stdin_writer, replies: None };
    Ok((execution, relay, receiver))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_relayed_execution_is_driven_by_its_relay() {
        let (execution, relay, mut commands) = relayed("x".to_string(), false, true).expect("relayed");
        let control = execution.control();
        let stdout = execution.stdout.as_ref().and_then(ParentOnly::get).expect("stdout").try_clone().expect("dup");
        let stdout = AsyncDescriptor::new(ParentOnly::new(stdout)).expect("reader");
        relay.stdout.write_all(b"hello").await.expect("write");
        assert_eq!(stdout.read_chunk(64).await.expect("read").as_deref(), Some(&b"hello"[..]));

        let signalled = tokio::spawn({
            let control = control.clone();
            async move { control.signal(libc::SIGUSR1).await }
        });
        match commands.recv().await {
            Some(RelayCommand::Signal { signal, group: false, done }) => {
                assert_eq!(signal, libc::SIGUSR1);
                done.send(Ok(())).expect("ack");
            }
            other => panic!("expected a signal, got {other:?}"),
        }
        signalled.await.expect("join").expect("signal");
        assert!(matches!(control.resize(30, 100), Err(Error::InvalidState(_))), "no terminal: no resize");

        relay.finish(ExitStatus { exit_code: 3, signal: None, timed_out: false, error: None });
        relay.finish(ExitStatus { exit_code: 9, signal: None, timed_out: false, error: None });
        assert_eq!(control.wait().await.exit_code, 3, "the first report counts");
        assert!(control.signal(libc::SIGTERM).await.is_ok(), "a signal after the exit reaches nothing, and is no error");

        drop(execution);
        tokio::time::timeout(std::time::Duration::from_secs(5), relay.abandoned()).await.expect("dropping the execution abandons it");
    }
}
