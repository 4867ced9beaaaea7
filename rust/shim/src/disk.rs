//! The box's own filesystem (`ShimConfig::disk`): its image is attached to a free loop device
//! that detaches itself once unmounted (`LO_FLAGS_AUTOCLEAR`), and mounted in the box's mount
//! namespace, so both go when the box's last process does. The overlay's upper and work
//! directories live in it, so what a box writes is bounded by the image's size: past it, the
//! box's own writes fail with ENOSPC, and the host and other boxes are unaffected.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use boxlite_protocol::BoxDisk;

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
    if !upper.exists() {
        mkdir_all(upper)?;
        std::os::unix::fs::chown(upper, Some(disk.owner), Some(disk.owner)).map_err(|source| sys::SysError { operation: format!("failed to give {} to the box's root", upper.display()), source })?;
    }
    mkdir_all(work)
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
