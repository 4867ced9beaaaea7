//! Path resolution inside a running box's root, from the host, safely.
//!
//! The box's root is a descriptor its init hands over (`boxlite_protocol::Request::Root`), and
//! every path below it is opened with `openat2(RESOLVE_IN_ROOT)`: absolute symlinks and `..`
//! are resolved against the box's root, never the host's, so a symlink planted in the box
//! cannot make a copy read or write host files. Final components are opened with `O_NOFOLLOW` unless the caller follows links
//! on purpose.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use boxlite_protocol::resolve;

pub fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `openat2(root, path, flags, mode)` with `path` resolved inside `root`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let relative = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
    let path = c_path(relative)?;
    boxlite_protocol::openat2(root, &path, flags, mode, resolve::IN_ROOT | resolve::NO_MAGICLINKS)
}

/// fstatat(dir, name, AT_SYMLINK_NOFOLLOW); `None` when nothing is there.
pub fn stat_at(dir: BorrowedFd<'_>, name: &Path) -> io::Result<Option<libc::stat>> {
    let name = c_path(name)?;
    // SAFETY: fstatat fills a zeroed stat struct we own.
    unsafe {
        let mut status: libc::stat = std::mem::zeroed();
        if libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut status, libc::AT_SYMLINK_NOFOLLOW) < 0 {
            let error = io::Error::last_os_error();
            return if error.kind() == io::ErrorKind::NotFound { Ok(None) } else { Err(error) };
        }
        Ok(Some(status))
    }
}

pub fn is_dir(status: &libc::stat) -> bool {
    status.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_symlink(status: &libc::stat) -> bool {
    status.st_mode & libc::S_IFMT == libc::S_IFLNK
}

pub fn is_regular(status: &libc::stat) -> bool {
    status.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn check(code: libc::c_int) -> io::Result<()> {
    if code < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn mkdir_at(dir: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<()> {
    let name = c_path(name)?;
    // SAFETY: mkdirat on a valid C string, relative to a directory we hold.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })
}

pub fn unlink_at(dir: BorrowedFd<'_>, name: &Path, directory: bool) -> io::Result<()> {
    let name = c_path(name)?;
    let flags = if directory { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: unlinkat on a valid C string, relative to a directory we hold.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })
}

pub fn symlink_at(target: &Path, dir: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    let (target, name) = (c_path(target)?, c_path(name)?);
    // SAFETY: symlinkat on valid C strings; it never follows anything.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
}

pub fn read_link_at(dir: BorrowedFd<'_>, name: &Path) -> io::Result<std::path::PathBuf> {
    let name = c_path(name)?;
    let mut buffer = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat writes at most buffer.len() bytes into our buffer.
    let length = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) };
    if length < 0 {
        return Err(io::Error::last_os_error());
    }
    buffer.truncate(length as usize);
    Ok(std::path::PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(buffer)))
}

/// Opens `name` in `dir` without following a symlink there.
pub fn open_at(dir: BorrowedFd<'_>, name: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let name = c_path(name)?;
    // SAFETY: openat on a valid C string; the descriptor is owned from here on.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
