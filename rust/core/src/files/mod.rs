//! Copying files between the host and a running box (`boxlite_trees::files`, whose rules these
//! are), and the plain tars the REST API streams files in (`staging`).

mod staging;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use boxlite_trees::files::CopyOptions;
pub use staging::{pack_plain, unpack_plain, Staging};

use crate::error::{Error, Result};
use crate::idmap::SubordinateHelper;

/// A failure to `operation` the host's `path`: not found, or a storage error.
pub fn on_host(operation: &str, path: &Path, error: &std::io::Error) -> Error {
    boxlite_trees::files::on_host(operation, path, error).into()
}

/// A host path given to a copy, refused when empty.
pub fn host_path(path: &Path) -> Result<&Path> {
    Ok(boxlite_trees::files::host_path(path)?)
}

/// The name a copied `path` lands under.
pub fn base_name(path: &Path) -> Result<PathBuf> {
    Ok(boxlite_trees::files::base_name(path)?)
}

/// Copies `host_source` into the box whose root is `root` (its init opens it: `Request::Root`).
/// What it creates belongs to the box's root user: host id `box_root` when the box has a user
/// namespace (`None`: the runtime's user, who creates it anyway). `helper`: for an ordinary
/// user's boxes with subordinate ids, the shim that copies in a namespace with them. Blocking.
pub fn copy_in(root: OwnedFd, host_source: &Path, box_destination: &str, options: CopyOptions, box_root: Option<u32>, helper: Option<&SubordinateHelper>) -> Result<()> {
    match helper {
        Some(helper) => helper.copy_in(root, host_source, box_destination, options),
        None => Ok(boxlite_trees::files::copy_in(&root, host_source, box_destination, options, box_root)?),
    }
}

/// Copies `box_source` out of the box whose root is `root` to `host_destination`. Blocking.
pub fn copy_out(root: OwnedFd, box_source: &str, host_destination: &Path, options: CopyOptions, helper: Option<&SubordinateHelper>) -> Result<()> {
    match helper {
        Some(helper) => helper.copy_out(root, box_source, host_destination, options),
        None => Ok(boxlite_trees::files::copy_out(&root, box_source, host_destination, options)?),
    }
}
