//! A tree removed whole: a directory its owner may not search (overlayfs leaves its work
//! directory at mode 0) is opened to its owner when the removal meets it. The tree must be out of every box's reach
//! (in a home's trash, or its box stopped), so nothing in it moves meanwhile.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Removes the file or tree at `path`; nothing there is no error.
pub fn remove(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !metadata.is_dir() {
        return std::fs::remove_file(path);
    }
    match std::fs::remove_dir_all(path) {
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            open_to_owner(path, &metadata)?;
            std::fs::remove_dir_all(path)
        }
        removed => removed,
    }
}

/// Gives the caller's own directories in the tree at `dir` owner access, which removing needs.
fn open_to_owner(dir: &Path, metadata: &std::fs::Metadata) -> io::Result<()> {
    // SAFETY: geteuid cannot fail.
    if metadata.mode() & 0o700 != 0o700 && metadata.uid() == unsafe { libc::geteuid() } {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(metadata.mode() & 0o7777 | 0o700))?;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let child = entry.metadata()?;
        if child.is_dir() {
            open_to_owner(&entry.path(), &child)?;
        }
    }
    Ok(())
}
