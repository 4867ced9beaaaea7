//! The box's main process as the init keeps it (init rule 6): the host files it writes, opened
//! before the root is pivoted away from the host; its stdin, until an attach takes it; its
//! terminal, when it runs on one, whose output the init copies into its stdout file; and the
//! status file its exit goes to.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use boxlite_protocol::MainProcess;

use crate::process;

/// Host files of the main process, opened before the root is pivoted away from the host.
pub struct MainFiles {
    stdout: OwnedFd,
    stderr: OwnedFd,
    status: File,
    /// The process runs on a terminal, which the box's pid 1 opens.
    tty: bool,
}

impl MainFiles {
    pub fn open(main: &MainProcess) -> Result<Self, String> {
        let create = |path: &std::path::Path| {
            File::options()
                .create(true)
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(|error| format!("failed to open {}: {error}", path.display()))
        };
        Ok(Self {
            stdout: create(&main.stdout_path)?.into(),
            stderr: create(&main.stderr_path)?.into(),
            status: create(&main.status_path)?,
            tty: main.tty.is_some(),
        })
    }

    /// The process's stdio (its stdin a pipe), and what the init keeps: the status file and the
    /// pipe's write end, held open until an attach takes it. A process on a terminal gets no
    /// stdio from here: the init keeps its stdout file for what the terminal says.
    pub fn split(self) -> crate::sys::Result<(Option<[OwnedFd; 3]>, Main)> {
        if self.tty {
            return Ok((None, Main { pid: None, status: self.status, stdin: None, output: Output::AwaitingTerminal(self.stdout.into()) }));
        }
        let (stdin_read, stdin_write) = process::pipe()?;
        Ok((Some([stdin_read, self.stdout, self.stderr]), Main { pid: None, status: self.status, stdin: Some(stdin_write), output: Output::Direct }))
    }
}

pub struct Main {
    pid: Option<i32>,
    status: File,
    /// The write end of the process's stdin, until an attach takes it.
    stdin: Option<OwnedFd>,
    output: Output,
}

/// Where the main process's output goes.
enum Output {
    /// Straight to its files, which are its stdout and stderr.
    Direct,
    /// Through a terminal whose master side the box's pid 1 has yet to send: into this file.
    AwaitingTerminal(File),
    /// Through its terminal: the init copies what the master side reads into its stdout file,
    /// until the terminal ends (no process holds its slave side any more).
    Terminal { master: OwnedFd, file: File, open: bool },
}

impl Main {
    pub fn wants_terminal(&self) -> bool {
        matches!(self.output, Output::AwaitingTerminal(_))
    }

    /// The main process's terminal has come: its output is copied from `master` from now on.
    pub fn on_terminal(mut self, master: OwnedFd) -> Result<Self, String> {
        let Output::AwaitingTerminal(file) = std::mem::replace(&mut self.output, Output::Direct) else {
            return Err("a terminal came for a main process that has none".to_string());
        };
        // SAFETY: fcntl(2) flag calls on a descriptor we own.
        let set = unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::fcntl(master.as_raw_fd(), libc::F_GETFL) | libc::O_NONBLOCK) };
        if set < 0 {
            return Err(format!("failed to set up the main process's terminal: {}", std::io::Error::last_os_error()));
        }
        self.output = Output::Terminal { master, file, open: true };
        Ok(self)
    }

    /// The process has started as the box's pid 1, `pid` in the init's namespace.
    pub fn started(self, pid: i32) -> Self {
        Self { pid: Some(pid), ..self }
    }

    /// What an attach gets (`Request::Attach`): the running process's pid, its stdin if asked
    /// for and not taken yet, and a copy of its terminal if it runs on one; `None` once it
    /// has ended.
    pub fn follow(&mut self, stdin: bool) -> Option<Followed> {
        let pid = self.pid?;
        let stdin = if stdin { self.stdin.take() } else { None };
        let terminal = match &self.output {
            Output::Terminal { master, .. } => master.try_clone().ok(),
            _ => None,
        };
        Some(Followed { pid, stdin, terminal })
    }

    /// Init rule 6: writes the process's exit code (`-N` after signal N) to its status file.
    pub fn record_exit(&mut self, code: i32) -> std::io::Result<()> {
        self.pid = None;
        // No fsync: readers are processes of this machine, which the page cache serves.
        writeln!(self.status, "{code}")
    }

    /// The terminal's master side while it is open, to poll.
    pub fn terminal_to_poll(&self) -> Option<BorrowedFd<'_>> {
        match &self.output {
            Output::Terminal { master, open: true, .. } => Some(master.as_fd()),
            _ => None,
        }
    }

    /// Copies what the terminal has for reading into the stdout file, without waiting; notes
    /// the terminal's end. The copy goes on past a failed write, whose error is returned.
    pub fn copy_terminal_output(&mut self) -> std::io::Result<()> {
        let Output::Terminal { master, file, open } = &mut self.output else { return Ok(()) };
        let mut buffer = [0u8; 65_536];
        let mut written = Ok(());
        while *open {
            // SAFETY: read(2) into a local buffer of the given length from a descriptor we own.
            let count = unsafe { libc::read(master.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
            match count {
                count if count > 0 => {
                    if let Err(error) = file.write_all(&buffer[..count as usize]) {
                        written = Err(error);
                    }
                }
                // EIO (or end of file): no process holds the slave side any more.
                0 => *open = false,
                _ => match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => break,
                    _ => *open = false,
                },
            }
        }
        written
    }
}

/// What an attach to the main process gets (`Main::follow`).
pub struct Followed {
    pub pid: i32,
    pub stdin: Option<OwnedFd>,
    pub terminal: Option<OwnedFd>,
}

