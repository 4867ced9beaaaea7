//! The runtime's shim spawner (`boxlite_protocol` channel 0): one small process, started with
//! the first shim, spawns every shim after it.
//!
//! Why not spawn from this process: a spawn copies the spawning process's descriptor table and
//! the exec closes it entry by entry. This process holds descriptors for every box it serves
//! (control connection, pidfd, lifeline, network sockets), so the cost of a shim spawned from
//! it grows with the boxes running: at 2,000 boxes it was the largest cost of a start (16 % of
//! the host's CPU time while boxes were started). The spawner's table holds three.
//!
//! For an ordinary user's runtime the spawner also becomes root of a user namespace of its own
//! first (mapping that user, and its subordinate ids where boxes have them), which every shim
//! it spawns then shares: the setuid `newuidmap` and `newgidmap` run once per runtime, not
//! twice per box.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::lock;

/// Spawns shims through the spawner process, starting one when there is none (at first use,
/// or when one died), until the runtime closes.
#[derive(Debug)]
pub struct Spawner {
    shim: PathBuf,
    /// The spawner's arguments after the descriptor limit: for an ordinary user's runtime,
    /// `ROOTLESS_ARGUMENT` and its subordinate ids' argument if boxes have them.
    namespace: Vec<String>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    process: Option<SpawnerProcess>,
    closed: bool,
}

/// A running spawner: the runtime's end of its request socket, and the process, waited for
/// when the socket closes (it exits then).
#[derive(Debug)]
struct SpawnerProcess {
    /// A forked child lets go of its copy.
    requests: Option<crate::fork::ParentOnly<OwnedFd>>,
    child: Child,
}

impl SpawnerProcess {
    fn start(shim: &Path, namespace: &[String]) -> Result<Self> {
        let (requests, spawner_end) = crate::exec::fd::seqpacket_pair().map_err(|error| Error::Engine(format!("failed to make the shim spawner's socket: {error}")))?;
        let mut command = Command::new(shim);
        command.arg(boxlite_protocol::SPAWNER_ARGUMENT).arg(crate::host::box_open_files_limit().to_string()).args(namespace).stdin(Stdio::from(spawner_end)).stdout(Stdio::null()).stderr(Stdio::null());
        let child = crate::process::run_shim(|| command.spawn()).map_err(|error| Error::Engine(format!("failed to run {}: {error}", shim.display())))?;
        Ok(Self { requests: Some(crate::fork::ParentOnly::new(requests)), child })
    }
}

impl Drop for SpawnerProcess {
    /// The spawner exits once its stdin reads end-of-file: this end closes before the wait.
    fn drop(&mut self) {
        drop(self.requests.take());
        let _ = self.child.wait();
    }
}

impl Spawner {
    /// `rootless`: the runtime runs as an ordinary user, whose boxes have `subordinate` ids
    /// if given.
    pub fn new(shim: PathBuf, rootless: bool, subordinate: Option<boxlite_protocol::SubordinateIds>) -> Self {
        let namespace = if rootless { std::iter::once(boxlite_protocol::ROOTLESS_ARGUMENT.to_string()).chain(subordinate.map(boxlite_protocol::SubordinateIds::argument)).collect() } else { Vec::new() };
        Self { shim, namespace, state: Mutex::new(State::default()) }
    }

    /// Has the spawner start the shim with `arguments`, `stdin` and `stdout`. The shim's status
    /// line (or the spawner's `error` line) comes on `stdout`. Blocking, briefly.
    pub fn spawn(&self, arguments: &[&str], stdin: BorrowedFd<'_>, stdout: BorrowedFd<'_>) -> Result<()> {
        let request: Vec<u8> = arguments.iter().flat_map(|argument| argument.bytes().chain([0])).collect();
        let mut state = lock(&self.state);
        if state.closed {
            return Err(Error::Stopped("the runtime has been shut down".to_string()));
        }
        // A spawner that died (killed from outside) is replaced once.
        for _ in 0..2 {
            if state.process.is_none() {
                state.process = Some(SpawnerProcess::start(&self.shim, &self.namespace)?);
            }
            let Some((running, requests)) = state.process.as_ref().and_then(|running| Some((running, running.requests.as_ref()?.get()?))) else { continue };
            match boxlite_protocol::send_packet(requests.as_fd(), &request, &[stdin, stdout]) {
                Ok(()) => return Ok(()),
                Err(error) => {
                    log::warn!("the shim spawner (pid {}) is gone ({error}); starting another", running.child.id());
                    state.process = None;
                }
            }
        }
        Err(Error::Engine("the shim spawner keeps failing".to_string()))
    }

    /// The shim's executable, which the spawner runs.
    pub fn shim_path(&self) -> &Path {
        &self.shim
    }

    pub fn pid(&self) -> Option<u32> {
        lock(&self.state).process.as_ref().map(|process| process.child.id())
    }

    /// Ends the spawner for good (the runtime closes): later spawns are refused. Blocking,
    /// briefly.
    pub fn close(&self) {
        let process = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.process.take()
        };
        drop(process);
    }
}
