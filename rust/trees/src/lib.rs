//! A box's file trees on the host (its writable layer, a snapshot's copy of it, an image layer,
//! its running root): copied ([`copy`]), packed as a layer tar ([`pack`]), and copied into and
//! out of ([`files`]), and removed ([`remove`]) the same way by whoever does it. That
//! is the runtime, or, for an ordinary user's boxes with subordinate ids, whose files the runtime
//! may neither read nor give owners to, the shim in a user namespace with those ids
//! (`boxlite_protocol::subordinate_tasks`).

mod attributes;
pub mod copy;
pub mod files;
pub mod pack;
mod remove;

use std::path::{Path, PathBuf};

pub use attributes::extended_attributes;
pub use copy::{copy, Size};
pub use pack::{append_symlink, pack, BoxIds};
pub use remove::remove;

/// What failed, on which path.
#[derive(Debug)]
pub struct TreeError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl std::fmt::Display for TreeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "failed to {} {}: {}", self.action, self.path.display(), self.source)
    }
}

impl std::error::Error for TreeError {}

/// A [`TreeError`] of `action` on `path`, for `map_err`.
pub(crate) fn failed<'a>(action: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> TreeError + 'a {
    move |source| TreeError { action, path: path.to_path_buf(), source }
}
