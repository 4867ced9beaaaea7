//! The namespace engine: starts a box's init through `boxlite-shim`, watches it (through its
//! lifeline, or a pidfd), and stops it. A VM engine would implement the same three verbs.

use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use boxlite_protocol::{Request, ShimConfig};

use crate::error::{Error, Result};
use crate::exec::fd::Registered;
use crate::process::{exited_within, kill, pidfd_open};


/// How long the runtime waits for a box's init to answer a request.
pub const INIT_ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// Shutdown requests in flight at once, in the whole process: each takes a connection (a
/// descriptor) until its init answers, and a runtime's shutdown asks all its boxes at once;
/// several thousand ran out of descriptors. Only the asking waits: the grace periods run
/// together.
static SHUTDOWN_REQUESTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);

/// A running box's init, as seen from the runtime.
pub struct Live {
    pub init_pid: i32,
    gone: Gone,
    pub connector: Arc<crate::exec::Connector>,
    /// The box's network while this runtime serves it.
    pub network: Option<crate::network::BoxNetwork>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Live").field("init_pid", &self.init_pid).finish_non_exhaustive()
    }
}

/// What becomes readable once a box's init is gone. A box tied to this runtime has its
/// lifeline: the init's end closes when the init and every process of the box are gone (the
/// init outlives them all: it is pid 1 of their namespace), and the same connection carries
/// the box's exec requests, so the box costs one descriptor for both. A detached or adopted
/// box has a pidfd (and its requests go on a connection to its control socket).
#[derive(Clone)]
enum Gone {
    Lifeline(Arc<crate::exec::fd::ControlSocket>),
    Pidfd(Arc<Registered>),
}

impl Gone {
    fn within(&self, timeout: Duration) -> bool {
        match self {
            Self::Lifeline(lifeline) => lifeline.hung_up_within(timeout),
            Self::Pidfd(pidfd) => pidfd.fd().map_or(true, |pidfd| exited_within(pidfd, timeout)),
        }
    }

    async fn wait(self) {
        match self {
            Self::Lifeline(lifeline) => lifeline.hung_up().await,
            // The pidfd stays readable; the readiness is kept so later waiters return at once.
            Self::Pidfd(pidfd) => drop(pidfd.readable().await),
        }
    }
}

fn kill_init(init_pid: i32, gone: &Gone) {
    match gone {
        Gone::Pidfd(pidfd) => {
            if let Ok(pidfd) = pidfd.fd() {
                kill(pidfd);
            }
        }
        // A pidfd opened now pins whatever has the init's pid; the lifeline then says whether
        // that is still the init (its pid is free only once the lifeline has closed).
        Gone::Lifeline(_) => {
            if let Ok(pidfd) = pidfd_open(init_pid) {
                if !gone.within(Duration::ZERO) {
                    kill(&pidfd);
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum WeakGone {
    Lifeline(std::sync::Weak<crate::exec::fd::ControlSocket>),
    Pidfd(std::sync::Weak<Registered>),
}

/// Kills a box's init without holding its [`Live`], and without keeping it: once the `Live` is
/// dropped (its lifeline closed, its pidfd too), there is nothing left to kill through it.
#[derive(Debug, Clone)]
pub struct Killer {
    init_pid: i32,
    gone: WeakGone,
}

impl Killer {
    fn gone(&self) -> Option<Gone> {
        match &self.gone {
            WeakGone::Lifeline(lifeline) => lifeline.upgrade().map(Gone::Lifeline),
            WeakGone::Pidfd(pidfd) => pidfd.upgrade().map(Gone::Pidfd),
        }
    }

    pub fn kill(&self) {
        if let Some(gone) = self.gone() {
            kill_init(self.init_pid, &gone);
        }
    }

    /// Blocks up to `timeout` for the init to exit; true if it has, or if its `Live` is gone.
    pub fn exited_within(&self, timeout: Duration) -> bool {
        self.gone().is_none_or(|gone| gone.within(timeout))
    }
}

impl Live {
    /// A box started by this runtime and tied to it by `lifeline`.
    fn tied(init_pid: i32, lifeline: crate::fork::ParentOnly<OwnedFd>, socket_path: PathBuf) -> std::io::Result<Self> {
        let lifeline = Arc::new(crate::exec::fd::ControlSocket::from_connected(lifeline)?);
        let connector = crate::exec::Connector::on_lifeline(socket_path, Arc::clone(&lifeline));
        Ok(Self { init_pid, gone: Gone::Lifeline(lifeline), connector: Arc::new(connector), network: None })
    }

    /// A box that outlives its runtime, watched through its init's `pidfd`.
    fn watch(init_pid: i32, pidfd: OwnedFd, socket_path: PathBuf) -> std::io::Result<Self> {
        let pidfd = Arc::new(Registered::new(crate::fork::ParentOnly::new(pidfd))?);
        Ok(Self { init_pid, gone: Gone::Pidfd(pidfd), connector: Arc::new(crate::exec::Connector::new(socket_path)), network: None })
    }

    /// Re-attaches to the init of a detached box left by an earlier runtime. Checks that the pid
    /// is the process listening on the box's control socket, so a recycled pid is never
    /// mistaken for the box (and without looking into the process, which a runtime that runs
    /// as an ordinary user may not do).
    pub fn adopt(init_pid: i32, socket_path: PathBuf) -> Option<Self> {
        // The pidfd first: it pins the process the check is about.
        let pidfd = pidfd_open(init_pid).ok()?;
        let control = crate::exec::fd::ControlSocket::connect(&socket_path).ok()?;
        if control.peer_pid().ok()? != init_pid {
            return None;
        }
        Self::watch(init_pid, pidfd, socket_path).ok()
    }

    pub fn is_alive(&self) -> bool {
        !self.exited_within(Duration::ZERO)
    }

    /// Blocks up to `timeout` for the init to exit; true if it has.
    pub fn exited_within(&self, timeout: Duration) -> bool {
        self.gone.within(timeout)
    }

    /// Resolves when the init has exited.
    pub async fn exited(&self) {
        self.gone.clone().wait().await;
    }

    /// Resolves when the init has exited; it does not borrow `self`, so it can outlive it.
    pub fn exit_watch(&self) -> impl Future<Output = ()> + Send + 'static {
        self.gone.clone().wait()
    }

    pub fn kill(&self) {
        kill_init(self.init_pid, &self.gone);
    }

    /// What kills the init while an operation holds this `Live` (a stop in its grace period).
    pub fn killer(&self) -> Killer {
        let gone = match &self.gone {
            Gone::Lifeline(lifeline) => WeakGone::Lifeline(Arc::downgrade(lifeline)),
            Gone::Pidfd(pidfd) => WeakGone::Pidfd(Arc::downgrade(pidfd)),
        };
        Killer { init_pid: self.init_pid, gone }
    }

    /// Stops the box: asks the init to shut down (SIGTERM to all, SIGKILL after `grace`), and
    /// kills the init itself if it has not exited a little after that.
    pub async fn shutdown(&self, grace: Duration) {
        if self.is_alive() {
            let asked = async {
                let _admitted = SHUTDOWN_REQUESTS.acquire().await;
                let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
                let socket = self.connector.connect().ok()?;
                socket.send(&Request::Shutdown { grace_ms }, &[]).await.ok()?;
                socket.recv().await.ok().filter(|answer| matches!(answer, crate::exec::fd::Packet::Reply(..)))
            };
            // An init that does not answer (wedged by what runs in the box) is killed.
            if tokio::time::timeout(INIT_ANSWER_LIMIT, asked).await.ok().flatten().is_none() {
                log::warn!("the init (pid {}) did not answer the shutdown request: killed", self.init_pid);
                self.kill();
            }
        }
        if tokio::time::timeout(grace + Duration::from_secs(3), self.exited()).await.is_err() {
            log::warn!("the init (pid {}) outlived its shutdown grace: killed", self.init_pid);
            self.kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.exited()).await;
        }
    }
}

/// How this runtime's shims are made: the same for every box but for its network.
#[derive(Debug, Clone)]
pub struct ShimKind {
    /// Spawns the shims (and knows where the executable is).
    pub spawner: Arc<super::spawner::Spawner>,
    /// Boxes get user namespaces.
    pub user_namespace: bool,
    /// The runtime runs as an ordinary user (`boxlite_protocol::ROOTLESS_ARGUMENT`).
    pub rootless: bool,
}

/// A shim made ahead of need: the box's namespaces exist and its init waits for the config
/// (the start-up protocol of `boxlite_protocol`). Starting a box from one skips the shim's
/// exec, the namespaces and the fork. Dropping it ends the init.
pub struct Warm {
    init_pid: i32,
    /// Taken by the box the init starts; while here, dropping `Warm` kills the init.
    pidfd: Option<OwnedFd>,
    /// The init's stdin: the start-up socket (blocking), then the box's lifeline. A forked
    /// child lets go of its copy, so the init does not outlive the runtime.
    startup: Option<crate::fork::ParentOnly<OwnedFd>>,
    stdout: BufReader<std::io::PipeReader>,
    /// Made for a box with user namespaces (whatever its ids: they come with the config).
    pub user_namespace: bool,
    /// The sockets the runtime serves the box's network on, made ahead of need too, when the
    /// shim gave the box an interface: they exist before any box process could take the ports.
    pub sockets: Option<crate::network::BoxSockets>,
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Warm").field("init_pid", &self.init_pid).finish_non_exhaustive()
    }
}

impl Warm {
    pub fn init_pid(&self) -> i32 {
        self.init_pid
    }

    /// Spawns a shim of `kind` and waits until its init exists. Blocking. `ahead_of_need`: no
    /// box waits for it, so it prepares at low priority. `network`: the box gets an interface
    /// and its rules, and the shim sends the sockets its way out is served on.
    pub fn prepare(kind: &ShimKind, ahead_of_need: bool, network: bool) -> Result<Self> {
        let flags = [
            (network, boxlite_protocol::NETWORK_ARGUMENT),
            (ahead_of_need, boxlite_protocol::AHEAD_OF_NEED_ARGUMENT),
            (kind.user_namespace, boxlite_protocol::USER_NAMESPACE_ARGUMENT),
            (kind.rootless, boxlite_protocol::ROOTLESS_ARGUMENT),
        ];
        let arguments: Vec<&str> = flags.iter().filter(|(wanted, _)| *wanted).map(|(_, argument)| *argument).collect();
        let (startup, init_end) = crate::exec::fd::seqpacket_pair().map_err(|error| Error::Engine(format!("failed to make the start-up socket: {error}")))?;
        let (reader, writer) = std::io::pipe().map_err(|error| Error::Engine(format!("failed to make the shim's status pipe: {error}")))?;
        kind.spawner.spawn(&arguments, init_end.as_fd(), writer.as_fd())?;
        // Only the shim (and the init after it) may hold the write end: end-of-file then says
        // that they are gone.
        drop((init_end, writer));
        let mut stdout = BufReader::new(reader);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let line = line.trim_end();
        if let Some(message) = line.strip_prefix("error ") {
            return Err(Error::Engine(format!("failed to prepare a box: {message}")));
        }
        let init_pid: i32 = line
            .strip_prefix("warm ")
            .and_then(|pid| pid.parse().ok())
            .ok_or_else(|| Error::Engine(format!("failed to prepare a box: the shim said {line:?}")))?;
        let pidfd = pidfd_open(init_pid).map_err(|error| Error::Engine(format!("failed to prepare a box: its init vanished: {error}")))?;
        let mut warm = Self { init_pid, pidfd: Some(pidfd), startup: Some(crate::fork::ParentOnly::new(startup)), stdout, user_namespace: kind.user_namespace, sockets: None };
        if let (true, Some(startup)) = (network, warm.startup.as_ref().and_then(crate::fork::ParentOnly::get)) {
            // On failure, dropping `warm` ends the init.
            warm.sockets = Some(crate::network::BoxSockets::receive(startup.as_fd())?);
        }
        Ok(warm)
    }
}

impl Drop for Warm {
    /// The init exits when its start-up socket closes; it is also killed and waited for
    /// (briefly), so no process of a closed runtime lingers.
    fn drop(&mut self) {
        let Some(pidfd) = self.pidfd.take() else { return };
        drop(self.startup.take());
        kill(&pidfd);
        exited_within(&pidfd, Duration::from_secs(1));
    }
}

/// Starts a box on `warm`: sends the config, and while the init builds the root, makes the
/// box's cgroups with `cgroups` (which returns their membership files) and sends the init the
/// files to join them through. Blocking. On failure nothing of the init is left (dropping
/// `warm` ends it), its control socket included (the init cannot remove it: a failure after
/// pivot_root leaves its own view of the host behind).
pub fn spawn(warm: Warm, config: &ShimConfig, cgroups: impl FnOnce() -> Result<Vec<PathBuf>>) -> Result<Live> {
    spawn_init(warm, config, cgroups).inspect_err(|_| {
        let _ = std::fs::remove_file(&config.socket_path);
    })
}

/// Makes the box's cgroups and opens their membership files, with the runtime's credentials:
/// the kernel checks those of the opener when the init writes to them.
fn open_membership_files(cgroups: impl FnOnce() -> Result<Vec<PathBuf>>) -> Result<Vec<File>> {
    cgroups()?
        .iter()
        .map(|path| File::options().write(true).open(path).map_err(|error| Error::Engine(format!("failed to open {}: {error}", path.display()))))
        .collect()
}

fn spawn_init(mut warm: Warm, config: &ShimConfig, cgroups: impl FnOnce() -> Result<Vec<PathBuf>>) -> Result<Live> {
    let bytes = serde_json::to_vec(config).map_err(|error| Error::Internal(format!("cannot encode shim config: {error}")))?;
    let startup = warm.startup.as_ref().and_then(crate::fork::ParentOnly::get).ok_or_else(|| Error::Internal("warm shim without its start-up socket".to_string()))?;
    let mut written = boxlite_protocol::send_packet(startup.as_fd(), &bytes, &[]);
    if written.as_ref().is_err_and(|error| error.raw_os_error() == Some(libc::EMSGSIZE)) {
        return Err(Error::InvalidArgument(format!("box {}'s settings (its environment, command, volumes) are too large to send to its init ({} bytes)", config.box_id, bytes.len())));
    }
    if written.is_ok() {
        // On failure, dropping `warm` ends the init that waits for these.
        let files = open_membership_files(cgroups)?;
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(AsFd::as_fd).collect();
        written = boxlite_protocol::send_packet(startup.as_fd(), &[boxlite_protocol::JOIN_CGROUPS], &fds);
    }
    let mut line = String::new();
    let _ = warm.stdout.read_line(&mut line);
    let line = line.trim_end();
    // The init's own account of a failure explains a broken pipe best.
    if let (None, Err(error)) = (line.strip_prefix("error "), written) {
        return Err(Error::Engine(format!("failed to configure the box's init: {error}")));
    }
    if let Some(message) = line.strip_prefix("error ") {
        let message = format!("failed to start box {}: {message}", config.box_id);
        // The main process's program is missing: the user's mistake, not the engine's.
        return Err(if message.contains(": not found: ") { Error::NotFound(message) } else { Error::Engine(message) });
    }
    if line != "ready" {
        return Err(Error::Engine(format!("failed to start box {}: the init said {line:?}", config.box_id)));
    }
    let init_pid = warm.init_pid;
    let (Some(pidfd), Some(startup)) = (warm.pidfd.take(), warm.startup.take()) else {
        return Err(Error::Internal("warm shim taken twice".to_string()));
    };
    let live = if config.detached { Live::watch(init_pid, pidfd, config.socket_path.clone()) } else { Live::tied(init_pid, startup, config.socket_path.clone()) };
    live.map_err(|error| Error::Engine(format!("box {} init {init_pid} vanished after start: {error}", config.box_id)))
}
