//! The runtime's home directory: its layout, its exclusive lock, and the installed shim.
//!
//! ```text
//! <home>/lock                      flock held while a runtime uses this home
//! <home>/keeper.sock, keeper.log   where a keeper of detached boxes' networks listens, and its log (`keeper`)
//! <home>/bin/boxlite-shim-<digest> the box init, written from the copy embedded at build time
//! <home>/blobs/sha256/<hex>        downloaded (compressed) layer blobs
//! <home>/images/<sha256>.json      one pulled image's record (manifest, config, layers)
//! <home>/layers/sha256/<hex>/      unpacked image layers, shared by every box (ownership as in
//!                                  the image: for boxes without a user namespace)
//! <home>/layers/idmap-<base>/<hex>/ the same, owned by the shifted ids of boxes in a user
//!                                  namespace (see `idmap`)
//! <home>/layers/subordinate-<uid>-<gid>-<count>/<hex>/ the same, for an ordinary user's boxes
//!                                  with its subordinate ids (owned by the user and those)
//! <home>/layers/tmp/               layers being unpacked (renamed into place when complete)
//! <home>/host/, host-idmap-<base>/ the skeleton root of the built-in `host://` image, likewise
//! <home>/boxes/<id>/box.json       one box's record
//! <home>/boxes/<id>/{upper,work}/  its writable layer, kept across stop/start
//! <home>/boxes/<id>/rootfs/        where its root is mounted (inside its own mount namespace)
//! <home>/boxes/<id>/init.sock      its init's control socket
//! <home>/trash/                    directories of deleted boxes, being removed
//! <home>/volumes/<name>/data/      a named volume's files (`volumes`)
//! ```

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::idmap::{IdMap, SubordinateHelper, SubordinateIds};

static SHIM: &[u8] = include_bytes!(env!("BOXLITE_SHIM_PATH"));
const SHIM_DIGEST: &str = env!("BOXLITE_SHIM_DIGEST");

/// Deletes what homes throw away ([`Home::throw_away`]), one path after another, at low CPU
/// priority: a burst of removals costs the event loop and the boxes being started nothing but
/// the renames. One thread for the process, started at the first removal.
struct TrashCollector(std::sync::Mutex<std::sync::mpsc::Sender<Doomed>>);

/// A path thrown away, and who removes what this process may not.
struct Doomed {
    path: PathBuf,
    helper: Option<SubordinateHelper>,
}

impl Doomed {
    fn remove(&self) {
        let outcome = match (boxlite_trees::remove(&self.path), &self.helper) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(helper)) => helper.remove(&self.path),
            (Err(error), None) => Err(Error::storage("remove", &self.path, &error)),
        };
        if let Err(error) = outcome {
            log::warn!("{} stays in the trash: {error}", self.path.display());
        }
    }
}

impl TrashCollector {
    fn start() -> Self {
        let (sender, receiver) = std::sync::mpsc::channel::<Doomed>();
        let started = std::thread::Builder::new().name("boxlite-trash".to_string()).spawn(move || {
            // SAFETY: setpriority on this thread (who 0 is the calling thread on Linux); raising
            // one's own nice value needs no privilege.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            for doomed in receiver {
                doomed.remove();
            }
        });
        if let Err(error) = started {
            log::warn!("no trash thread ({error}): deleted boxes' directories stay in their home's trash until it is opened again");
        }
        Self(std::sync::Mutex::new(sender))
    }

    fn send(&self, doomed: Doomed) {
        let _ = crate::lock(&self.0).send(doomed);
    }
}

fn trash_collector() -> &'static TrashCollector {
    static COLLECTOR: std::sync::OnceLock<TrashCollector> = std::sync::OnceLock::new();
    COLLECTOR.get_or_init(TrashCollector::start)
}

#[derive(Debug)]
pub struct Home {
    root: PathBuf,
    /// The user namespace of the boxes this runtime makes; it decides which layer store is used.
    id_map: Option<IdMap>,
    /// Removes and owns what boxes with an ordinary user's subordinate ids have.
    subordinate_helper: Option<SubordinateHelper>,
    /// Held until the runtime closes or is dropped; the flock goes with the descriptor (and a
    /// forked child lets go of its copy).
    lock: std::sync::Mutex<Option<crate::fork::ParentOnly<File>>>,
}

/// How long opening a home waits for the lock of a runtime that is going away: a process
/// killed while it starts a box hands the lock's descriptor to the child it was starting until
/// that child's exec closes it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Takes `lock`'s exclusive flock, waiting up to [`LOCK_WAIT`] for a holder that goes away. A
/// keeper that holds it (`keeper` rule 3) is asked to leave, once, and waited for.
fn take_lock(lock: &File, root: &Path) -> bool {
    let mut deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut asked = false;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return true;
        }
        if !asked && crate::keeper::ask_to_leave(root) {
            asked = true;
            deadline = std::time::Instant::now() + LOCK_WAIT;
            continue;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

impl Home {
    /// Opens (creating if needed) `root` and takes its exclusive lock. Its layer store is the
    /// one of boxes without a user namespace until [`Home::with_id_map`] says otherwise.
    pub fn open(root: &Path) -> Result<Self> {
        for dir in ["bin", "blobs/sha256", "blobs/tmp", "images", "layers/tmp", "boxes", "trash"] {
            fs_err::create_dir_all(root.join(dir))?;
        }
        // Layers and boxes hold images' setuid programs and boxes' files: host users other than
        // the runtime's own have no business in them.
        for private in ["layers", "boxes", "blobs"] {
            fs_err::set_permissions(root.join(private), std::fs::Permissions::from_mode(0o700))?;
        }
        let root = fs_err::canonicalize(root)?;
        let lock_path = root.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| Error::storage("open", &lock_path, &error))?;
        if !take_lock(&lock, &root) {
            return Err(Error::Internal(format!(
                "another runtime already uses the home directory {}; one runtime per home directory at a time",
                root.display()
            )));
        }
        // Whatever an earlier runtime left being deleted or half-written. What this process
        // may not remove stays in the trash, for the helper of boxes' subordinate ids
        // (`Home::with_id_map`).
        for scratch in ["trash", "blobs/tmp", "layers/tmp"] {
            for leftover in fs_err::read_dir(root.join(scratch))?.flatten() {
                if boxlite_trees::remove(&leftover.path()).is_err() && scratch != "trash" {
                    let _ = std::fs::rename(leftover.path(), root.join("trash").join(leftover.file_name()));
                }
            }
        }
        Ok(Self { root, id_map: None, subordinate_helper: None, lock: std::sync::Mutex::new(Some(crate::fork::ParentOnly::new(lock))) })
    }

    /// This home, for boxes with the user namespace `id_map`, an ordinary user's with its
    /// `subordinate` ids if given: what of theirs the trash still holds goes now.
    pub fn with_id_map(self, id_map: Option<IdMap>, subordinate: Option<SubordinateIds>) -> Result<Self> {
        fs_err::create_dir_all(self.root.join(Self::layers_under(id_map, subordinate)))?;
        let subordinate_helper = subordinate.map(|ids| SubordinateHelper::new(self.shim_path(), ids));
        let home = Self { id_map, subordinate_helper, ..self };
        if home.subordinate_helper.is_some() {
            for leftover in fs_err::read_dir(home.trash())?.flatten() {
                trash_collector().send(Doomed { path: leftover.path(), helper: home.subordinate_helper.clone() });
            }
        }
        Ok(home)
    }

    /// The subordinate ids of an ordinary user's boxes, if they have them.
    pub fn subordinate_ids(&self) -> Option<SubordinateIds> {
        self.subordinate_helper.as_ref().map(SubordinateHelper::ids)
    }

    /// The subordinate ids whose files a box of this runtime with the ids `map` has: this
    /// runtime's, for an ordinary user's box with more than one id.
    pub fn subordinate_ids_of(&self, map: Option<IdMap>) -> Option<SubordinateIds> {
        self.subordinate_ids().filter(|_| map.is_some_and(|map| map.is_rootless() && map.size > 1))
    }

    /// What removes and owns the files of an ordinary user's boxes with subordinate ids.
    pub fn subordinate_helper(&self) -> Option<&SubordinateHelper> {
        self.subordinate_helper.as_ref()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Lets another runtime open this home (after `Runtime::close`).
    pub fn release(&self) {
        drop(self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
    }

    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    pub fn blobs_tmp(&self) -> PathBuf {
        self.root.join("blobs/tmp")
    }

    /// The index of pulled images: one JSON record per reference.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    fn layers_under(id_map: Option<IdMap>, subordinate: Option<SubordinateIds>) -> String {
        match (id_map, subordinate) {
            (Some(map), Some(ids)) if map.is_rootless() && map.size > 1 => format!("layers/subordinate-{}-{}-{}", ids.uid, ids.gid, ids.count),
            (Some(map), _) => format!("layers/idmap-{}", map.host_base),
            (None, _) => "layers/sha256".to_string(),
        }
    }

    /// The layer store of this runtime's boxes (see the layout above).
    pub fn layers(&self) -> PathBuf {
        self.root.join(Self::layers_under(self.id_map, self.subordinate_ids()))
    }

    /// Where every layer store of this home is, whatever boxes' ids its layers are for.
    pub fn layer_stores(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// The layer stores whose layers this runtime may remove: all of them but, for an ordinary
    /// user's runtime, the stores of subordinate ids other than its own, whose files neither it
    /// nor its helper may remove.
    pub fn removable_layer_stores(&self) -> Result<Vec<PathBuf>> {
        let (current, rootless) = (self.layers(), self.id_map.is_some_and(IdMap::is_rootless));
        let mut stores = Vec::new();
        for entry in fs_err::read_dir(self.layer_stores())? {
            let store = entry?.path();
            let foreign = rootless && store.file_name().is_some_and(|name| name.to_string_lossy().starts_with("subordinate-")) && store != current;
            if store != self.layers_tmp() && store.is_dir() && !foreign {
                stores.push(store);
            }
        }
        Ok(stores)
    }

    pub fn id_map(&self) -> Option<IdMap> {
        self.id_map
    }

    pub fn layers_tmp(&self) -> PathBuf {
        self.root.join("layers/tmp")
    }

    pub fn host_skeleton(&self) -> PathBuf {
        self.root.join(self.id_map.map_or_else(|| "host".to_string(), |map| format!("host-idmap-{}", map.host_base)))
    }

    /// Directories of deleted boxes, on their way out.
    pub fn trash(&self) -> PathBuf {
        self.root.join("trash")
    }

    /// Deletes `path` (a directory or a file of this home) off the caller's path: it is renamed
    /// into the trash at once, and deleted there by the process's one trash thread. A path that
    /// is not there is no error.
    pub fn throw_away(&self, path: &Path) -> Result<()> {
        self.throw_away_with(path, self.subordinate_helper.clone())
    }

    /// [`Home::throw_away`] for a box's directory, whose files the subordinate ids `owners` may
    /// own (its record says which): removed by a helper that maps those, whether this runtime
    /// maps them or not (it may map others, or none: `BOXLITE_SUBORDINATE_IDS=0`). Where the
    /// user no longer has them, the directory stays in the trash, which the log says.
    pub fn throw_away_owned_by(&self, path: &Path, owners: Option<SubordinateIds>) -> Result<()> {
        let helper = match owners {
            Some(ids) if self.subordinate_ids() != Some(ids) => Some(SubordinateHelper::new(self.shim_path(), ids)),
            _ => self.subordinate_helper.clone(),
        };
        self.throw_away_with(path, helper)
    }

    fn throw_away_with(&self, path: &Path, helper: Option<SubordinateHelper>) -> Result<()> {
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let trash = self.trash().join(format!("{name}.{}", rand::random::<u32>()));
        match std::fs::rename(path, &trash) {
            Ok(()) => {
                trash_collector().send(Doomed { path: trash, helper });
                Ok(())
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::storage("remove", path, &error)),
        }
    }

    /// What boxes' networks share (their resolv.conf).
    pub fn network(&self) -> PathBuf {
        self.root.join("network")
    }

    /// Named volumes (`volumes`).
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// Formatted disk images that boxes' disks are copied from (`boxes::disk`, rule 2).
    pub fn disk_templates(&self) -> PathBuf {
        self.root.join("disk-templates")
    }

    pub fn boxes(&self) -> PathBuf {
        self.root.join("boxes")
    }

    pub fn box_dir(&self, id: &str) -> PathBuf {
        self.boxes().join(id)
    }

    /// Writes the embedded shim once per build; returns its path. Run it through
    /// [`crate::process::run_shim`].
    pub fn install_shim(&self) -> Result<PathBuf> {
        let path = self.shim_path();
        if path.exists() {
            return Ok(path);
        }
        let staging = self.root.join("bin").join(format!(".boxlite-shim-{SHIM_DIGEST}.{}", std::process::id()));
        fs_err::write(&staging, SHIM)?;
        fs_err::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))?;
        fs_err::rename(&staging, &path)?;
        Ok(path)
    }

    fn shim_path(&self) -> PathBuf {
        self.root.join("bin").join(format!("boxlite-shim-{SHIM_DIGEST}"))
    }
}
