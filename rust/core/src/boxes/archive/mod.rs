//! Archives: a box written to one `.boxlite` file, which another host (or this one) imports
//! as a box of its own.
//!
//! # Format (version 1)
//!
//! A tar file of these members, in this order:
//! - `manifest.json`: the format's name and version, the box's options ([`Portable`]), and its
//!   image ([`ArchivedImage`]) with the sha256 digest and size of each image layer.
//! - `image/<hex>`: the image's layer blobs, bottom first, each named by its digest (as the
//!   registry served it when this host still has the blob, else the unpacked layer packed
//!   again); none for the built-in host image.
//! - `layer.tar`, the box's writable layer as an OCI layer tar (`pack`), or, for a box with a
//!   disk of its own, `disk.img`: the disk image's data as records of (offset, length: two
//!   little-endian u64) then that many bytes, in order; the rest of the image reads as zeros.
//! - `layer.json`: that member's sha256 digest and size ([`LayerSeal`]). It comes after the
//!   layer, which is written straight from the box into the archive, once.
//!
//! # Rules
//!
//! 1. Export takes the box's lifecycle lock while it copies the writable layer, as a snapshot
//!    does (the box stopped, or frozen for the copy: `snapshots` rule 1), after the manifest
//!    and the image, which need no lock, are written. The archive is written in a `.`-named
//!    directory beside its destination, synced, and linked into place whole; an existing file
//!    is never replaced.
//! 2. Import reads the manifest first and refuses what it cannot honour before reading on; it
//!    verifies every member as it reads it (the image's blobs against the manifest's digests,
//!    the layer against its seal), and makes the box as a create does (`boxes` rule 2): a damaged or changed archive, an unknown version or a
//!    refused feature leaves no box, record or directory behind. Layers it adds to the image
//!    store are verified content, kept like pulled layers (a prune removes them once no box
//!    uses them).
//! 3. An imported box is a new box: its own id, the name given (none by default: the source's
//!    could be taken here), its own id range and network; stopped; its files owned as its
//!    source saw them. Its options are checked as a create's are (`BoxOptions::validate`), so
//!    an archive cannot ask for more than a create could. Snapshots stay with the source.
//! 4. `untrusted` also refuses what an archive from a stranger must not bring: host paths
//!    (volumes, but for this home's named ones, which must exist), host ports (published
//!    ports), capabilities beyond the default set, and a disk image (a filesystem this host's
//!    kernel would mount). Whatever the trust, a layer's files
//!    land only inside the box, by the image unpacker's rules (no path leaves the layer, no
//!    device node but whiteouts, no `trusted.*` or `security.*` attribute).


use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layer::WritableLayer;
use super::*;
use crate::idmap::SubordinateHelper;
use crate::image::{give_owners, sha256_hex, unpack_layer, unpack_tar, HashingReader, ImageConfig, LayerStore, PreparedImage};
use boxlite_trees::{pack, BoxIds};

mod import;
use import::import;

const FORMAT: &str = "boxlite-box-archive";
const VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
const TREE_MEMBER: &str = "layer.tar";
const DISK_MEMBER: &str = "disk.img";
const SEAL_MEMBER: &str = "layer.json";
/// A manifest is small; a larger one is not read (nor a seal past a page).
const MANIFEST_LIMIT: u64 = 1 << 20;
const SEAL_LIMIT: u64 = 4096;

/// What an archive says of the box: its options, as its record keeps them, without what
/// belongs to its host (id, state, times, id range, image paths).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Portable {
    source_id: String,
    source_name: Option<String>,
    image: String,
    cpus: u8,
    memory_mib: u32,
    remove_on_stop: bool,
    detach: bool,
    working_dir: Option<String>,
    env: Vec<(String, String)>,
    user: Option<String>,
    main: Option<Vec<String>>,
    main_chosen: bool,
    #[serde(default)]
    main_tty: bool,
    volumes: Vec<Volume>,
    capabilities: Vec<u32>,
    pids_limit: u64,
    process_limits: ProcessLimits,
    network: Option<Vec<String>>,
    ports: Vec<crate::network::PortSpec>,
    health_check: Option<HealthCheck>,
    disk_size_gb: Option<u64>,
}

impl Portable {
    fn of(record: &BoxRecord) -> Self {
        // Every field is named, so a field added to the record is a decision here.
        let BoxRecord {
            id,
            name,
            image,
            status: _,
            created_at: _,
            created_at_nanos: _,
            started_at: _,
            init_pid: _,
            cpus,
            memory_mib,
            remove_on_stop,
            detach,
            working_dir,
            env,
            user,
            prepared: _,
            main,
            main_chosen,
            main_tty,
            exit_code: _,
            volumes,
            capabilities,
            pids_limit,
            process_limits,
            network,
            ports,
            // Where a run published them: the imported box's first start picks its own.
            published_host_ports: _,
            id_map: _,
            subordinate_ids: _,
            health_check,
            disk_size_gb,
            // Secrets stay on the host that was given them: an archive is a file anyone may
            // be handed. The imported box keeps their placeholders, which nothing replaces.
            secrets_authority: _,
        } = record.clone();
        Self {
            source_id: id,
            source_name: name,
            image,
            cpus,
            memory_mib,
            remove_on_stop,
            detach,
            working_dir,
            env,
            user,
            main,
            main_chosen,
            main_tty,
            volumes,
            capabilities,
            pids_limit,
            process_limits,
            network,
            ports,
            health_check,
            disk_size_gb,
        }
    }

    /// The options a create of this box would have taken, for `BoxOptions::validate` (rule 3).
    fn as_options(&self) -> Result<BoxOptions> {
        let capability_name = |number: &u32| {
            boxlite_protocol::CAPABILITIES
                .iter()
                .find(|(_, known)| known == number)
                .map(|(name, _)| (*name).to_string())
                .ok_or_else(|| Error::InvalidArgument(format!("the archive's box keeps an unknown capability ({number})")))
        };
        Ok(BoxOptions {
            cpus: Some(self.cpus),
            memory_mib: Some(self.memory_mib),
            working_dir: self.working_dir.clone(),
            env: self.env.clone(),
            auto_remove: Some(self.remove_on_stop),
            detach: Some(self.detach),
            user: self.user.clone(),
            volumes: self.volumes.clone(),
            capabilities_drop: vec!["ALL".to_string()],
            capabilities_add: self.capabilities.iter().map(capability_name).collect::<Result<_>>()?,
            max_processes: Some(self.pids_limit),
            process_limits: self.process_limits.clone(),
            health_check: self.health_check,
            disk_size_gb: self.disk_size_gb,
            network: self.network.clone(),
            ports: self.ports.clone(),
            ..BoxOptions::default()
        })
    }

    /// Rule 4: what an untrusted archive may not bring.
    fn refused_untrusted(&self) -> Option<String> {
        let default: Vec<u32> = boxlite_protocol::DEFAULT_CAPABILITIES.iter().filter_map(|name| boxlite_protocol::capability_number(name)).collect();
        if self.volumes.iter().any(|volume| volume.named.is_none()) {
            Some("volumes of host paths".to_string())
        } else if !self.ports.is_empty() {
            Some("published ports (host ports)".to_string())
        } else if let Some(extra) = self.capabilities.iter().find(|number| !default.contains(number)) {
            Some(format!("a capability beyond the default set ({extra})"))
        } else if self.disk_size_gb.is_some() {
            Some("a disk image (a filesystem this host's kernel would mount)".to_string())
        } else {
            None
        }
    }
}

/// An image layer's blob in the archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Member {
    name: String,
    /// `sha256:<hex>` of the member's bytes.
    digest: String,
    size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ArchivedImage {
    /// The built-in image: every host has it.
    Host,
    /// Layers, bottom first, with the image's id (its config's digest) and config.
    Layers { id: String, config: ImageConfig, layers: Vec<Member> },
}

/// The kind of the box's writable layer, whose member follows the image's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LayerKind {
    Tree,
    Disk,
}

impl LayerKind {
    fn member(self) -> &'static str {
        match self {
            Self::Tree => TREE_MEMBER,
            Self::Disk => DISK_MEMBER,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    version: u32,
    /// RFC 3339.
    exported_at: String,
    #[serde(rename = "box")]
    options: Portable,
    image: ArchivedImage,
    layer: LayerKind,
}

/// What the layer member's bytes were: written after it, as it is streamed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerSeal {
    digest: String,
    size: u64,
}

/// The first fields of a manifest, read alone so a newer format is told apart from a bad one.
#[derive(Deserialize)]
struct Version {
    format: String,
    version: u32,
}

fn damaged(archive: &Path, what: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{} is not a usable box archive: {what}", archive.display()))
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let count = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..count]);
        self.written += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where an export writes: `dest`, or `dest/<name or id>.boxlite` when `dest` is a directory.
fn destination(dest: &Path, record: &BoxRecord) -> Result<PathBuf> {
    export_destination(dest, record.name.as_deref().unwrap_or(&record.id))
}

/// Where an export of the box named `name_or_id` to `dest` lands: inside `dest`, as
/// `<name or id>.boxlite`, when `dest` is a directory; else `dest` itself. Never a file that
/// exists (rule 1).
pub fn export_destination(dest: &Path, name_or_id: &str) -> Result<PathBuf> {
    if dest.as_os_str().is_empty() {
        return Err(Error::InvalidArgument("the export's destination must not be empty".to_string()));
    }
    let target = if dest.is_dir() { dest.join(format!("{name_or_id}.boxlite")) } else { dest.to_path_buf() };
    if std::fs::symlink_metadata(&target).is_ok() {
        return Err(Error::AlreadyExists(format!("{} exists: an export never replaces a file", target.display())));
    }
    match target.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        Some(parent) if !parent.is_dir() => Err(Error::NotFound(format!("the directory {} to export into does not exist", parent.display()))),
        _ => Ok(target),
    }
}

/// Where an export to `target` is written before it is linked into place: beside it, under a
/// `.`-named name of its own (not derived from the target's, which may be as long as a name can be).
pub fn export_partial(target: &Path) -> PathBuf {
    target.with_file_name(format!(".boxlite-export.{:016x}.partial", rand::random::<u64>()))
}

/// The blob of the image layer unpacked in `dir` (named by its digest): the one this home
/// pulled or the layout the box was made from holds, else the layer packed again into
/// `staging`. Its member.
fn layer_blob(home: &Home, record: &BoxRecord, dir: &Path, staging: &Path) -> Result<(PathBuf, Member)> {
    let hex = dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let layout = Path::new(&record.image).is_absolute().then(|| Path::new(&record.image).join("blobs/sha256").join(&hex));
    if let Some(blob) = std::iter::once(home.blobs().join(&hex)).chain(layout).find(|blob| blob.is_file()) {
        let size = std::fs::metadata(&blob).map_err(Error::storage_at("read", &blob))?.len();
        return Ok((blob, Member { name: format!("image/{hex}"), digest: format!("sha256:{hex}"), size }));
    }
    let path = staging.join(format!("layer-{hex}"));
    let file = File::options().write(true).create_new(true).open(&path).map_err(Error::storage_at("create", &path))?;
    let mut out = Hashing { inner: BufWriter::with_capacity(1 << 20, file), hasher: Sha256::new(), written: 0 };
    match home.subordinate_helper() {
        Some(helper) => helper.pack_tree(dir, &mut out)?,
        None => pack(dir, BoxIds::of(home.id_map()), &mut out)?,
    }
    out.flush().map_err(Error::storage_at("write", &path))?;
    let digest = format!("sha256:{:x}", out.hasher.finalize());
    let name = format!("image/{}", sha256_hex(&digest).unwrap_or_default());
    Ok((path, Member { name, digest, size: out.written }))
}

/// The box's image as the archive carries it, and the blobs to write.
fn archived_image(home: &Home, record: &BoxRecord, staging: &Path) -> Result<(ArchivedImage, Vec<(PathBuf, Member)>)> {
    let lower_dirs = &record.prepared.lower_dirs;
    if lower_dirs.iter().all(|dir| !dir.starts_with(home.layer_stores())) {
        return Ok((ArchivedImage::Host, Vec::new()));
    }
    let blobs = lower_dirs.iter().rev().map(|dir| layer_blob(home, record, dir, staging)).collect::<Result<Vec<_>>>()?;
    let layers = blobs.iter().map(|(_, member)| member.clone()).collect();
    Ok((ArchivedImage::Layers { id: record.prepared.id.clone(), config: record.prepared.config.clone(), layers }, blobs))
}

type ArchiveWriter = tar::Builder<BufWriter<File>>;

fn member_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(0);
    header
}

fn append_bytes(builder: &mut ArchiveWriter, name: &str, bytes: &[u8], partial: &Path) -> Result<()> {
    builder.append_data(&mut member_header(bytes.len() as u64), name, bytes).map_err(|error| Error::storage("write", partial, &error))
}

/// Starts the archive at `partial` with its manifest and the image's blobs, each checked
/// against its digest as it is copied.
fn begin_archive(partial: &Path, manifest: &Manifest, blobs: &[(PathBuf, Member)]) -> Result<ArchiveWriter> {
    let file = File::options().write(true).create_new(true).open(partial).map_err(Error::storage_at("create", partial))?;
    let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let bytes = serde_json::to_vec_pretty(manifest).map_err(|error| Error::Internal(format!("cannot encode an archive's manifest: {error}")))?;
    append_bytes(&mut builder, MANIFEST, &bytes, partial)?;
    for (path, member) in blobs {
        let file = File::open(path).map_err(Error::storage_at("open", path))?;
        let mut checked = HashingReader::new(BufReader::with_capacity(1 << 20, file));
        builder.append_data(&mut member_header(member.size), &member.name, &mut checked).map_err(Error::storage_at("copy into the archive", path))?;
        let (digest, size) = checked.finish().map_err(Error::storage_at("read", path))?;
        if size != member.size || digest != member.digest {
            return Err(Error::Storage(format!("{} changed or is damaged: it no longer has digest {}", path.display(), member.digest)));
        }
    }
    Ok(builder)
}

/// Writes the box's writable layer into the archive, straight from the box (which does not
/// change meanwhile: rule 1); its seal.
/// `helper`: for an ordinary user's box with subordinate ids, the shim that reads its files.
fn write_layer(builder: &mut ArchiveWriter, layer: &WritableLayer, ids: BoxIds, helper: Option<&SubordinateHelper>) -> Result<LayerSeal> {
    let (name, source) = match layer {
        WritableLayer::Tree(upper) => (TREE_MEMBER, upper),
        WritableLayer::Disk(image) => (DISK_MEMBER, image),
    };
    let failed = |error: io::Error| Error::storage("copy into the archive", source, &error);
    let mut header = member_header(0);
    let mut entry = builder.append_writer(&mut header, name).map_err(failed)?;
    let mut out = Hashing { inner: &mut entry, hasher: Sha256::new(), written: 0 };
    match layer {
        WritableLayer::Tree(upper) => match helper {
            Some(helper) => helper.pack_tree(upper, &mut out)?,
            None => pack(upper, ids, &mut out)?,
        },
        WritableLayer::Disk(image) => write_disk(image, &mut out).map_err(failed)?,
    }
    let seal = LayerSeal { digest: format!("sha256:{:x}", out.hasher.finalize()), size: out.written };
    entry.finish().map_err(failed)?;
    Ok(seal)
}

/// The disk image's data as (offset, length) records, each followed by its bytes.
fn write_disk(image: &Path, out: &mut impl Write) -> io::Result<()> {
    let file = File::open(image)?;
    let size = file.metadata()?.len();
    let mut buffer = vec![0u8; 1 << 20];
    for (offset, length) in super::disk::data_extents(&file, size)? {
        out.write_all(&offset.to_le_bytes())?;
        out.write_all(&length.to_le_bytes())?;
        let mut done = 0;
        while done < length {
            let chunk = usize::try_from(length - done).unwrap_or(usize::MAX).min(buffer.len());
            file.read_exact_at(&mut buffer[..chunk], offset + done)?;
            out.write_all(&buffer[..chunk])?;
            done += chunk as u64;
        }
    }
    Ok(())
}

/// Ends the archive with the layer's seal, writes it out, and links it into place (rule 1).
fn finish_archive(mut builder: ArchiveWriter, seal: &LayerSeal, partial: &Path, target: &Path) -> Result<()> {
    let bytes = serde_json::to_vec(seal).map_err(|error| Error::Internal(format!("cannot encode an archive's seal: {error}")))?;
    append_bytes(&mut builder, SEAL_MEMBER, &bytes, partial)?;
    let written = |error: io::Error| Error::storage("write", partial, &error);
    let mut out = builder.into_inner().map_err(written)?;
    out.flush().map_err(written)?;
    out.get_ref().sync_all().map_err(written)?;
    link_into_place(partial, target)
}

/// Puts the written archive `partial` at `target` (rule 1): a link never replaces a file that
/// appeared meanwhile.
pub fn link_into_place(partial: &Path, target: &Path) -> Result<()> {
    std::fs::hard_link(partial, target).map_err(|error| match error.kind() {
        io::ErrorKind::AlreadyExists => Error::AlreadyExists(format!("{} exists: an export never replaces a file", target.display())),
        _ => Error::storage("write", target, &error),
    })
}

impl BoxHandle {
    /// Writes the box to a `.boxlite` archive at `dest` (or in it, when it is a directory, as
    /// `<name or id>.boxlite`); returns the archive's path (rule 1).
    pub async fn export(&self, dest: PathBuf) -> Result<PathBuf> {
        self.check_exists()?;
        let target = destination(&dest, &self.entry.record())?;
        let staging = export_partial(&target);
        fs_err::create_dir(&staging)?;
        let exported = self.export_into(&target, &staging).await;
        let doomed = staging.clone();
        let _ = blocking(move || Ok(std::fs::remove_dir_all(doomed)?)).await;
        exported.map(|()| target)
    }

    async fn export_into(&self, target: &Path, staging: &Path) -> Result<()> {
        let record = self.entry.record().clone();
        let partial = staging.join("archive");
        let builder = {
            let _layers_in_use = self.inner.images.hold().await;
            let (inner, partial, staging) = (Arc::clone(&self.inner), partial.clone(), staging.to_path_buf());
            blocking(move || {
                let (image, blobs) = archived_image(&inner.home, &record, &staging)?;
                let layer = if record.disk_size_gb.is_some() { LayerKind::Disk } else { LayerKind::Tree };
                let manifest = Manifest { format: FORMAT.to_string(), version: VERSION, exported_at: crate::clock::now().0, options: Portable::of(&record), image, layer };
                begin_archive(&partial, &manifest, &blobs)
            })
            .await?
        };
        let live = self.entry.live.lock().await;
        self.check_exists()?;
        let (layer, ids, helper) = (self.writable_layer(), BoxIds::of(self.entry.record().id_map), self.inner.home.subordinate_helper().cloned());
        let (builder, seal) = self
            .with_layer_still(&live, move || {
                let mut builder = builder;
                let seal = write_layer(&mut builder, &layer, ids, helper.as_ref())?;
                Ok((builder, seal))
            })
            .await?;
        drop(live);
        let target = target.to_path_buf();
        blocking(move || finish_archive(builder, &seal, &partial, &target)).await
    }
}

impl Runtime {
    /// Makes a stopped box from the `.boxlite` archive at `archive`, named `name` (rules 2–4).
    pub async fn import_box(&self, archive: PathBuf, name: Option<String>, untrusted: bool) -> Result<BoxHandle> {
        self.check_open()?;
        self.reserve_name(name.as_deref())?;
        let reserved = name.clone();
        let imported = async {
            // Both held until the box is listed (`boxes` rule 7), and the name until then too.
            let _being_made = self.inner.making.read().await;
            let _layers_in_use = self.inner.images.hold().await;
            let inner = Arc::clone(&self.inner);
            blocking(move || import(&inner, &archive, name, untrusted)).await.map(|entry| self.add_made(entry))
        }
        .await;
        self.release_name(reserved.as_deref());
        imported
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    fn c_path(path: &Path) -> std::io::Result<std::ffi::CString> {
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    fn set_attribute(path: &Path, name: &std::ffi::CStr, value: &[u8]) {
        // SAFETY: lsetxattr with valid C strings and a buffer of the given length.
        let code = unsafe { libc::lsetxattr(c_path(path).expect("a path").as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        assert_eq!(code, 0, "{}: {}", path.display(), io::Error::last_os_error());
    }

    fn attribute(path: &Path, name: &[u8]) -> Option<Vec<u8>> {
        let attributes = boxlite_trees::extended_attributes(&c_path(path).expect("a path")).expect("attributes");
        attributes.into_iter().find(|(found, _)| found.as_bytes() == name).map(|(_, value)| value)
    }

    /// A tree of every kind an upper layer holds, packed and unpacked by the image unpacker,
    /// comes back the same (as host root: whiteouts and `trusted.*` marks need it).
    #[test]
    fn an_upper_layer_packed_and_unpacked_comes_back_whole() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: overlayfs marks (trusted.*) need host root (CI runs cargo test as root)");
            return;
        }
        let scratch = std::env::temp_dir().join(format!("boxlite-pack-test-{}-{}", std::process::id(), rand::random::<u64>()));
        let (source, target) = (scratch.join("source"), scratch.join("target"));
        std::fs::create_dir_all(source.join("dir/opaque")).expect("test setup");
        std::fs::create_dir_all(&target).expect("test setup");
        std::fs::write(source.join("dir/file"), b"content").expect("test setup");
        std::os::unix::fs::lchown(source.join("dir/file"), Some(1000), Some(1001)).expect("test setup");
        std::fs::set_permissions(source.join("dir/file"), std::fs::Permissions::from_mode(0o4750)).expect("test setup");
        std::fs::hard_link(source.join("dir/file"), source.join("dir/link")).expect("test setup");
        std::os::unix::fs::symlink("../elsewhere", source.join("dir/symlink")).expect("test setup");
        set_attribute(&source.join("dir/file"), c"user.note", b"kept");
        set_attribute(&source.join("dir/file"), c"trusted.secret", b"dropped");
        set_attribute(&source.join("dir/opaque"), c"trusted.overlay.opaque", b"y");
        // SAFETY: mknod of an overlayfs whiteout (0/0) at a valid C path.
        assert_eq!(unsafe { libc::mknod(c_path(&source.join("dir/deleted")).expect("test setup").as_ptr(), libc::S_IFCHR, 0) }, 0);
        let old = libc::timespec { tv_sec: 981_173_106, tv_nsec: 0 };
        // SAFETY: utimensat with a valid C path and two timespecs.
        assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c_path(&source.join("dir/file")).expect("test setup").as_ptr(), [old, old].as_ptr(), 0) }, 0);

        let mut packed = Vec::new();
        pack(&source, BoxIds::Same, &mut packed).expect("test setup");
        crate::image::unpack_tar(packed.as_slice(), &target, None).expect("test setup");

        let file = std::fs::symlink_metadata(target.join("dir/file")).expect("test setup");
        assert_eq!((file.mode() & 0o7777, file.uid(), file.gid(), file.nlink(), file.mtime()), (0o4750, 1000, 1001, 2, 981_173_106));
        assert_eq!(std::fs::read(target.join("dir/link")).expect("test setup"), b"content");
        assert_eq!(std::fs::read_link(target.join("dir/symlink")).expect("test setup"), Path::new("../elsewhere"));
        assert_eq!(attribute(&target.join("dir/file"), b"user.note").as_deref(), Some(b"kept".as_slice()));
        assert_eq!(attribute(&target.join("dir/file"), b"trusted.secret"), None, "only user.* attributes travel");
        assert_eq!(attribute(&target.join("dir/opaque"), b"trusted.overlay.opaque").as_deref(), Some(b"y".as_slice()));
        let deleted = std::fs::symlink_metadata(target.join("dir/deleted")).expect("test setup");
        assert!(deleted.file_type().is_char_device() && deleted.rdev() == 0, "a whiteout stays a whiteout");
        std::fs::remove_dir_all(&scratch).expect("test setup");
    }
}
