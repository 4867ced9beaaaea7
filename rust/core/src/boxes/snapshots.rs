//! Snapshots of a box: point-in-time copies of its writable layer (`layer`), kept in the box's
//! directory (`snapshots/<id>/`) and gone with the box.
//!
//! # Rules
//!
//! 1. A snapshot is taken under the box's lifecycle lock (`boxes` rule 1). A running box is
//!    frozen for the copy (its freezer cgroup: the box's processes notice nothing) after its
//!    filesystem was synced; a host that gives the box no freezer refuses the snapshot of a
//!    running box, which may be taken stopped.
//! 2. A snapshot appears whole or not at all: it is made under a name starting with `.`,
//!    which listings skip (and the next snapshot removes), and renamed into place last.
//! 3. A restore replaces the layer of a box that does not run, whole: the copy is made beside
//!    it and swapped in by one rename (an exchange, for a tree). The overlay's work directory
//!    needs nothing: the kernel clears it at each mount. Later snapshots are kept.

use serde::{Deserialize, Serialize};

use super::layer::{self, Size, WritableLayer};
use super::*;

const SNAPSHOTS: &str = "snapshots";
const INFO: &str = "snapshot.json";

/// One snapshot of a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub box_id: String,
    pub name: String,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// What the layer holds: file contents (a tree), or the disk's size (a disk of its own).
    pub container_disk_bytes: u64,
    /// What the snapshot takes on the host.
    pub size_bytes: u64,
    /// For ordering: nanoseconds since the epoch.
    created_at_nanos: u128,
}

impl SnapshotInfo {
    /// A snapshot as another runtime (a REST server) reports it.
    pub fn reported(id: String, box_id: String, name: String, created_at: u64, container_disk_bytes: u64, size_bytes: u64) -> Self {
        Self { id, box_id, name, created_at, container_disk_bytes, size_bytes, created_at_nanos: u128::from(created_at) * 1_000_000_000 }
    }
}

/// A snapshot's name: what BoxLite accepts (it names a directory there).
fn check_name(name: &str) -> Result<()> {
    let refused = name.is_empty() || name.len() > 255 || name.starts_with('.') || name.contains(['/', '\\', '\0']);
    if refused {
        return Err(Error::InvalidArgument(format!("invalid snapshot name {name:?}: it must be 1 to 255 characters, not start with '.', and have no '/', '\\\\' or NUL")));
    }
    Ok(())
}

fn list_in(box_dir: &Path) -> Result<Vec<(PathBuf, SnapshotInfo)>> {
    let root = box_dir.join(SNAPSHOTS);
    let entries = match std::fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::storage("read", &root, &error)),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = entry.path();
        match std::fs::read(path.join(INFO)).map_err(|error| error.to_string()).and_then(|bytes| serde_json::from_slice::<SnapshotInfo>(&bytes).map_err(|error| error.to_string())) {
            Ok(info) => found.push((path, info)),
            Err(error) => log::warn!("snapshot {} is left out: {error}", path.display()),
        }
    }
    found.sort_by_key(|(_, info)| std::cmp::Reverse(info.created_at_nanos));
    Ok(found)
}

fn find_in(box_dir: &Path, name: &str) -> Result<Option<(PathBuf, SnapshotInfo)>> {
    Ok(list_in(box_dir)?.into_iter().find(|(_, info)| info.name == name))
}

fn not_found(box_id: &str, name: &str) -> Error {
    Error::NotFound(format!("snapshot '{name}' not found for box '{box_id}'"))
}

/// Copies `layer` into a new snapshot of the box in `box_dir` (rule 2). Blocking.
fn take(home: &Home, box_dir: &Path, box_id: &str, name: &str, layer: &WritableLayer) -> Result<SnapshotInfo> {
    if find_in(box_dir, name)?.is_some() {
        return Err(Error::AlreadyExists(format!("snapshot '{name}' already exists for box '{box_id}'")));
    }
    let root = box_dir.join(SNAPSHOTS);
    fs_err::create_dir_all(&root)?;
    // What a runtime killed in the middle of a snapshot left: takes are one at a time per box
    // (the lifecycle lock), so any half-made one is stale.
    for stale in fs_err::read_dir(&root)?.flatten().filter(|entry| entry.file_name().as_encoded_bytes().starts_with(b".")) {
        let _ = home.throw_away(&stale.path());
    }
    let id = crate::ids::new_box_id();
    let partial = root.join(format!(".{id}"));
    let made = (|| {
        fs_err::create_dir(&partial)?;
        let Size { content_bytes, allocated_bytes } = layer.copy_to(&partial.join(layer.copy_name()), home.subordinate_helper())?;
        let (_, created_at_nanos) = crate::clock::now();
        let info = SnapshotInfo {
            id: id.clone(),
            box_id: box_id.to_string(),
            name: name.to_string(),
            created_at: u64::try_from(created_at_nanos / 1_000_000_000).unwrap_or(u64::MAX),
            container_disk_bytes: content_bytes,
            size_bytes: allocated_bytes,
            created_at_nanos,
        };
        let bytes = serde_json::to_vec_pretty(&info).map_err(|error| Error::Internal(format!("failed to encode a snapshot's record: {error}")))?;
        fs_err::write(partial.join(INFO), bytes)?;
        fs_err::rename(&partial, root.join(&id))?;
        Ok(info)
    })();
    if made.is_err() {
        let _ = home.throw_away(&partial);
    }
    made
}

/// Puts the layer kept in `snapshot` in place of `layer` (rule 3). Blocking.
fn put_back(home: &Home, snapshot: &Path, layer: &WritableLayer) -> Result<()> {
    let current = layer.path();
    let restoring = current.with_file_name(format!(".restoring-{}", layer.copy_name()));
    home.throw_away(&restoring)?;
    if let Err(error) = layer.kept_in(snapshot).copy_to(&restoring, home.subordinate_helper()) {
        let _ = home.throw_away(&restoring);
        return Err(error);
    }
    match layer {
        WritableLayer::Disk(_) => fs_err::rename(&restoring, current)?,
        WritableLayer::Tree(_) => {
            // One atomic swap: a crash leaves the old layer or the new one in place, never none.
            let (from, to) = (layer::c_path(&restoring)?, layer::c_path(current)?);
            // SAFETY: renameat2 with two valid C paths relative to the working directory.
            if unsafe { libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::RENAME_EXCHANGE) } < 0 {
                let error = std::io::Error::last_os_error();
                let _ = home.throw_away(&restoring);
                return Err(Error::storage("swap in", current, &error));
            }
            // The layer swapped out.
            let _ = home.throw_away(&restoring);
        }
    }
    Ok(())
}

/// Writes out what the kernel holds of the filesystem `root` (an `O_PATH` descriptor) is on.
fn sync_filesystem(root: &std::os::fd::OwnedFd) -> Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let failed = |operation: &str| Error::Engine(format!("failed to {operation} the box's filesystem: {}", std::io::Error::last_os_error()));
    // SAFETY: openat of "." relative to a directory descriptor; the result is owned at once.
    let opened = unsafe { libc::openat(root.as_raw_fd(), c".".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if opened < 0 {
        return Err(failed("open"));
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let directory = unsafe { OwnedFd::from_raw_fd(opened) };
    // SAFETY: syncfs on an open descriptor.
    if unsafe { libc::syncfs(directory.as_raw_fd()) } < 0 {
        return Err(failed("sync"));
    }
    Ok(())
}

impl BoxHandle {
    pub(super) fn writable_layer(&self) -> WritableLayer {
        WritableLayer::of(&self.entry.dir, self.entry.record().disk_size_gb.is_some())
    }

    /// Takes a snapshot named `name` of the box's writable layer (rule 1).
    pub async fn snapshot_create(&self, name: &str) -> Result<SnapshotInfo> {
        check_name(name)?;
        self.check_exists()?;
        let live = self.entry.live.lock().await;
        self.check_exists()?;
        let (dir, id, name, inner) = (self.entry.dir.clone(), self.entry.id.clone(), name.to_string(), Arc::clone(&self.inner));
        let layer = self.writable_layer();
        self.with_layer_still(&live, move || take(&inner.home, &dir, &id, &name, &layer)).await
    }

    /// Runs `copy` (blocking) while the box's writable layer cannot change: at once for a box
    /// that does not run, else with the box frozen, after a box with a disk synced it (rule 1).
    /// The caller holds the lifecycle lock (`live`).
    pub(super) async fn with_layer_still<T: Send + 'static>(&self, live: &Option<Live>, copy: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        let Some(running) = live.as_ref().filter(|running| running.is_alive()) else {
            return blocking(copy).await;
        };
        // The box's root, through which what a box with a disk wrote, and its kernel still holds,
        // is synced to the disk's image before the copy (a tree is read through the same cache).
        let root = match self.writable_layer() {
            WritableLayer::Disk(_) => Some(
                crate::exec::fd::ControlSocket::ask_for_descriptors(running.connector.socket_path(), &boxlite_protocol::Request::Root)
                    .await
                    .map_err(|error| Error::InvalidState(format!("the box is not running: {error}")))
                    .map(|[root]| root)?,
            ),
            WritableLayer::Tree(_) => None,
        };
        let cgroup = BoxCgroup::locate(&self.inner.cgroups, &self.entry.id);
        blocking(move || {
            let frozen = cgroup.freeze().map_err(|error| Error::InvalidState(format!("a running box is copied frozen, and {error}; stop the box first")))?;
            if let Some(root) = root {
                sync_filesystem(&root)?;
            }
            let copied = copy();
            drop(frozen);
            copied
        })
        .await
    }

    /// The box's snapshots, newest first.
    pub async fn snapshot_list(&self) -> Result<Vec<SnapshotInfo>> {
        self.check_exists()?;
        let dir = self.entry.dir.clone();
        blocking(move || Ok(list_in(&dir)?.into_iter().map(|(_, info)| info).collect())).await
    }

    /// The snapshot named `name`, if there is one.
    pub async fn snapshot_get(&self, name: &str) -> Result<Option<SnapshotInfo>> {
        self.check_exists()?;
        let (dir, name) = (self.entry.dir.clone(), name.to_string());
        blocking(move || Ok(find_in(&dir, &name)?.map(|(_, info)| info))).await
    }

    /// Removes the snapshot named `name`.
    pub async fn snapshot_remove(&self, name: &str) -> Result<()> {
        self.check_exists()?;
        let _live = self.entry.live.lock().await;
        let (dir, id, name, inner) = (self.entry.dir.clone(), self.entry.id.clone(), name.to_string(), Arc::clone(&self.inner));
        blocking(move || {
            let (path, _) = find_in(&dir, &name)?.ok_or_else(|| not_found(&id, &name))?;
            inner.home.throw_away(&path)
        })
        .await
    }

    /// Removes the snapshot `id` at once, without the lifecycle lock: for one whose taker never
    /// received it, when the runtime that would take the lock is gone (no one else knows it).
    pub fn snapshot_discard(&self, id: &str) -> Result<()> {
        self.inner.home.throw_away(&self.entry.dir.join(SNAPSHOTS).join(id))
    }

    /// Brings the box's writable layer back to the snapshot named `name` (rule 3). The box
    /// must not run.
    pub async fn snapshot_restore(&self, name: &str) -> Result<()> {
        self.check_exists()?;
        let live = self.entry.live.lock().await;
        self.check_exists()?;
        if live.as_ref().is_some_and(Live::is_alive) {
            return Err(Error::InvalidState(format!("cannot restore a snapshot while box {} is running: stop the box first", self.entry.id)));
        }
        let (dir, id, name, layer, inner) = (self.entry.dir.clone(), self.entry.id.clone(), name.to_string(), self.writable_layer(), Arc::clone(&self.inner));
        blocking(move || {
            let (path, _) = find_in(&dir, &name)?.ok_or_else(|| not_found(&id, &name))?;
            put_back(&inner.home, &path, &layer)
        })
        .await
    }
}
