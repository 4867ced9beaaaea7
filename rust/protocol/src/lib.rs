//! The wire protocol between the runtime (`boxlite-core`) and the init process of a box
//! (`boxlite-shim`).
//!
//! # Channels
//!
//! 0. **Spawning.** The runtime starts one `boxlite-shim` with [`SPAWNER_ARGUMENT`] (and the
//!    limit on open descriptors boxes start with, then, for an ordinary user's runtime,
//!    [`ROOTLESS_ARGUMENT`] and its subordinate ids), and has it spawn each shim below (its own
//!    executable, run anew): one packet of the shim's arguments (each ended by a NUL byte) with
//!    the shim's stdin and stdout (SCM_RIGHTS). A shim it cannot spawn gets `error <message>` on
//!    that stdout. It exits when the runtime's end of its stdin closes.
//! 1. **Start-up.** The runtime spawns `boxlite-shim` (with [`USER_NAMESPACE_ARGUMENT`] when
//!    boxes get a user namespace), with a `SOCK_SEQPACKET` unix socket on stdin and a pipe on
//!    stdout, ahead of need: the shim makes the box's namespaces, forks the init, answers `warm
//!    <init-pid>` (or `error <message>`) and its first process exits. The runtime sends one
//!    packet of [`ShimConfig`] on stdin and, while the init builds the root, makes the box's
//!    cgroups and sends [`JOIN_CGROUPS`] with their membership files (SCM_RIGHTS, opened by the
//!    runtime); the init writes `0` to each, moving itself, and forks nothing before. It answers
//!    `ready` or `error <message>`. The stdin socket then stays open as the box's *lifeline*: a
//!    box that is not detached shuts down when the runtime's end closes (including when the
//!    runtime's process dies). The runtime sends the box's [`Request::Exec`] on it (as on a
//!    control connection, below); the init never answers there, so the runtime's end becomes
//!    readable only when the init's end closes: when the init and every process of the box are
//!    gone. An init whose stdin closes before its config came exits.
//! 2. **Control socket.** The init listens on a `SOCK_SEQPACKET` unix socket at
//!    `ShimConfig::socket_path`. For a detached box (which has no lifeline) the runtime keeps one
//!    connection open for exec requests. Each
//!    [`Request::Exec`] carries (SCM_RIGHTS) first the connection its execution answers on, one
//!    end of a socket pair the runtime made, then the child's stdio descriptors. On that
//!    connection the init answers [`Reply::Started`] or [`Reply::Failed`], later exactly one
//!    [`Reply::Exited`], and then closes it. Closing it before the exit kills the execution's
//!    process group, so an execution never outlives its owner. [`Request::Signal`] may be sent
//!    on it meanwhile. [`Request::Shutdown`] and [`Request::Attach`] are sent on connections of
//!    their own.
//! 3. **Main process.** A box may have a main process ([`ShimConfig::main`]), started by the init
//!    before it reports ready, with its output appended to files on the host. A connection that
//!    sends [`Request::Attach`] is answered like an exec (`Started`, later `Exited`) but does not
//!    own the process: closing it kills nothing. Until an attach takes it, the init holds the
//!    main process's stdin open, so a shell or an interpreter waiting for input idles. When the main process exits, the init writes its
//!    status to [`MainProcess::status_path`] and stops the box.
//!
//! One message is one packet of JSON; descriptors ride in the same `sendmsg`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod subordinate;

pub use subordinate::{subordinate_tasks, Ownership, SubordinateIds};

/// Largest packet either side sends (a request carries argv and env).
pub const MAX_PACKET: usize = 1 << 20;
/// Most descriptors one packet carries: an execution's connection, stdin, stdout and stderr, or the
/// membership files of a box's cgroups (memory, cpu, cpuacct, pids and freezer on separate
/// hierarchies). The control buffers (8 × u64) hold CMSG_SPACE of this many.
pub const MAX_FDS: usize = 8;

/// The box's bundle of trusted certificate authorities: where Debian, Ubuntu and Alpine keep
/// it, and where OpenSSL, curl, and (pointed there) Python's and Node's clients read it.
pub const TRUST_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How the shim builds the box's root and runs its init.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimConfig {
    pub box_id: String,
    pub hostname: String,
    /// Read-only image layers, top-most first (overlayfs `lowerdir` order).
    pub lower_dirs: Vec<PathBuf>,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
    /// Where the overlay is mounted inside the box's mount namespace.
    pub merged_dir: PathBuf,
    /// Host directories bind-mounted read-only into the box: (host path, path in the box).
    pub read_only_binds: Vec<(PathBuf, PathBuf)>,
    pub socket_path: PathBuf,
    /// Init's own diagnostics go here (opened before pivot_root).
    pub log_path: PathBuf,
    /// A detached box ignores the lifeline closing.
    pub detached: bool,
    /// The box's main process, if it has one.
    pub main: Option<MainProcess>,
    /// Host paths mounted into the box, after its root is in place.
    pub volumes: Vec<VolumeMount>,
    /// Capability numbers box processes keep in their bounding set; every other one is dropped.
    pub capabilities: Vec<u32>,
    /// Resource limits set on every box process before it runs.
    pub process_limits: ProcessLimits,
    /// The box's user namespace: its ids 0..size are host ids host_base..; `None` runs the box
    /// in the host's user namespace.
    pub user_namespace: Option<IdMap>,
    /// Where each lower layer is mounted with the box's ids (an idmapped mount, in the box's
    /// mount namespace only) when the box's ids are not the ones the layers are stored with
    /// ([`IdMap::LAYERS`]).
    pub lower_mounts_dir: PathBuf,
    /// The box's own filesystem, when its size is bounded (`disk_size_gb`): it holds
    /// `upper_dir` and `work_dir`.
    pub disk: Option<BoxDisk>,
    /// Whether the box keeps the interface its shim made ([`network`]); without it, the box
    /// has a loopback interface only.
    #[serde(default)]
    pub network: bool,
    /// The file mounted read-only on the box's /etc/resolv.conf, for a box with a network.
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
    /// A certificate authority (PEM) the box trusts besides its image's: the one of the box's
    /// secrets, whose requests the runtime completes. Appended to [`TRUST_BUNDLE`] in the box.
    #[serde(default)]
    pub trusted_authority: Option<String>,
    /// The runtime runs as an ordinary user ([`ROOTLESS_ARGUMENT`]): the box's devices are the
    /// host's, bound (no one may make device nodes), and its overlay keeps its own attributes
    /// in `user.` extended attributes.
    #[serde(default)]
    pub rootless: bool,
}

/// A box's side of its network, which the shim makes and the runtime serves.
///
/// The box has one interface, [`network::INTERFACE`], with [`network::ADDRESS`] and a default
/// route through it: a tun device, whose packets only the runtime reads. Rules in the box's
/// network namespace (owned by a user namespace box root holds nothing over), loaded by the
/// shim, divert every TCP connection leaving it (DNS over TCP included) to
/// [`network::PROXY_PORT`] on the box's loopback, where the runtime listens with a socket the
/// shim made in that namespace; UDP leaves through the interface, to the runtime; all else is
/// refused. Two descriptors a box (the listener, the interface): the runtime holds them for
/// every running box, and its descriptors are counted. The runtime then applies the box's
/// policy, and makes the connection or sends the datagram itself.
pub mod network {
    /// The interface's name in the box.
    pub const INTERFACE: &str = "eth0";
    pub const ADDRESS: [u8; 4] = [10, 0, 2, 15];
    pub const PREFIX_LENGTH: u32 = 24;
    /// The default route's next hop: an address nothing answers on, only the route's.
    pub const GATEWAY: [u8; 4] = [10, 0, 2, 2];
    /// The nameserver in the box's resolv.conf; its queries reach the runtime's resolver (as
    /// queries to any other server do).
    pub const RESOLVER: [u8; 4] = [10, 0, 2, 3];
    /// Where diverted TCP connections arrive, on 127.0.0.1 in the box; those to port 53 are
    /// answered as DNS.
    pub const PROXY_PORT: u16 = 1;
    /// The interface's MTU, the most a tun device takes: a datagram as large as UDP allows
    /// leaves the box whole, never in fragments.
    pub const MTU: u32 = 65_535;
    /// The port DNS servers listen on: what the box sends there is the resolver's.
    pub const DNS_SERVICE_PORT: u16 = 53;
}

/// A box's own filesystem: an ext4 image file mounted through a loop device at `mount_point`,
/// in the box's mount namespace only (so it goes, and the loop device with it, when the box
/// does). The upper directory's root is made for host id `owner` the first time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BoxDisk {
    pub image: PathBuf,
    pub mount_point: PathBuf,
    pub owner: u32,
}

/// The byte the runtime sends on the init's stdin with the membership files of the box's
/// cgroups: `tasks` on a cgroup v1 hierarchy, `cgroup.procs` on v2.
///
/// The init joins them itself, because a single-threaded process that writes `0` to a v1
/// `tasks` file moves without the kernel's global migration lock. Any other move (a pid written
/// to `cgroup.procs`) takes that lock, which waits for an RCU grace period: 5–30 ms on a host
/// that has been idle for a few tens of milliseconds.
pub const JOIN_CGROUPS: u8 = b'c';

/// The byte the shim of a box with a network sends on its start-up socket, before its status
/// line, with the sockets it made in the box's network namespace for the runtime to serve on:
/// the TCP listener at [`network::PROXY_PORT`], then the descriptor of the box's interface (its
/// tun device). The init keeps both for the runtimes that serve the box later ([`Request::Network`]).
pub const BOX_SOCKETS: u8 = b's';

/// The shim's only argument when it is the runtime's spawner of shims (channel 0): a process
/// with three descriptors, where a spawn from the runtime's process would copy and close its
/// descriptor table, which grows with every box.
pub const SPAWNER_ARGUMENT: &str = "--spawner";

/// The shim's first argument when it guards a runtime's detached boxes' networks: the keeper's
/// command follows (the home's path its last argument). It leaves the runtime's session, waits on its stdin (a
/// stream socket whose other end the runtime keeps) and, when that end closes without a word
/// (the runtime closed with such boxes running, or its process ended), executes the keeper
/// command; after [`GUARD_QUIT`] it exits instead.
pub const GUARD_ARGUMENT: &str = "--guard";

/// What a runtime that closes with no detached box's network to serve says to its guardian.
pub const GUARD_QUIT: u8 = b'q';

/// The shim's argument when no box waits for it yet: it prepares at low priority.
pub const AHEAD_OF_NEED_ARGUMENT: &str = "--ahead-of-need";

/// The shim's argument for a box with a user namespace. Its ids come with the config
/// ([`ShimConfig::user_namespace`]): a shim made ahead of need serves any box.
pub const USER_NAMESPACE_ARGUMENT: &str = "--user-namespace";

/// The shim's argument for a box with a network: ahead of need it gives the box's network
/// namespace its interface and rules ([`network`]) and sends its sockets ([`BOX_SOCKETS`]).
pub const NETWORK_ARGUMENT: &str = "--network";

/// The shim's argument when the runtime runs as an ordinary user. Given to the spawner (channel
/// 0), with [`SubordinateIds::ARGUMENT`] after it where boxes have that user's subordinate ids,
/// it makes the spawner root of a user namespace of its own, in which that user is id 0 (and
/// those ids 1 and up): every shim it spawns is root there from its start and builds its box
/// inside. Box ids are then ids of that namespace ([`IdMap::ROOTLESS`],
/// [`SubordinateIds::id_map`]).
pub const ROOTLESS_ARGUMENT: &str = "--rootless";

/// The shim's first argument when the runtime asks whether boxes can have their user namespace:
/// it makes one with [`IdMap::LAYERS`] (with [`ROOTLESS_ARGUMENT`] after it: with
/// [`IdMap::ROOTLESS`], in a namespace of its own, or with [`SubordinateIds::ARGUMENT`] after
/// that, with [`SubordinateIds::id_map`]) and exits 0 if it could, else prints why.
pub const PROBE_USER_NAMESPACE: &str = "--probe-user-namespace";

/// Host ids `from..from + IdMap::BOX_IDS` of one box, as the same box ids of another (a clone's
/// files, copied from its source's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdShift {
    pub from: u32,
    pub to: u32,
}

impl IdShift {
    pub fn apply(self, id: u32) -> u32 {
        if (self.from..self.from.saturating_add(IdMap::BOX_IDS)).contains(&id) { id - self.from + self.to } else { id }
    }

    /// A namespaced file capability (VFS_CAP_REVISION_3) names the host id of its namespace's
    /// root: that moves with the box too.
    pub fn apply_to_capability(self, value: &mut [u8]) {
        const REVISION_3: u32 = 0x0300_0000;
        if value.len() == 24 && u32::from_le_bytes([value[0], value[1], value[2], value[3]]) & 0xFF00_0000 == REVISION_3 {
            let root = u32::from_le_bytes([value[20], value[21], value[22], value[23]]);
            value[20..24].copy_from_slice(&self.apply(root).to_le_bytes());
        }
    }
}

/// A uid and gid mapping: ids `0..size` in the box are `host_base..host_base + size` outside.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdMap {
    pub host_base: u32,
    pub size: u32,
}

/// Where ids outside a mapping land: the box's `nobody`.
const NOBODY: u32 = 65_534;

impl IdMap {
    /// The ids image layers are stored with: box ids 0..65535 as host ids from 0x7000_0000,
    /// above the pools that systemd-nspawn (up to 0x6FFF0000) and the usual /etc/subuid ranges
    /// (from 100000) hand out. Boxes made before each had its own range ran with these ids.
    pub const LAYERS: Self = Self::slot(0);
    /// The ids of a box of a runtime that runs as an ordinary user ([`ROOTLESS_ARGUMENT`])
    /// without subordinate ids: box root is id 0 of the runtime's user namespace, which is
    /// that user, and the only id. Layers and what the runtime writes are the user's own: the
    /// runtime changes no owner. With subordinate ids, boxes have [`SubordinateIds::id_map`]:
    /// more ids of that namespace, from the same base.
    pub const ROOTLESS: Self = Self { host_base: 0, size: 1 };
    /// Ids in one box's range.
    pub const BOX_IDS: u32 = 65_536;
    /// The number of box ranges above [`IdMap::LAYERS`]; above them, below host id 0xFFFF_FFFF
    /// (the invalid id, -1), are the owners of boxes' user namespaces
    /// ([`IdMap::namespace_owner`]).
    pub const SLOTS: u32 = (u32::MAX - 0x7000_0000) / Self::BOX_IDS - 1 - Self::OWNER_SLOTS;
    /// Ranges' worth of ids for namespace owners: one per possible pid (2^22).
    const OWNER_SLOTS: u32 = 64;

    /// The host id that owns the user namespace made by the process whose host pid is `pid`:
    /// one of its own for each live box, in ids no box range holds. The kernel counts what a
    /// user namespace's processes take of per-user quotas (inotify instances, keys,
    /// namespaces) against its owner too, so each box drains only its own.
    pub const fn namespace_owner(pid: u32) -> u32 {
        Self::slot(Self::SLOTS + 1).host_base + pid
    }

    /// Range `slot`: slot 0 is [`IdMap::LAYERS`], slots 1..=[`IdMap::SLOTS`] are boxes'.
    pub const fn slot(slot: u32) -> Self {
        Self { host_base: 0x7000_0000 + slot * Self::BOX_IDS, size: Self::BOX_IDS }
    }

    /// The slot of a range made by [`IdMap::slot`].
    pub fn slot_number(self) -> Option<u32> {
        let offset = self.host_base.checked_sub(0x7000_0000)?;
        (offset % Self::BOX_IDS == 0 && self.size == Self::BOX_IDS).then_some(offset / Self::BOX_IDS).filter(|slot| *slot <= Self::SLOTS)
    }

    /// Whether image layers are stored with these ids: a box with them mounts its layers as
    /// they are, without an idmapped mount.
    pub fn stores_layers(self) -> bool {
        self == Self::LAYERS || self.is_rootless()
    }

    /// Whether these are the ids of an ordinary user's box: ids of the runtime's namespace
    /// ([`IdMap::ROOTLESS`], [`SubordinateIds::id_map`]), not host ids.
    pub fn is_rootless(self) -> bool {
        self.host_base == 0
    }

    /// The host id of box id `id`; ids past the mapping become the box's `nobody`.
    pub fn host_id(self, id: u64) -> u32 {
        let inside = u32::try_from(id).ok().filter(|id| *id < self.size).unwrap_or(NOBODY);
        self.host_base + inside
    }
}

/// A host directory or file mounted at `target` in the box.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: PathBuf,
    /// An absolute path in the box, resolved inside the box's root.
    pub target: String,
    pub read_only: bool,
    /// Its files are stored with the ids of [`IdMap::LAYERS`] (a named volume): it is mounted
    /// through the namespace the layers are, whatever its owner.
    pub layers_ids: bool,
}

/// setrlimit(2) limits for box processes; `None` leaves the inherited limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessLimits {
    pub open_files: Option<u64>,
    pub file_size_bytes: Option<u64>,
    pub cpu_time_secs: Option<u64>,
    pub address_space_bytes: Option<u64>,
}

/// Capabilities by name (linux/capability.h), without the `CAP_` prefix.
pub const CAPABILITIES: &[(&str, u32)] = &[
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("DAC_READ_SEARCH", 2),
    ("FOWNER", 3),
    ("FSETID", 4),
    ("KILL", 5),
    ("SETGID", 6),
    ("SETUID", 7),
    ("SETPCAP", 8),
    ("LINUX_IMMUTABLE", 9),
    ("NET_BIND_SERVICE", 10),
    ("NET_BROADCAST", 11),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("IPC_LOCK", 14),
    ("IPC_OWNER", 15),
    ("SYS_MODULE", 16),
    ("SYS_RAWIO", 17),
    ("SYS_CHROOT", 18),
    ("SYS_PTRACE", 19),
    ("SYS_PACCT", 20),
    ("SYS_ADMIN", 21),
    ("SYS_BOOT", 22),
    ("SYS_NICE", 23),
    ("SYS_RESOURCE", 24),
    ("SYS_TIME", 25),
    ("SYS_TTY_CONFIG", 26),
    ("MKNOD", 27),
    ("LEASE", 28),
    ("AUDIT_WRITE", 29),
    ("AUDIT_CONTROL", 30),
    ("SETFCAP", 31),
    ("MAC_OVERRIDE", 32),
    ("MAC_ADMIN", 33),
    ("SYSLOG", 34),
    ("WAKE_ALARM", 35),
    ("BLOCK_SUSPEND", 36),
    ("AUDIT_READ", 37),
    ("PERFMON", 38),
    ("BPF", 39),
    ("CHECKPOINT_RESTORE", 40),
];

/// What box processes keep by default: Docker's default set less MKNOD (boxes have no device
/// cgroup, so a device node made in a box would reach the host's disks).
pub const DEFAULT_CAPABILITIES: &[&str] =
    &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE", "NET_RAW", "SYS_CHROOT", "AUDIT_WRITE", "SETFCAP"];

/// The number of a capability named `NAME` or `CAP_NAME`, in any case.
pub fn capability_number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES.iter().find(|(known, _)| *known == bare).map(|(_, number)| *number)
}

/// A box's main process: what to run, and the host files that receive its output and status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MainProcess {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    /// Truncated at each start; the process's stdout and stderr are appended here.
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    /// Receives one line when the process ends: its exit code, or `-N` after signal N.
    pub status_path: PathBuf,
    /// Runs the process on a terminal of this size: its stdin, stdout and stderr are the
    /// terminal, whose output (both streams, as a terminal merges them) the init appends to
    /// `stdout_path`; `stderr_path` stays empty.
    #[serde(default)]
    pub tty: Option<TtySize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Request {
    /// Start a process. The packet carries the connection the execution answers on, then,
    /// without a tty, stdin, stdout and stderr.
    Exec {
        argv: Vec<String>,
        env: Vec<String>,
        cwd: Option<String>,
        /// `name`, `uid`, `name:group` or `uid:gid`, resolved against the box's /etc files.
        user: Option<String>,
        tty: Option<TtySize>,
    },
    /// Follow the box's main process: `Started` now (or `Failed` if there is none running),
    /// `Exited` when it ends. With `stdin`, the first such request takes the write end of the
    /// main process's stdin (it rides on `Started`); closing it gives the process end of file.
    /// A main process on a terminal has the terminal's master side ride on every `Started`,
    /// for its input and its size.
    Attach { stdin: bool },
    /// Signal the execution's process (`group = false`) or its whole process group.
    Signal { signal: i32, group: bool },
    /// Stop the box: SIGTERM to every process, SIGKILL after `grace_ms`, then init exits.
    Shutdown { grace_ms: u64 },
    /// Answered with `Done` at once: the init is responsive (health checks).
    Ping,
    /// Answered with `Done` carrying a new IPv4 socket (TCP, or UDP with `datagram`) made in
    /// the box's network namespace, non-blocking. So the runtime connects there without
    /// entering the namespace, which it may not do when it runs as an ordinary user.
    Socket { datagram: bool },
    /// Answered with `Done` carrying the box's sockets as [`BOX_SOCKETS`] sent them first: the
    /// listener its connections are diverted to and its interface, the tun device the runtime
    /// reads its datagrams from and writes its answers to; `Refused` for a box without a
    /// network. The init keeps them while the box runs, for each runtime that serves it.
    Network,
    /// Answered with `Done` carrying an `O_PATH` descriptor of the box's root directory, for
    /// copying files in and out: a runtime that runs as an ordinary user may not open it
    /// through /proc (box processes are not dumpable).
    Root,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Reply {
    /// The process runs. With a tty, the packet carries the pty's master side.
    Started { pid: i32 },
    /// The process could not be started; nothing runs.
    Failed { message: String, not_found: bool },
    /// The process ended: its exit code, or the signal that killed it.
    Exited { code: Option<i32>, signal: Option<i32> },
    /// A request other than Exec was carried out.
    Done,
    /// A request other than Exec was refused.
    Refused { message: String },
}

pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    // Serialising these plain enums cannot fail: no maps with non-string keys, no custom impls.
    serde_json::to_vec(message).unwrap_or_default()
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> io::Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, format!("bad packet: {error}")))
}

/// Sends one packet with up to [`MAX_FDS`] descriptors. The descriptors stay owned by the caller.
pub fn send_packet(socket: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS, "at most {MAX_FDS} descriptors per packet");
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    let mut control = [0u64; 8]; // aligned room for CMSG_SPACE(MAX_FDS * sizeof(int))
    // SAFETY: msghdr is plain data; every pointer set below points into locals that outlive the
    // sendmsg call, and the control buffer is large enough for MAX_FDS descriptors (asserted).
    unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        if !fds.is_empty() {
            let payload = std::mem::size_of::<RawFd>() * fds.len();
            header.msg_control = control.as_mut_ptr().cast();
            header.msg_controllen = libc::CMSG_SPACE(payload as u32) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload as u32) as usize;
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            for (index, fd) in fds.iter().enumerate() {
                data.add(index).write_unaligned(fd.as_raw_fd());
            }
        }
        let sent = libc::sendmsg(socket.as_raw_fd(), &header, libc::MSG_NOSIGNAL);
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one packet and the descriptors it carries (each marked close-on-exec).
/// An empty packet with no descriptors means the peer closed the connection.
///
/// The packet's size is peeked first, so the buffer is sized to it: most packets are a few
/// dozen bytes, and filling a [`MAX_PACKET`] buffer for each would cost more than the exchange.
pub fn recv_packet(socket: BorrowedFd<'_>, buffer: &mut Vec<u8>) -> io::Result<(usize, Vec<OwnedFd>)> {
    // SAFETY: a zero-length peek; MSG_TRUNC makes a SOCK_SEQPACKET socket report the size of
    // the pending packet without consuming it or its descriptors.
    let pending = unsafe { libc::recv(socket.as_raw_fd(), std::ptr::null_mut(), 0, libc::MSG_PEEK | libc::MSG_TRUNC) };
    if pending < 0 {
        return Err(io::Error::last_os_error());
    }
    buffer.resize((pending as usize).clamp(1, MAX_PACKET), 0);
    recv_with_fds(socket, buffer)
}

/// One `recvmsg` into `buffer`, with the descriptors that came with those bytes (each marked
/// close-on-exec). On a stream socket, the descriptors ride with the first byte they were sent
/// with.
pub fn recv_with_fds(socket: BorrowedFd<'_>, buffer: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() };
    let mut control = [0u64; 8];
    let mut fds = Vec::new();
    // SAFETY: as in send_packet, the header points into locals that live across recvmsg. The
    // kernel writes at most msg_controllen bytes of control data; every descriptor it installed
    // is taken into an OwnedFd exactly once, so none leaks and none is closed twice.
    unsafe {
        let mut header: libc::msghdr = std::mem::zeroed();
        header.msg_iov = &mut iov;
        header.msg_iovlen = 1;
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = std::mem::size_of_val(&control);
        let received = libc::recvmsg(socket.as_raw_fd(), &mut header, libc::MSG_CMSG_CLOEXEC);
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for index in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(index).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
        if header.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "packet truncated"));
        }
        Ok((received as usize, fds))
    }
}

/// `openat2`'s `RESOLVE_*` flags (linux/openat2.h).
pub mod resolve {
    /// Refuses `/proc/<pid>/fd`-style links, which jump out of any root.
    pub const NO_MAGICLINKS: u64 = 0x02;
    /// Refuses to cross a mount point (bind mounts included).
    pub const NO_XDEV: u64 = 0x01;
    /// Refuses every symlink on the way.
    pub const NO_SYMLINKS: u64 = 0x04;
    /// Refuses a path that leads out of the starting directory (`..` past it, absolute paths).
    pub const BENEATH: u64 = 0x08;
    /// Resolves absolute symlinks and `..` against the starting directory, as if it were `/`.
    pub const IN_ROOT: u64 = 0x10;
}

/// `openat2(dir, path, flags | O_CLOEXEC, mode)` with the `resolve` restrictions ([`resolve`]).
pub fn openat2(dir: BorrowedFd<'_>, path: &std::ffi::CStr, flags: i32, mode: u32, resolve: u64) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: u64::from(mode), resolve };
    // SAFETY: openat2 reads `how` (its size passed) and the C string; both outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_openat2, dir.as_raw_fd(), path.as_ptr(), std::ptr::addr_of!(how), std::mem::size_of::<OpenHow>()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_shift_moves_the_ids_of_one_box_range_and_no_others() {
        let shift = IdShift { from: 0x7001_0000, to: 0x7005_0000 };
        assert_eq!(shift.apply(0x7001_0000), 0x7005_0000);
        assert_eq!(shift.apply(0x7001_fffe), 0x7005_fffe);
        assert_eq!(shift.apply(0x7002_0000), 0x7002_0000, "past the range");
        assert_eq!(shift.apply(1000), 1000);
        let mut capability = [0u8; 24];
        capability[..4].copy_from_slice(&0x0300_0001u32.to_le_bytes());
        capability[20..].copy_from_slice(&0x7001_0000u32.to_le_bytes());
        shift.apply_to_capability(&mut capability);
        assert_eq!(&capability[20..], &0x7005_0000u32.to_le_bytes());
    }

    #[test]
    fn ids_shift_into_the_range_and_strays_become_nobody() {
        let map = IdMap::LAYERS;
        let base = map.host_base;
        assert_eq!(map.host_id(0), base);
        assert_eq!(map.host_id(1000), base + 1000);
        assert_eq!(map.host_id(70_000), base + NOBODY);
        assert_eq!(map.host_id(u64::MAX), base + NOBODY);
    }

    #[test]
    fn box_ranges_are_disjoint_and_end_below_the_invalid_id() {
        assert_eq!(IdMap::slot(0), IdMap::LAYERS);
        let last = IdMap::slot(IdMap::SLOTS);
        assert!(u64::from(last.host_base) + u64::from(last.size) <= u64::from(u32::MAX));
        assert_eq!(IdMap::slot(1).host_base, IdMap::LAYERS.host_base + IdMap::LAYERS.size);
        for slot in [0, 1, 2, 4_097, IdMap::SLOTS] {
            assert_eq!(IdMap::slot(slot).slot_number(), Some(slot));
        }
        assert_eq!(IdMap { host_base: 0x7000_0001, size: 65_536 }.slot_number(), None);
        // Namespace owners lie above every box range, and the largest pid's below -1.
        assert!(IdMap::namespace_owner(0) >= last.host_base + last.size);
        assert!(u64::from(IdMap::namespace_owner((1 << 22) - 1)) < u64::from(u32::MAX));
        assert_eq!(IdMap { host_base: 1000, size: 65_536 }.slot_number(), None);
    }

    #[test]
    fn packets_carry_messages_and_descriptors() {
        let mut pair = [0; 2];
        // SAFETY: socketpair writes two new descriptors into `pair`, which we own from here on.
        let (left, right) = unsafe {
            assert_eq!(libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, pair.as_mut_ptr()), 0);
            (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1]))
        };
        let request = Request::Signal { signal: 15, group: true };
        let devnull = std::fs::File::open("/dev/null").expect("open /dev/null");
        send_packet(left.as_fd(), &encode(&request), &[devnull.as_fd(), devnull.as_fd()]).expect("send");
        let mut buffer = Vec::new();
        let (length, fds) = recv_packet(right.as_fd(), &mut buffer).expect("recv");
        assert_eq!(decode::<Request>(&buffer[..length]).expect("decode"), request);
        assert_eq!(fds.len(), 2);
        drop(left);
        let (length, fds) = recv_packet(right.as_fd(), &mut buffer).expect("recv after close");
        assert_eq!((length, fds.len()), (0, 0));
    }

    mod decoding_any_packet {
        use proptest::prelude::*;

        use super::*;

        fn request() -> impl Strategy<Value = Request> {
            let text = ".{0,40}";
            let size = (any::<u16>(), any::<u16>()).prop_map(|(rows, cols)| TtySize { rows, cols });
            prop_oneof![
                (prop::collection::vec(text, 0..4), prop::collection::vec(text, 0..4), prop::option::of(text), prop::option::of(text), prop::option::of(size))
                    .prop_map(|(argv, env, cwd, user, tty)| Request::Exec { argv, env, cwd, user, tty }),
                any::<bool>().prop_map(|stdin| Request::Attach { stdin }),
                (any::<i32>(), any::<bool>()).prop_map(|(signal, group)| Request::Signal { signal, group }),
                any::<u64>().prop_map(|grace_ms| Request::Shutdown { grace_ms }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]
            #[test]
            fn any_bytes_decode_to_a_message_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let _ = decode::<Request>(&bytes);
                let _ = decode::<Reply>(&bytes);
                let _ = decode::<ShimConfig>(&bytes);
            }

            #[test]
            fn every_request_survives_the_wire(request in request()) {
                prop_assert_eq!(decode::<Request>(&encode(&request)).expect("decode"), request);
            }

            #[test]
            fn a_request_cut_short_is_an_error(request in request(), cut in any::<prop::sample::Index>()) {
                let bytes = encode(&request);
                let end = cut.index(bytes.len());
                prop_assert!(decode::<Request>(&bytes[..end]).is_err());
            }
        }
    }
}
