//! The user namespaces of boxes: box uid and gid `n` (0 ≤ n < 65536) are host id `base + n`,
//! where `base` is the box's own range, so root in a box is an unprivileged host user and a
//! stranger to every other box.
//!
//! # Rules
//!
//! 1. Every box made while the host allows user namespaces gets a mapping; a box made before
//!    (its record has none) keeps running without one.
//! 2. Image layers and the `host://` skeleton are stored once, owned by the ids of
//!    [`IdMap::LAYERS`]; each box mounts them through an idmapped mount that shifts those ids
//!    into its own range (the shim's `userns`). A box's upper layer and what `copy_in` writes
//!    are owned by the box's own shifted ids (`IdMap::host_id`). Ids past the mapping become the
//!    box's `nobody`.
//! 3. Read-only volumes are idmapped mounts: host files owned by host root read as the box
//!    root's. Writable volumes are not (box root would write as host root there): box root
//!    writes to them as its host id, so their directory must be writable by it.
//! 4. Each box has a range of its own for its whole life (a stopped box's files keep its ids),
//!    claimed host-wide ([`RangeClaims`], in [`CLAIMS_DIR`]) so that boxes of other homes and
//!    runtimes get other ones. Boxes made before ranges were per box keep [`IdMap::LAYERS`].

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

use boxlite_protocol::subordinate_tasks as tasks;
use boxlite_trees::files::{CopyOptions, FileError};
pub use boxlite_protocol::{IdMap, SubordinateIds};

use crate::error::{Error, Result};

/// What an ordinary user's boxes cannot do with their one id, told once as a runtime opens.
const ONE_ID: &str = "the boxes of an ordinary user have one id, box root, which is this user on the host: \
a box's processes cannot become another user (an exec as one fails) or give files to one (chown), and an image's \
files all belong to box root; with subordinate ids (ranges in /etc/subuid and /etc/subgid, and newuidmap and \
newgidmap, Debian's package uidmap), boxes have other users";

/// The ids of a runtime's boxes: their map, and the subordinate ids of an ordinary user's boxes
/// that have them.
#[derive(Debug, Clone, Copy)]
pub struct Detected {
    pub map: Option<IdMap>,
    pub subordinate: Option<SubordinateIds>,
}

/// The ids of this host's boxes: `None` where a user namespace cannot be made (user namespaces
/// off, or a runtime that runs in a user namespace without these ids), or where
/// `BOXLITE_USER_NAMESPACES=0` turns them off; else the ids layers are stored with. The shim
/// tries it for real. A `rootless` runtime's boxes cannot do without one: there, that is an
/// error naming what to change; they have the `wanted` subordinate ids where their namespace
/// can, else one id (or, if those were required, an error).
pub fn detect(shim: &Path, rootless: bool, wanted: Option<crate::host::WantedIds>) -> Result<Detected> {
    let switched_off = std::env::var_os("BOXLITE_USER_NAMESPACES").is_some_and(|value| value == "0");
    if switched_off && rootless {
        return Err(Error::Config("BOXLITE_USER_NAMESPACES=0: the boxes of an ordinary user cannot run without a user namespace".to_string()));
    }
    if switched_off {
        return Ok(Detected { map: None, subordinate: None });
    }
    if let Some(crate::host::WantedIds { ids, required }) = wanted.filter(|_| rootless) {
        match probe(shim, rootless, Some(ids)) {
            Ok(()) => {
                log::info!("an ordinary user's boxes have {} ids: box root is this user, box ids 1 and up its subordinate uids from {} and gids from {}", ids.count + 1, ids.uid, ids.gid);
                return Ok(Detected { map: Some(ids.id_map()), subordinate: Some(ids) });
            }
            Err(why) if required => return Err(Error::Config(format!("{}=1: the boxes' user namespace cannot have this user's subordinate ids: {why}", crate::host::SUBORDINATE_IDS_VARIABLE))),
            Err(why) => log::warn!("boxes do not get this user's subordinate ids, which their user namespace cannot have: {why}"),
        }
    }
    let map = match probe(shim, rootless, None) {
        Ok(()) if rootless => {
            log::info!("{ONE_ID}");
            Some(IdMap::ROOTLESS)
        }
        Ok(()) => Some(IdMap::LAYERS),
        Err(ProbeFailure::Refused(why)) if rootless => return Err(crate::host::user_namespaces_refused(&why)),
        Err(ProbeFailure::Unrunnable(why)) if rootless => return Err(Error::Engine(why)),
        Err(_) => {
            log::info!("boxes run without a user namespace: this host cannot map their ids");
            None
        }
    };
    Ok(Detected { map, subordinate: None })
}

/// Why the shim made no user namespace: what it said, or why it did not run.
#[derive(Debug)]
enum ProbeFailure {
    Refused(String),
    Unrunnable(String),
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(why) | Self::Unrunnable(why) => formatter.write_str(why),
        }
    }
}

/// Has the shim make the user namespace boxes get, with `subordinate` ids if given.
fn probe(shim: &Path, rootless: bool, subordinate: Option<SubordinateIds>) -> std::result::Result<(), ProbeFailure> {
    let mut probe = std::process::Command::new(shim);
    probe.arg(boxlite_protocol::PROBE_USER_NAMESPACE);
    if rootless {
        probe.arg(boxlite_protocol::ROOTLESS_ARGUMENT);
        probe.args(subordinate.map(SubordinateIds::argument));
    }
    probe.stdin(Stdio::null()).stderr(Stdio::null());
    match crate::process::run_shim(|| probe.output()) {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(ProbeFailure::Refused(String::from_utf8_lossy(&output.stdout).trim().to_string())),
        Err(error) => Err(ProbeFailure::Unrunnable(format!("failed to run {}: {error}", shim.display()))),
    }
}

/// The host id that owns what the runtime writes for box id `id` of a box with the ids `map`,
/// or `None` where the runtime leaves owners as they are: boxes without a user namespace, and
/// those of an ordinary user's runtime ([`IdMap::is_rootless`]), whose files it writes are the
/// user's, box root's.
pub fn host_owner(map: Option<IdMap>, id: u64) -> Option<u32> {
    map.filter(|map| !map.is_rootless()).map(|map| map.host_id(id))
}

/// The shim run for an ordinary user's runtime whose boxes have its subordinate ids: in a user
/// namespace with them, it does what this process may not with their files
/// (`boxlite_protocol::subordinate_tasks`).
#[derive(Debug, Clone)]
pub struct SubordinateHelper {
    shim: PathBuf,
    ids: SubordinateIds,
}

impl SubordinateHelper {
    pub fn new(shim: PathBuf, ids: SubordinateIds) -> Self {
        Self { shim, ids }
    }

    pub fn ids(&self) -> SubordinateIds {
        self.ids
    }

    /// Removes the tree at `path`, whoever of the box's ids owns its files.
    pub fn remove(&self, path: &Path) -> Result<()> {
        self.run(tasks::REMOVE_TREE, &[path], &[]).map(drop)
    }

    /// Gives the files of the layer at `dir` their owners.
    pub fn give_owners(&self, dir: &Path, owners: &[boxlite_protocol::Ownership]) -> Result<()> {
        let mut records = Vec::new();
        owners.iter().for_each(|owner| owner.encode_into(&mut records));
        self.run(tasks::GIVE_OWNERS, &[dir], &records).map(drop)
    }

    /// Copies the tree at `source` to `target` exactly (`boxlite_trees::copy`).
    pub fn copy_tree(&self, source: &Path, target: &Path) -> Result<boxlite_trees::Size> {
        let output = self.run(tasks::COPY_TREE, &[source, target], &[])?;
        let mut numbers = std::str::from_utf8(&output).unwrap_or_default().split_whitespace().map(str::parse::<u64>);
        match (numbers.next(), numbers.next()) {
            (Some(Ok(content_bytes)), Some(Ok(allocated_bytes))) => Ok(boxlite_trees::Size { content_bytes, allocated_bytes }),
            _ => Err(Error::Internal(format!("the shim copied {} but reported no size", source.display()))),
        }
    }

    /// Writes the tree at `dir` to `out` as a layer tar (`boxlite_trees::pack`).
    pub fn pack_tree(&self, dir: &Path, out: &mut impl std::io::Write) -> Result<()> {
        let mut child = self.spawn(tasks::PACK_TREE, &[dir], Stdio::null())?;
        let copied = child.stdout.take().map(|mut stdout| std::io::copy(&mut stdout, out));
        let output = child.wait_with_output().map_err(|error| self.failed(&error))?;
        // First: a write that failed here made the shim's fail.
        if let Some(Err(error)) = copied {
            return Err(Error::storage("write the layer of", dir, &error));
        }
        Self::check(&output)
    }

    /// Copies `host_source` into the box whose root is `root` (`crate::files::copy_in`).
    pub fn copy_in(&self, root: OwnedFd, host_source: &Path, box_destination: &str, options: CopyOptions) -> Result<()> {
        let options = options.argument();
        let arguments = [host_source.as_os_str(), OsStr::new(box_destination), OsStr::new(&options)];
        let child = self.spawn(tasks::COPY_IN, &arguments, Stdio::from(root))?;
        Self::check(&child.wait_with_output().map_err(|error| self.failed(&error))?)
    }

    /// Copies `box_source` out of the box whose root is `root` (`crate::files::copy_out`).
    pub fn copy_out(&self, root: OwnedFd, box_source: &str, host_destination: &Path, options: CopyOptions) -> Result<()> {
        let options = options.argument();
        let arguments = [OsStr::new(box_source), host_destination.as_os_str(), OsStr::new(&options)];
        let child = self.spawn(tasks::COPY_OUT, &arguments, Stdio::from(root))?;
        Self::check(&child.wait_with_output().map_err(|error| self.failed(&error))?)
    }

    fn spawn(&self, task: &str, arguments: &[impl AsRef<OsStr>], stdin: Stdio) -> Result<std::process::Child> {
        let mut command = std::process::Command::new(&self.shim);
        command.arg(task).arg(self.ids.argument()).args(arguments);
        command.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        crate::process::run_shim(|| command.spawn()).map_err(|error| self.failed(&error))
    }

    /// Runs `task` with `input` on its stdin; what it printed.
    fn run(&self, task: &str, paths: &[&Path], input: &[u8]) -> Result<Vec<u8>> {
        use std::io::Write;
        let mut child = self.spawn(task, paths, Stdio::piped())?;
        // The shim reads its stdin to the end before it writes anything: the whole input goes
        // first, and its end of file with the pipe.
        if let Some(mut stdin) = child.stdin.take() {
            // A shim that exits before it read all (a bad argument) must not end this process.
            crate::process::keep_sigpipe_from_this_thread();
            let _ = stdin.write_all(input);
        }
        let output = child.wait_with_output().map_err(|error| self.failed(&error))?;
        Self::check(&output)?;
        Ok(output.stdout)
    }

    fn check(output: &std::process::Output) -> Result<()> {
        if output.status.success() {
            return Ok(());
        }
        Err(FileError::from_line(&String::from_utf8_lossy(&output.stderr)).into())
    }

    fn failed(&self, error: &std::io::Error) -> Error {
        Error::Engine(format!("failed to run {}: {error}", self.shim.display()))
    }
}

/// Where box ranges are claimed on this host, for every runtime and home (rule 4).
pub const CLAIMS_DIR: &str = "/var/lib/boxlite/id-ranges";

/// Host-wide claims on box id ranges (rule 4): one file per claimed slot, naming the directory
/// of the box that holds it. A claim whose box directory is gone (the box removed, its home
/// deleted, a runtime killed halfway through a create) is stale and is taken again, so a crash
/// leaks nothing for good. Every change happens under the directory's flock.
#[derive(Debug)]
pub struct RangeClaims {
    dir: PathBuf,
}

/// Where the next claim starts looking: slots are handed out round the ring, so a range freed a
/// moment ago is the last to be used again.
static NEXT_SLOT: AtomicU32 = AtomicU32::new(1);

impl RangeClaims {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    fn locked(&self) -> Result<File> {
        let path = self.dir.join("lock");
        let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(|error| Error::storage("open", &path, &error))?;
        // SAFETY: flock on a descriptor we own; released when `file` is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } < 0 {
            return Err(Error::storage("lock", &path, &std::io::Error::last_os_error()));
        }
        Ok(file)
    }

    fn slot_path(&self, slot: u32) -> PathBuf {
        self.dir.join(slot.to_string())
    }

    fn claim_path(&self, map: IdMap) -> Option<PathBuf> {
        map.slot_number().filter(|slot| *slot > 0).map(|slot| self.slot_path(slot))
    }

    /// Who holds `path`'s slot: a box directory that still exists.
    fn holder(path: &Path) -> Option<PathBuf> {
        let holder = PathBuf::from(std::fs::read_to_string(path).ok()?);
        holder.is_dir().then_some(holder)
    }

    fn write(path: &Path, box_dir: &Path) -> Result<()> {
        std::fs::write(path, box_dir.as_os_str().as_encoded_bytes()).map_err(|error| Error::storage("write", path, &error))
    }

    /// Claims a free range for the box whose directory (which must exist) is `box_dir`.
    pub fn claim(&self, box_dir: &Path) -> Result<IdMap> {
        let _lock = self.locked()?;
        let start = NEXT_SLOT.load(Ordering::Relaxed).clamp(1, IdMap::SLOTS);
        for offset in 0..IdMap::SLOTS {
            let slot = (start - 1 + offset) % IdMap::SLOTS + 1;
            let path = self.slot_path(slot);
            if Self::holder(&path).is_none() {
                Self::write(&path, box_dir)?;
                NEXT_SLOT.store(slot % IdMap::SLOTS + 1, Ordering::Relaxed);
                return Ok(IdMap::slot(slot));
            }
        }
        Err(Error::Engine(format!("every box id range on this host is in use ({} boxes)", IdMap::SLOTS)))
    }

    /// Claims `map` again for `box_dir` when a home is opened: a claim lost meanwhile (the
    /// host's claims were deleted) is written anew. A range another box holds now is reported.
    pub fn reclaim(&self, map: IdMap, box_dir: &Path) {
        let Some(path) = self.claim_path(map) else { return };
        let Ok(_lock) = self.locked() else { return };
        match Self::holder(&path) {
            Some(holder) if holder == box_dir => {}
            Some(holder) => log::warn!("box {} and box {} share the host ids from {}", box_dir.display(), holder.display(), map.host_base),
            None => {
                let _ = Self::write(&path, box_dir);
            }
        }
    }

    /// Gives back `map`, if `box_dir` holds it.
    pub fn release(&self, map: IdMap, box_dir: &Path) {
        let Some(path) = self.claim_path(map) else { return };
        let Ok(_lock) = self.locked() else { return };
        if std::fs::read_to_string(&path).is_ok_and(|holder| Path::new(&holder) == box_dir) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_go_to_one_box_each_and_come_back_when_their_box_is_gone() {
        let scratch = std::env::temp_dir().join(format!("boxlite-ranges-test-{}", std::process::id()));
        let claims = RangeClaims::open(&scratch.join("claims")).expect("claims directory");
        let (first_dir, second_dir) = (scratch.join("first"), scratch.join("second"));
        std::fs::create_dir_all(&first_dir).expect("box directory");
        std::fs::create_dir_all(&second_dir).expect("box directory");
        let first = claims.claim(&first_dir).expect("a range");
        let second = claims.claim(&second_dir).expect("another range");
        assert_ne!(first, second);
        assert!(first.slot_number().is_some_and(|slot| slot > 0) && second.slot_number().is_some_and(|slot| slot > 0));
        // The first box's directory goes (removed, or its home deleted): its claim is stale.
        std::fs::remove_dir_all(&first_dir).expect("remove");
        NEXT_SLOT.store(first.slot_number().expect("slot"), Ordering::Relaxed);
        let third_dir = scratch.join("third");
        std::fs::create_dir_all(&third_dir).expect("box directory");
        assert_eq!(claims.claim(&third_dir).expect("a range"), first);
        // Released by its holder only.
        claims.release(second, &third_dir);
        assert!(scratch.join("claims").join(second.slot_number().expect("slot").to_string()).exists());
        claims.release(second, &second_dir);
        assert!(!scratch.join("claims").join(second.slot_number().expect("slot").to_string()).exists());
        claims.reclaim(second, &second_dir);
        assert!(scratch.join("claims").join(second.slot_number().expect("slot").to_string()).exists());
        std::fs::remove_dir_all(&scratch).expect("clean up");
    }
}
