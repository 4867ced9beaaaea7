//! The box's user namespaces. Each is made ahead of need by a helper child of the init while the
//! init is still host root in the host's user namespace, and waits unmapped: the box's ids come
//! with its config, so a shim made ahead of need serves any box. Once they came, the init writes
//! the maps (it may: it is root in the parent namespace) and lets the helpers go.
//!
//! A box has two: its own, in which its processes run (box ids 0.. are the box's host range) and
//! which a host user of its own owns (`IdMap::namespace_owner`: the kernel charges per-user
//! quotas such as inotify instances to a namespace's owner as well, so that a box that drains
//! one drains it for itself, not for host root and every other box),
//! and the one its image layers are mounted through (idmapped mounts, `jail`), which maps the
//! ids the layers are stored with ([`IdMap::LAYERS`]) to the box's range, so each box sees the
//! shared layers as its own files.
//!
//! The box's other namespaces stay owned by the host's user namespace: pid 1 builds the root as
//! host root and enters the user namespace only afterwards ([`enter`]). So root in a box holds
//! capabilities over its own user namespace only — not over its mounts, hostname or network —
//! and is an unprivileged host user, a stranger to every other box's files and processes.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use boxlite_protocol::{IdMap, SubordinateIds};

use crate::process;

/// A user namespace whose helper holds it until it is mapped and dropped.
pub struct Pending {
    helper: libc::pid_t,
    /// The helper's pid in the host's /proc.
    proc_pid: String,
    namespace: OwnedFd,
    /// A byte sent on it lets the helper exit. (Not the end of file: processes forked after the
    /// helper, such as the other helper and pid 1, hold copies of this end.)
    release: OwnedFd,
}

impl Pending {
    /// Forks the helper, which makes the namespace and waits. `owned`: the helper first becomes
    /// its own host user ([`IdMap::namespace_owner`]), which then owns the namespace; else host
    /// root does. The caller must be single-threaded, and reaps the helper when this is dropped.
    pub fn create(owned: bool) -> Result<Self, String> {
        let (ready_read, ready_write) = process::pipe().map_err(|error| error.to_string())?;
        let (release_read, release_write) = release_pair()?;
        // SAFETY: the caller is single-threaded; the child only calls unshare, write, read and
        // _exit.
        let helper = unsafe { libc::fork() };
        if helper < 0 {
            return Err(format!("failed to fork the user namespace helper: {}", std::io::Error::last_os_error()));
        }
        if helper == 0 {
            drop((ready_read, release_write));
            // SAFETY: see above; this block ends in _exit. The answer is `y` and the helper's
            // pid as the host's /proc names it (the init's own pid namespace numbers it
            // otherwise), or `n`.
            unsafe {
                let mut answer = [0u8; 32];
                answer[0] = b'n';
                let mut length = 1;
                let read = libc::readlink(c"/proc/self".as_ptr(), answer[1..].as_mut_ptr().cast(), answer.len() - 1);
                let pid = answer[1..].iter().take(read.max(0) as usize).fold(0u32, |pid, digit| pid * 10 + u32::from(digit - b'0'));
                let owner = IdMap::namespace_owner(pid);
                let became = !owned || (libc::setresgid(owner, owner, owner) == 0 && libc::setgroups(0, std::ptr::null()) == 0 && libc::setresuid(owner, owner, owner) == 0);
                if read > 0 && became && libc::unshare(libc::CLONE_NEWUSER) == 0 {
                    answer[0] = b'y';
                    length += read as usize;
                }
                libc::write(ready_write.as_raw_fd(), answer.as_ptr().cast(), length);
                let mut byte = 0u8;
                libc::read(release_read.as_raw_fd(), std::ptr::addr_of_mut!(byte).cast(), 1);
                libc::_exit(0);
            }
        }
        drop((ready_write, release_read));
        match open_when_made(ready_read) {
            Ok((proc_pid, namespace)) => Ok(Self { helper, proc_pid, namespace, release: release_write }),
            Err(message) => {
                release(helper, &release_write);
                Err(message)
            }
        }
    }

    pub fn namespace(&self) -> &OwnedFd {
        &self.namespace
    }

    /// Maps the namespace's user ids `uid..uid + map.size` and group ids `gid..gid + map.size`
    /// to host ids `map.host_base..`. Once only. An ordinary user's box takes its ids from the
    /// runtime's namespace, which maps id 0 (the user) and ids 1 and up (its subordinate ids) in
    /// two pieces; a line of the map must lie within one piece of the parent's, so it has two.
    pub fn map(&self, uid: u32, gid: u32, map: IdMap) -> Result<(), String> {
        for (file, inside) in [("uid_map", uid), ("gid_map", gid)] {
            let line = match map.size {
                size if map.is_rootless() && size > 1 => format!("{inside} 0 1\n{} 1 {}\n", inside + 1, size - 1),
                size => format!("{inside} {} {size}\n", map.host_base),
            };
            let path = format!("/proc/{}/{file}", self.proc_pid);
            File::options()
                .write(true)
                .open(&path)
                .and_then(|mut map_file| map_file.write_all(line.as_bytes()))
                .map_err(|error| format!("failed to write {path}: {error}"))?;
        }
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        release(self.helper, &self.release);
    }
}

/// The helper's pid in the host's /proc, and its namespace, once it made it.
fn open_when_made(ready: OwnedFd) -> Result<(String, OwnedFd), String> {
    let mut answer = [0u8; 32];
    let read = File::from(ready).read(&mut answer).unwrap_or(0);
    let proc_pid = match answer[..read].split_first() {
        Some((b'y', pid)) if !pid.is_empty() && pid.iter().all(u8::is_ascii_digit) => String::from_utf8_lossy(pid).into_owned(),
        _ => return Err("failed to create the box's user namespace (are user namespaces enabled?)".to_string()),
    };
    let path = format!("/proc/{proc_pid}/ns/user");
    let namespace = File::open(&path).map(OwnedFd::from).map_err(|error| format!("failed to open {path}: {error}"))?;
    Ok((proc_pid, namespace))
}

/// A connected pair for letting a helper go: a socket, so that sending to a helper that is gone
/// fails ([`send_go`]) instead of raising SIGPIPE (the init and the shim keep default signal
/// dispositions).
fn release_pair() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two new descriptors, owned from here on.
    unsafe {
        if libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) < 0 {
            return Err(format!("failed to create the user namespace helper's socket: {}", std::io::Error::last_os_error()));
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Sends the one byte that lets a helper go on its end of a [`release_pair`]; to a helper that is
/// gone, nothing.
fn send_go(socket: &OwnedFd) {
    // SAFETY: one byte from a static buffer on our own socket.
    unsafe { libc::send(socket.as_raw_fd(), b"x".as_ptr().cast(), 1, libc::MSG_NOSIGNAL) };
}

/// Lets the helper go and reaps it.
fn release(helper: libc::pid_t, release: &OwnedFd) {
    send_go(release);
    let mut status = 0;
    // SAFETY: waiting for our own helper, which exits once it read the byte (or is gone already).
    unsafe { libc::waitpid(helper, &mut status, 0) };
}

/// The box's user namespace and the one its layers are mounted through, made ahead of need.
pub struct BoxNamespaces {
    own: Pending,
    /// `None` for an ordinary user's box, whose layers are always its own.
    layers: Option<Pending>,
}

impl BoxNamespaces {
    /// `rootless`: made in the runtime's namespace ([`become_root_of_own_namespace`]), where
    /// no other host user exists to own the box's namespace, and layers are stored with the
    /// box's ids ([`IdMap::is_rootless`]).
    pub fn create(rootless: bool) -> Result<Self, String> {
        Ok(Self { own: Pending::create(!rootless)?, layers: (!rootless).then(|| Pending::create(false)).transpose()? })
    }

    /// Gives both their ids once the box's range `map` is known. A box in the range the layers
    /// are stored with needs no idmapped layers: the second namespace stays unused.
    pub fn map(&self, map: IdMap) -> Result<(), String> {
        self.own.map(0, 0, map)?;
        if let Some(layers) = self.layers.as_ref().filter(|_| !map.stores_layers()) {
            layers.map(IdMap::LAYERS.host_base, IdMap::LAYERS.host_base, map)?;
        }
        Ok(())
    }

    /// The namespace box processes run in.
    pub fn own(&self) -> &OwnedFd {
        self.own.namespace()
    }

    /// The namespace layers are mounted through, for a box whose range is `map`.
    pub fn layers(&self, map: IdMap) -> Option<&OwnedFd> {
        self.layers.as_ref().filter(|_| !map.stores_layers()).map(Pending::namespace)
    }
}

/// Makes this (single-threaded) process root of a user namespace of its own
/// (`boxlite_protocol::ROOTLESS_ARGUMENT`), which maps the ordinary user it runs as to id 0 and,
/// with `subordinate` ids, those to ids `1..` ([`SubordinateIds`]). It holds every capability
/// there, over the namespaces it makes next and nothing of the host's. The spawner of an
/// ordinary user's runtime does it once for every shim it spawns; a shim run for a probe or a
/// subordinate task, for itself.
pub fn become_root_of_own_namespace(subordinate: Option<SubordinateIds>) -> Result<(), String> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    // Forked before the namespace exists: the mapper stays in the host's.
    let mapper = subordinate.map(|ids| Mapper::fork(ids, uid, gid)).transpose()?;
    // SAFETY: unshare affects only this process.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } < 0 {
        return Err(format!("failed to create a user namespace as user {uid}: {}", std::io::Error::last_os_error()));
    }
    if let Some(mapper) = mapper {
        return mapper.map();
    }
    // Writing a one-id group map requires giving up setgroups in the namespace first.
    for (file, line) in [("setgroups", "deny".to_string()), ("uid_map", format!("0 {uid} 1\n")), ("gid_map", format!("0 {gid} 1\n"))] {
        let path = format!("/proc/self/{file}");
        std::fs::write(&path, line).map_err(|error| format!("failed to write {path}: {error}"))?;
    }
    Ok(())
}

/// A child that maps its parent's new user namespace with `newuidmap` and `newgidmap`: only a
/// process in the parent namespace may write a map of more than its own id, and those setuid
/// helpers check the ids against /etc/subuid and /etc/subgid.
struct Mapper {
    pid: libc::pid_t,
    /// A byte on it says the namespace exists; its end of file, that there will be none.
    go: Option<OwnedFd>,
    /// What went wrong, if anything; end of file when the mapper is done.
    answer: Option<OwnedFd>,
}

impl Mapper {
    /// The caller must be single-threaded; [`Mapper::map`] reaps the child.
    fn fork(ids: SubordinateIds, uid: libc::uid_t, gid: libc::gid_t) -> Result<Self, String> {
        let (go_read, go) = release_pair()?;
        let (answer, answer_write) = process::pipe().map_err(|error| error.to_string())?;
        // SAFETY: the caller is single-threaded, so the child may run any code; it leaves by
        // _exit only, never returning into the shim.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("failed to fork the id mapper: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            drop((go, answer));
            let mut byte = [0u8; 1];
            let went = File::from(go_read).read(&mut byte).unwrap_or(0) == 1;
            let failure = if went { map_parent(ids, uid, gid).err() } else { Some(String::new()) };
            if let Some(message) = &failure {
                let _ = File::from(answer_write).write_all(message.as_bytes());
            }
            // SAFETY: the forked mapper ends here, without running the shim's exit handlers.
            unsafe { libc::_exit(i32::from(failure.is_some())) };
        }
        drop((go_read, answer_write));
        Ok(Self { pid, go: Some(go), answer: Some(answer) })
    }

    /// Lets the mapper map the namespace that now exists, and waits for it.
    fn map(mut self) -> Result<(), String> {
        if let Some(go) = self.go.take() {
            send_go(&go);
        }
        let mut message = String::new();
        if let Some(answer) = self.answer.take() {
            let _ = File::from(answer).read_to_string(&mut message);
        }
        let status = self.reap();
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 && message.is_empty() {
            return Ok(());
        }
        Err(if message.is_empty() { "the id mapper failed".to_string() } else { message })
    }

    /// Waits for the mapper, once; its wait status.
    fn reap(&mut self) -> i32 {
        let mut status = 0;
        let pid = std::mem::take(&mut self.pid);
        if pid > 0 {
            // SAFETY: waiting for our own child, which exits once it answered or read the end
            // of `go`.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
        status
    }
}

impl Drop for Mapper {
    /// A mapper never let go (no namespace was made) reads the end of `go`, and exits.
    fn drop(&mut self) {
        drop(self.go.take());
        self.reap();
    }
}

/// Runs `newuidmap` and `newgidmap` on the parent's namespace (in the mapper).
fn map_parent(ids: SubordinateIds, uid: libc::uid_t, gid: libc::gid_t) -> Result<(), String> {
    // SAFETY: getppid cannot fail.
    let parent = unsafe { libc::getppid() }.to_string();
    let [uid_mapper, gid_mapper] = SubordinateIds::MAPPERS;
    for (name, own, first) in [(uid_mapper, uid, ids.uid), (gid_mapper, gid, ids.gid)] {
        let path = SubordinateIds::mapper(name).ok_or_else(|| format!("{name} is not installed (Debian's package uidmap has it)"))?;
        let output = std::process::Command::new(&path)
            .args([parent.as_str(), "0", &own.to_string(), "1", "1", &first.to_string(), &ids.count.to_string()])
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|error| format!("failed to run {}: {error}", path.display()))?;
        if !output.status.success() {
            return Err(format!("{} failed ({}): {}", path.display(), output.status, String::from_utf8_lossy(&output.stderr).trim()));
        }
    }
    Ok(())
}

/// Whether the user namespaces boxes get can be made here (the runtime's probe): with
/// [`IdMap::LAYERS`], or for `rootless` a runtime's, in the shim's own, with `subordinate` ids
/// if given. The error says why not.
pub fn probe(rootless: bool, subordinate: Option<SubordinateIds>) -> Result<(), String> {
    if rootless {
        become_root_of_own_namespace(subordinate)?;
        return Pending::create(false)?.map(0, 0, subordinate.map_or(IdMap::ROOTLESS, SubordinateIds::id_map));
    }
    Pending::create(false)?.map(0, 0, IdMap::LAYERS)
}

/// Moves the calling (single-threaded) process into the box's user namespace.
pub fn enter(namespace: &OwnedFd) -> Result<(), String> {
    // SAFETY: setns on a namespace descriptor we hold.
    if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWUSER) } < 0 {
        return Err(format!("failed to enter the box's user namespace: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
