//! Extended attributes and the C paths the calls that read and set them take.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `path` as a C string; a path with a NUL byte is no path.
pub(crate) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

pub(crate) fn check(code: libc::c_int) -> io::Result<()> {
    if code < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The extended attributes of `path` itself (a link's own, never its target's).
pub fn extended_attributes(path: &CString) -> io::Result<Vec<(CString, Vec<u8>)>> {
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
