//! A box's writable layer taken whole (snapshots, clones): the overlay's upper directory, or
//! the disk image that holds it, copied exactly (a tree as `boxlite_trees::copy` copies it). A
//! copy is made only while no process of the box runs (stopped, or frozen), so nothing in the
//! tree moves under it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use boxlite_protocol::IdShift;
pub use boxlite_trees::Size;

use crate::error::{Error, Result};
use crate::idmap::SubordinateHelper;

/// Where a box's writable layer lives.
#[derive(Debug, Clone)]
pub enum WritableLayer {
    /// The overlay's upper directory, on the home's filesystem.
    Tree(PathBuf),
    /// The box's own disk image, which holds the upper directory (`disk`).
    Disk(PathBuf),
}

impl WritableLayer {
    /// The layer of the box in `dir`.
    pub fn of(dir: &Path, has_disk: bool) -> Self {
        if has_disk { Self::Disk(dir.join("disk.img")) } else { Self::Tree(dir.join("upper")) }
    }

    /// The name the layer's copy takes in a snapshot's directory.
    pub fn copy_name(&self) -> &'static str {
        match self {
            Self::Tree(_) => "upper",
            Self::Disk(_) => "disk.img",
        }
    }

    /// The copy of a layer of this kind kept in `dir` (a snapshot's directory).
    pub fn kept_in(&self, dir: &Path) -> Self {
        let path = dir.join(self.copy_name());
        match self {
            Self::Tree(_) => Self::Tree(path),
            Self::Disk(_) => Self::Disk(path),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Self::Tree(path) | Self::Disk(path) => path,
        }
    }

    /// Copies the layer to `target`, which must not exist. `helper`: for an ordinary user's
    /// boxes with subordinate ids, the shim that copies in a namespace with them.
    pub fn copy_to(&self, target: &Path, helper: Option<&SubordinateHelper>) -> Result<Size> {
        self.copy_shifted(target, None, helper)
    }

    /// Copies the layer to `target` for a box whose ids are `shift.to` where this one's are
    /// `shift.from` (a clone): owners in the one range become the same ids in the other. A
    /// disk is copied as it is: its files say whose ids they have, and the box they boot in
    /// first moves them into its own (the shim's `disk`).
    pub fn copy_shifted(&self, target: &Path, shift: Option<IdShift>, helper: Option<&SubordinateHelper>) -> Result<Size> {
        match (self, helper) {
            // An ordinary user's boxes share its ids: there is no shift.
            (Self::Tree(source), Some(helper)) => helper.copy_tree(source, target),
            (Self::Tree(source), None) => Ok(boxlite_trees::copy(source, target, shift)?),
            (Self::Disk(source), _) => {
                super::disk::copy_sparse(source, target)?;
                let metadata = std::fs::metadata(target).map_err(Error::storage_at("read", target))?;
                Ok(Size { content_bytes: metadata.len(), allocated_bytes: metadata.blocks() * 512 })
            }
        }
    }
}

/// The shift between two boxes' ids, if their files need one.
pub fn shift_between(source: Option<crate::idmap::IdMap>, target: Option<crate::idmap::IdMap>) -> Option<IdShift> {
    let (source, target) = (crate::idmap::host_owner(source, 0)?, crate::idmap::host_owner(target, 0)?);
    (source != target).then_some(IdShift { from: source, to: target })
}

pub(super) fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Storage(format!("a path with a NUL byte: {}", path.display())))
}
