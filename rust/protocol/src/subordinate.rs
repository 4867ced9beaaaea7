//! An ordinary user's subordinate ids: how the shim of its runtime maps them, and the tasks it
//! does with files owned by them, which that runtime may not ([`subordinate_tasks`]).

use std::path::PathBuf;

use crate::IdMap;

/// The shim's tasks for an ordinary user's runtime whose boxes have its subordinate ids, whose
/// files that runtime may neither give owners to nor always read or remove. Each is the shim's
/// first argument, followed by [`SubordinateIds::ARGUMENT`] and paths; the shim becomes root of
/// a user namespace with those ids, does the task there, and exits 0 if it did, else says why on
/// stderr, in one line that `boxlite_trees::files::FileError::from_line` reads.
pub mod subordinate_tasks {
    /// Removes the tree at the path. A tree already gone is no error.
    pub const REMOVE_TREE: &str = "--remove-tree";
    /// Gives the files of the layer directory at the path the owners of the
    /// [`Ownership`](super::Ownership) records on stdin.
    pub const GIVE_OWNERS: &str = "--give-owners";
    /// Copies the tree at the first path to the second, which must not exist, exactly
    /// (`boxlite_trees::copy`); prints `<content bytes> <allocated bytes>` of the copy.
    pub const COPY_TREE: &str = "--copy-tree";
    /// Writes the tree at the path to stdout as a layer tar (`boxlite_trees::pack`), owners as
    /// the box sees them.
    pub const PACK_TREE: &str = "--pack-tree";
    /// Copies the host path into the running box whose root directory is the shim's stdin
    /// (`boxlite_trees::files::copy_in`), to the box path after it, with the
    /// `boxlite_trees::files::CopyOptions` argument last.
    pub const COPY_IN: &str = "--copy-in";
    /// Copies the box path out of the running box whose root directory is the shim's stdin
    /// (`boxlite_trees::files::copy_out`), to the host path after it, with the options last.
    pub const COPY_OUT: &str = "--copy-out";
    pub const ALL: [&str; 6] = [REMOVE_TREE, GIVE_OWNERS, COPY_TREE, PACK_TREE, COPY_IN, COPY_OUT];
}

/// The owner a file of a layer gets ([`subordinate_tasks::GIVE_OWNERS`]), in box ids, and its mode again
/// where a change of owner clears set-id bits (`None`: the mode stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// Relative to the layer's directory, reached through real directories only.
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub mode: Option<u32>,
}

impl Ownership {
    /// Appends the record `<uid> <gid> <mode, or -> <path>\0` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mode = self.mode.map_or_else(|| "-".to_string(), |mode| format!("{mode:o}"));
        out.extend_from_slice(format!("{} {} {mode} ", self.uid, self.gid).as_bytes());
        out.extend_from_slice(self.path.as_os_str().as_encoded_bytes());
        out.push(0);
    }

    /// The records of `bytes`, as [`Ownership::encode_into`] wrote them; `None` if one is not.
    pub fn decode_all(bytes: &[u8]) -> Option<Vec<Self>> {
        use std::os::unix::ffi::OsStrExt;
        let records = bytes.strip_suffix(&[0]).map_or(Vec::new(), |records| records.split(|byte| *byte == 0).collect());
        records
            .into_iter()
            .map(|record| {
                let mut fields = record.splitn(4, |byte| *byte == b' ');
                let mut number = |radix| fields.next().and_then(|field| u32::from_str_radix(std::str::from_utf8(field).ok()?, radix).ok());
                let (uid, gid) = (number(10)?, number(10)?);
                let mode = match fields.next()? {
                    b"-" => None,
                    field => Some(u32::from_str_radix(std::str::from_utf8(field).ok()?, 8).ok()?),
                };
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(fields.next().filter(|path| !path.is_empty())?));
                Some(Self { path, uid, gid, mode })
            })
            .collect()
    }
}

/// An ordinary user's subordinate ids (its lines of /etc/subuid and /etc/subgid), which the
/// setuid helpers `newuidmap` and `newgidmap` map into the user namespace the spawner of a
/// [`crate::ROOTLESS_ARGUMENT`] runtime makes for its shims (and a shim run for one of the
/// [`subordinate_tasks`] for itself): box id 0 is the user, box ids `1..=count` are host ids
/// `uid..uid + count` and `gid..gid + count`. Boxes then have several users, as they have for
/// root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubordinateIds {
    pub uid: u32,
    pub gid: u32,
    pub count: u32,
}

impl SubordinateIds {
    /// The shim's argument (after [`crate::ROOTLESS_ARGUMENT`]) that names them: `PREFIX<uid>:<gid>:<count>`.
    pub const ARGUMENT: &str = "--subordinate-ids=";
    /// The setuid helpers that map them, looked for on `PATH` and in these directories.
    pub const MAPPERS: [&str; 2] = ["newuidmap", "newgidmap"];
    const MAPPER_DIRS: [&str; 4] = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"];

    pub fn argument(self) -> String {
        format!("{}{}:{}:{}", Self::ARGUMENT, self.uid, self.gid, self.count)
    }

    /// The ids an argument made by [`SubordinateIds::argument`] names.
    pub fn parse(argument: &str) -> Option<Self> {
        let mut numbers = argument.strip_prefix(Self::ARGUMENT)?.split(':').map(|number| number.parse::<u32>().ok());
        let ids = Self { uid: numbers.next()??, gid: numbers.next()??, count: numbers.next()?? };
        (numbers.next().is_none() && ids.count > 0 && ids.count < IdMap::BOX_IDS).then_some(ids)
    }

    /// The ids of boxes with them: box ids `0..=count`, the ids of the runtime's namespace.
    pub const fn id_map(self) -> IdMap {
        IdMap { host_base: 0, size: 1 + self.count }
    }

    /// Where `newuidmap` or `newgidmap` (`name`) is, if installed.
    pub fn mapper(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(Self::MAPPER_DIRS.iter().map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_absolute() && candidate.is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_records_travel_whole() {
        let owners = vec![
            Ownership { path: PathBuf::from("home/app"), uid: 1000, gid: 1000, mode: None },
            Ownership { path: PathBuf::from("usr/bin/with space and\nnewline"), uid: 0, gid: 50, mode: Some(0o4755) },
        ];
        let mut bytes = Vec::new();
        owners.iter().for_each(|owner| owner.encode_into(&mut bytes));
        assert_eq!(Ownership::decode_all(&bytes), Some(owners));
        assert_eq!(Ownership::decode_all(b""), Some(Vec::new()));
        assert_eq!(Ownership::decode_all(b"1 2 - \0"), None, "a record names a path");
        assert_eq!(Ownership::decode_all(b"1 x - a\0"), None);
    }
}
