//! The box's own filesystem (`ShimConfig::disk`): its image is attached to a free loop device
//! that detaches itself once unmounted (`LO_FLAGS_AUTOCLEAR`), and mounted in the box's mount
//! namespace, so both go when the box's last process does. The overlay's upper and work
//! directories live in it, so what a box writes is bounded by the image's size: past it, the
//! box's own writes fail with ENOSPC, and the host and other boxes are unaffected.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use boxlite_protocol::{BoxDisk, IdShift};

use crate::sys::{self, check, mkdir_all, mount, Result};

/// linux/loop.h.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    size_limit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Mounts the disk and makes the upper (owned by the box's root) and work directories in it.
pub fn mount_disk(disk: &BoxDisk, upper: &Path, work: &Path) -> Result<()> {
    mkdir_all(&disk.mount_point)?;
    // Held open until mounted: a device set to clear itself would go when its last user does.
    let (device, _held) = attach(&disk.image)?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    // discard: what the box deletes becomes holes in the sparse image again. noinit_itable:
    // no background zeroing of inode tables the box may never use.
    mount(Some(&device.to_string_lossy()), &disk.mount_point, Some("ext4"), flags, Some("discard,noinit_itable"))?;
    own_files(disk)?;
    if !upper.exists() {
        mkdir_all(upper)?;
        std::os::unix::fs::chown(upper, Some(disk.owner), Some(disk.owner)).map_err(|source| sys::SysError { operation: format!("failed to give {} to the box's root", upper.display()), source })?;
    }
    mkdir_all(work)
}

/// The file at the root of a disk that names the host id of box root its files are owned with.
const IDS_FILE: &str = "ids";

/// Makes the disk's files this box's (`disk.owner` is its root's host id). A disk copied from
/// another box (a clone's) still has that box's ids, which [`IDS_FILE`] names: they are moved
/// into this box's before anything of the box runs. A move cut short is finished at the next
/// boot: box ranges are disjoint, and the file is rewritten last.
fn own_files(disk: &BoxDisk) -> Result<()> {
    let marker = disk.mount_point.join(IDS_FILE);
    let recorded = std::fs::read_to_string(&marker).ok().and_then(|text| text.trim().parse::<u32>().ok());
    if recorded == Some(disk.owner) {
        return Ok(());
    }
    // Boxes without a user namespace (owner 0) share the host's ids: nothing moves to or from them.
    if let Some(from) = recorded.filter(|from| *from != 0 && disk.owner != 0) {
        move_owners(&disk.mount_point, IdShift { from, to: disk.owner })?;
    }
    std::fs::write(&marker, disk.owner.to_string()).map_err(|source| sys::SysError { operation: format!("failed to write {}", marker.display()), source })
}

/// Gives every file under `root` whose owner or group is in `shift.from`'s range the same ids
/// in `shift.to`'s, keeping its set-id bits and file capability (which a change of owner
/// clears). Symbolic links are changed themselves, never followed.
fn move_owners(root: &Path, shift: IdShift) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io = |what: &str, path: &Path| {
        let operation = format!("failed to {what} {}", path.display());
        move |source| sys::SysError { operation, source }
    };
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).map_err(io("read", &path))?;
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(io("read", &path))? {
                pending.push(entry.map_err(io("read", &path))?.path());
            }
        }
        let (uid, gid) = (shift.apply(metadata.uid()), shift.apply(metadata.gid()));
        if (uid, gid) == (metadata.uid(), metadata.gid()) {
            continue;
        }
        let capability = if metadata.is_file() { file_capability(&path) } else { None };
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io("change the owner of", &path))?;
        if !metadata.is_symlink() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(metadata.mode() & 0o7777)).map_err(io("change the mode of", &path))?;
        }
        if let Some(mut value) = capability {
            shift.apply_to_capability(&mut value);
            let name = sys::cstring(&path);
            // SAFETY: setxattr with valid C strings and a buffer of the given length.
            let set = unsafe { libc::setxattr(name.as_ptr(), c"security.capability".as_ptr(), value.as_ptr().cast(), value.len(), 0) };
            check(set, || format!("failed to set the file capability of {}", path.display()))?;
        }
    }
    Ok(())
}

fn file_capability(path: &Path) -> Option<Vec<u8>> {
    let name = sys::cstring(path);
    let mut value = vec![0u8; 64];
    // SAFETY: getxattr into a buffer of the given length.
    let length = unsafe { libc::getxattr(name.as_ptr(), c"security.capability".as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    (length > 0).then(|| {
        value.truncate(length as usize);
        value
    })
}

/// A free loop device backed by `image`, which detaches itself once nothing holds it: its path,
/// and the descriptor that holds it until it is mounted.
fn attach(image: &Path) -> Result<(PathBuf, File)> {
    let io = |what: String| move |source| sys::SysError { operation: what, source };
    let control = File::options().read(true).write(true).open("/dev/loop-control").map_err(io("failed to open /dev/loop-control".to_string()))?;
    let backing = File::options().read(true).write(true).open(image).map_err(io(format!("failed to open the box's disk {}", image.display())))?;
    // Another box may take the free device between the two calls: then ask again (boxes
    // starting together can each lose several such races).
    for _ in 0..1024 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
        let number = check(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) }, || "failed to find a free loop device".to_string())?;
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let device = File::options().read(true).write(true).open(&path).map_err(io(format!("failed to open {}", path.display())))?;
        // SAFETY: zeroed plain-data structs; the kernel reads `config` during the call only.
        let mut config: LoopConfig = unsafe { std::mem::zeroed() };
        config.fd = backing.as_raw_fd() as u32;
        config.info.flags = LO_FLAGS_AUTOCLEAR;
        // SAFETY: LOOP_CONFIGURE reads one LoopConfig from a valid pointer.
        if unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, std::ptr::addr_of!(config)) } == 0 {
            return Ok((path, device));
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EBUSY) {
            return Err(sys::SysError { operation: format!("failed to attach the box's disk to {}", path.display()), source: error });
        }
    }
    Err(sys::SysError { operation: "failed to find a free loop device".to_string(), source: std::io::Error::from_raw_os_error(libc::EBUSY) })
}
