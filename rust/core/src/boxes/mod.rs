//! The box store and the runtime: create, find, start, stop, remove, exec.
//!
//! # Rules
//!
//! 1. Every lifecycle verb on a box holds that box's lifecycle lock (`BoxEntry::live`), so
//!    start, stop, remove and implicit boots never interleave for one box.
//! 2. Creation is all or nothing: a failed create leaves no record, directory or process.
//! 3. A handle is spent after `stop()`: later `start`/`exec` on it fail with a Stopped error
//!    that says to use `Runtime::get`; `info()` keeps working.
//! 4. Opening a runtime reconciles its home: boxes whose init is gone are marked stopped (or
//!    deleted when they remove on stop); detached boxes whose init lives are adopted.
//! 5. A box whose init ends on its own (its main process exited) is settled as a stopped box:
//!    the main process's exit code is recorded, and remove-on-stop applies.
//! 6. A box whose user chose its main command (`cmd`/`entrypoint`) is never started as a side
//!    effect of exec, copy or metrics: starting it runs that command.

mod engine;
mod options;
mod record;
mod state;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

pub use boxlite_protocol::ProcessLimits;
use boxlite_protocol::{MainProcess, ShimConfig, TtySize, VolumeMount};

pub use options::{BoxInfo, BoxOptions, Volume, DEFAULT_CPUS, DEFAULT_MEMORY_MIB, DEFAULT_PIDS_LIMIT};
pub use state::BoxStatus;

use crate::cgroups::{BoxCgroup, CgroupLayout, Limits};
use crate::error::{Error, Result};
use crate::exec::{self, ExecSpec, Execution};
use crate::files::CopyOptions;
use crate::home::Home;
use crate::idmap::IdMap;
use crate::image::{self, ImageRecord, ImageSource, ImageStore, RegistryConfig};
use engine::Live;
use record::BoxRecord;

/// How long `close()` waits for each killed init to be gone.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Time a box's processes get between SIGTERM and SIGKILL on `stop()`.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where a box's main process writes, relative to the box's directory.
const MAIN_STDOUT: &str = "main/stdout";
const MAIN_STDERR: &str = "main/stderr";
const MAIN_STATUS: &str = "main/status";
/// How long `attach` waits for the init of a box whose main process just ended to be gone.
const MAIN_END_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeMetrics {
    pub boxes_created_total: u64,
    pub boxes_failed_total: u64,
    pub num_running_boxes: u64,
    pub total_commands_executed: u64,
    pub total_exec_errors: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoxMetrics {
    pub commands_executed_total: u64,
    pub exec_errors_total: u64,
    pub boot_duration_ms: Option<u64>,
    /// How long `create()` took (the image made ready for the box).
    pub create_duration_ms: Option<u64>,
    /// Read from the box's cgroups while it runs.
    pub memory_bytes: Option<u64>,
    pub cpu_time_ns: Option<u64>,
    /// CPU time over wall time since the box started, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    pub processes: Option<u64>,
    /// Bytes written to the stdin of the box's processes, and read from their output.
    pub bytes_sent_total: u64,
    pub bytes_received_total: u64,
}

#[derive(Debug, Default)]
struct Counters {
    boxes_created: AtomicU64,
    boxes_failed: AtomicU64,
    commands: AtomicU64,
    exec_errors: AtomicU64,
}

#[derive(Debug)]
struct BoxEntry {
    id: String,
    dir: PathBuf,
    record: Mutex<BoxRecord>,
    /// Rule 1: the lifecycle lock, guarding the running init.
    live: tokio::sync::Mutex<Option<Live>>,
    removed: AtomicBool,
    commands: AtomicU64,
    exec_errors: AtomicU64,
    /// Durations in microseconds; 0 until measured.
    boot_us: AtomicU64,
    create_us: AtomicU64,
    io: Arc<exec::IoCounters>,
    /// When the running box started, for its CPU share.
    started: Mutex<Option<std::time::Instant>>,
    /// Attaches made before the box started, each handed the next run's output as it starts
    /// (dropped, and so told the box is gone, when it is deleted first).
    waiting_attaches: Mutex<Vec<tokio::sync::oneshot::Sender<(PathBuf, exec::MainOutput)>>>,
}

impl BoxEntry {
    fn record(&self) -> MutexGuard<'_, BoxRecord> {
        // A poisoned record lock only means a panic elsewhere; the data is still whole.
        self.record.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut BoxRecord)) -> Result<()> {
        let mut record = self.record();
        change(&mut record);
        record.save(&self.dir)
    }

    fn info(&self, live: Option<bool>) -> BoxInfo {
        let record = self.record();
        let running = live.unwrap_or(record.status == BoxStatus::Running);
        BoxInfo {
            id: record.id.clone(),
            name: record.name.clone(),
            image: record.image.clone(),
            status: record.status.as_str(),
            running,
            pid: if running { record.init_pid } else { None },
            created_at: record.created_at.clone(),
            started_at: record.started_at.clone(),
            cpus: record.cpus,
            memory_mib: record.memory_mib,
            auto_delete: u64::from(record.remove_on_stop),
            detach: record.detach,
            exit_code: record.exit_code,
        }
    }
}

#[derive(Debug)]
struct Inner {
    home: Home,
    shim: PathBuf,
    images: ImageStore,
    cgroups: CgroupLayout,
    boxes: Mutex<HashMap<String, Arc<BoxEntry>>>,
    /// Names of boxes being created, so two concurrent creates cannot take one name.
    reserved_names: Mutex<HashSet<String>>,
    shut_down: AtomicBool,
    counters: Counters,
    /// The next box's shim, made ahead of need, and the signal that one being made is done.
    warm: (Mutex<WarmSlot>, std::sync::Condvar),
}

/// The shim made ahead of need for the next box (see [`engine::Warm`]).
#[derive(Debug, Default)]
struct WarmSlot {
    ready: Option<engine::Warm>,
    /// A refill is making one (outside the lock; a close waits for it).
    preparing: bool,
}

/// How long a close waits for a shim being made ahead of need.
const PREPARE_WAIT: Duration = Duration::from_secs(5);
/// How long a start waits for one, before it makes its own.
const TAKE_WAIT: Duration = Duration::from_millis(50);

impl Inner {
    fn warm_slot(&self) -> MutexGuard<'_, WarmSlot> {
        lock(&self.warm.0)
    }

    /// A warm shim for a box with `config`: the one made ahead of need if it is ready and fits,
    /// or one made now (at full priority: a box waits for it). A box with volumes gets a new
    /// one: a shim's mount namespace is a copy of the host's mounts when it was made, and a
    /// volume's source may have been mounted since.
    fn warm_shim(&self, config: &ShimConfig) -> Result<engine::Warm> {
        if config.volumes.is_empty() {
            // One being made is most of the way: it is waited for (bounded) rather than made
            // again.
            let slot = self.warm_slot();
            let (mut slot, _) = self.warm.1.wait_timeout_while(slot, TAKE_WAIT, |slot| slot.preparing).unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(warm) = slot.ready.take_if(|warm| warm.id_map == config.user_namespace) {
                return Ok(warm);
            }
        }
        engine::Warm::prepare(&self.shim, config.user_namespace, false)
    }

    /// Makes the next box's shim unless one is ready or being made, or the runtime is closing.
    /// Blocking; the slot is not locked meanwhile. It holds the runtime only while it looks at
    /// the slot: a runtime let go of meanwhile goes at once (its home free for the next), and
    /// the shim made for it ends.
    fn refill_warm(runtime: &Weak<Self>) {
        let (shim, id_map) = {
            let Some(inner) = runtime.upgrade() else { return };
            let mut slot = inner.warm_slot();
            if slot.ready.is_some() || slot.preparing || inner.shut_down.load(Ordering::Acquire) {
                return;
            }
            slot.preparing = true;
            (inner.shim.clone(), inner.home.id_map())
        };
        let mut prepared = engine::Warm::prepare(&shim, id_map, true).inspect_err(|error| log::warn!("could not prepare the next box ahead of need: {error}")).ok();
        let Some(inner) = runtime.upgrade() else { return };
        let mut slot = inner.warm_slot();
        if slot.ready.is_none() && !inner.shut_down.load(Ordering::Acquire) {
            slot.ready = prepared.take();
        }
        if prepared.is_some() {
            // Not wanted (the runtime closes): it ends while `preparing` still holds a waiting
            // close back, so the close returns with nothing of it left.
            drop(slot);
            drop(prepared);
            slot = inner.warm_slot();
        }
        slot.preparing = false;
        drop(slot);
        inner.warm.1.notify_all();
    }

    /// Ends the shim made ahead of need, once one being made is done (bounded). Call after
    /// setting `shut_down`. Blocking.
    fn dismiss_warm(&self) {
        let slot = self.warm_slot();
        let (mut slot, _) = self.warm.1.wait_timeout_while(slot, PREPARE_WAIT, |slot| slot.preparing).unwrap_or_else(std::sync::PoisonError::into_inner);
        let ready = slot.ready.take();
        drop(slot);
        drop(ready);
    }
}

/// A runtime on one home directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

/// A handle to one box. Cheap to create; many handles may point at one box.
#[derive(Debug)]
pub struct BoxHandle {
    inner: Arc<Inner>,
    entry: Arc<BoxEntry>,
    spent: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs blocking work (disk, process start-up) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| Error::Internal(format!("blocking task failed: {error}")))?
}

impl Runtime {
    /// Opens the runtime on `home_dir` (blocking: it takes the lock and reconciles the home).
    pub fn open(home_dir: &Path, registries: Vec<RegistryConfig>) -> Result<Self> {
        let home = Home::open(home_dir)?;
        let shim = home.install_shim()?;
        let home = home.with_id_map(crate::idmap::detect(&shim))?;
        let cgroups = CgroupLayout::detect();
        let mut boxes = HashMap::new();
        for dir in fs_err::read_dir(home.boxes())?.flatten() {
            let path = dir.path();
            let Ok(record) = BoxRecord::load(&path) else { continue };
            if let Some(entry) = reconcile(&path, record, &cgroups) {
                boxes.insert(entry.id.clone(), Arc::new(entry));
            }
        }
        let runtime = Self {
            inner: Arc::new(Inner {
                home,
                shim,
                images: ImageStore::new(registries),
                cgroups,
                boxes: Mutex::new(boxes),
                reserved_names: Mutex::new(HashSet::new()),
                shut_down: AtomicBool::new(false),
                counters: Counters::default(),
                warm: (Mutex::new(WarmSlot::default()), std::sync::Condvar::new()),
            }),
        };
        // Adopted boxes are watched like the ones this runtime starts (rule 5), and the first box
        // is prepared ahead of need, when there is a tokio runtime to do it from.
        if tokio::runtime::Handle::try_current().is_ok() {
            let inner = Arc::downgrade(&runtime.inner);
            tokio::task::spawn_blocking(move || Inner::refill_warm(&inner));
            let entries: Vec<Arc<BoxEntry>> = lock(&runtime.inner.boxes).values().cloned().collect();
            for entry in entries {
                let handle = runtime.handle(entry);
                let live = handle.entry.live.try_lock();
                if let Some(running) = live.as_ref().ok().and_then(|live| live.as_ref()) {
                    handle.watch_init(running);
                }
                drop(live);
            }
        }
        Ok(runtime)
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(Error::Stopped("the runtime has been shut down".to_string()));
        }
        Ok(())
    }

    fn handle(&self, entry: Arc<BoxEntry>) -> BoxHandle {
        BoxHandle { inner: Arc::clone(&self.inner), entry, spent: AtomicBool::new(false) }
    }

    fn find(&self, id_or_name: &str) -> Option<Arc<BoxEntry>> {
        let boxes = lock(&self.inner.boxes);
        if let Some(entry) = boxes.get(id_or_name) {
            return Some(Arc::clone(entry));
        }
        boxes.values().find(|entry| entry.record().name.as_deref() == Some(id_or_name)).cloned()
    }

    /// Creates a box in state `configured`. Its image is prepared (unpacked) here, so a bad
    /// image fails now, and starting the box later touches no image.
    pub async fn create(&self, options: BoxOptions, name: Option<String>) -> Result<BoxHandle> {
        self.check_open()?;
        options.validate()?;
        if let Some(name) = &name {
            if name.is_empty() || name.contains('/') || crate::ids::is_box_id(name) {
                return Err(Error::InvalidArgument(format!("invalid box name {name:?}: it must be non-empty, without '/', and not look like a box id")));
            }
            let taken = self.find(name).is_some();
            if taken || !lock(&self.inner.reserved_names).insert(name.clone()) {
                return Err(Error::InvalidArgument(format!("box with name '{name}' already exists")));
            }
        }
        let result = self.create_reserved(options, name.clone()).await;
        if let Some(name) = &name {
            lock(&self.inner.reserved_names).remove(name);
        }
        result
    }

    async fn create_reserved(&self, options: BoxOptions, name: Option<String>) -> Result<BoxHandle> {
        let began = std::time::Instant::now();
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
            let id = loop {
                let candidate = crate::ids::new_box_id();
                if !inner.home.box_dir(&candidate).exists() {
                    break candidate;
                }
            };
            let dir = inner.home.box_dir(&id);
            let (created_at, created_at_nanos) = record::now();
            let record = BoxRecord {
                id: id.clone(),
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
                env: options.env.clone(),
                user: options.user.clone(),
                prepared,
                main,
                main_chosen: options.entrypoint.is_some() || options.cmd.is_some(),
                exit_code: None,
                volumes: options.volumes.clone(),
                capabilities: options.capabilities()?,
                pids_limit: options.max_processes.unwrap_or(DEFAULT_PIDS_LIMIT),
                process_limits: options.process_limits.clone(),
                id_map: inner.home.id_map(),
            };
            let made = ["upper", "work", "rootfs", "main"]
                .iter()
                .try_for_each(|sub| fs_err::create_dir_all(dir.join(sub)).map_err(Error::from))
                .and_then(|()| own_upper_layer(&dir, record.id_map))
                .and_then(|()| record.save(&dir));
            if let Err(error) = made {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error);
            }
            Ok(BoxEntry::new(id, dir, record))
        })
        .await?;
        entry.create_us.store(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
        let entry = Arc::new(entry);
        log::debug!("created box {} from {}", entry.id, entry.record().image);
        lock(&self.inner.boxes).insert(entry.id.clone(), Arc::clone(&entry));
        self.inner.counters.boxes_created.fetch_add(1, Ordering::Relaxed);
        Ok(self.handle(entry))
    }

    /// Returns the box named `name` (created: false), or creates it (created: true).
    pub async fn get_or_create(&self, options: BoxOptions, name: Option<String>) -> Result<(BoxHandle, bool)> {
        if let Some(existing) = name.as_deref().and_then(|name| self.find(name)) {
            return Ok((self.handle(existing), false));
        }
        match self.create(options.clone(), name.clone()).await {
            Ok(handle) => Ok((handle, true)),
            // Lost a race to a concurrent create of the same name: adopt the winner.
            Err(Error::InvalidArgument(message)) if message.contains("already exists") => {
                let existing = name.as_deref().and_then(|name| self.find(name)).ok_or(Error::InvalidArgument(message))?;
                Ok((self.handle(existing), false))
            }
            Err(error) => Err(error),
        }
    }

    pub fn get(&self, id_or_name: &str) -> Option<BoxHandle> {
        self.find(id_or_name).map(|entry| self.handle(entry))
    }

    pub fn get_info(&self, id_or_name: &str) -> Option<BoxInfo> {
        self.find(id_or_name).map(|entry| entry.info(None))
    }

    /// Every box, newest first.
    pub fn list_info(&self) -> Vec<BoxInfo> {
        let mut entries: Vec<Arc<BoxEntry>> = lock(&self.inner.boxes).values().cloned().collect();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.record().created_at_nanos));
        entries.iter().map(|entry| entry.info(None)).collect()
    }

    /// Deletes a box. A running box needs `force`, which kills it first.
    pub async fn remove(&self, id_or_name: &str, force: bool) -> Result<()> {
        let entry = self.find(id_or_name).ok_or_else(|| Error::NotFound(format!("box {id_or_name}")))?;
        let mut live = entry.live.lock().await;
        if entry.removed.load(Ordering::Acquire) {
            // Removed (a stop that removes, or another remove) while this one waited.
            return Err(Error::NotFound(format!("box {id_or_name}")));
        }
        if let Some(running) = live.as_ref().filter(|running| running.is_alive()) {
            if !force {
                return Err(Error::InvalidState(format!("box {} is running. Use force=true to stop first", entry.id)));
            }
            running.shutdown(Duration::ZERO).await;
        }
        *live = None;
        self.cgroup(&entry).remove();
        self.delete(&entry)
    }

    fn cgroup(&self, entry: &BoxEntry) -> BoxCgroup {
        BoxCgroup::locate(&self.inner.cgroups, &entry.id)
    }

    /// Forgets the box and deletes its directory. The directory is first renamed into
    /// `<home>/trash` (instant), then deleted off the caller's path.
    fn delete(&self, entry: &BoxEntry) -> Result<()> {
        entry.removed.store(true, Ordering::Release);
        lock(&entry.waiting_attaches).clear();
        lock(&self.inner.boxes).remove(&entry.id);
        let trash = self.inner.home.trash().join(format!("{}.{}", entry.id, rand::random::<u32>()));
        match std::fs::rename(&entry.dir, &trash) {
            Ok(()) => {
                std::thread::spawn(move || {
                    let _ = std::fs::remove_dir_all(trash);
                });
                Ok(())
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::storage("remove box directory", &entry.dir, &error)),
        }
    }

    /// Stops every box that is not detached (each gets `grace` before SIGKILL), then refuses new
    /// work. Idempotent.
    pub async fn shutdown(&self, grace: Option<Duration>) -> Result<()> {
        self.inner.shut_down.store(true, Ordering::Release);
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            inner.dismiss_warm();
            Ok(())
        })
        .await?;
        let entries: Vec<Arc<BoxEntry>> = lock(&self.inner.boxes).values().cloned().collect();
        let stops = entries
            .into_iter()
            .filter(|entry| !entry.record().detach)
            .map(|entry| {
                let handle = self.handle(entry);
                async move { handle.stop_with(grace.unwrap_or(DEFAULT_STOP_GRACE)).await }
            })
            .map(tokio::spawn)
            .collect::<Vec<_>>();
        let mut first_error = None;
        for stop in stops {
            if let Ok(Err(error)) = stop.await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes a box nobody will ever use (the result of an abandoned create), without
    /// waiting: its init is killed and its directory deleted. Never blocks on another operation.
    pub fn discard(&self, handle: &BoxHandle) {
        if let Ok(mut live) = handle.entry.live.try_lock() {
            if let Some(running) = live.take() {
                running.kill();
                running.exited_within(CLOSE_WAIT);
            }
        }
        self.cgroup(&handle.entry).remove();
        let _ = self.delete(&handle.entry);
    }

    /// Ends this runtime's hold on its boxes at once: every box that is not detached is killed
    /// (waiting up to [`CLOSE_WAIT`] for each init to go) and recorded as stopped, or deleted if
    /// it removes on stop; new work is refused, and the home is free for another runtime. For a
    /// graceful end, `shutdown()` first.
    pub fn close(&self) {
        self.inner.shut_down.store(true, Ordering::Release);
        self.inner.dismiss_warm();
        let entries: Vec<Arc<BoxEntry>> = lock(&self.inner.boxes).values().cloned().collect();
        let mut killed = Vec::new();
        for entry in entries.iter().filter(|entry| !entry.record().detach) {
            let Ok(mut live) = entry.live.try_lock() else { continue };
            let Some(running) = live.take() else { continue };
            running.kill();
            killed.push((Arc::clone(entry), running));
        }
        for (entry, running) in killed {
            running.exited_within(CLOSE_WAIT);
            let _ = settle(&self.inner, &entry, BoxStatus::Stopped);
        }
        self.inner.home.release();
    }


    /// Pulls an image into the local store (or finds it there), reporting download progress.
    pub async fn pull_image(&self, reference: &str, progress: Option<crate::image::PullProgress>) -> Result<ImageRecord> {
        self.check_open()?;
        let _layers_in_use = self.inner.images.hold().await;
        if let Some((record, _)) = self.inner.images.cached(&self.inner.home, reference)? {
            return Ok(record);
        }
        self.inner.images.pull(&self.inner.home, reference, progress).await
    }

    /// Deletes layers and blobs that no pulled image and no box uses; returns how many layers.
    pub async fn prune_images(&self) -> Result<usize> {
        self.check_open()?;
        let layers = self.inner.home.layers();
        let entries: Vec<Arc<BoxEntry>> = lock(&self.inner.boxes).values().cloned().collect();
        let in_use = entries
            .iter()
            .flat_map(|entry| entry.record().prepared.lower_dirs.clone())
            .filter(|dir| dir.starts_with(&layers))
            .filter_map(|dir| dir.file_name().map(|name| name.to_string_lossy().into_owned()))
            .collect();
        self.inner.images.prune(&self.inner.home, &in_use).await
    }

    /// Images in the local store, most recently pulled first.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        self.check_open()?;
        Ok(self.inner.images.list(&self.inner.home))
    }

    pub fn remove_image(&self, reference: &str) -> Result<()> {
        self.check_open()?;
        self.inner.images.remove(&self.inner.home, reference)
    }

    /// The pid of the init made ahead of need for the next box, if one waits (waiting for one
    /// being made). Not a box's: tests tell it apart from leftovers with it.
    pub fn warm_init_pid(&self) -> Option<i32> {
        self.inner.warm_slot().ready.as_ref().map(engine::Warm::init_pid)
    }

    pub fn metrics(&self) -> RuntimeMetrics {
        let counters = &self.inner.counters;
        let running = lock(&self.inner.boxes).values().filter(|entry| entry.record().status == BoxStatus::Running).count();
        RuntimeMetrics {
            boxes_created_total: counters.boxes_created.load(Ordering::Relaxed),
            boxes_failed_total: counters.boxes_failed.load(Ordering::Relaxed),
            num_running_boxes: running as u64,
            total_commands_executed: counters.commands.load(Ordering::Relaxed),
            total_exec_errors: counters.exec_errors.load(Ordering::Relaxed),
        }
    }
}

impl BoxEntry {
    fn new(id: String, dir: PathBuf, record: BoxRecord) -> Self {
        Self {
            id,
            dir,
            record: Mutex::new(record),
            live: tokio::sync::Mutex::new(None),
            removed: AtomicBool::new(false),
            commands: AtomicU64::new(0),
            exec_errors: AtomicU64::new(0),
            boot_us: AtomicU64::new(0),
            create_us: AtomicU64::new(0),
            io: Arc::default(),
            started: Mutex::new(None),
            waiting_attaches: Mutex::new(Vec::new()),
        }
    }
}

/// The root of a box's writable layer belongs to its root user (`idmap` rule 2).
fn own_upper_layer(dir: &Path, id_map: Option<IdMap>) -> Result<()> {
    let Some(map) = id_map else { return Ok(()) };
    let upper = dir.join("upper");
    std::os::unix::fs::chown(&upper, Some(map.host_id(0)), Some(map.host_id(0))).map_err(|error| Error::storage("chown", &upper, &error))
}

/// What is left to do once a box's init is gone, whoever noticed: remove its cgroup and
/// socket, record how its main process ended, and delete the box if it removes on stop.
fn settle(inner: &Arc<Inner>, entry: &BoxEntry, status: BoxStatus) -> Result<()> {
    BoxCgroup::locate(&inner.cgroups, &entry.id).remove();
    let _ = std::fs::remove_file(entry.dir.join("init.sock"));
    let exit_code = recorded_exit(&entry.dir);
    if let Some(code) = exit_code.filter(|_| entry.record().main.is_some()) {
        log::debug!("box {}'s main process exited with {code}", entry.id);
    }
    if entry.record().remove_on_stop {
        log::debug!("removing box {} (it removes on stop)", entry.id);
        return Runtime { inner: Arc::clone(inner) }.delete(entry).inspect_err(|error| log::warn!("failed to remove box {}: {error}", entry.id));
    }
    log::debug!("box {} is {}", entry.id, status.as_str());
    entry.update(|record| {
        record.status = status;
        record.init_pid = None;
        if record.main.is_some() {
            record.exit_code = exit_code;
        }
    })
}

/// The exit the init wrote for the main process of the box's last run, if it did.
fn recorded_exit(dir: &Path) -> Option<i32> {
    exec::read_recorded_exit(&std::fs::File::open(dir.join(MAIN_STATUS)).ok()?)
}

/// Rule 4, for one record found on disk. Returns the entry to keep, if any.
fn reconcile(dir: &Path, record: BoxRecord, cgroups: &CgroupLayout) -> Option<BoxEntry> {
    let was_running = matches!(record.status, BoxStatus::Running | BoxStatus::Stopping);
    let survivor = match (was_running, record.init_pid) {
        (true, Some(pid)) => Live::adopt(pid, dir.join("init.sock")),
        _ => None,
    };
    // A box tied to the runtime that died is ending (its lifeline closed), but its processes
    // may take their time: it is finished here, so that what it holds can be cleaned up.
    let adopted = match survivor {
        Some(running) if !record.detach => {
            running.kill();
            running.exited_within(CLOSE_WAIT);
            None
        }
        survivor => survivor,
    };
    let entry = BoxEntry::new(record.id.clone(), dir.to_path_buf(), record);
    if adopted.is_some() {
        log::info!("adopted detached box {} (init pid {})", entry.id, entry.record().init_pid.unwrap_or_default());
        if let Ok(mut live) = entry.live.try_lock() {
            *live = adopted;
        }
        return Some(entry);
    }
    BoxCgroup::locate(cgroups, &entry.id).remove();
    if was_running {
        log::info!("box {} was left running by a runtime that is gone, and its init is gone too: settling it as stopped", entry.id);
        let _ = std::fs::remove_file(dir.join("init.sock"));
        if entry.record().remove_on_stop {
            let _ = std::fs::remove_dir_all(dir);
            return None;
        }
        let exit_code = recorded_exit(dir);
        let _ = entry.update(|record| {
            record.status = BoxStatus::Stopped;
            record.init_pid = None;
            if record.main.is_some() {
                record.exit_code = exit_code;
            }
        });
    }
    Some(entry)
}

pub(crate) fn now_rfc3339() -> String {
    record::now().0
}

fn merge_env(target: &mut Vec<(String, String)>, additions: impl IntoIterator<Item = (String, String)>) {
    for (key, value) in additions {
        match target.iter_mut().find(|(existing, _)| *existing == key) {
            Some(slot) => slot.1 = value,
            None => target.push((key, value)),
        }
    }
}

/// The environment every process of the box starts with: a default PATH, the image's, then the
/// box's options.
fn box_env(record: &BoxRecord) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    merge_env(&mut env, [("PATH".to_string(), DEFAULT_PATH["PATH=".len()..].to_string())]);
    let image = record.prepared.config.env.iter().filter_map(|entry| entry.split_once('='));
    merge_env(&mut env, image.map(|(key, value)| (key.to_string(), value.to_string())));
    merge_env(&mut env, record.env.iter().cloned());
    env
}

fn env_strings(env: Vec<(String, String)>) -> Vec<String> {
    env.into_iter().map(|(key, value)| format!("{key}={value}")).collect()
}

/// Working directory and user of a process that does not choose its own: the box's options,
/// else the image's config.
fn default_cwd_and_user(record: &BoxRecord) -> (Option<String>, Option<String>) {
    let image = &record.prepared.config;
    (record.working_dir.clone().or_else(|| image.working_dir.clone()), record.user.clone().or_else(|| image.user.clone()))
}

/// What `exec` asks for, before the box's defaults are merged in.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub tty: Option<TtySize>,
    pub timeout: Option<Duration>,
}

impl BoxHandle {
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    pub fn name(&self) -> Option<String> {
        self.entry.record().name.clone()
    }

    pub fn info(&self) -> BoxInfo {
        self.entry.info(None)
    }

    fn check_usable(&self) -> Result<()> {
        if self.spent.load(Ordering::Acquire) {
            return Err(Error::Stopped("Handle invalidated after stop(). Use runtime.get() to get a new handle.".to_string()));
        }
        if self.entry.removed.load(Ordering::Acquire) {
            return Err(Error::NotFound(format!("box {} was removed", self.entry.id)));
        }
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(Error::Stopped("the runtime has been shut down".to_string()));
        }
        Ok(())
    }

    /// Boots the box. A running box is left as it is (the one no-op); any other state that
    /// cannot start is refused with the state named.
    pub async fn start(&self) -> Result<()> {
        let mut live = self.lock_usable().await?;
        self.start_locked(&mut live).await
    }

    /// The box's lifecycle lock (rule 1), for a verb that needs a usable box: checked before
    /// waiting and again once held, since while this handle waited another may have stopped
    /// and removed the box, this one's own stop may have spent it, or the runtime shut down.
    async fn lock_usable(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Live>>> {
        self.check_usable()?;
        let live = self.entry.live.lock().await;
        self.check_usable()?;
        Ok(live)
    }

    async fn start_locked(&self, live: &mut Option<Live>) -> Result<()> {
        if live.as_ref().is_some_and(Live::is_alive) {
            return Ok(());
        }
        self.settle_if_dead(live).await?;
        let status = self.entry.record().status;
        if !status.can_start() {
            return Err(Error::InvalidState(format!("box {} is {}; it cannot be started", self.entry.id, status.as_str())));
        }
        let began = std::time::Instant::now();
        let limits = {
            let record = self.entry.record();
            Limits { memory_bytes: u64::from(record.memory_mib) << 20, cpus: record.cpus, pids: record.pids_limit }
        };
        let inner = Arc::clone(&self.inner);
        let id = self.entry.id.clone();
        let config = self.shim_config();
        let started = blocking(move || {
            let warm = inner.warm_shim(&config)?;
            let mut made = None;
            let cgroups = || BoxCgroup::create(&inner.cgroups, &id, limits).map(|cgroup| made.insert(cgroup).membership_files());
            let started = engine::spawn(warm, &config, cgroups);
            if started.is_err() {
                if let Some(cgroup) = made {
                    cgroup.remove();
                }
            }
            let runtime = Arc::downgrade(&inner);
            tokio::task::spawn_blocking(move || Inner::refill_warm(&runtime));
            started
        })
        .await;
        let running = match started {
            Ok(running) => running,
            Err(error) => {
                log::warn!("box {} failed to start: {error}", self.entry.id);
                self.inner.counters.boxes_failed.fetch_add(1, Ordering::Relaxed);
                let _ = self.entry.update(|record| record.status = BoxStatus::Failed);
                return Err(error);
            }
        };
        if self.inner.shut_down.load(Ordering::Acquire) {
            // The runtime closed while this box booted: it must not outlive the close.
            running.kill();
            running.exited_within(CLOSE_WAIT);
            BoxCgroup::locate(&self.inner.cgroups, &self.entry.id).remove();
            return Err(Error::Stopped("the runtime has been shut down".to_string()));
        }
        self.entry.boot_us.store(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
        *lock(&self.entry.started) = Some(std::time::Instant::now());
        let pid = running.init_pid;
        log::debug!("started box {} in {} ms (init pid {pid})", self.entry.id, began.elapsed().as_millis());
        // The first exec then finds the request connection open.
        running.connector.connect_ahead();
        self.watch_init(&running);
        *live = Some(running);
        self.entry.update(|record| {
            record.status = BoxStatus::Running;
            record.init_pid = Some(pid);
            record.started_at = Some(record::now().0);
            record.exit_code = None;
        })?;
        let socket_path = self.entry.dir.join("init.sock");
        for waiting in lock(&self.entry.waiting_attaches).drain(..) {
            // Opened now, before the main process can end and the box be removed.
            if let Ok(output) = self.main_output() {
                let _ = waiting.send((socket_path.clone(), output));
            }
        }
        Ok(())
    }

    fn main_output(&self) -> Result<exec::MainOutput> {
        let dir = &self.entry.dir;
        exec::MainOutput::open(&dir.join(MAIN_STDOUT), &dir.join(MAIN_STDERR), &dir.join(MAIN_STATUS))
    }

    /// Rule 5: when the init ends on its own (its main process exited, or it was killed), the
    /// box is settled as if stopped. A stop, remove or close that took the init first wins.
    fn watch_init(&self, running: &Live) {
        let exited = running.exit_watch();
        let init_pid = running.init_pid;
        let inner = Arc::clone(&self.inner);
        let entry = Arc::clone(&self.entry);
        tokio::spawn(async move {
            exited.await;
            if inner.shut_down.load(Ordering::Acquire) {
                return; // the next runtime's reconcile settles what is left
            }
            let mut live = entry.live.lock().await;
            if live.as_ref().is_none_or(|running| running.init_pid != init_pid) {
                return;
            }
            *live = None;
            log::info!("box {}'s init ended on its own (its main process exited, or it was killed)", entry.id);
            let settled = Arc::clone(&entry);
            let _ = blocking(move || settle(&inner, &settled, BoxStatus::Stopped)).await;
            drop(live);
        });
    }

    fn shim_config(&self) -> ShimConfig {
        let record = self.entry.record();
        let dir = &self.entry.dir;
        ShimConfig {
            box_id: record.id.clone(),
            hostname: record.name.clone().filter(|name| name.len() <= 63).unwrap_or_else(|| record.id.clone()),
            lower_dirs: record.prepared.lower_dirs.clone(),
            upper_dir: dir.join("upper"),
            work_dir: dir.join("work"),
            merged_dir: dir.join("rootfs"),
            read_only_binds: record.prepared.read_only_binds.clone(),
            socket_path: dir.join("init.sock"),
            log_path: dir.join("init.log"),
            detached: record.detach,
            volumes: record
                .volumes
                .iter()
                .map(|volume| VolumeMount { source: volume.host_path.clone(), target: volume.guest_path.clone(), read_only: volume.read_only })
                .collect(),
            capabilities: record.capabilities.clone(),
            process_limits: record.process_limits.clone(),
            user_namespace: record.id_map,
            main: record.main.clone().map(|argv| {
                let (cwd, user) = default_cwd_and_user(&record);
                let env = env_strings(box_env(&record));
                MainProcess {
                    argv,
                    env,
                    cwd,
                    user,
                    stdout_path: dir.join(MAIN_STDOUT),
                    stderr_path: dir.join(MAIN_STDERR),
                    status_path: dir.join(MAIN_STATUS),
                }
            }),
        }
    }

    /// Stops the box (graceful, then forced after the default grace) and spends this handle.
    pub async fn stop(&self) -> Result<()> {
        self.stop_with(DEFAULT_STOP_GRACE).await
    }

    async fn stop_with(&self, grace: Duration) -> Result<()> {
        if self.spent.swap(true, Ordering::AcqRel) || self.entry.removed.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut live = self.entry.live.lock().await;
        if self.entry.removed.load(Ordering::Acquire) {
            // Removed by another handle while this one waited: nothing is left to stop.
            return Ok(());
        }
        let was_booted = self.entry.record().status != BoxStatus::Configured;
        if let Some(running) = live.take() {
            self.entry.update(|record| record.status = BoxStatus::Stopping)?;
            running.shutdown(grace).await;
        }
        let status = if was_booted { BoxStatus::Stopped } else { BoxStatus::Configured };
        let (inner, entry) = (Arc::clone(&self.inner), Arc::clone(&self.entry));
        blocking(move || settle(&inner, &entry, status)).await
    }

    /// Starts a process in the box, booting the box first if it is configured or stopped; its
    /// replies are read on tokio.
    pub async fn exec(&self, request: ExecRequest) -> Result<Execution> {
        let mut execution = self.request_exec(request).await?.run().await?;
        if let Some(replies) = execution.replies.take() {
            replies.read_on_tokio();
        }
        Ok(execution)
    }

    /// Prepares the request to start a command in the box (booting it if needed); sending it,
    /// taking the init's answer and reading the execution's replies are the caller's.
    pub async fn request_exec(&self, request: ExecRequest) -> Result<exec::Requested> {
        self.check_usable()?;
        if let Some(timeout) = request.timeout {
            if timeout.is_zero() {
                return Err(Error::InvalidArgument("timeout must be positive".to_string()));
            }
        }
        let connector = self.ensure_running("exec in").await?;
        let spec = self.exec_spec(request);
        self.inner.counters.commands.fetch_add(1, Ordering::Relaxed);
        self.entry.commands.fetch_add(1, Ordering::Relaxed);
        let (inner, entry) = (Arc::clone(&self.inner), Arc::clone(&self.entry));
        let failed = Box::new(move || {
            inner.counters.exec_errors.fetch_add(1, Ordering::Relaxed);
            entry.exec_errors.fetch_add(1, Ordering::Relaxed);
        });
        exec::request(connector, spec, Arc::clone(&self.entry.io), failed)
    }

    /// Boots the box if it is configured or stopped; returns the way to its init.
    async fn ensure_running(&self, operation: &str) -> Result<Arc<exec::Connector>> {
        let mut live = self.lock_usable().await?;
        if !live.as_ref().is_some_and(Live::is_alive) {
            let status = self.entry.record().status;
            if !status.can_exec() && !status.can_start() {
                return Err(Error::InvalidState(format!("box {} is {}; it must be running", self.entry.id, status.as_str())));
            }
            self.refuse_implicit_start(operation)?;
            self.start_locked(&mut live).await?;
        }
        live.as_ref().map(|running| Arc::clone(&running.connector)).ok_or_else(|| Error::Internal("box has no init after start".to_string()))
    }

    /// The running box's root, opened while the lifecycle lock is held and the init is known to
    /// live, so a pid that the kernel recycled can never stand for the box.
    async fn open_root(&self, operation: &str) -> Result<std::os::fd::OwnedFd> {
        let mut live = self.lock_usable().await?;
        if !live.as_ref().is_some_and(Live::is_alive) {
            self.refuse_implicit_start(operation)?;
            self.start_locked(&mut live).await?;
        }
        let running = live.as_ref().ok_or_else(|| Error::Internal("box has no init after start".to_string()))?;
        let root = crate::files::open_root(running.init_pid).map_err(|error| Error::InvalidState(format!("the box is not running: {error}")))?;
        if !running.is_alive() {
            return Err(Error::InvalidState(format!("box {} stopped", self.entry.id)));
        }
        Ok(root)
    }

    fn counted(&self, mut execution: Execution) -> Execution {
        execution.io = Arc::clone(&self.entry.io);
        execution
    }

    /// Rule 6.
    fn refuse_implicit_start(&self, operation: &str) -> Result<()> {
        let record = self.entry.record();
        if !record.main_chosen {
            return Ok(());
        }
        let consequence = if record.status == BoxStatus::Configured {
            "starting the box would run its main command"
        } else {
            "its main command has already run, and starting the box again would run it a second time"
        };
        Err(Error::InvalidState(format!(
            "Cannot {operation} box {}: it is {}, and {consequence}; start the box explicitly with start() if that is what you want",
            record.id,
            record.status.as_str()
        )))
    }

    /// An init that ended before its monitor settled the box is settled here, under the lock
    /// (rule 5); a box that removes on stop is then gone.
    async fn settle_if_dead(&self, live: &mut Option<Live>) -> Result<()> {
        if live.as_ref().is_none_or(Live::is_alive) {
            return Ok(());
        }
        *live = None;
        let (inner, entry) = (Arc::clone(&self.inner), Arc::clone(&self.entry));
        blocking(move || settle(&inner, &entry, BoxStatus::Stopped)).await?;
        if self.entry.removed.load(Ordering::Acquire) {
            return Err(Error::NotFound(format!("box {} was removed when its main process ended", self.entry.id)));
        }
        Ok(())
    }

    /// Follows the box's main process: live while the box runs (its output from the start of
    /// the run, then as it comes); replayed with its exit code once it has ended; or, before
    /// the box first starts, from the beginning of its coming run.
    pub async fn attach(&self, stdin: bool) -> Result<Execution> {
        let mut live = self.lock_usable().await?;
        if self.entry.record().main.is_none() {
            return Err(Error::InvalidState(format!(
                "box {} has no main command to attach to (its image has no entrypoint or cmd, and none was given); use exec()",
                self.entry.id
            )));
        }
        self.settle_if_dead(&mut live).await?;
        if let Some(running) = live.as_ref() {
            let (output, fallback) = (self.main_output()?, self.main_output()?);
            let socket_path = running.connector.socket_path().to_path_buf();
            let init_exit = running.exit_watch();
            drop(live);
            return match exec::attach(&socket_path, output, stdin).await {
                Ok(execution) => Ok(self.counted(execution)),
                // The main process ended just now: its init is on its way out.
                Err(error) => match tokio::time::timeout(MAIN_END_WAIT, init_exit).await.ok().and(fallback.recorded_exit()) {
                    Some(code) => exec::replay(fallback, code),
                    None => Err(error),
                },
            };
        }
        let (status, exit_code) = {
            let record = self.entry.record();
            (record.status, record.exit_code)
        };
        match (status, exit_code) {
            (BoxStatus::Stopped, Some(code)) => exec::replay(self.main_output()?, code),
            (BoxStatus::Configured, _) => {
                // Registered under the lifecycle lock: no start can slip in between.
                let (sender, receiver) = tokio::sync::oneshot::channel();
                lock(&self.entry.waiting_attaches).push(sender);
                exec::attach_when_started(Box::pin(async move { receiver.await.ok() }), stdin).map(|execution| self.counted(execution))
            }
            _ => Err(Error::InvalidState(format!("Cannot attach to box {}: it is {} and its main process has no run to follow", self.entry.id, status.as_str()))),
        }
    }

    /// Copies a host file or directory into the box (booting it if needed).
    pub async fn copy_in(&self, host_source: PathBuf, box_destination: String, options: CopyOptions) -> Result<()> {
        let root = self.open_root("copy into").await?;
        let box_root = self.entry.record().id_map.map(|map| map.host_id(0));
        blocking(move || crate::files::copy_in(&root, &host_source, &box_destination, options, box_root)).await
    }

    /// Copies a file or directory out of the box (booting it if needed).
    pub async fn copy_out(&self, box_source: String, host_destination: PathBuf, options: CopyOptions) -> Result<()> {
        let root = self.open_root("copy out of").await?;
        blocking(move || crate::files::copy_out(&root, &box_source, &host_destination, options)).await
    }

    fn exec_spec(&self, request: ExecRequest) -> ExecSpec {
        let record = self.entry.record();
        let mut env = box_env(&record);
        merge_env(&mut env, request.env);
        if request.tty.is_some() {
            merge_env(&mut env, [("TERM".to_string(), "xterm".to_string())].into_iter().filter(|_| !record.env.iter().any(|(key, _)| key == "TERM")));
        }
        let mut argv = vec![request.command];
        argv.extend(request.args);
        let (cwd, user) = default_cwd_and_user(&record);
        ExecSpec {
            argv,
            env: env_strings(env),
            cwd: request.cwd.or(cwd),
            user: request.user.or(user),
            tty: request.tty,
            timeout: request.timeout,
        }
    }

    pub fn metrics(&self) -> Result<BoxMetrics> {
        if self.entry.removed.load(Ordering::Acquire) {
            return Err(Error::NotFound(format!("box {} was removed", self.entry.id)));
        }
        let milliseconds = |micros: &AtomicU64| Some(micros.load(Ordering::Relaxed)).filter(|micros| *micros > 0).map(|micros| micros / 1000);
        let usage = BoxCgroup::locate(&self.inner.cgroups, &self.entry.id).usage();
        let running_for = lock(&self.entry.started).map(|started| started.elapsed().as_nanos() as f64).filter(|nanos| *nanos > 0.0);
        Ok(BoxMetrics {
            commands_executed_total: self.entry.commands.load(Ordering::Relaxed),
            exec_errors_total: self.entry.exec_errors.load(Ordering::Relaxed),
            boot_duration_ms: milliseconds(&self.entry.boot_us),
            create_duration_ms: milliseconds(&self.entry.create_us),
            memory_bytes: usage.memory_bytes,
            cpu_time_ns: usage.cpu_time_ns,
            cpu_percent: usage.cpu_time_ns.zip(running_for).map(|(cpu, wall)| cpu as f64 / wall * 100.0),
            processes: usage.processes,
            bytes_sent_total: self.entry.io.sent.load(Ordering::Relaxed),
            bytes_received_total: self.entry.io.received.load(Ordering::Relaxed),
        })
    }
}
