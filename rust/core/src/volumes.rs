//! Named volumes: directories the runtime keeps in its home (`volumes/<name>/data`), made and
//! removed by name, mounted into boxes as `volume://<name>`, and outliving the boxes.
//!
//! # Rules
//!
//! 1. A volume's files are stored with the ids image layers are stored with (`idmap` rule 2):
//!    each box mounts it through an idmapped mount into its own range, so boxes with different
//!    ranges share it, each seeing the files as its own ids would make them. Its root belongs to
//!    box root.
//! 2. A volume a box names must exist when the box is created; a volume a box names cannot be
//!    removed while that box exists.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::idmap::IdMap;

/// What `volume://` names.
pub const SCHEME: &str = "volume://";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// Where its files are on the host.
    pub path: PathBuf,
}

/// A volume name: 1 to 64 of letters, digits, `_`, `.` and `-`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().next().is_some_and(|first| first.is_ascii_alphanumeric())
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'));
    if !valid {
        return Err(Error::InvalidArgument(format!("bad volume name {name:?}: 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")));
    }
    Ok(())
}

/// The volumes of one home.
#[derive(Debug)]
pub struct Volumes {
    root: PathBuf,
    /// The ids volumes are stored with (`None`: boxes have no user namespace).
    id_map: Option<IdMap>,
}

impl Volumes {
    pub fn new(root: PathBuf, id_map: Option<IdMap>) -> Self {
        Self { root, id_map }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The directory boxes mount for volume `name`, which must exist.
    pub fn data(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        let data = self.dir(name).join("data");
        if !data.is_dir() {
            return Err(Error::NotFound(format!("volume {name} does not exist; make it with Boxlite.volumes.create({name:?})")));
        }
        Ok(data)
    }

    pub fn create(&self, name: &str) -> Result<VolumeInfo> {
        check_name(name)?;
        fs_err::create_dir_all(&self.root)?;
        let dir = self.dir(name);
        let staging = self.root.join(format!(".{name}.{}", rand::random::<u32>()));
        let info = VolumeInfo { name: name.to_string(), created_at: crate::clock::now().0, path: dir.join("data") };
        let made = self.make(&staging, &info).and_then(|()| match std::fs::rename(&staging, &dir) {
            Ok(()) => Ok(()),
            Err(error) if dir.exists() => Err(Error::AlreadyExists(format!("volume {name} already exists ({error})"))),
            Err(error) => Err(Error::storage("create volume", &dir, &error)),
        });
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        made.map(|()| info)
    }

    /// Rule 1: a data directory box root owns, and the record, in `staging`.
    fn make(&self, staging: &Path, info: &VolumeInfo) -> Result<()> {
        let data = staging.join("data");
        fs_err::create_dir_all(&data)?;
        if let Some(owner) = crate::idmap::host_owner(self.id_map, 0) {
            std::os::unix::fs::chown(&data, Some(owner), Some(owner)).map_err(|error| Error::storage("chown", &data, &error))?;
        }
        let record = serde_json::to_vec_pretty(info).map_err(|error| Error::Internal(format!("cannot encode a volume record: {error}")))?;
        fs_err::write(staging.join("volume.json"), record)?;
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<VolumeInfo> {
        check_name(name)?;
        let path = self.dir(name).join("volume.json");
        let bytes = std::fs::read(&path).map_err(|_| Error::NotFound(format!("volume {name} does not exist")))?;
        serde_json::from_slice(&bytes).map_err(|error| Error::Storage(format!("corrupt volume record {}: {error}", path.display())))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<VolumeInfo> {
        let mut volumes: Vec<VolumeInfo> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str().filter(|name| !name.starts_with('.')).map(str::to_string))
            .filter_map(|name| self.get(&name).inspect_err(|error| log::warn!("volume {name} is left out: {error}")).ok())
            .collect();
        volumes.sort_by(|left, right| left.name.cmp(&right.name));
        volumes
    }

    /// Deletes volume `name` and its files; `users` are the boxes that mount it (rule 2).
    pub fn remove(&self, name: &str, users: &[String]) -> Result<()> {
        self.get(name)?;
        if !users.is_empty() {
            return Err(Error::InvalidState(format!("volume {name} is used by box {}; remove the box first", users.join(", "))));
        }
        let dir = self.dir(name);
        let doomed = self.root.join(format!(".{name}.removed.{}", rand::random::<u32>()));
        fs_err::rename(&dir, &doomed)?;
        fs_err::remove_dir_all(&doomed)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        for good in ["cache", "a", "pip-cache_2.x", &"v".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "..", "a b", "ü", &"v".repeat(65)] {
            assert!(matches!(check_name(bad), Err(Error::InvalidArgument(_))), "{bad}");
        }
    }

    #[test]
    fn volumes_are_made_listed_and_removed_by_name() {
        let root = std::env::temp_dir().join(format!("boxlite-volumes-test-{}", std::process::id()));
        let volumes = Volumes::new(root.clone(), None);
        let made = volumes.create("cache").expect("create");
        assert!(made.path.is_dir());
        assert!(matches!(volumes.create("cache"), Err(Error::AlreadyExists(_))));
        assert_eq!(volumes.list(), vec![made.clone()]);
        assert_eq!(volumes.data("cache").expect("data"), made.path);
        assert!(matches!(volumes.remove("cache", &["AbCdEfGhIjKl".to_string()]), Err(Error::InvalidState(_))));
        volumes.remove("cache", &[]).expect("remove");
        assert!(matches!(volumes.data("cache"), Err(Error::NotFound(_))));
        assert!(volumes.list().is_empty());
        std::fs::remove_dir_all(&root).expect("clean up");
    }
}
