//! Images: where a box's read-only layers come from.
//!
//! Sources: OCI registries (through [`ImageStore`], which keeps pulled images in the home's
//! content-addressed store), local OCI image layouts (`rootfs_path`), and the built-in
//! `host://` image (a skeleton root with the host's `/usr` bound read-only: always there, needs
//! no network). All end as a [`PreparedImage`].

mod digest;
mod host;
mod layout;
mod registry;
mod unpack;

pub(crate) use digest::{sha256_hex, HashingReader};
pub(crate) use unpack::{give_owners, unpack_layer, unpack_tar, LayerStore};
pub use registry::{Credentials, ImageRecord, ImageStore, PullProgress, RegistryConfig};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::home::Home;

/// The reference of the built-in image made from the host's system directories.
pub const HOST_IMAGE: &str = "host://";

/// What a box needs from its image's config (the OCI `config` object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// The parts of an OCI image config blob boxes use (`{"config": {"Env": ..., ...}}`).
#[derive(Debug, Default, Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<RuntimeConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuntimeConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

impl ConfigBlob {
    fn image_config(self) -> ImageConfig {
        let runtime = self.config.unwrap_or_default();
        ImageConfig {
            env: runtime.env.unwrap_or_default(),
            entrypoint: runtime.entrypoint,
            cmd: runtime.cmd,
            working_dir: runtime.working_dir.filter(|dir| !dir.is_empty()),
            user: runtime.user.filter(|user| !user.is_empty()),
        }
    }
}

/// An image ready to be mounted: its unpacked layers and its config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedImage {
    /// Layer directories, top-most first (overlayfs `lowerdir` order).
    pub lower_dirs: Vec<PathBuf>,
    /// Host directories bound read-only into the box: (host path, box path).
    pub read_only_binds: Vec<(PathBuf, PathBuf)>,
    pub config: ImageConfig,
    /// `sha256:` digest of the image's config, or `host` for the host image.
    pub id: String,
}

/// Where a box's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Host,
    Layout(PathBuf),
    Registry(String),
}

impl ImageSource {
    pub fn from_options(image: Option<&str>, rootfs_path: Option<&str>) -> Self {
        match (rootfs_path.filter(|path| !path.is_empty()), image.filter(|image| !image.is_empty())) {
            (Some(path), _) => Self::Layout(PathBuf::from(path)),
            (None, Some(HOST_IMAGE) | None) => Self::Host,
            (None, Some(reference)) => Self::Registry(reference.to_string()),
        }
    }

    /// What `BoxInfo.image` shows.
    pub fn display(&self) -> String {
        match self {
            Self::Host => HOST_IMAGE.to_string(),
            Self::Layout(path) => path.display().to_string(),
            Self::Registry(reference) => reference.clone(),
        }
    }
}

/// Makes a local image's layers available under `home` (unpacking what is not cached yet).
/// Blocking: call it from a blocking-capable context. Registry images go through
/// [`ImageStore::ensure`].
pub fn prepare_local(home: &Home, source: &ImageSource) -> Result<PreparedImage> {
    match source {
        ImageSource::Host => host::prepare(home),
        ImageSource::Layout(path) => layout::prepare(home, path),
        ImageSource::Registry(reference) => Err(Error::Internal(format!("{reference} is a registry image, not a local one"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_follow_the_options() {
        assert_eq!(ImageSource::from_options(None, None), ImageSource::Host);
        assert_eq!(ImageSource::from_options(Some("host://"), None), ImageSource::Host);
        assert_eq!(ImageSource::from_options(Some("alpine"), Some("/x")), ImageSource::Layout("/x".into()));
        assert_eq!(ImageSource::from_options(Some("alpine"), Some("")), ImageSource::Registry("alpine".into()));
    }
}
