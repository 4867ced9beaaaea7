//! A tree copied exactly: owners, modes, times, extended attributes (the overlay's opaque marks
//! among them), hard links, symbolic links (never followed) and the overlay's whiteouts (0/0
//! character devices). The tree must not change meanwhile (its box is stopped or frozen), so a
//! symbolic link cannot be swapped in for a directory being read.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use boxlite_protocol::IdShift;

use crate::attributes::{c_path, check, extended_attributes};
use crate::{failed, TreeError};

/// What a copy holds: bytes of file content, and bytes it takes on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    pub content_bytes: u64,
    pub allocated_bytes: u64,
}

/// Copies the tree at `source` to `target`, which must not exist; with `shift`, owners in one
/// box's range become the same ids in another's (a clone of a box of another range).
pub fn copy(source: &Path, target: &Path, shift: Option<IdShift>) -> Result<Size, TreeError> {
    let mut copier = TreeCopier { shift, ..TreeCopier::default() };
    copier.copy(source, target)?;
    Ok(copier.size)
}

#[derive(Default)]
struct TreeCopier {
    shift: Option<IdShift>,
    /// Files with more than one link already copied, by (device, inode): later links to them
    /// become links to their copy.
    linked: HashMap<(u64, u64), PathBuf>,
    size: Size,
}

impl TreeCopier {
    fn copy(&mut self, source: &Path, target: &Path) -> Result<(), TreeError> {
        let metadata = std::fs::symlink_metadata(source).map_err(failed("read", source))?;
        let kind = metadata.file_type();
        if !kind.is_dir() && metadata.nlink() > 1 {
            let key = (metadata.dev(), metadata.ino());
            if let Some(first) = self.linked.get(&key) {
                return std::fs::hard_link(first, target).map_err(failed("link", target));
            }
            self.linked.insert(key, target.to_path_buf());
        }
        if kind.is_dir() {
            std::fs::create_dir(target).map_err(failed("create", target))?;
            let entries = std::fs::read_dir(source).map_err(failed("read", source))?;
            for entry in entries {
                let entry = entry.map_err(failed("read", source))?;
                self.copy(&entry.path(), &target.join(entry.file_name()))?;
            }
        } else if kind.is_file() {
            copy_file(source, target)?;
            self.size.content_bytes += metadata.len();
        } else if kind.is_symlink() {
            let pointee = std::fs::read_link(source).map_err(failed("read", source))?;
            std::os::unix::fs::symlink(pointee, target).map_err(failed("create", target))?;
        } else if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() || kind.is_socket() {
            // SAFETY: mknod on a valid C path; the overlay's whiteouts are 0/0 character devices.
            check(unsafe { libc::mknod(c_path(target).map_err(failed("create", target))?.as_ptr(), metadata.mode(), metadata.rdev()) }).map_err(failed("create", target))?;
        }
        self.copy_attributes(source, target, &metadata)?;
        let copied = std::fs::symlink_metadata(target).map_err(failed("read", target))?;
        self.size.allocated_bytes += copied.blocks() * 512;
        Ok(())
    }

    /// Owner, then mode (a change of owner clears set-id bits), extended attributes, and times.
    fn copy_attributes(&self, source: &Path, target: &Path, metadata: &std::fs::Metadata) -> Result<(), TreeError> {
        let owner = |id: u32| self.shift.map_or(id, |shift| shift.apply(id));
        std::os::unix::fs::lchown(target, Some(owner(metadata.uid())), Some(owner(metadata.gid()))).map_err(failed("chown", target))?;
        if !metadata.file_type().is_symlink() {
            std::fs::set_permissions(target, std::fs::Permissions::from_mode(metadata.mode() & 0o7777)).map_err(failed("chmod", target))?;
        }
        let (source_c, target_c) = (c_path(source).map_err(failed("read", source))?, c_path(target).map_err(failed("create", target))?);
        for (name, mut value) in extended_attributes(&source_c).map_err(failed("read the attributes of", source))? {
            if let (Some(shift), b"security.capability") = (self.shift, name.as_bytes()) {
                shift.apply_to_capability(&mut value);
            }
            // SAFETY: lsetxattr with valid C strings and a buffer of the given length.
            let set = unsafe { libc::lsetxattr(target_c.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
            check(set).map_err(failed("set the attributes of", target))?;
        }
        let times = [
            libc::timespec { tv_sec: metadata.atime() as libc::time_t, tv_nsec: metadata.atime_nsec() as libc::c_long },
            libc::timespec { tv_sec: metadata.mtime() as libc::time_t, tv_nsec: metadata.mtime_nsec() as libc::c_long },
        ];
        // SAFETY: utimensat with a valid C path and two timespecs; the link itself, never its target.
        check(unsafe { libc::utimensat(libc::AT_FDCWD, target_c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) }).map_err(failed("set the times of", target))
    }
}

/// A regular file's content, copied in the kernel (`io::copy` between files is
/// `copy_file_range`, which shares the blocks instead where the filesystem can: btrfs, xfs).
fn copy_file(source: &Path, target: &Path) -> Result<(), TreeError> {
    let mut input = std::fs::File::open(source).map_err(failed("open", source))?;
    let mut output = std::fs::File::options().write(true).create_new(true).open(target).map_err(failed("create", target))?;
    io::copy(&mut input, &mut output).map_err(failed("write", target))?;
    Ok(())
}

