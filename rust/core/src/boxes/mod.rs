//! The box store and the runtime: create, find, start, stop, remove, exec. Here: the runtime and
//! a box's entry. Beside it: `create` (making a box: rule 2), `handle` (the verbs on one box), `warm` (the shim made ahead of need),
//! `reconcile` (settling dead boxes), `spec` (a box's env, cwd and user), `metrics`, `engine`
//! (spawning a box's init), `spawner` (the process that spawns shims), `record`, `state`,
//! `options`, `snapshots` (copies of a box's writable layer, `layer`), `clone`, `archive` (a box
//! written to a `.boxlite` file and imported from one), `disk` (a box's own filesystem), `health`,
//! and `stores` (the image store and named volumes, as the runtime serves them).
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
//! 7. A box being made (created, imported, cloned) holds `Inner::making` shared until it is
//!    listed; what deletes what listed boxes use (a prune of image layers, a named volume's
//!    removal) holds it alone, so it sees every box that uses them.

mod archive;
pub use archive::{export_destination, export_partial, link_into_place};
mod clone;
mod create;
mod disk;
mod engine;
mod handle;
mod health;
mod layer;
mod metrics;
mod options;
mod reconcile;
mod record;
mod snapshots;
mod spawner;
mod spec;
mod state;
mod stores;
mod warm;

pub use health::{HealthCheck, HealthState, HealthStatus};
pub use metrics::{BoxMetrics, RuntimeMetrics};
pub use snapshots::SnapshotInfo;
pub use spec::ExecRequest;
use metrics::Counters;
use reconcile::{own_upper_layer, reconcile, settle, Settling};
use warm::WarmSlot;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

pub use boxlite_protocol::ProcessLimits;
use boxlite_protocol::{MainProcess, ShimConfig, VolumeMount};

pub use options::{BoxInfo, BoxOptions, Volume, DEFAULT_CPUS, DEFAULT_MEMORY_MIB, DEFAULT_PIDS_LIMIT};
pub use state::BoxStatus;

use crate::cgroups::{BoxCgroup, CgroupLayout, Limits};
use crate::error::{Error, Result};
use crate::exec::{self, ExecSpec, Execution};
use crate::files::CopyOptions;
use crate::home::Home;
use crate::host::HostPermits;
use crate::idmap::{IdMap, RangeClaims};
use crate::volumes::{VolumeInfo, Volumes};
use crate::image::{self, ImageRecord, ImageSource, ImageStore, RegistryConfig};
use crate::keeper::{Role, Succession};
use crate::lock;
use crate::network::{BoxNetwork, BoxSockets, HostNetwork, Policy, SecretProxy, WayOut};
use engine::Live;
use record::BoxRecord;

/// How long `close()` waits for each killed init to be gone.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long `close()` waits for the settles its boxes' watches began; removing a box's groups
/// is the longest part of one.
const SETTLE_WAIT: Duration = Duration::from_secs(crate::cgroups::REMOVE_WAIT.as_secs() + 5);
/// Time a box's processes get between SIGTERM and SIGKILL on `stop()`.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// Where a box's main process writes, relative to the box's directory.
const MAIN_STDOUT: &str = "main/stdout";
const MAIN_STDERR: &str = "main/stderr";
const MAIN_STATUS: &str = "main/status";
/// The size of a main process's terminal until an attach sets another (a terminal's usual).
const MAIN_TERMINAL: boxlite_protocol::TtySize = boxlite_protocol::TtySize { rows: 24, cols: 80 };
/// How long `attach` waits for the init of a box whose main process just ended to be gone.
const MAIN_END_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
struct BoxEntry {
    id: String,
    dir: PathBuf,
    record: Mutex<BoxRecord>,
    /// Rule 1: the lifecycle lock, guarding the running init.
    live: tokio::sync::Mutex<Option<Live>>,
    /// Kills the init of the box's latest run while an operation holds `live` (`close`).
    killer: Mutex<Option<engine::Killer>>,
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
    /// The outcome of the running box's health checks (`health`).
    health: Mutex<HealthStatus>,
    /// The counters of the box's network, from its last start.
    traffic: Mutex<Option<crate::network::TrafficMeter>>,
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
        // A removed box's last record may say it ran (or was stopping): its processes are gone.
        let removed = self.removed.load(Ordering::Acquire);
        let running = !removed && live.unwrap_or(record.status == BoxStatus::Running);
        let status = match record.status {
            BoxStatus::Running | BoxStatus::Stopping if removed => BoxStatus::Stopped,
            status => status,
        };
        BoxInfo {
            id: record.id.clone(),
            name: record.name.clone(),
            image: record.image.clone(),
            status: status.as_str(),
            running,
            pid: if running { record.init_pid } else { None },
            created_at: record.created_at.clone(),
            started_at: record.started_at.clone(),
            cpus: record.cpus,
            memory_mib: record.memory_mib,
            auto_delete: u64::from(record.remove_on_stop),
            auto_stop: 0,
            auto_resume: false,
            detach: record.detach,
            exit_code: record.exit_code,
            network: record.network.clone(),
            published_ports: if running { lock(&self.traffic).as_ref().map(|meter| meter.published().to_vec()).unwrap_or_default() } else { Vec::new() },
            health: if running { lock(&self.health).clone() } else { HealthStatus::default() },
        }
    }
}

#[derive(Debug)]
struct Inner {
    home: Home,
    shim: engine::ShimKind,
    /// What this host permits the runtime (root, or an ordinary user and what it may do).
    host: HostPermits,
    images: ImageStore,
    cgroups: CgroupLayout,
    boxes: Mutex<HashMap<String, Arc<BoxEntry>>>,
    /// Names of boxes being created, so two concurrent creates cannot take one name; each
    /// says when its name is let go (a `get_or_create` of it waits for that).
    reserved_names: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// Rule 7.
    making: tokio::sync::RwLock<()>,
    shut_down: AtomicBool,
    counters: Counters,
    /// The next box's shim, made ahead of need, and the signal that one being made is done.
    warm: (Mutex<WarmSlot>, std::sync::Condvar),
    /// Where boxes claim their own id ranges (`idmap` rule 4); `None` where boxes have no user
    /// namespace or this host's claims cannot be kept, and then share [`IdMap::LAYERS`].
    ranges: Option<RangeClaims>,
    volumes: Volumes,
    network: HostNetwork,
    /// The disk size of boxes that name none (`disk` rule 1); `None`: they get no disk.
    default_disk_gb: Option<u64>,
    /// Admits the blocking work of box starts and removals ([`box_work_at_once`] at a time).
    box_work: tokio::sync::Semaphore,
    /// Boxes whose init ended on its own being settled now (rule 5), which a close waits for.
    settling: Settling,
    /// Who serves detached boxes' networks once this runtime is gone (`keeper`).
    succession: Succession,
    /// Whether boxes' shims are prepared ahead of need (not for a keeper, which starts none).
    prepares_ahead: bool,
}

/// Whether a box record under `boxes` says its box is a running detached box with a network.
fn records_with_detached_networks(boxes: &Path) -> bool {
    let Ok(dirs) = std::fs::read_dir(boxes) else { return false };
    dirs.flatten().any(|dir| BoxRecord::load(&dir.path()).is_ok_and(|record| record.has_detached_network()))
}

/// The record of the box in `dir`, found when a home opens. A directory without one is what a
/// runtime killed in the middle of a create left (the record is written last): it goes. A
/// record that cannot be read is reported and left alone: that box is not listed, the others
/// are.
fn load_or_report(dir: &Path) -> Option<BoxRecord> {
    match BoxRecord::load(dir) {
        Ok(record) => Some(record),
        Err(_) if !dir.join("box.json").exists() => {
            log::info!("removing {}, a box whose creation never finished", dir.display());
            let _ = std::fs::remove_dir_all(dir);
            None
        }
        Err(error) => {
            log::warn!("box {} is left out: {error}", dir.display());
            None
        }
    }
}

impl Inner {
    /// `keeper` rule 1: a detached box with a network runs.
    fn guard_detached_networks(&self) {
        self.succession.guard(self.shim.spawner.shim_path(), self.home.root());
    }

    /// Gives back the id range of the box whose directory was `dir` (`idmap` rule 4).
    fn release_range(&self, record: &BoxRecord, dir: &Path) {
        if let (Some(ranges), Some(map)) = (&self.ranges, record.id_map) {
            ranges.release(map, dir);
        }
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


/// How many box starts and removals do their blocking work at once: twice the CPUs this
/// process may use. More would not finish sooner (their kernel work, mounts, namespaces and
/// cgroups, takes locks of the kernel's own), and every thread busy with it competes with the
/// event loop's thread for a CPU: during 100 concurrent starts on 2 CPUs, the loop's lag p99
/// was 20–30 ms with all of them at once and 3–5 ms with 4.
fn box_work_at_once() -> usize {
    2 * std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Runs blocking work (disk, process start-up) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| Error::Internal(format!("blocking task failed: {error}")))?
}

impl Runtime {
    /// Opens the runtime on `home_dir` (blocking: it takes the lock and reconciles the home), for
    /// `role`.
    pub fn open(home_dir: &Path, registries: Vec<RegistryConfig>, role: Role) -> Result<Self> {
        crate::host::raise_open_files_limit();
        let home = Home::open(home_dir)?;
        if matches!(role, Role::Keeper) && !records_with_detached_networks(&home.boxes()) {
            // The runtime that held the home last left nothing for a keeper (`keeper` rule 3):
            // nothing more is done here, not even the probes of a full open.
            return Err(Error::NotFound("a detached box with a network running in this home".to_string()));
        }
        let shim_path = home.install_shim()?;
        let cgroups = CgroupLayout::detect();
        let host = HostPermits::detect(&cgroups);
        if let Some(why) = &host.cgroups_refused {
            log::info!("boxes run without cgroups, so without limits: {why}");
        }
        let ids = crate::idmap::detect(&shim_path, host.rootless, crate::host::subordinate_ids(host.rootless)?)?;
        let home = home.with_id_map(ids.map, ids.subordinate)?;
        // An ordinary user's boxes all have its ids: there are no ranges to claim.
        let ranges = home.id_map().filter(|_| !host.rootless).and_then(|_| {
            RangeClaims::open(Path::new(crate::idmap::CLAIMS_DIR))
                .inspect_err(|error| log::warn!("boxes share one id range: cannot keep claims in {}: {error}", crate::idmap::CLAIMS_DIR))
                .ok()
        });
        let volumes = Volumes::new(home.volumes(), home.id_map());
        let network = HostNetwork::detect(&home.network())?;
        let default_disk_gb = match (disk::default_size()?, &host.disks) {
            (Some(_), Err(why)) => {
                log::warn!("{} is ignored: {why}", disk::SIZE_VARIABLE);
                None
            }
            (size, _) => size,
        };
        let shim = engine::ShimKind { spawner: Arc::new(spawner::Spawner::new(shim_path, host.rootless, ids.subordinate)), user_namespace: home.id_map().is_some(), rootless: host.rootless };
        let mut boxes = HashMap::new();
        for dir in fs_err::read_dir(home.boxes())?.flatten() {
            let path = dir.path();
            let Some(record) = load_or_report(&path) else { continue };
            if let (Some(ranges), Some(map)) = (&ranges, record.id_map) {
                ranges.reclaim(map, &path);
            }
            if let Some(entry) = reconcile(&path, record, &cgroups) {
                boxes.insert(entry.id.clone(), Arc::new(entry));
            }
        }
        let runtime = Self {
            inner: Arc::new(Inner {
                home,
                shim,
                host,
                images: ImageStore::new(registries),
                cgroups,
                boxes: Mutex::new(boxes),
                reserved_names: Mutex::new(HashMap::new()),
                making: tokio::sync::RwLock::new(()),
                shut_down: AtomicBool::new(false),
                counters: Counters::default(),
                warm: (Mutex::new(WarmSlot::default()), std::sync::Condvar::new()),
                ranges,
                volumes,
                network,
                default_disk_gb,
                box_work: tokio::sync::Semaphore::new(box_work_at_once()),
                settling: Settling::default(),
                succession: Succession::new(&role),
                prepares_ahead: matches!(role, Role::Program { .. }),
            }),
        };
        // Adopted boxes are watched like the ones this runtime starts (rule 5), and the first box
        // is prepared ahead of need, when there is a tokio runtime to do it from.
        if tokio::runtime::Handle::try_current().is_ok() {
            if runtime.inner.prepares_ahead {
                let inner = Arc::downgrade(&runtime.inner);
                tokio::task::spawn_blocking(move || Inner::refill_warm(&inner));
            }
            let entries: Vec<Arc<BoxEntry>> = lock(&runtime.inner.boxes).values().cloned().collect();
            for entry in entries {
                let handle = runtime.handle(entry);
                let mut live = handle.entry.live.try_lock();
                if let Some(running) = live.as_mut().ok().and_then(|live| live.as_mut()) {
                    handle.watch_init(running);
                    handle.serve_adopted_network(running);
                }
                drop(live);
            }
            if runtime.detached_networks() > 0 {
                runtime.inner.guard_detached_networks();
            }
        }
        Ok(runtime)
    }

    /// Running detached boxes with a network to serve (a way out or published ports): what a
    /// keeper is for (`keeper`).
    pub fn detached_networks(&self) -> usize {
        lock(&self.inner.boxes).values().filter(|entry| !entry.removed.load(Ordering::Acquire) && entry.record().has_detached_network()).count()
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
        let _admitted = self.inner.box_work.acquire().await;
        let (runtime, doomed) = (self.clone(), Arc::clone(&entry));
        blocking(move || {
            runtime.cgroup(&doomed).remove();
            runtime.delete(&doomed)
        })
        .await
    }

    fn cgroup(&self, entry: &BoxEntry) -> BoxCgroup {
        BoxCgroup::locate(&self.inner.cgroups, &entry.id)
    }

    /// Forgets the box and deletes its directory (`Home::throw_away`: off the caller's path).
    fn delete(&self, entry: &BoxEntry) -> Result<()> {
        entry.removed.store(true, Ordering::Release);
        lock(&entry.waiting_attaches).clear();
        lock(&self.inner.boxes).remove(&entry.id);
        let deleted = self.inner.home.throw_away_owned_by(&entry.dir, entry.record().subordinate_ids);
        if deleted.is_ok() {
            self.inner.release_range(&entry.record(), &entry.dir);
        }
        deleted
    }

    /// Stops every box that is not detached (each gets `grace` before SIGKILL), then refuses new
    /// work. Idempotent.
    pub async fn shutdown(&self, grace: Option<Duration>) -> Result<()> {
        self.inner.shut_down.store(true, Ordering::Release);
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            inner.dismiss_warm();
            inner.shim.spawner.close();
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
    /// it removes on stop, its groups gone; new work is refused, and the home is free for
    /// another runtime. For a graceful end, `shutdown()` first.
    pub fn close(&self) {
        self.inner.shut_down.store(true, Ordering::Release);
        self.inner.dismiss_warm();
        self.inner.shim.spawner.close();
        let entries: Vec<Arc<BoxEntry>> = lock(&self.inner.boxes).values().cloned().collect();
        let (mut killed, mut held) = (Vec::new(), Vec::new());
        for entry in entries.iter().filter(|entry| !entry.record().detach) {
            match entry.live.try_lock() {
                Ok(mut live) => {
                    if let Some(running) = live.take() {
                        running.kill();
                        killed.push((Arc::clone(entry), running));
                    }
                }
                // An operation holds the box (a stop in its grace period, or its watch
                // settling it): its init is killed all the same.
                Err(_) => {
                    if let Some(killer) = lock(&entry.killer).clone() {
                        killer.kill();
                        held.push((Arc::clone(entry), killer));
                    }
                }
            }
        }
        for (entry, running) in killed {
            running.exited_within(CLOSE_WAIT);
            let _ = settle(&self.inner, &entry, BoxStatus::Stopped);
        }
        let deadline = std::time::Instant::now() + SETTLE_WAIT;
        for (entry, killer) in held {
            killer.exited_within(CLOSE_WAIT);
            // The operation lets go (the close failed it, or it ends now that the init is
            // gone); what it did not settle is settled here.
            while entry.live.try_lock().is_err() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let Ok(mut live) = entry.live.try_lock() else { continue };
            live.take();
            let unsettled = matches!(entry.record().status, BoxStatus::Running | BoxStatus::Stopping);
            if unsettled && !entry.removed.load(Ordering::Acquire) {
                let _ = settle(&self.inner, &entry, BoxStatus::Stopped);
            }
        }
        // Detached boxes stay, served no more from here: their sockets close now, so that a
        // keeper (`keeper` rule 2) or the next runtime can serve them.
        let networks = entries
            .iter()
            .filter(|entry| entry.record().detach)
            .filter_map(|entry| entry.live.try_lock().ok().and_then(|mut live| live.as_mut().and_then(|running| running.network.take())))
            .collect();
        BoxNetwork::stop_serving(networks);
        // A box this close skipped was being settled by its watch: that ends first.
        self.inner.settling.wait_until_none(SETTLE_WAIT);
        self.inner.home.release();
        self.inner.succession.hand_over(self.detached_networks() > 0);
    }

    /// The pid of the init made ahead of need for the next box, if one waits (waiting for one
    /// being made). Not a box's: tests tell it apart from leftovers with it.
    pub fn warm_init_pid(&self) -> Option<i32> {
        self.inner.warm_slot().ready.as_ref().map(engine::Warm::init_pid)
    }

    /// The pid of this runtime's spawner of shims, while it runs.
    pub fn spawner_pid(&self) -> Option<u32> {
        self.inner.shim.spawner.pid()
    }

    pub fn metrics(&self) -> RuntimeMetrics {
        let counters = &self.inner.counters;
        let running = lock(&self.inner.boxes).values().filter(|entry| entry.record().status == BoxStatus::Running).count();
        RuntimeMetrics {
            boxes_created_total: counters.boxes_created.load(Ordering::Relaxed),
            boxes_failed_total: counters.boxes_failed.load(Ordering::Relaxed),
            boxes_stopped_total: counters.boxes_stopped.load(Ordering::Relaxed),
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
            killer: Mutex::new(None),
            removed: AtomicBool::new(false),
            commands: AtomicU64::new(0),
            exec_errors: AtomicU64::new(0),
            boot_us: AtomicU64::new(0),
            create_us: AtomicU64::new(0),
            io: Arc::default(),
            started: Mutex::new(None),
            waiting_attaches: Mutex::new(Vec::new()),
            health: Mutex::new(HealthStatus::default()),
            traffic: Mutex::new(None),
        }
    }
}
