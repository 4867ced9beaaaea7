//! Import: an archive read member by member, each verified as it comes, and made a box of
//! this runtime (rules 2 to 4 of the parent module).

use super::*;

/// The next member, which must be the regular file `name` (the format's order).
pub(super) fn next_member<'a, R: Read>(archive: &Path, entries: &mut tar::Entries<'a, R>, name: &str) -> Result<tar::Entry<'a, R>> {
    let entry = entries.next().ok_or_else(|| damaged(archive, format!("{name} is missing")))?.map_err(|error| damaged(archive, error))?;
    let found = entry.path().map_err(|error| damaged(archive, error))?.to_string_lossy().into_owned();
    if found != name || entry.header().entry_type() != tar::EntryType::Regular {
        return Err(damaged(archive, format!("found {found:?} where {name} belongs")));
    }
    Ok(entry)
}

/// A small JSON member, whole.
pub(super) fn read_json<T: for<'de> Deserialize<'de>, R: Read>(archive: &Path, entries: &mut tar::Entries<'_, R>, name: &str, limit: u64) -> Result<(T, Vec<u8>)> {
    let entry = next_member(archive, entries, name)?;
    if entry.size() > limit {
        return Err(damaged(archive, format!("{name} is larger than {limit} bytes")));
    }
    let mut bytes = Vec::new();
    entry.take(limit).read_to_end(&mut bytes).map_err(|error| damaged(archive, error))?;
    let value = serde_json::from_slice(&bytes).map_err(|error| damaged(archive, format!("bad {name}: {error}")))?;
    Ok((value, bytes))
}

pub(super) fn read_manifest<R: Read>(archive: &Path, entries: &mut tar::Entries<'_, R>) -> Result<Manifest> {
    let (version, bytes) = read_json::<Version, R>(archive, entries, MANIFEST, MANIFEST_LIMIT)?;
    if version.format != FORMAT {
        return Err(damaged(archive, format!("its format is {:?}, not {FORMAT:?}", version.format)));
    }
    if version.version != VERSION {
        return Err(Error::Unsupported(format!("{} is a version {} box archive; this boxlite reads version {VERSION}", archive.display(), version.version)));
    }
    serde_json::from_slice(&bytes).map_err(|error| damaged(archive, format!("bad {MANIFEST}: {error}")))
}

/// The image's layers from the archive, into this home's layer store (rule 2).
pub(super) fn import_image<R: Read>(inner: &Inner, archive: &Path, entries: &mut tar::Entries<'_, R>, image: ArchivedImage) -> Result<PreparedImage> {
    let (id, config, layers) = match image {
        ArchivedImage::Host => return image::prepare_local(&inner.home, &ImageSource::Host),
        ArchivedImage::Layers { id, config, layers } => (id, config, layers),
    };
    if layers.is_empty() {
        return Err(damaged(archive, "its image has no layers"));
    }
    let home = &inner.home;
    let mut lower_dirs = Vec::with_capacity(layers.len());
    for member in &layers {
        let hex = sha256_hex(&member.digest).filter(|hex| member.name == format!("image/{hex}"));
        let hex = hex.ok_or_else(|| damaged(archive, format!("bad image layer {:?} ({})", member.name, member.digest)))?;
        let mut entry = HashingReader::new(next_member(archive, entries, &member.name)?);
        let dir = home.layers().join(hex);
        let blob = home.blobs_tmp().join(format!("{hex}.import.{:08x}", rand::random::<u32>()));
        let imported = (|| {
            // A layer this home has is not unpacked again, but the archive's blob is still checked.
            if !dir.is_dir() {
                fs_err::create_dir_all(home.blobs_tmp())?;
                let mut file = File::options().write(true).create_new(true).open(&blob).map_err(Error::storage_at("create", &blob))?;
                io::copy(&mut entry, &mut file).map_err(|error| damaged(archive, format!("{}: {error}", member.name)))?;
            }
            let (digest, size) = entry.finish().map_err(|error| damaged(archive, format!("{}: {error}", member.name)))?;
            if size != member.size || digest != member.digest {
                return Err(damaged(archive, format!("{} was changed or damaged (its digest is {digest}, the manifest says {})", member.name, member.digest)));
            }
            if dir.is_dir() {
                return Ok(dir.clone());
            }
            unpack_layer(&LayerStore::of(home), &blob, &member.digest)
        })();
        let _ = std::fs::remove_file(&blob);
        lower_dirs.push(imported?);
    }
    lower_dirs.reverse();
    Ok(PreparedImage { lower_dirs, read_only_binds: Vec::new(), config, id })
}

/// The next (offset, length) record of a disk member, or `None` at its end.
pub(super) fn disk_record(reader: &mut impl Read) -> io::Result<Option<(u64, u64)>> {
    let mut record = [0u8; 16];
    let mut filled = 0;
    while filled < record.len() {
        match reader.read(&mut record[filled..])? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            count => filled += count,
        }
    }
    let (offset, length) = record.split_at(8);
    Ok(Some((u64::from_le_bytes(offset.try_into().unwrap_or_default()), u64::from_le_bytes(length.try_into().unwrap_or_default()))))
}

/// A disk image of `size` bytes at `path`, from a disk member's records.
pub(super) fn import_disk(archive: &Path, reader: &mut impl Read, path: &Path, size: u64) -> Result<()> {
    let mut file = File::options().write(true).create_new(true).open(path).map_err(Error::storage_at("create", path))?;
    file.set_len(size).map_err(Error::storage_at("size", path))?;
    let bad = |error: io::Error| damaged(archive, format!("{DISK_MEMBER}: {error}"));
    let mut end = 0;
    while let Some((offset, length)) = disk_record(reader).map_err(bad)? {
        if offset < end || length == 0 || offset.checked_add(length).is_none_or(|extent_end| extent_end > size) {
            return Err(damaged(archive, format!("{DISK_MEMBER}: its extents overlap, are empty or pass the disk's end")));
        }
        file.seek(SeekFrom::Start(offset)).map_err(Error::storage_at("write", path))?;
        if io::copy(&mut reader.take(length), &mut file).map_err(bad)? != length {
            return Err(damaged(archive, format!("{DISK_MEMBER} ends early")));
        }
        end = offset + length;
    }
    Ok(())
}

/// The box's writable layer from the archive, into the new box's directory `dir`, checked
/// against the seal after it. `helper` gives the owners of an ordinary user's box with
/// subordinate ids.
pub(super) fn import_layer<R: Read>(archive: &Path, entries: &mut tar::Entries<'_, R>, kind: LayerKind, disk_size_gb: Option<u64>, dir: &Path, id_map: Option<IdMap>, helper: Option<&SubordinateHelper>) -> Result<()> {
    let name = kind.member();
    let mut entry = HashingReader::new(next_member(archive, entries, name)?);
    match (kind, disk_size_gb) {
        (LayerKind::Tree, None) => {
            own_upper_layer(dir, id_map)?;
            let owners = unpack_tar(&mut entry, &dir.join("upper"), id_map).map_err(|why| damaged(archive, format!("{name}: {why}")))?;
            give_owners(&dir.join("upper"), &owners, helper)?;
        }
        (LayerKind::Disk, Some(size_gb)) => {
            fs_err::create_dir_all(dir.join("disk"))?;
            import_disk(archive, &mut entry, WritableLayer::of(dir, true).path(), size_gb << 30)?;
        }
        _ => return Err(damaged(archive, "its layer is not of the kind its box has")),
    }
    let (digest, size) = entry.finish().map_err(|error| damaged(archive, format!("{name}: {error}")))?;
    let (seal, _) = read_json::<LayerSeal, R>(archive, entries, SEAL_MEMBER, SEAL_LIMIT)?;
    if seal.size != size || seal.digest != digest {
        return Err(damaged(archive, format!("{name} was changed or damaged (its digest is {digest}, its seal says {})", seal.digest)));
    }
    Ok(())
}

/// Imports the archive at `archive` as a box of `inner`'s (rules 2–4). Blocking.
pub(super) fn import(inner: &Inner, archive: &Path, name: Option<String>, untrusted: bool) -> Result<BoxEntry> {
    let file = File::open(archive).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => Error::NotFound(format!("box archive {} does not exist", archive.display())),
        _ => Error::storage("open", archive, &error),
    })?;
    let mut tar = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let mut entries = tar.entries().map_err(|error| damaged(archive, error))?;
    let manifest = read_manifest(archive, &mut entries)?;
    let portable = manifest.options;
    if untrusted {
        if let Some(refused) = portable.refused_untrusted() {
            return Err(Error::Unsupported(format!("{} is imported untrusted, and its box asks for {refused}", archive.display())));
        }
    }
    let mut options = portable.as_options()?;
    for volume in &mut options.volumes {
        if let Some(name) = &volume.named {
            volume.host_path = inner.volumes.data(name)?;
        }
    }
    options.validate()?;
    if let (Some(_), Err(why)) = (portable.disk_size_gb, &inner.host.disks) {
        return Err(Error::Unsupported(format!("the archive's box has a disk of its own, which this host cannot give: {why}")));
    }
    let prepared = import_image(inner, archive, &mut entries, manifest.image)?;
    let subdirs: &[&str] = if portable.disk_size_gb.is_some() { &["rootfs", "main"] } else { &["upper", "work", "rootfs", "main"] };
    Runtime::make_box(inner, subdirs, |id, dir, id_map| {
        import_layer(archive, &mut entries, manifest.layer, portable.disk_size_gb, dir, id_map, inner.home.subordinate_helper())?;
        if let Some(extra) = entries.next() {
            let name = extra.ok().and_then(|entry| entry.path().ok().map(|path| path.display().to_string())).unwrap_or_default();
            return Err(damaged(archive, format!("it has a member the format does not name ({name:?})")));
        }
        let (created_at, created_at_nanos) = crate::clock::now();
        Ok(BoxRecord {
            id: id.to_string(),
            name,
            image: portable.image,
            status: BoxStatus::Stopped,
            created_at,
            created_at_nanos,
            started_at: None,
            init_pid: None,
            cpus: portable.cpus,
            memory_mib: portable.memory_mib,
            remove_on_stop: portable.remove_on_stop,
            detach: portable.detach,
            working_dir: portable.working_dir,
            env: portable.env,
            user: portable.user,
            prepared,
            main: portable.main,
            main_chosen: portable.main_chosen,
            main_tty: portable.main_tty,
            exit_code: None,
            volumes: options.volumes,
            capabilities: portable.capabilities,
            pids_limit: portable.pids_limit,
            process_limits: portable.process_limits,
            network: portable.network,
            ports: portable.ports,
            published_host_ports: Vec::new(),
            id_map,
            subordinate_ids: inner.home.subordinate_ids_of(id_map),
            health_check: portable.health_check,
            disk_size_gb: portable.disk_size_gb,
            secrets_authority: None,
        })
    })
}
