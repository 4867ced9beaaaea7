//! A box's own filesystem (`disk_size_gb`): a sparse ext4 image in the box's directory, made at
//! create, which the box's pid 1 mounts in the box's mount namespace (the shim's `disk`) and
//! which holds the overlay's upper and work directories. What the box writes is bounded by it:
//! past the size the box gets ENOSPC; the home's filesystem and other boxes are unaffected.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use boxlite_protocol::BoxDisk;

use crate::error::{Error, Result};
use crate::idmap::IdMap;

/// The largest disk a box may ask for (the image is sparse: only what is written takes room).
pub(super) const MAX_SIZE_GB: u64 = 16 * 1024;

fn image(dir: &Path) -> PathBuf {
    dir.join("disk.img")
}

/// Where the box's upper and work directories are: in its disk's mount point, or its directory.
pub(super) fn writable_layer(dir: &Path, disk_size_gb: Option<u64>) -> PathBuf {
    if disk_size_gb.is_some() { dir.join("disk") } else { dir.to_path_buf() }
}

/// Makes the image: sparse, `size_gb` GiB, ext4 with no room reserved for host root. Blocking.
pub(super) fn make(dir: &Path, size_gb: u64) -> Result<()> {
    let path = image(dir);
    let file = std::fs::File::create(&path).map_err(|error| Error::storage("create", &path, &error))?;
    file.set_len(size_gb << 30).map_err(|error| Error::storage("size", &path, &error))?;
    drop(file);
    fs_err::create_dir_all(dir.join("disk"))?;
    let made = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match made {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(Error::Engine(format!("failed to make the box's disk: mkfs.ext4 said {}", String::from_utf8_lossy(&output.stderr).trim()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::Unsupported("disk_size_gb needs mkfs.ext4 (the Debian package e2fsprogs) on the host".to_string()))
        }
        Err(error) => Err(Error::Engine(format!("failed to run mkfs.ext4: {error}"))),
    }
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
