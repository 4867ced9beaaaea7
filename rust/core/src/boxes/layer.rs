//! A box's writable layer taken whole (snapshots, clones): the overlay's upper directory, or
//! the disk image that holds it, copied exactly.
//!
//! A tree is copied with everything the overlay and the box see: owners, modes, times, extended
//! attributes (the overlay's opaque marks among them), hard links, symbolic links (never
//! followed) and the overlay's whiteouts (0/0 character devices). A copy is made only while no
//! process of the box runs (stopped, or frozen), so nothing in the tree moves under it, and
//! a symbolic link cannot be swapped in for a directory being read.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use boxlite_protocol::IdShift;

use crate::error::{Error, Result};

/// What a copy holds: bytes of file content, and bytes it takes on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    pub content_bytes: u64,
    pub allocated_bytes: u64,
}

/// Where a box's writable layer lives.
#[derive(Debug, Clone)]
pub enum WritableLayer {
    /// The overlay's upper directory, on the home's filesystem.
    Tree(PathBuf),
    /// The box's own disk image, which holds the upper directory (`disk`).
    Disk(PathBuf),
}

impl WritableLayer {
    /// The layer of the box in `dir`.
    pub fn of(dir: &Path, has_disk: bool) -> Self {
        if has_disk { Self::Disk(dir.join("disk.img")) } else { Self::Tree(dir.join("upper")) }
    }

    /// The name the layer's copy takes in a snapshot's directory.
    pub fn copy_name(&self) -> &'static str {
        match self {
            Self::Tree(_) => "upper",
            Self::Disk(_) => "disk.img",
        }
    }

    /// The copy of a layer of this kind kept in `dir` (a snapshot's directory).
    pub fn kept_in(&self, dir: &Path) -> Self {
        let path = dir.join(self.copy_name());
        match self {
            Self::Tree(_) => Self::Tree(path),
            Self::Disk(_) => Self::Disk(path),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Self::Tree(path) | Self::Disk(path) => path,
        }
    }

    /// Copies the layer to `target`, which must not exist.
    pub fn copy_to(&self, target: &Path) -> Result<Size> {
        self.copy_shifted(target, None)
    }

    /// Copies the layer to `target` for a box whose ids are `shift.to` where this one's are
    /// `shift.from` (a clone): owners in the one range become the same ids in the other. A
    /// disk is copied as it is: its files say whose ids they have, and the box they boot in
    /// first moves them into its own (the shim's `disk`).
    pub fn copy_shifted(&self, target: &Path, shift: Option<IdShift>) -> Result<Size> {
        match self {
            Self::Tree(source) => {
                let mut copier = TreeCopier { shift, ..TreeCopier::default() };
                copier.copy(source, target)?;
                Ok(copier.size)
            }
            Self::Disk(source) => {
                super::disk::copy_sparse(source, target)?;
                let metadata = std::fs::metadata(target).map_err(Error::storage_at("read", target))?;
                Ok(Size { content_bytes: metadata.len(), allocated_bytes: metadata.blocks() * 512 })
            }
        }
    }
}

/// The shift between two boxes' ids, if their files need one.
pub fn shift_between(source: Option<crate::idmap::IdMap>, target: Option<crate::idmap::IdMap>) -> Option<IdShift> {
    let (source, target) = (crate::idmap::host_owner(source, 0)?, crate::idmap::host_owner(target, 0)?);
    (source != target).then_some(IdShift { from: source, to: target })
}

#[derive(Default)]
struct TreeCopier {
    shift: Option<IdShift>,
    /// Files with more than one link already copied, by (device, inode): later links to them
    /// become links to their copy.
    linked: HashMap<(u64, u64), PathBuf>,
    size: Size,
}

pub(super) fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Storage(format!("a path with a NUL byte: {}", path.display())))
}

fn check(code: libc::c_int) -> io::Result<()> {
    if code < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

impl TreeCopier {
    fn copy(&mut self, source: &Path, target: &Path) -> Result<()> {
        let metadata = std::fs::symlink_metadata(source).map_err(Error::storage_at("read", source))?;
        let kind = metadata.file_type();
        if !kind.is_dir() && metadata.nlink() > 1 {
            let key = (metadata.dev(), metadata.ino());
            if let Some(first) = self.linked.get(&key) {
                return std::fs::hard_link(first, target).map_err(Error::storage_at("link", target));
            }
            self.linked.insert(key, target.to_path_buf());
        }
        if kind.is_dir() {
            std::fs::create_dir(target).map_err(Error::storage_at("create", target))?;
            let entries = std::fs::read_dir(source).map_err(Error::storage_at("read", source))?;
            for entry in entries {
                let entry = entry.map_err(Error::storage_at("read", source))?;
                self.copy(&entry.path(), &target.join(entry.file_name()))?;
            }
        } else if kind.is_file() {
            copy_file(source, target)?;
            self.size.content_bytes += metadata.len();
        } else if kind.is_symlink() {
            let pointee = std::fs::read_link(source).map_err(Error::storage_at("read", source))?;
            std::os::unix::fs::symlink(pointee, target).map_err(Error::storage_at("create", target))?;
        } else if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() || kind.is_socket() {
            // SAFETY: mknod on a valid C path; the overlay's whiteouts are 0/0 character devices.
            check(unsafe { libc::mknod(c_path(target)?.as_ptr(), metadata.mode(), metadata.rdev()) }).map_err(Error::storage_at("create", target))?;
        }
        self.copy_attributes(source, target, &metadata)?;
        let copied = std::fs::symlink_metadata(target).map_err(Error::storage_at("read", target))?;
        self.size.allocated_bytes += copied.blocks() * 512;
        Ok(())
    }

    /// Owner, then mode (a change of owner clears set-id bits), extended attributes, and times.
    fn copy_attributes(&self, source: &Path, target: &Path, metadata: &std::fs::Metadata) -> Result<()> {
        let owner = |id: u32| self.shift.map_or(id, |shift| shift.apply(id));
        std::os::unix::fs::lchown(target, Some(owner(metadata.uid())), Some(owner(metadata.gid()))).map_err(Error::storage_at("chown", target))?;
        if !metadata.file_type().is_symlink() {
            std::fs::set_permissions(target, std::fs::Permissions::from_mode(metadata.mode() & 0o7777)).map_err(Error::storage_at("chmod", target))?;
        }
        let (source_c, target_c) = (c_path(source)?, c_path(target)?);
        for (name, mut value) in extended_attributes(&source_c).map_err(Error::storage_at("read the attributes of", source))? {
            if let (Some(shift), b"security.capability") = (self.shift, name.as_bytes()) {
                shift.apply_to_capability(&mut value);
            }
            // SAFETY: lsetxattr with valid C strings and a buffer of the given length.
            let set = unsafe { libc::lsetxattr(target_c.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
            check(set).map_err(|error| Error::Storage(format!("failed to set {} on {}: {error}", name.to_string_lossy(), target.display())))?;
        }
        let times = [
            libc::timespec { tv_sec: metadata.atime() as libc::time_t, tv_nsec: metadata.atime_nsec() as libc::c_long },
            libc::timespec { tv_sec: metadata.mtime() as libc::time_t, tv_nsec: metadata.mtime_nsec() as libc::c_long },
        ];
        // SAFETY: utimensat with a valid C path and two timespecs; the link itself, never its target.
        check(unsafe { libc::utimensat(libc::AT_FDCWD, target_c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) }).map_err(Error::storage_at("set the times of", target))
    }
}

/// A regular file's content, copied in the kernel (`io::copy` between files is
/// `copy_file_range`, which shares the blocks instead where the filesystem can: btrfs, xfs).
fn copy_file(source: &Path, target: &Path) -> Result<()> {
    let mut input = std::fs::File::open(source).map_err(Error::storage_at("open", source))?;
    let mut output = std::fs::File::options().write(true).create_new(true).open(target).map_err(Error::storage_at("create", target))?;
    io::copy(&mut input, &mut output).map_err(Error::storage_at("write", target))?;
    Ok(())
}

/// The extended attributes of `path` itself (a link's own, never its target's).
pub(super) fn extended_attributes(path: &CString) -> io::Result<Vec<(CString, Vec<u8>)>> {
    // SAFETY: llistxattr with a null buffer returns the size the list needs.
    let size = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        let error = io::Error::last_os_error();
        return if error.raw_os_error() == Some(libc::ENOTSUP) { Ok(Vec::new()) } else { Err(error) };
    }
    let mut names = vec![0u8; size as usize];
    // SAFETY: the buffer has the length passed.
    let size = unsafe { libc::llistxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if size < 0 {
        return Err(io::Error::last_os_error());
    }
    names.truncate(size as usize);
    let mut attributes = Vec::new();
    for name in names.split(|byte| *byte == 0).filter(|name| !name.is_empty()) {
        let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        // SAFETY: lgetxattr with a null buffer returns the value's size.
        let length = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
        if length < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut value = vec![0u8; length as usize];
        // SAFETY: the buffer has the length passed.
        let length = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if length < 0 {
            return Err(io::Error::last_os_error());
        }
        value.truncate(length as usize);
        attributes.push((name, value));
    }
    Ok(attributes)
}
