//! A directory in overlayfs form (a box's upper layer, or an unpacked image layer) written as
//! an OCI layer tar: the inverse of the image unpacker, which reads it back.
//!
//! # Rules
//!
//! 1. overlayfs whiteouts (0/0 character devices) become `.wh.NAME` entries; an opaque
//!    directory (`trusted.overlay.opaque` or `user.overlay.opaque` set to `y`) is followed by a
//!    `.wh..wh..opq` entry.
//! 2. Owners are written as the box sees them ([`BoxIds`]): the host ids of the box's range
//!    become 0..65535, and ids outside it the box's `nobody`.
//! 3. The later names of a file with several links are link entries to its first name.
//! 4. Of the extended attributes, `user.*` but `user.overlay.*` travel (PAX
//!    `SCHILY.xattr.*`): the ones the unpacker applies. Modes (set-id bits included), and
//!    modification times travel.
//! 5. Symbolic links are never followed. Sockets and device nodes other than whiteouts are
//!    left out: a socket is no file to carry, and no box can make a device node.
//! 6. The directory does not change while it is packed (the box is stopped or frozen).

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use boxlite_protocol::IdMap;

use crate::attributes::{c_path, extended_attributes};
use crate::{failed, TreeError};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_ATTRIBUTES: [&[u8]; 2] = [b"trusted.overlay.opaque", b"user.overlay.opaque"];
/// The box's `nobody`, for host ids no box id maps to.
const NOBODY: u32 = 65_534;

/// How host owners of a packed directory become the owners the box sees (rule 2).
#[derive(Debug, Clone, Copy)]
pub enum BoxIds {
    /// Host ids are box ids (boxes without a user namespace, or a tree read in the box's own
    /// user namespace).
    Same,
    /// The box's ids `0..size` are host ids `host_base..`.
    Range(IdMap),
    /// An ordinary user's runtime whose boxes have one id: that user (`uid`, `gid`) is box
    /// root. (Boxes with its subordinate ids are packed by the shim, in a namespace where host
    /// owners are box ids: [`BoxIds::Same`].)
    User { uid: u32, gid: u32 },
}

impl BoxIds {
    /// The owners of files kept for boxes with `map` (`None`: no user namespace).
    pub fn of(map: Option<IdMap>) -> Self {
        match map {
            None => Self::Same,
            // SAFETY: geteuid and getegid cannot fail.
            Some(map) if map.is_rootless() => Self::User { uid: unsafe { libc::geteuid() }, gid: unsafe { libc::getegid() } },
            Some(map) => Self::Range(map),
        }
    }

    fn box_uid(self, host: u32) -> u32 {
        match self {
            Self::User { uid, .. } => Self::user_id(host, uid),
            _ => self.alike(host),
        }
    }

    fn box_gid(self, host: u32) -> u32 {
        match self {
            Self::User { gid, .. } => Self::user_id(host, gid),
            _ => self.alike(host),
        }
    }

    /// The box id of host id `host` where box root is `own`, the only id.
    fn user_id(host: u32, own: u32) -> u32 {
        if host == own { 0 } else { NOBODY }
    }

    /// The box id of host id `host`, a uid or a gid: they map alike but for [`BoxIds::User`].
    fn alike(self, host: u32) -> u32 {
        match self {
            Self::Range(map) => host.checked_sub(map.host_base).filter(|id| *id < map.size).unwrap_or(NOBODY),
            _ => host,
        }
    }
}

/// Appends a symbolic link whose target is kept byte for byte (the tar crate's own
/// `append_link` rewrites short targets as paths: `/` becomes `//`).
pub fn append_symlink<W: Write>(builder: &mut tar::Builder<W>, header: &mut tar::Header, name: &Path, target: &Path) -> io::Result<()> {
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    let bytes = target.as_os_str().as_bytes();
    if bytes.len() >= 100 {
        // Too long for the header: written whole as a GNU long-link record, unchanged.
        return builder.append_link(header, name, target);
    }
    header.set_link_name_literal(bytes)?;
    builder.append_data(header, name, io::empty())
}

/// Writes the tree at `root` to `out` as a layer tar (the rules above).
pub fn pack(root: &Path, ids: BoxIds, out: impl Write) -> Result<(), TreeError> {
    let mut packer = Packer { builder: tar::Builder::new(out), ids, linked: HashMap::new() };
    packer.directory_contents(root, Path::new(""))?;
    packer.builder.finish().map_err(failed("write the layer of", root))
}

struct Packer<W: Write> {
    builder: tar::Builder<W>,
    ids: BoxIds,
    /// The first name written of each file with several links, by (device, inode).
    linked: HashMap<(u64, u64), PathBuf>,
}

/// One PAX record: `LENGTH KEY=VALUE\n`, the length counting itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut length = body + 1;
    while (body + length.to_string().len()) != length {
        length = body + length.to_string().len();
    }
    let mut record = format!("{length} ").into_bytes();
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

impl<W: Write> Packer<W> {
    fn directory_contents(&mut self, dir: &Path, relative: &Path) -> Result<(), TreeError> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(failed("read", dir))?
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect::<io::Result<_>>()
            .map_err(failed("read", dir))?;
        names.sort();
        for name in names {
            self.entry(&dir.join(&name), &relative.join(&name))?;
        }
        Ok(())
    }

    fn header(&self, metadata: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(metadata.mode() & 0o7777);
        header.set_uid(u64::from(self.ids.box_uid(metadata.uid())));
        header.set_gid(u64::from(self.ids.box_gid(metadata.gid())));
        header.set_mtime(u64::try_from(metadata.mtime()).unwrap_or(0));
        header.set_size(0);
        header
    }

    /// Rule 4: the attributes that travel, as a PAX header before the entry.
    fn attributes(&mut self, path: &Path) -> Result<bool, TreeError> {
        let mut opaque = false;
        let mut records = Vec::new();
        for (name, value) in extended_attributes(&c_path(path).map_err(failed("read", path))?).map_err(failed("read the attributes of", path))? {
            let name = name.as_bytes();
            if OPAQUE_ATTRIBUTES.contains(&name) {
                opaque |= value == b"y";
            } else if name.starts_with(b"user.") && !name.starts_with(b"user.overlay.") {
                records.extend(pax_record(&[b"SCHILY.xattr.".as_slice(), name].concat(), &value));
            }
        }
        if !records.is_empty() {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::XHeader);
            header.set_path("././@PaxHeader").map_err(failed("write the attributes of", path))?;
            header.set_mode(0o644);
            header.set_size(records.len() as u64);
            header.set_cksum();
            self.builder.append(&header, records.as_slice()).map_err(failed("write the attributes of", path))?;
        }
        Ok(opaque)
    }

    fn entry(&mut self, path: &Path, relative: &Path) -> Result<(), TreeError> {
        let written = |error: io::Error| failed("pack", path)(error);
        let metadata = std::fs::symlink_metadata(path).map_err(failed("read", path))?;
        let kind = metadata.file_type();
        if kind.is_char_device() && metadata.rdev() == 0 {
            let name = [WHITEOUT_PREFIX.as_bytes(), relative.file_name().map(OsStrExt::as_bytes).unwrap_or_default()].concat();
            let whiteout = relative.with_file_name(std::ffi::OsStr::from_bytes(&name));
            let mut header = self.header(&metadata, tar::EntryType::Regular);
            return self.builder.append_data(&mut header, whiteout, io::empty()).map_err(written);
        }
        if kind.is_dir() {
            let opaque = self.attributes(path)?;
            let mut header = self.header(&metadata, tar::EntryType::Directory);
            self.builder.append_data(&mut header, relative, io::empty()).map_err(written)?;
            if opaque {
                let mut marker = self.header(&metadata, tar::EntryType::Regular);
                marker.set_mode(0o644);
                self.builder.append_data(&mut marker, relative.join(OPAQUE_MARKER), io::empty()).map_err(written)?;
            }
            return self.directory_contents(path, relative);
        }
        if kind.is_file() {
            if metadata.nlink() > 1 {
                let key = (metadata.dev(), metadata.ino());
                if let Some(first) = self.linked.get(&key) {
                    let mut header = self.header(&metadata, tar::EntryType::Link);
                    let first = first.clone();
                    return self.builder.append_link(&mut header, relative, first).map_err(written);
                }
                self.linked.insert(key, relative.to_path_buf());
            }
            self.attributes(path)?;
            let file = std::fs::File::open(path).map_err(failed("open", path))?;
            let mut header = self.header(&metadata, tar::EntryType::Regular);
            header.set_size(metadata.len());
            return self.builder.append_data(&mut header, relative, file).map_err(written);
        }
        if kind.is_symlink() {
            let target = std::fs::read_link(path).map_err(failed("read", path))?;
            let mut header = self.header(&metadata, tar::EntryType::Symlink);
            return append_symlink(&mut self.builder, &mut header, relative, &target).map_err(written);
        }
        if kind.is_fifo() {
            self.attributes(path)?;
            let mut header = self.header(&metadata, tar::EntryType::Fifo);
            return self.builder.append_data(&mut header, relative, io::empty()).map_err(written);
        }
        // Rule 5: a socket or a device node.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        for value_length in [0, 1, 5, 6, 7, 90, 95, 96, 97, 98, 99, 100, 995, 996, 997, 998, 999, 1000] {
            let record = pax_record(b"SCHILY.xattr.user.k", &vec![b'v'; value_length]);
            let (length, _) = std::str::from_utf8(&record).expect("text").split_once(' ').expect("a length");
            assert_eq!(length.parse::<usize>().expect("a number"), record.len(), "value of {value_length} bytes");
        }
    }

    #[test]
    fn owners_are_written_as_the_box_sees_them() {
        let map = IdMap { host_base: 0x7001_0000, size: 65_536 };
        assert_eq!(BoxIds::Range(map).alike(0x7001_0000), 0);
        assert_eq!(BoxIds::Range(map).alike(0x7001_03e8), 1000);
        assert_eq!(BoxIds::Range(map).alike(0), NOBODY);
        assert_eq!(BoxIds::Range(map).alike(0x7002_0000), NOBODY);
        let user = BoxIds::User { uid: 1000, gid: 1001 };
        assert_eq!((user.box_uid(1000), user.box_gid(1001)), (0, 0));
        assert_eq!((user.box_uid(1001), user.box_gid(1000)), (NOBODY, NOBODY));
        assert_eq!(user.box_uid(0), NOBODY);
        assert_eq!(BoxIds::Same.box_uid(42), 42);
    }
}
