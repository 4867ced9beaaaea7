//! Making a box (`boxes` rule 2): `create`, `get_or_create`, and what clones and imports make
//! theirs with: a name held while the box is made, and `make_box`, which leaves nothing behind
//! when it fails.

use super::*;

/// The longest box name: `<name>.boxlite` must fit in a file name (255 bytes).
const MAX_NAME_BYTES: usize = 247;

impl Runtime {
    /// Creates a box in state `configured`. Its image is prepared (unpacked) here, so a bad
    /// image fails now, and starting the box later touches no image.
    pub async fn create(&self, options: BoxOptions, name: Option<String>) -> Result<BoxHandle> {
        self.check_open()?;
        options.validate()?;
        self.inner.host.check_limits(&options.limits_asked())?;
        if let (Some(_), Err(why)) = (options.disk_size_gb, &self.inner.host.disks) {
            return Err(Error::Unsupported(format!("disk_size_gb cannot be had here: {why}; leave it out")));
        }
        self.reserve_name(name.as_deref())?;
        let result = self.create_reserved(options, name.clone()).await;
        self.release_name(name.as_deref());
        result
    }

    /// Holds `name` for a box being made, so two concurrent creates cannot take one name, after
    /// checking it; [`Runtime::release_name`] lets it go once the box is made or not.
    pub(super) fn reserve_name(&self, name: Option<&str>) -> Result<()> {
        let Some(name) = name else { return Ok(()) };
        // A name is also a file's: an export into a directory writes `<name>.boxlite`.
        let refused = name.is_empty() || name.len() > MAX_NAME_BYTES || matches!(name, "." | "..") || name.contains('/') || name.chars().any(char::is_control) || crate::ids::is_box_id(name);
        if refused {
            return Err(Error::InvalidArgument(format!(
                "invalid box name {name:?}: it must be 1 to {MAX_NAME_BYTES} bytes, not '.' or '..', without '/' or control characters, and not look like a box id"
            )));
        }
        let taken = self.find(name).is_some();
        let mut reserved = lock(&self.inner.reserved_names);
        if taken || reserved.contains_key(name) {
            return Err(Error::InvalidArgument(format!("box with name '{name}' already exists")));
        }
        reserved.insert(name.to_string(), Arc::new(tokio::sync::Notify::new()));
        Ok(())
    }

    pub(super) fn release_name(&self, name: Option<&str>) {
        if let Some(released) = name.and_then(|name| lock(&self.inner.reserved_names).remove(name)) {
            released.notify_waiters();
        }
    }

    /// What resolves once `name`, held by a box being made, is let go; `None` if it is not held.
    /// Made under the lock release takes, so a release after this call is never missed.
    fn name_released(&self, name: &str) -> Option<tokio::sync::futures::OwnedNotified> {
        lock(&self.inner.reserved_names).get(name).cloned().map(tokio::sync::Notify::notified_owned)
    }

    /// Makes a new box (rule 2): its directory with `subdirs`, its own id range where boxes
    /// have them, and, through `fill`, its writable layer and its record (given the box's id,
    /// directory and ids), which is saved last. On any failure, what was made goes. Blocking.
    pub(super) fn make_box(inner: &Inner, subdirs: &[&str], fill: impl FnOnce(&str, &Path, Option<IdMap>) -> Result<BoxRecord>) -> Result<BoxEntry> {
        let id = loop {
            let candidate = crate::ids::new_box_id();
            if !inner.home.box_dir(&candidate).exists() {
                break candidate;
            }
        };
        let dir = inner.home.box_dir(&id);
        let made = subdirs.iter().try_for_each(|sub| fs_err::create_dir_all(dir.join(sub)).map_err(Error::from));
        let id_map = made.and_then(|()| match (&inner.ranges, inner.home.id_map()) {
            (Some(ranges), Some(_)) => ranges.claim(&dir).map(Some),
            (_, shared) => Ok(shared),
        });
        let id_map = match id_map {
            Ok(id_map) => id_map,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error);
            }
        };
        let record = fill(&id, &dir, id_map).and_then(|record| record.save(&dir).map(|()| record));
        match record {
            Ok(record) => Ok(BoxEntry::new(id, dir, record)),
            Err(error) => {
                // Through the trash: what `fill` wrote may belong to a box's other users.
                let _ = inner.home.throw_away(&dir);
                if let (Some(ranges), Some(map)) = (&inner.ranges, id_map) {
                    ranges.release(map, &dir);
                }
                Err(error)
            }
        }
    }

    /// Lists a box just made: the runtime knows it from now on.
    pub(super) fn add_made(&self, entry: BoxEntry) -> BoxHandle {
        let entry = Arc::new(entry);
        log::debug!("created box {} from {}", entry.id, entry.record().image);
        lock(&self.inner.boxes).insert(entry.id.clone(), Arc::clone(&entry));
        self.inner.counters.boxes_created.fetch_add(1, Ordering::Relaxed);
        self.handle(entry)
    }

    async fn create_reserved(&self, mut options: BoxOptions, name: Option<String>) -> Result<BoxHandle> {
        let began = std::time::Instant::now();
        // Both held until the box is listed, at the end (rule 7; the layers a pull makes).
        let _being_made = self.inner.making.read().await;
        for volume in &mut options.volumes {
            if let Some(name) = &volume.named {
                volume.host_path = self.inner.volumes.data(name)?;
            }
        }
        let source = ImageSource::from_options(options.image.as_deref(), options.rootfs_path.as_deref());
        let _layers_in_use = self.inner.images.hold().await;
        let pulled = match &source {
            ImageSource::Registry(reference) => Some(self.inner.images.ensure(&self.inner.home, reference).await?),
            ImageSource::Host | ImageSource::Layout(_) => None,
        };
        let inner = Arc::clone(&self.inner);
        let entry = blocking(move || {
            let prepared = match pulled {
                Some(prepared) => prepared,
                None => image::prepare_local(&inner.home, &source)?,
            };
            let main = options.main_command(&prepared.config)?;
            if options.tty && main.is_none() {
                return Err(Error::InvalidArgument(
                    "tty=True runs the box's main command on a terminal, and this box has none (its image has no entrypoint or cmd, and none was given)".to_string(),
                ));
            }
            let disk_size_gb = options.disk_size_gb.or(inner.default_disk_gb);
            // A box with a disk of its own keeps its upper and work directories there (`disk`).
            let subdirs: &[&str] = if disk_size_gb.is_some() { &["rootfs", "main"] } else { &["upper", "work", "rootfs", "main"] };
            Runtime::make_box(&inner, subdirs, |id, dir, id_map| {
                let (created_at, created_at_nanos) = crate::clock::now();
                let secrets_authority = (!options.secrets.is_empty()).then(|| crate::network::secrets::store(dir, &options.secrets)).transpose()?;
                let record = BoxRecord {
                    id: id.to_string(),
                    name,
                    image: source.display(),
                    status: BoxStatus::Configured,
                    created_at,
                    created_at_nanos,
                    started_at: None,
                    init_pid: None,
                    cpus: options.cpus.unwrap_or(DEFAULT_CPUS),
                    memory_mib: options.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB),
                    remove_on_stop: options.remove_on_stop(),
                    detach: options.detach.unwrap_or(false),
                    working_dir: options.working_dir.clone(),
                    env: crate::network::secrets::box_env(options.env.clone(), &options.secrets),
                    user: options.user.clone(),
                    prepared,
                    main,
                    main_chosen: options.entrypoint.is_some() || options.cmd.is_some(),
                    main_tty: options.tty,
                    exit_code: None,
                    volumes: options.volumes.clone(),
                    capabilities: options.capabilities()?,
                    pids_limit: options.max_processes.unwrap_or(DEFAULT_PIDS_LIMIT),
                    process_limits: options.process_limits.clone(),
                    id_map,
                    subordinate_ids: inner.home.subordinate_ids_of(id_map),
                    health_check: options.health_check,
                    disk_size_gb,
                    network: options.network.clone(),
                    ports: options.ports.clone(),
                    published_host_ports: Vec::new(),
                    secrets_authority,
                };
                match record.disk_size_gb {
                    Some(size) => inner.host.disks.as_ref().map_err(|why| Error::Unsupported(why.clone())).and_then(|formatter| disk::make(dir, size, formatter, &inner.home.disk_templates()))?,
                    None => own_upper_layer(dir, record.id_map)?,
                }
                Ok(record)
            })
        })
        .await?;
        entry.create_us.store(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
        Ok(self.add_made(entry))
    }

    /// Returns the box named `name` (created: false), or creates it (created: true). The other
    /// options of a box found are not looked at, but its capabilities must be those `options`
    /// ask for: a program that asked for fewer must not get a box that holds more.
    /// A box of that name being made meanwhile is waited for, and then found (or, had its
    /// making failed, made here).
    pub async fn get_or_create(&self, options: BoxOptions, name: Option<String>) -> Result<(BoxHandle, bool)> {
        loop {
            if let Some(existing) = name.as_deref().and_then(|name| self.find(name)) {
                return self.found(existing, &options);
            }
            let being_made = name.as_deref().and_then(|name| self.name_released(name));
            match being_made {
                Some(released) => released.await,
                None => match self.create(options.clone(), name.clone()).await {
                    Ok(handle) => return Ok((handle, true)),
                    // Lost a race to a concurrent create of the same name: look again.
                    Err(Error::InvalidArgument(message)) if message.contains("already exists") => {}
                    Err(error) => return Err(error),
                },
            }
        }
    }

    fn found(&self, existing: Arc<BoxEntry>, options: &BoxOptions) -> Result<(BoxHandle, bool)> {
        let names = |numbers: &[u32]| -> Vec<&'static str> {
            let mut names: Vec<&'static str> = boxlite_protocol::CAPABILITIES.iter().filter(|(_, number)| numbers.contains(number)).map(|(name, _)| *name).collect();
            names.sort_unstable();
            names
        };
        let (asked, held) = (names(&options.capabilities()?), names(&existing.record().capabilities));
        if asked != held {
            let record = existing.record();
            let name = record.name.as_deref().unwrap_or(&record.id);
            return Err(Error::InvalidArgument(format!("box {name:?} exists with other capabilities than these options give: it has {held:?}, they give {asked:?}")));
        }
        Ok((self.handle(existing), false))
    }
}
