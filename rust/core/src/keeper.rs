//! A home's detached boxes' networks, served while no program's runtime holds the home.
//!
//! A detached box outlives the runtime that started it, and its network (its connections out,
//! its DNS, its published ports) is served from a runtime's process (`network` rule 5). So that
//! it keeps working once that runtime is gone, however it went:
//!
//! # Rules
//!
//! 1. A runtime given a keeper command ([`Role::Program`]) starts a *guardian* when its first
//!    detached box with a network (a way out or published ports) runs or is adopted: the shim's
//!    executable with `GUARD_ARGUMENT` and that command, in a session of its own and no
//!    process's child, whose stdin is one end of a socket pair. The runtime keeps the other end
//!    until it closes.
//! 2. A runtime that closes with no such box running tells its guardian to quit and waits until
//!    it has. Otherwise its end closes without a word (a close with such boxes running, or the
//!    end of its process, however it came), and the guardian executes the keeper command (the
//!    home's path its last argument).
//! 3. The keeper ([`keep`]) is a runtime opened on the home as [`Role::Keeper`]: it adopts the
//!    detached boxes, serves their networks and publishes their ports again, as any runtime
//!    does, and prepares nothing ahead of need. It leaves when no detached box with a network
//!    runs, or when a runtime opens the home: the newcomer, finding the home's lock taken,
//!    connects to [`SOCKET`] in the home and waits for that connection to close, which the
//!    keeper does once it closed its runtime and so released the lock. A keeper that finds the
//!    home held by a runtime (which serves it), or once it holds the home no record of a
//!    running detached box with a network, leaves before it does anything else.
//! 4. From a runtime's end to its keeper's start (the keeper command's start-up), and from a
//!    keeper's leaving to the newcomer's adoption, what a box sends waits for the next server
//!    (`network` rule 5); a connection to one of its published ports is refused then, as the
//!    host's listener is the server's.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::{lock, Runtime};

/// Where a keeper listens for the runtime that takes its place, in the home (rule 3).
pub const SOCKET: &str = "keeper.sock";
/// What guardians and the keepers they became write, in the home.
pub const LOG: &str = "keeper.log";
/// The size past which the next guardian starts the log anew.
const LOG_LIMIT: u64 = 1 << 20;
/// How long a closing runtime waits for its guardian to quit.
const QUIT_WAIT: Duration = Duration::from_secs(1);
/// How long a newcomer waits for a keeper to leave.
const LEAVE_WAIT: Duration = Duration::from_secs(30);
/// How often a keeper looks whether a detached box with a network still runs.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// What a runtime is for, besides its caller's work.
#[derive(Debug, Clone)]
pub enum Role {
    /// A program's runtime. `keeper`: the command that serves its detached boxes' networks once
    /// it is gone (rule 1); without one they wait, unserved, for the next runtime.
    Program { keeper: Option<Vec<OsString>> },
    /// A keeper (rule 3).
    Keeper,
}

/// A runtime's guardian, and the keeper command it gives one (rules 1 and 2).
#[derive(Debug)]
pub(crate) struct Succession {
    keeper: Option<Vec<OsString>>,
    /// The runtime's end of its guardian's stdin, once it started one (a forked child lets go
    /// of its copy).
    guardian: Mutex<Option<crate::fork::ParentOnly<UnixStream>>>,
}

impl Succession {
    pub(crate) fn new(role: &Role) -> Self {
        let keeper = match role {
            Role::Program { keeper } => keeper.clone(),
            Role::Keeper => None,
        };
        Self { keeper, guardian: Mutex::new(None) }
    }

    /// Rule 1: starts the guardian, unless there is one or no keeper command.
    pub(crate) fn guard(&self, shim: &Path, home: &Path) {
        let Some(keeper) = &self.keeper else { return };
        let mut guardian = lock(&self.guardian);
        if guardian.is_some() {
            return;
        }
        match start_guardian(shim, home, keeper) {
            Ok(end) => *guardian = Some(crate::fork::ParentOnly::new(end)),
            Err(error) => log::warn!("detached boxes' networks will not be served once this runtime is gone: {error}"),
        }
    }

    /// Rule 2, at the runtime's close: `keep`, whether a detached box's network is left to serve.
    pub(crate) fn hand_over(&self, keep: bool) {
        let Some(held) = lock(&self.guardian).take() else { return };
        let Some(mut end) = held.get() else { return };
        if !keep && end.write_all(&[boxlite_protocol::GUARD_QUIT]).is_ok() {
            // The guardian's exit closes its end: then this read sees the end of the stream.
            let _ = end.set_read_timeout(Some(QUIT_WAIT));
            let _ = end.read(&mut [0u8; 1]);
        }
    }
}

fn start_guardian(shim: &Path, home: &Path, keeper: &[OsString]) -> Result<UnixStream> {
    let failed = |error: std::io::Error| Error::Engine(format!("failed to start the guardian of detached boxes' networks: {error}"));
    let (runtime_end, guardian_end) = UnixStream::pair().map_err(failed)?;
    let log_path = home.join(LOG);
    // Appended to, so that it tells what each keeper did; started anew once it grew past a limit.
    let grown = std::fs::metadata(&log_path).is_ok_and(|log| log.len() > LOG_LIMIT);
    let log = std::fs::File::options().create(true).append(true).truncate(false).open(&log_path);
    let log = log.and_then(|log| if grown { log.set_len(0).map(|()| log) } else { Ok(log) }).map_err(|error| Error::storage("open", &log_path, &error))?;
    let mut command = Command::new(shim);
    command
        .arg(boxlite_protocol::GUARD_ARGUMENT)
        .args(keeper)
        .arg(home)
        .stdin(Stdio::from(OwnedFd::from(guardian_end)))
        .stdout(log.try_clone().map_err(failed)?)
        .stderr(log);
    let mut first = crate::process::run_shim(|| command.spawn()).map_err(failed)?;
    // The guardian's first process exits once it forked the one that guards (rule 1).
    first.wait().map_err(failed)?;
    Ok(runtime_end)
}

/// Rule 3, the newcomer's side: asks the keeper that holds `home`, if one does, to leave, and
/// returns once it has (or after [`LEAVE_WAIT`]). False when no keeper listens there.
pub(crate) fn ask_to_leave(home: &Path) -> bool {
    let Ok(mut keeper) = UnixStream::connect(home.join(SOCKET)) else { return false };
    let _ = keeper.set_read_timeout(Some(LEAVE_WAIT));
    let _ = keeper.write_all(b"leave");
    let _ = keeper.read(&mut [0u8; 1]);
    true
}

/// Rule 3: serves the networks of `home`'s detached boxes until a runtime opens the home or
/// none with a network runs. Needs a tokio runtime.
pub async fn keep(home: PathBuf) -> Result<()> {
    if !home.join("boxes").is_dir() {
        return Err(Error::NotFound(format!("no boxlite home at {}", home.display())));
    }
    let opening = home.clone();
    let opened = tokio::task::spawn_blocking(move || Runtime::open(&opening, Vec::new(), Role::Keeper))
        .await
        .map_err(|error| Error::Internal(format!("the keeper's runtime failed to open: {error}")))?;
    let runtime = match opened {
        Ok(runtime) => runtime,
        // Nothing to keep, or a runtime holds the home: whoever holds it serves its boxes.
        Err(error @ (Error::NotFound(_) | Error::Internal(_))) => {
            log::info!("not keeping {}: {error}", home.display());
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    let socket_path = home.join(SOCKET);
    let _ = std::fs::remove_file(&socket_path);
    let listening = tokio::net::UnixListener::bind(&socket_path).and_then(|listener| {
        std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600))?;
        Ok(listener)
    });
    let newcomer = match listening {
        Ok(listener) => {
            log::info!("serving the networks of {} detached boxes until a runtime opens {}", runtime.detached_networks(), home.display());
            let newcomer = loop {
                if runtime.detached_networks() == 0 {
                    log::info!("no detached box with a network runs: leaving");
                    break None;
                }
                tokio::select! {
                    accepted = listener.accept() => if let Ok((stream, _)) = accepted {
                        log::info!("a runtime opens the home: leaving");
                        break Some(stream);
                    },
                    () = tokio::time::sleep(CHECK_EVERY) => {}
                }
            };
            let _ = std::fs::remove_file(&socket_path);
            newcomer
        }
        Err(error) => {
            log::warn!("cannot listen at {}: {error}", socket_path.display());
            None
        }
    };
    let closing = runtime.clone();
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    drop(newcomer);
    Ok(())
}
