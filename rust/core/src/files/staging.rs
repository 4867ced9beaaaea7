//! What moving files through a tar stream needs on the host, on either side of BoxLite's REST
//! API: a private staging directory, the packing of a host tree as it is (links kept as
//! links, their targets byte for byte), and the unpacking of a tar that came over the network
//! under the rules an upload gets.

use boxlite_trees::append_symlink;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A new directory `prefix-<random>` in `parent` that only this user may enter (what lands in
/// it may hold set-id files), removed with everything in it when dropped.
pub struct Staging(PathBuf);

impl Staging {
    pub fn new(parent: &Path, prefix: &str) -> Result<Self> {
        let path = parent.join(format!("{prefix}-{:016x}", rand::random::<u64>()));
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(|error| Error::storage("create", &path, &error))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Staging {
    /// What was unpacked may hold directories their owner cannot write (mode 0500): those are
    /// opened up, then the removal is tried again.
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.0).is_ok() {
            return;
        }
        let mut pending = vec![self.0.clone()];
        while let Some(directory) = pending.pop() {
            let _ = std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o700));
            let entries = std::fs::read_dir(&directory).into_iter().flatten().flatten();
            pending.extend(entries.filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir())).map(|entry| entry.path()));
        }
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            log::warn!("failed to remove the staging directory {}: {error}", self.0.display());
        }
    }
}

/// Writes `source` into `into` as a tar entry named `name` (a directory with everything in it;
/// `.` for a directory's entries alone): directories, regular files (sparse ones stay sparse)
/// and symbolic links, never followed. Anything else (a device, a fifo, a socket) is refused.
pub fn pack_plain<W: Write>(source: &Path, name: &Path, into: W) -> std::io::Result<W> {
    let mut builder = tar::Builder::new(into);
    builder.follow_symlinks(false);
    let mut pending = vec![(source.to_path_buf(), name.to_path_buf())];
    while let Some((path, name)) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path)?;
        let kind = metadata.file_type();
        if kind.is_symlink() {
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&metadata, tar::HeaderMode::Complete);
            append_symlink(&mut builder, &mut header, &name, &std::fs::read_link(&path)?)?;
        } else if kind.is_dir() {
            builder.append_dir(&name, &path)?;
            for entry in std::fs::read_dir(&path)? {
                let entry = entry?;
                pending.push((entry.path(), name.join(entry.file_name())));
            }
        } else if kind.is_file() {
            builder.append_file(&name, &mut std::fs::File::open(&path)?)?;
        } else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{} is a special file, which is not copied", path.display())));
        }
    }
    builder.into_inner()
}

/// Unpacks `archive` into the new directory `into`: files (sparse ones too), directories and symbolic links,
/// each inside it, with their modes and times. An entry that would land outside it, a hard
/// link, or a device node makes the whole unpacking fail; the message (without `into`'s path)
/// says which. A failure to make `into` is a storage error.
pub fn unpack_plain(archive: impl Read, into: &Path) -> Result<std::result::Result<(), String>> {
    std::fs::create_dir(into).map_err(|error| Error::storage("create", into, &error))?;
    let shown = into.display().to_string();
    let bad = |what: String| Ok(Err(what.replace(&shown, "the destination")));
    let mut reader = tar::Archive::new(archive);
    reader.set_preserve_permissions(true);
    reader.set_preserve_mtime(true);
    reader.set_unpack_xattrs(false);
    let entries = match reader.entries() {
        Ok(entries) => entries,
        Err(error) => return bad(error.to_string()),
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(error) => return bad(error.to_string()),
        };
        let name = entry.path().map(|path| path.display().to_string()).unwrap_or_default();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::GNUSparse | tar::EntryType::Directory | tar::EntryType::Symlink => {}
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName | tar::EntryType::GNULongLink => continue,
            other => return bad(format!("{name}: entries of type {other:?} are not accepted")),
        }
        match entry.unpack_in(into) {
            Ok(true) => {}
            Ok(false) => return bad(format!("{name} would land outside the destination")),
            Err(error) => return bad(format!("{name}: {error}")),
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entry_type: tar::EntryType, name: &str, link: Option<&str>) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_size(0);
        header.set_mode(0o644);
        if let Some(link) = link {
            header.set_link_name(link).expect("link");
        }
        builder.append_data(&mut header, name, std::io::empty()).expect("append");
        builder.into_inner().expect("tar")
    }

    #[test]
    fn only_plain_entries_inside_the_destination_are_unpacked() {
        let staging = Staging::new(&std::env::temp_dir(), "boxlite-test").expect("staging");
        let unpacked = unpack_plain(&tar_with(tar::EntryType::Regular, "a.txt", None)[..], &staging.path().join("ok")).expect("dir");
        assert_eq!(unpacked, Ok(()));
        assert!(staging.path().join("ok/a.txt").is_file());
        let refused = unpack_plain(&tar_with(tar::EntryType::Link, "b", Some("a.txt"))[..], &staging.path().join("link")).expect("dir");
        assert!(refused.is_err_and(|message| message.contains("Link") && !message.contains("boxlite-test")));
        let dropped_path = staging.path().to_path_buf();
        std::fs::set_permissions(staging.path().join("ok"), std::fs::Permissions::from_mode(0o500)).expect("chmod");
        drop(staging);
        assert!(!dropped_path.exists(), "a staging directory goes whole, read-only directories too");
    }

    #[test]
    fn a_packed_tree_unpacks_as_it_was() {
        let staging = Staging::new(&std::env::temp_dir(), "boxlite-test").expect("staging");
        let source = staging.path().join("source");
        std::fs::create_dir_all(source.join("sub")).expect("mkdir");
        std::fs::write(source.join("sub/file"), b"data").expect("write");
        std::os::unix::fs::symlink("/", source.join("to-root")).expect("symlink");
        let long = format!("../{}", "x".repeat(150));
        std::os::unix::fs::symlink(&long, source.join("long")).expect("symlink");
        let packed = pack_plain(&source, Path::new("top"), Vec::new()).expect("pack");
        unpack_plain(&packed[..], &staging.path().join("out")).expect("dir").expect("unpack");
        let out = staging.path().join("out/top");
        assert_eq!(std::fs::read(out.join("sub/file")).expect("read"), b"data");
        assert_eq!(std::fs::read_link(out.join("to-root")).expect("link"), Path::new("/"));
        assert_eq!(std::fs::read_link(out.join("long")).expect("link"), Path::new(&long));
    }
}
