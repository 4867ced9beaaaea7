//! A box's own filesystem: a sparse ext4 image in the box's directory, which the box's pid 1
//! mounts in the box's mount namespace (the shim's `disk`) and which holds the overlay's upper
//! and work directories. What the box writes is bounded by it: past the size the box gets
//! ENOSPC; the home's filesystem and other boxes are unaffected.
//!
//! # Rules
//!
//! 1. A box has one when it names `disk_size_gb`, or when the runtime's environment names a
//!    size for every box that names none ([`SIZE_VARIABLE`]). Not by default: the image is
//!    sparse, so on a host whose filesystem fills before the box's disk does, the box's writes
//!    succeed and then fail as the kernel writes them back (an error at `fsync`, or the box's
//!    filesystem turning read-only), where a box without one gets ENOSPC at the write. Where
//!    disks cannot be had (an ordinary user's runtime, no loop devices, no mkfs.ext4), a box
//!    that names a size is refused, and a size for every box is ignored with a log line.
//! 2. An image is a copy of a template formatted once per home and size: a create copies the
//!    template's few allocated blocks (≈ 0.2 ms) instead of running mkfs (≈ 10–70 ms).
//! 3. Only what the box wrote takes room on the host: the image is sparse, and the box's pid 1
//!    mounts it with `discard`, so what the box deletes is given back.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use boxlite_protocol::BoxDisk;

use crate::error::{Error, Result};
use crate::idmap::IdMap;

/// The largest disk a box may ask for (the image is sparse: only what is written takes room).
pub(super) const MAX_SIZE_GB: u64 = 16 * 1024;

/// Names the disk size, in GiB, of every box that names none (rule 1); unset or `0`: none.
pub const SIZE_VARIABLE: &str = "BOXLITE_DISK_SIZE_GB";

/// The disk size of boxes that name none (rule 1), read from [`SIZE_VARIABLE`].
pub(super) fn default_size() -> Result<Option<u64>> {
    let Some(value) = std::env::var_os(SIZE_VARIABLE) else { return Ok(None) };
    match value.to_str().and_then(|text| text.trim().parse::<u64>().ok()) {
        Some(0) => Ok(None),
        Some(size) if size <= MAX_SIZE_GB => Ok(Some(size)),
        _ => Err(Error::Config(format!("{SIZE_VARIABLE}={value:?}: expected a number of GiB from 0 (no disk) to {MAX_SIZE_GB}"))),
    }
}

fn image(dir: &Path) -> PathBuf {
    dir.join("disk.img")
}

/// Where the box's upper and work directories are: in its disk's mount point, or its directory.
pub(super) fn writable_layer(dir: &Path, disk_size_gb: Option<u64>) -> PathBuf {
    if disk_size_gb.is_some() { dir.join("disk") } else { dir.to_path_buf() }
}

/// Makes the image of the box in `dir`: a copy of the home's template of `size_gb` GiB (rule 2),
/// formatted with `formatter` the first time. Blocking.
pub(super) fn make(dir: &Path, size_gb: u64, formatter: &Path, templates: &Path) -> Result<()> {
    let template = template(templates, size_gb, formatter)?;
    fs_err::create_dir_all(dir.join("disk"))?;
    copy_sparse(&template, &image(dir))
}

/// The home's formatted image of `size_gb` GiB, made if missing. Concurrent creates may each
/// format one; each renames its own into place whole.
fn template(templates: &Path, size_gb: u64, formatter: &Path) -> Result<PathBuf> {
    let path = templates.join(format!("ext4-{size_gb}g.img"));
    if path.exists() {
        return Ok(path);
    }
    fs_err::create_dir_all(templates)?;
    let partial = templates.join(format!(".ext4-{size_gb}g.{:016x}", rand::random::<u64>()));
    let made = format(&partial, size_gb, formatter).and_then(|()| fs_err::rename(&partial, &path).map_err(Error::from));
    if made.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    made.map(|()| path)
}

/// Formats a sparse image: ext4 with no room reserved for host root, and no blocks reserved to
/// grow it (`resize_inode`, 4 MiB of a 10 GiB image that every copy would carry).
fn format(path: &Path, size_gb: u64, formatter: &Path) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|error| Error::storage("create", path, &error))?;
    file.set_len(size_gb << 30).map_err(|error| Error::storage("size", path, &error))?;
    drop(file);
    let made = Command::new(formatter)
        .args(["-q", "-F", "-m", "0", "-O", "^resize_inode", "-E", "lazy_itable_init=1,lazy_journal_init=1"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match made {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(Error::Engine(format!("failed to format a box's disk: {} said {}", formatter.display(), String::from_utf8_lossy(&output.stderr).trim()))),
        Err(error) => Err(Error::Engine(format!("failed to run {}: {error}", formatter.display()))),
    }
}

/// Copies `source` to a new file `target` of the same size, only its data extents
/// (SEEK_DATA/SEEK_HOLE), so holes stay holes. `copy_file_range` shares the blocks instead of
/// copying them where the filesystem can (btrfs, xfs).
pub(super) fn copy_sparse(source: &Path, target: &Path) -> Result<()> {
    let input = std::fs::File::open(source).map_err(Error::storage_at("open", source))?;
    let output = std::fs::File::options().write(true).create_new(true).open(target).map_err(Error::storage_at("create", target))?;
    let size = input.metadata().map_err(Error::storage_at("read", source))?.len();
    output.set_len(size).map_err(Error::storage_at("size", target))?;
    for (data, length) in data_extents(&input, size).map_err(Error::storage_at("read", source))? {
        let (mut from, mut to) = (data as libc::loff_t, data as libc::loff_t);
        let end = data + length;
        while (from as u64) < end {
            let length = usize::try_from(end - from as u64).unwrap_or(usize::MAX);
            // SAFETY: copy_file_range between two open descriptors, with offsets it advances.
            let copied = unsafe { libc::copy_file_range(input.as_raw_fd(), &mut from, output.as_raw_fd(), &mut to, length, 0) };
            if copied <= 0 {
                let error = if copied == 0 { std::io::Error::from(std::io::ErrorKind::UnexpectedEof) } else { std::io::Error::last_os_error() };
                return Err(Error::storage("write", target, &error));
            }
        }
    }
    Ok(())
}

/// Where the sparse file `file` of `size` bytes holds data: (offset, length) pairs in order;
/// the rest reads as zeros.
pub(super) fn data_extents(file: &std::fs::File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let seek = |offset: u64, whence: libc::c_int| -> std::io::Result<Option<u64>> {
        // SAFETY: lseek on an open descriptor.
        let found = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
        match found {
            -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) => Ok(None),
            -1 => Err(std::io::Error::last_os_error()),
            found => Ok(Some(found as u64)),
        }
    };
    let mut extents = Vec::new();
    let mut offset = 0;
    while offset < size {
        let Some(data) = seek(offset, libc::SEEK_DATA)? else { break };
        let end = seek(data, libc::SEEK_HOLE)?.unwrap_or(size).min(size);
        if end > data {
            extents.push((data, end - data));
        }
        offset = end.max(data + 1);
    }
    Ok(extents)
}

/// What the shim needs to mount the disk of the box in `dir`.
pub(super) fn config(dir: &Path, id_map: Option<IdMap>) -> BoxDisk {
    BoxDisk { image: image(dir), mount_point: dir.join("disk"), owner: crate::idmap::host_owner(id_map, 0).unwrap_or(0) }
}

/// The host bytes the image takes (its allocated blocks).
pub(super) fn used_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(image(dir)).ok().map(|metadata| metadata.blocks() * 512)
}
