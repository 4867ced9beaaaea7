//! Thin, checked wrappers over the raw syscalls the jail and the init use. Every error names the
//! operation and the path or value it was applied to, so the message that reaches the user says
//! what failed, not only `EPERM`.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A failed syscall: what was attempted, on what, and the OS error.
#[derive(Debug)]
pub struct SysError {
    pub operation: String,
    pub source: io::Error,
}

impl fmt::Display for SysError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.operation, self.source)
    }
}

impl std::error::Error for SysError {}

pub type Result<T> = std::result::Result<T, SysError>;

pub fn error(operation: impl Into<String>) -> SysError {
    SysError { operation: operation.into(), source: io::Error::last_os_error() }
}

/// Turns a C-style return code into a Result, describing the operation lazily.
pub fn check(code: libc::c_int, operation: impl FnOnce() -> String) -> Result<libc::c_int> {
    if code < 0 {
        Err(error(operation()))
    } else {
        Ok(code)
    }
}

pub fn cstring(path: impl AsRef<OsStr>) -> CString {
    // Paths come from our own config or the box's files; an interior NUL cannot be expressed in
    // a path, so mapping it to an empty string only makes the following syscall fail cleanly.
    CString::new(path.as_ref().as_bytes()).unwrap_or_default()
}

pub fn mount(source: Option<&str>, target: &Path, fstype: Option<&str>, flags: libc::c_ulong, data: Option<&str>) -> Result<()> {
    let source_c = source.map(cstring);
    let target_c = cstring(target);
    let fstype_c = fstype.map(cstring);
    let data_c = data.map(cstring);
    // SAFETY: every pointer is either null or a NUL-terminated string that lives until the call
    // returns; mount(2) does not keep them.
    let code = unsafe {
        libc::mount(
            source_c.as_ref().map_or(std::ptr::null(), |value| value.as_ptr()),
            target_c.as_ptr(),
            fstype_c.as_ref().map_or(std::ptr::null(), |value| value.as_ptr()),
            flags,
            data_c.as_ref().map_or(std::ptr::null(), |value| value.as_ptr().cast()),
        )
    };
    check(code, || format!("failed to mount {} on {} ({})", source.unwrap_or("none"), target.display(), fstype.unwrap_or("bind")))?;
    Ok(())
}

pub fn mkdir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path)
        .map_err(|source| SysError { operation: format!("failed to create directory {}", path.display()), source })
}

pub fn symlink(target: &str, link: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link)
        .map_err(|source| SysError { operation: format!("failed to link {} -> {target}", link.display()), source })
}

pub fn mknod_char(path: &Path, major: u32, minor: u32) -> Result<()> {
    let path_c = cstring(path);
    // SAFETY: path_c is a valid C string for the duration of the call.
    let code = unsafe { libc::mknod(path_c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(major, minor)) };
    check(code, || format!("failed to create device {}", path.display()))?;
    // The process umask must not narrow the device's permissions.
    // SAFETY: as above.
    let code = unsafe { libc::chmod(path_c.as_ptr(), 0o666) };
    check(code, || format!("failed to chmod {}", path.display()))?;
    Ok(())
}
