//! Unpacking image layers into the shared layer store, safely.
//!
//! # Rules
//!
//! 1. Nothing outside the layer's directory is created or written: entry paths are made relative
//!    and `..` is refused; every parent directory is checked to be a real directory (never a
//!    symlink) before anything is created in it; an existing symlink at an entry's path is
//!    replaced, never written through; a hardlink must name a regular file already unpacked in
//!    the same layer, reached through real directories only.
//! 2. OCI whiteouts become overlayfs whiteouts: `.wh.NAME` → a 0/0 character device `NAME`;
//!    `.wh..wh..opq` → the `trusted.overlay.opaque=y` xattr on the directory
//!    (`user.overlay.opaque` for an ordinary user's runtime, whose overlays use `user.` ones).
//! 3. Modes (setuid and setgid included, as in the image), numeric ownership and the
//!    modification times of all but directories (whose entries come before their files) are kept,
//!    shifted into the boxes' id range when they run in a user namespace (`idmap`); an ordinary
//!    user's runtime ([`IdMap::is_rootless`]) may give files to no one else, so its layers are
//!    all its own (box root's). Device nodes in a layer are skipped: a box gets its own minimal
//!    /dev. Of the extended attributes (PAX `SCHILY.xattr.*`), `user.*` are applied to files,
//!    directories and fifos, but for `user.overlay.*`; the rest are dropped: `trusted.*` and
//!    `user.overlay.*` would let a layer forge overlayfs whiteouts and redirects,
//!    `security.capability` would grant an image's file capabilities on the host, where the
//!    layer store is (in a box, no_new_privs voids them anyway), and other `security.*` labels
//!    belong to the host's security modules.
//! 4. The compressed blob (gzip, zstd or plain tar) is hashed while it is read and must match
//!    its digest.
//! 5. A layer is unpacked into `layers/tmp/` and renamed into place only when complete, so a
//!    crash or an error never leaves a half layer that a later box would use.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use boxlite_protocol::Ownership;

use super::digest::{sha256_hex, HashingReader};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::idmap::{IdMap, SubordinateHelper};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A zstd stream of one or more frames, decoded as one.
struct ZstdFrames<R: BufRead> {
    source: Option<R>,
    frame: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(frame) = &mut self.frame {
                let count = frame.read(buffer)?;
                if count > 0 || buffer.is_empty() {
                    return Ok(count);
                }
                if let Some(finished) = self.frame.take() {
                    self.source = Some(finished.into_inner());
                }
            }
            let Some(mut source) = self.source.take() else { return Ok(0) };
            if source.fill_buf()?.is_empty() {
                self.source = Some(source);
                return Ok(0);
            }
            let frame = ruzstd::decoding::StreamingDecoder::new(source)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, format!("bad zstd frame: {error}")))?;
            self.frame = Some(frame);
        }
    }
}

/// Where a home's layers are unpacked, and for whom.
#[derive(Debug, Clone)]
pub(crate) struct LayerStore {
    layers: PathBuf,
    tmp: PathBuf,
    /// The ids of the boxes the layers are for.
    id_map: Option<IdMap>,
    /// For an ordinary user's boxes with subordinate ids: what gives files their owners.
    helper: Option<SubordinateHelper>,
}

impl LayerStore {
    /// The store of `home`'s boxes.
    pub fn of(home: &Home) -> Self {
        Self { layers: home.layers(), tmp: home.layers_tmp(), id_map: home.id_map(), helper: home.subordinate_helper().cloned() }
    }
}

/// Unpacks the layer blob at `blob` (digest `digest`) into the store unless it is there,
/// staging it in its `tmp`; returns its directory.
pub(crate) fn unpack_layer(store: &LayerStore, blob: &Path, digest: &str) -> Result<PathBuf> {
    let LayerStore { layers, tmp, id_map, helper } = store;
    let (id_map, helper) = (*id_map, helper.as_ref());
    let hex = sha256_hex(digest).ok_or_else(|| Error::Image(format!("unsupported layer digest {digest:?}")))?;
    let destination = layers.join(hex);
    if destination.is_dir() {
        return Ok(destination);
    }
    let staging = tmp.join(format!("{hex}.{}.{}", std::process::id(), rand::random::<u32>()));
    fs_err::create_dir(&staging)?;
    let unpacked = extract(blob, digest, &staging, id_map).and_then(|owners| give_owners(&staging, &owners, helper));
    let moved = unpacked.and_then(|()| std::fs::rename(&staging, &destination).map_err(|error| Error::storage("move the unpacked layer to", &destination, &error)));
    if let Err(error) = moved {
        if boxlite_trees::remove(&staging).is_err() {
            if let Some(helper) = helper {
                let _ = helper.remove(&staging);
            }
        }
        // Unless another unpack of the same layer put it in place meanwhile.
        if !destination.is_dir() {
            return Err(error);
        }
    }
    Ok(destination)
}

/// The owners this process could not give (`unpack_tar`), given by `helper`.
pub(crate) fn give_owners(dir: &Path, owners: &[Ownership], helper: Option<&SubordinateHelper>) -> Result<()> {
    match helper {
        Some(helper) if !owners.is_empty() => helper.give_owners(dir, owners),
        _ => Ok(()),
    }
}

fn layer_error(digest: &str, what: impl std::fmt::Display) -> Error {
    Error::Image(format!("layer {digest}: {what}"))
}

fn extract(blob: &Path, digest: &str, root: &Path, id_map: Option<IdMap>) -> Result<Vec<Ownership>> {
    let file = File::open(blob).map_err(|error| layer_error(digest, format!("cannot open {}: {error}", blob.display())))?;
    let mut hashing = HashingReader::new(BufReader::with_capacity(1 << 16, file));
    let magic = hashing.inner.fill_buf().map_err(|error| layer_error(digest, error))?.get(..4).map(<[u8]>::to_vec).unwrap_or_default();
    let owners;
    {
        let stream: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(&mut hashing))
        } else if magic == ZSTD_MAGIC {
            Box::new(ZstdFrames { source: Some(BufReader::new(&mut hashing)), frame: None })
        } else {
            Box::new(&mut hashing)
        };
        owners = unpack_tar(stream, root, id_map).map_err(|error| layer_error(digest, error))?;
    }
    let (actual, _) = hashing.finish().map_err(|error| layer_error(digest, error))?;
    if actual != digest {
        return Err(layer_error(digest, format!("content has digest {actual}")));
    }
    Ok(owners)
}

/// Unpacks the plain layer tar read from `stream` into the directory `root`, which exists, by
/// the rules above but 4 (the caller checks what it read); `root` is left as far as it got
/// when this fails.
/// Returns the owners this process could not give: those of an ordinary user's boxes with
/// subordinate ids, which the shim gives (`crate::idmap::SubordinateHelper::give_owners`).
pub(crate) fn unpack_tar(stream: impl Read, root: &Path, id_map: Option<IdMap>) -> std::result::Result<Vec<Ownership>, String> {
    let mut archive = tar::Archive::new(stream);
    let entries = archive.entries().map_err(|error| error.to_string())?;
    // By path: the last entry of a path says its owner, root included.
    let mut deferred = BTreeMap::new();
    let deferring = id_map.filter(|map| map.is_rootless() && map.size > 1);
    for entry in entries {
        let mut entry = entry.map_err(|error| format!("bad tar entry: {error}"))?;
        match (unpack_entry(root, &mut entry, id_map)?, deferring) {
            (Unpacked::Owned(owner), Some(map)) => {
                let owner = Ownership { uid: map.host_id(u64::from(owner.uid)), gid: map.host_id(u64::from(owner.gid)), ..owner };
                deferred.insert(owner.path.clone(), owner);
            }
            // What was there is gone: its owner, and those of what it held, name nothing now.
            (Unpacked::Replaced(path), Some(_)) => deferred.retain(|recorded, _| !recorded.starts_with(&path)),
            _ => {}
        }
    }
    Ok(deferred.into_values().filter(|owner| (owner.uid, owner.gid, owner.mode) != (0, 0, None)).collect())
}

/// Rule 1: a relative path with no `..`; `None` for the layer root itself.
fn relative_path(path: &Path) -> std::result::Result<Option<PathBuf>, String> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(format!("entry {} leaves the layer", path.display())),
        }
    }
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

/// Rule 1: creates the missing parents of `relative` under `root`, refusing to pass through
/// anything but real directories.
fn ensure_parents(root: &Path, relative: &Path, id_map: Option<IdMap>) -> std::result::Result<(), String> {
    let mut current = root.to_path_buf();
    if let Some(parent) = relative.parent() {
        for part in parent.components() {
            current.push(part);
            match std::fs::symlink_metadata(&current) {
                Ok(metadata) if metadata.is_dir() => {}
                Ok(_) => return Err(format!("{} is not a directory; refusing to write through it", current.display())),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    std::fs::create_dir(&current).map_err(|error| format!("failed to create {}: {error}", current.display()))?;
                    chown(&current, 0, 0, id_map)?;
                }
                Err(error) => return Err(format!("failed to inspect {}: {error}", current.display())),
            }
        }
    }
    Ok(())
}

/// Removes whatever is at `path` unless it is a directory we may keep.
fn clear(path: &Path, keep_directory: bool) -> std::result::Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() && keep_directory => Ok(()),
        Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(path).map_err(|error| format!("failed to replace {}: {error}", path.display())),
        Ok(_) => std::fs::remove_file(path).map_err(|error| format!("failed to replace {}: {error}", path.display())),
        Err(_) => Ok(()),
    }
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

/// Owns `path` by the image's `uid`/`gid`, shifted into the boxes' id range if they have one.
fn chown(path: &Path, uid: u64, gid: u64, id_map: Option<IdMap>) -> std::result::Result<(), String> {
    let (uid, gid) = match id_map {
        // This process may give files to no one else; `unpack_tar` says who they belong to.
        Some(map) if map.is_rootless() => return Ok(()),
        Some(map) => (map.host_id(uid), map.host_id(gid)),
        None => (uid as libc::uid_t, gid as libc::gid_t),
    };
    // SAFETY: lchown on a valid C string; it never follows a symlink.
    let code = unsafe { libc::lchown(c_path(path).as_ptr(), uid, gid) };
    if code < 0 {
        return Err(format!("failed to chown {}: {}", path.display(), io::Error::last_os_error()));
    }
    Ok(())
}

/// Rule 3: the entry's modification time (and access time) on `path` itself, never a link's target.
fn set_mtime(path: &Path, mtime: u64) -> std::result::Result<(), String> {
    let time = libc::timespec { tv_sec: libc::time_t::try_from(mtime).unwrap_or(libc::time_t::MAX), tv_nsec: 0 };
    // SAFETY: utimensat with a valid C string and two timespecs.
    let code = unsafe { libc::utimensat(libc::AT_FDCWD, c_path(path).as_ptr(), [time, time].as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
    if code < 0 {
        return Err(format!("failed to set the times of {}: {}", path.display(), io::Error::last_os_error()));
    }
    Ok(())
}

fn make_char_device(path: &Path, major: u32, minor: u32) -> std::result::Result<(), String> {
    // SAFETY: mknod on a valid C string.
    let code = unsafe { libc::mknod(c_path(path).as_ptr(), libc::S_IFCHR, libc::makedev(major, minor)) };
    if code < 0 {
        return Err(format!("failed to create whiteout {}: {}", path.display(), io::Error::last_os_error()));
    }
    Ok(())
}

fn set_opaque(dir: &Path, id_map: Option<IdMap>) -> std::result::Result<(), String> {
    let name = if id_map.is_some_and(IdMap::is_rootless) { c"user.overlay.opaque" } else { c"trusted.overlay.opaque" };
    // SAFETY: lsetxattr with a valid path, name and a one-byte value.
    let code = unsafe { libc::lsetxattr(c_path(dir).as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if code < 0 {
        return Err(format!("failed to mark {} opaque: {}", dir.display(), io::Error::last_os_error()));
    }
    Ok(())
}

/// Rule 3: the entry's extended attributes that are applied.
fn applied_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(CString, Vec<u8>)> {
    let Ok(Some(extensions)) = entry.pax_extensions() else { return Vec::new() };
    extensions
        .filter_map(std::result::Result::ok)
        .filter_map(|extension| {
            let name = extension.key().ok()?.strip_prefix("SCHILY.xattr.")?;
            let applied = name.starts_with("user.") && !name.starts_with("user.overlay.");
            applied.then(|| Some((CString::new(name).ok()?, extension.value_bytes().to_vec()))).flatten()
        })
        .collect()
}

/// Set after ownership: chown clears `security.capability`.
fn set_xattrs(path: &Path, xattrs: &[(CString, Vec<u8>)]) -> std::result::Result<(), String> {
    for (name, value) in xattrs {
        // SAFETY: lsetxattr with a valid path, name and value slice.
        let code = unsafe { libc::lsetxattr(c_path(path).as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if code < 0 {
            return Err(format!("failed to set {} on {}: {}", name.to_string_lossy(), path.display(), io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// What an entry did to the layer's owners.
enum Unpacked {
    /// Made the file at its path, with this owner and mode (ids of the image).
    Owned(Ownership),
    /// Put at this path what has no owner of its own (a hard link) or nothing (a whiteout).
    Replaced(PathBuf),
    /// Neither (the layer's root, an opaque mark, a device, which is not made).
    Nothing,
}

fn unpack_entry<R: Read>(root: &Path, entry: &mut tar::Entry<'_, R>, id_map: Option<IdMap>) -> std::result::Result<Unpacked, String> {
    let raw_path = entry.path().map_err(|error| format!("bad entry path: {error}"))?.into_owned();
    let Some(relative) = relative_path(&raw_path)? else {
        return Ok(Unpacked::Nothing);
    };
    ensure_parents(root, &relative, id_map)?;
    let target = root.join(&relative);
    let xattrs = applied_xattrs(entry);
    let header = entry.header();
    let mode = header.mode().map_err(|error| format!("bad mode for {}: {error}", raw_path.display()))? & 0o7777;
    let uid = header.uid().unwrap_or(0);
    let gid = header.gid().unwrap_or(0);
    let mtime = header.mtime().unwrap_or(0);
    let file_name = relative.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();

    if file_name == OPAQUE_MARKER {
        let dir = target.parent().unwrap_or(root);
        return set_opaque(dir, id_map).map(|()| Unpacked::Nothing);
    }
    if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(format!("whiteout {} names no file", raw_path.display()));
        }
        let whiteout = target.with_file_name(hidden);
        clear(&whiteout, false)?;
        return make_char_device(&whiteout, 0, 0).map(|()| Unpacked::Replaced(relative.with_file_name(hidden)));
    }

    let kind = header.entry_type();
    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            clear(&target, false)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&target)
                .map_err(|error| format!("failed to create {}: {error}", target.display()))?;
            io::copy(entry, &mut file).map_err(|error| format!("failed to write {}: {error}", target.display()))?;
            chown(&target, uid, gid, id_map)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(|error| format!("failed to set the mode of {}: {error}", target.display()))?;
            set_xattrs(&target, &xattrs)?;
            set_mtime(&target, mtime)?;
        }
        tar::EntryType::Directory => {
            clear(&target, true)?;
            if !target.is_dir() {
                std::fs::create_dir(&target).map_err(|error| format!("failed to create {}: {error}", target.display()))?;
            }
            chown(&target, uid, gid, id_map)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(|error| format!("failed to set the mode of {}: {error}", target.display()))?;
            set_xattrs(&target, &xattrs)?;
        }
        tar::EntryType::Symlink => {
            let link = entry.link_name().map_err(|error| format!("bad link for {}: {error}", raw_path.display()))?;
            let link = link.ok_or_else(|| format!("symlink {} has no target", raw_path.display()))?;
            clear(&target, false)?;
            std::os::unix::fs::symlink(&link, &target).map_err(|error| format!("failed to create symlink {}: {error}", target.display()))?;
            chown(&target, uid, gid, id_map)?;
            set_mtime(&target, mtime)?;
        }
        tar::EntryType::Link => {
            let link = entry.link_name().map_err(|error| format!("bad link for {}: {error}", raw_path.display()))?;
            let link = link.ok_or_else(|| format!("hardlink {} has no target", raw_path.display()))?;
            let link_relative = relative_path(&link)?.ok_or_else(|| format!("hardlink {} points at the layer root", raw_path.display()))?;
            ensure_parents(root, &link_relative, id_map)?;
            let source = root.join(&link_relative);
            match std::fs::symlink_metadata(&source) {
                Ok(metadata) if metadata.is_file() => {}
                _ => return Err(format!("hardlink {} must point at a regular file of the same layer", raw_path.display())),
            }
            clear(&target, false)?;
            std::fs::hard_link(&source, &target).map_err(|error| format!("failed to link {}: {error}", target.display()))?;
            return Ok(Unpacked::Replaced(relative));
        }
        tar::EntryType::Fifo => {
            clear(&target, false)?;
            // SAFETY: mkfifo on a valid C string.
            if unsafe { libc::mkfifo(c_path(&target).as_ptr(), mode) } < 0 {
                return Err(format!("failed to create fifo {}: {}", target.display(), io::Error::last_os_error()));
            }
            chown(&target, uid, gid, id_map)?;
            set_xattrs(&target, &xattrs)?;
            set_mtime(&target, mtime)?;
        }
        // Rule 3: device nodes are not created; other entry kinds carry no file.
        _ => return Ok(Unpacked::Nothing),
    }
    // A change of owner clears the set-id bits of all but directories: they are set again after.
    let set_id = (mode & 0o6000 != 0 && matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Fifo)).then_some(mode);
    let clamp = |id: u64| u32::try_from(id).unwrap_or(u32::MAX);
    Ok(Unpacked::Owned(Ownership { path: relative, uid: clamp(uid), gid: clamp(gid), mode: set_id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_stay_inside_the_layer() {
        assert_eq!(relative_path(Path::new("./usr/bin/sh")).expect("ok"), Some(PathBuf::from("usr/bin/sh")));
        assert_eq!(relative_path(Path::new("/etc/passwd")).expect("ok"), Some(PathBuf::from("etc/passwd")));
        assert_eq!(relative_path(Path::new("./")).expect("ok"), None);
        assert!(relative_path(Path::new("a/../../etc")).is_err());
    }

    #[test]
    fn parents_never_pass_through_symlinks() {
        let root = std::env::temp_dir().join(format!("boxlite-unpack-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("mkdir");
        std::os::unix::fs::symlink("/tmp", root.join("escape")).expect("symlink");
        assert!(ensure_parents(&root, Path::new("escape/file"), None).is_err());
        ensure_parents(&root, Path::new("a/b/file"), None).expect("real dirs");
        assert!(root.join("a/b").is_dir());
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    /// The owners an ordinary user's runtime leaves to the shim name what the layer holds in
    /// the end: a path a later entry replaced with a hard link or a whiteout has none, and
    /// neither has anything under a directory a whiteout removed.
    #[test]
    fn deferred_owners_name_what_the_layer_holds_in_the_end() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut append = |name: &str, kind: tar::EntryType, uid: u64, mode: u32, link: Option<&str>| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_uid(uid);
            header.set_gid(uid);
            header.set_mode(mode);
            header.set_size(0);
            match link {
                Some(target) => builder.append_link(&mut header, name, target).expect("append"),
                None => builder.append_data(&mut header, name, io::empty()).expect("append"),
            }
        };
        append("a", tar::EntryType::Regular, 5, 0o4755, None);
        append("b", tar::EntryType::Regular, 7, 0o644, None);
        append("a", tar::EntryType::Link, 0, 0o644, Some("b"));
        append("d", tar::EntryType::Directory, 8, 0o755, None);
        append("d/inner", tar::EntryType::Regular, 9, 0o2755, None);
        append(".wh.d", tar::EntryType::Regular, 0, 0o644, None);
        append("e", tar::EntryType::Regular, 70_000, 0o644, None);
        let layer = builder.into_inner().expect("tar");
        let root = std::env::temp_dir().join(format!("boxlite-deferred-test-{}-{}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(root.join("ranged")).expect("mkdir");
        std::fs::create_dir_all(root.join("one-id")).expect("mkdir");
        let owners = unpack_tar(layer.as_slice(), &root.join("ranged"), Some(IdMap { host_base: 0, size: 65_536 }));
        let one_id = unpack_tar(layer.as_slice(), &root.join("one-id"), Some(IdMap::ROOTLESS));
        std::fs::remove_dir_all(&root).expect("cleanup");
        let expected = [("b", 7), ("e", 65_534)].map(|(path, id)| Ownership { path: PathBuf::from(path), uid: id, gid: id, mode: None });
        assert_eq!(owners.expect("unpacked"), expected, "ids past the boxes' become nobody");
        assert_eq!(one_id.expect("unpacked"), Vec::new(), "boxes of one id have no owners to give");
    }
}

/// Layers made of random entries (names and link targets with `..`, absolute paths, symlinks
/// and hardlinks over each other, whiteouts) unpack into their directory only (rule 1).
#[cfg(test)]
mod unpacking_random_layers {
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    use super::*;

    #[derive(Debug, Clone)]
    enum Kind {
        Directory,
        File,
        Symlink(String),
        Hardlink(String),
    }

    fn path() -> impl Strategy<Value = String> {
        let component = prop::sample::select(vec!["a", "b", "..", ".", "c", ".wh.a", ".wh..wh..opq"]);
        (any::<bool>(), prop::collection::vec(component, 1..5)).prop_map(|(absolute, parts)| format!("{}{}", if absolute { "/" } else { "" }, parts.join("/")))
    }

    fn entry() -> impl Strategy<Value = (Kind, String)> {
        let kind = prop_oneof![Just(Kind::Directory), Just(Kind::File), path().prop_map(Kind::Symlink), path().prop_map(Kind::Hardlink)];
        (kind, path())
    }

    /// A tar whose names are written as they are (the tar crate's own setters refuse `..`).
    fn layer(entries: &[(Kind, String)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (kind, name) in entries {
            let mut header = tar::Header::new_old();
            let raw = header.as_old_mut();
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            let (kind_byte, link, data): (tar::EntryType, Option<&String>, &[u8]) = match kind {
                Kind::Directory => (tar::EntryType::Directory, None, b""),
                Kind::File => (tar::EntryType::Regular, None, b"written by a layer\n"),
                Kind::Symlink(target) => (tar::EntryType::Symlink, Some(target), b""),
                Kind::Hardlink(target) => (tar::EntryType::Link, Some(target), b""),
            };
            if let Some(target) = link {
                header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
            }
            header.set_entry_type(kind_byte);
            header.set_mode(0o755);
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).expect("append");
        }
        builder.into_inner().expect("tar")
    }

    /// A case's directory, removed however the case ends.
    struct Sandbox(PathBuf);

    impl Drop for Sandbox {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir).expect("read_dir").map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        #[test]
        fn nothing_lands_outside_the_layer(entries in prop::collection::vec(entry(), 1..12)) {
            let sandbox = Sandbox(std::env::temp_dir().join(format!("boxlite-unpack-random-{}-{}", std::process::id(), rand::random::<u64>())));
            let sandbox = &sandbox.0;
            let (root, outside) = (sandbox.join("root"), sandbox.join("outside"));
            std::fs::create_dir_all(&root).expect("mkdir");
            std::fs::create_dir_all(&outside).expect("mkdir");
            std::fs::write(outside.join("secret"), "host\n").expect("write");
            // Links planted as a layer below would find them: into the sandbox's other side.
            std::os::unix::fs::symlink(&outside, root.join("c")).expect("symlink");
            let bytes = layer(&entries);
            let blob = sandbox.join("blob");
            std::fs::write(&blob, &bytes).expect("write");
            let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
            let _ = extract(&blob, &digest, &root, None);
            prop_assert_eq!(listing(sandbox), vec!["blob", "outside", "root"]);
            prop_assert_eq!(listing(&outside), vec!["secret"]);
            prop_assert_eq!(std::fs::read_to_string(outside.join("secret")).expect("read"), "host\n");
        }
    }
}
