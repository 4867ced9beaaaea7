//! cgroups for boxes: one group per box, with memory, cpu and pids limits, on cgroup v1, v2, or
//! a hybrid of both. Each controller is found on its own: the v2 hierarchy when it offers the
//! controller, else the v1 hierarchy that has it mounted. A controller the host has in neither
//! is not applied.
//!
//! Group paths are `<base>/boxlite/<box id>`, where the base is this process's own group (v1)
//! or its parent (v2): boxes stay within the limits the caller runs under; or a group
//! delegated for them ([`PARENT_VARIABLE`]). The box's init joins
//! them itself, through files the runtime opens ([`BoxCgroup::membership_files`]), before it
//! forks anything, so every box process is born inside them. (The init itself, made ahead of
//! need, lived outside them until then: the kernel memory of its namespaces stays charged to
//! the runtime's group.)

mod detect;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use detect::CgroupLayout;

use crate::error::{Error, Result};
use crate::process;

/// The environment variable naming a group delegated for boxes (a path such as `/alice`, the
/// same in every hierarchy), in place of the runtime's own.
pub const PARENT_VARIABLE: &str = "BOXLITE_CGROUP_PARENT";

/// Processes a box may hold at once unless configured otherwise.
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Cpu,
    CpuAccounting,
    Pids,
    /// Stops every process of a box for an instant (a snapshot of a running box), unseen by
    /// them, unlike SIGSTOP.
    Freezer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpus: u8,
    pub pids: u64,
}

/// How long a freeze may take before it is given up.
const FREEZE_WAIT: Duration = Duration::from_secs(5);

/// A box's processes, stopped by its freezer group; let go when dropped.
#[derive(Debug)]
pub struct Frozen {
    version: Version,
    dir: PathBuf,
}

impl Frozen {
    fn set(&self, frozen: bool) -> Result<()> {
        match self.version {
            Version::V1 => write(&self.dir.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" }),
            Version::V2 => write(&self.dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
        }
    }

    fn is_frozen(&self) -> bool {
        match self.version {
            Version::V1 => std::fs::read_to_string(self.dir.join("freezer.state")).is_ok_and(|state| state.trim() == "FROZEN"),
            Version::V2 => std::fs::read_to_string(self.dir.join("cgroup.events")).is_ok_and(|events| events.lines().any(|line| line == "frozen 1")),
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(error) = self.set(false) {
            log::warn!("failed to let a box's processes go on: {error}");
        }
    }
}

/// Usage read from a box's groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_bytes: Option<u64>,
    pub cpu_time_ns: Option<u64>,
    pub processes: Option<u64>,
}

/// One box's groups: a directory per hierarchy used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoxCgroup {
    groups: Vec<(Controller, Version, PathBuf)>,
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|error| Error::Engine(format!("failed to write {value:?} to {}: {error}", path.display())))
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl BoxCgroup {
    /// The groups a box would use (nothing is created).
    pub fn locate(layout: &CgroupLayout, box_id: &str) -> Self {
        let groups = layout
            .hierarchies()
            .map(|(controller, version, root)| (controller, version, root.join("boxlite").join(box_id)))
            .collect();
        Self { groups }
    }

    /// Creates the groups and writes the limits. On failure, removes what it made. A freezer
    /// group that cannot be made (an ordinary user given no freezer group) is left out: the box
    /// runs, and cannot be snapshotted while it runs.
    pub fn create(layout: &CgroupLayout, box_id: &str, limits: Limits) -> Result<Self> {
        let mut cgroup = Self::locate(layout, box_id);
        cgroup.groups.retain(|(controller, version, dir)| *controller != Controller::Freezer || *version == Version::V2 || std::fs::create_dir_all(dir).is_ok());
        let made = cgroup.create_groups(layout, limits);
        if let Err(error) = made {
            cgroup.remove();
            return Err(error);
        }
        Ok(cgroup)
    }

    fn create_groups(&self, layout: &CgroupLayout, limits: Limits) -> Result<()> {
        for (controller, version, dir) in &self.groups {
            if *version == Version::V2 {
                layout.enable_v2_controllers(dir)?;
            }
            std::fs::create_dir_all(dir).map_err(|error| Error::storage("create cgroup", dir, &error))?;
            match (controller, version) {
                (Controller::Memory, Version::V1) => {
                    write(&dir.join("memory.limit_in_bytes"), &limits.memory_bytes.to_string())?;
                    let swap = dir.join("memory.memsw.limit_in_bytes");
                    if swap.exists() {
                        write(&swap, &limits.memory_bytes.to_string())?;
                    }
                }
                (Controller::Memory, Version::V2) => {
                    write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                }
                (Controller::Cpu, Version::V1) => {
                    write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write(&dir.join("cpu.cfs_quota_us"), &(u64::from(limits.cpus) * CPU_PERIOD_US).to_string())?;
                }
                (Controller::Cpu, Version::V2) => {
                    write(&dir.join("cpu.max"), &format!("{} {CPU_PERIOD_US}", u64::from(limits.cpus) * CPU_PERIOD_US))?;
                }
                (Controller::Pids, _) => write(&dir.join("pids.max"), &limits.pids.to_string())?,
                (Controller::CpuAccounting | Controller::Freezer, _) => {}
            }
        }
        Ok(())
    }

    /// The files through which the box's init joins the groups, one per distinct directory:
    /// `tasks` on v1, where a single-threaded process writing `0` moves without the kernel's
    /// global migration lock (see `boxlite_protocol::JOIN_CGROUPS`), and `cgroup.procs` on v2.
    pub fn membership_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .groups
            .iter()
            .map(|(_, version, dir)| dir.join(if *version == Version::V1 { "tasks" } else { "cgroup.procs" }))
            .collect();
        files.sort();
        files.dedup();
        files
    }

    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for (controller, version, dir) in &self.groups {
            match (controller, version) {
                (Controller::Memory, Version::V1) => usage.memory_bytes = read_number(&dir.join("memory.usage_in_bytes")),
                (Controller::Memory, Version::V2) => usage.memory_bytes = read_number(&dir.join("memory.current")),
                (Controller::Pids, _) => usage.processes = read_number(&dir.join("pids.current")),
                (Controller::CpuAccounting, Version::V1) => usage.cpu_time_ns = read_number(&dir.join("cpuacct.usage")),
                (Controller::Cpu, Version::V2) => {
                    usage.cpu_time_ns = std::fs::read_to_string(dir.join("cpu.stat")).ok().and_then(|text| {
                        text.lines().find_map(|line| line.strip_prefix("usage_usec ")).and_then(|value| value.trim().parse::<u64>().ok()).map(|usec| usec * 1000)
                    });
                }
                _ => {}
            }
        }
        usage
    }

    /// Stops every process of the box until [`Frozen`] is dropped. Fails if the box has no
    /// freezer group (the host has none, or an ordinary user was given none), or if its
    /// processes do not all stop within a few seconds (then they are let go again).
    pub fn freeze(&self) -> Result<Frozen> {
        let Some((version, dir)) = self.groups.iter().find(|(controller, _, _)| *controller == Controller::Freezer).map(|(_, version, dir)| (*version, dir.clone())) else {
            return Err(Error::Unsupported("this host gives boxes no freezer cgroup, so a running box cannot be stopped for an instant".to_string()));
        };
        if !dir.is_dir() {
            return Err(Error::Unsupported(format!("the box has no freezer group ({} is missing), so it cannot be stopped for an instant", dir.display())));
        }
        let frozen = Frozen { version, dir };
        frozen.set(true)?;
        let deadline = std::time::Instant::now() + FREEZE_WAIT;
        let mut pause = Duration::from_micros(100);
        while !frozen.is_frozen() {
            if std::time::Instant::now() > deadline {
                return Err(Error::Engine(format!("the box's processes did not all stop within {FREEZE_WAIT:?}")));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        Ok(frozen)
    }

    /// Removes the groups, killing what is left in them first: every process in a box's group
    /// is the box's, and a box whose groups go is ending. Waits up to [`REMOVE_WAIT`] for the
    /// processes to leave (an init whose lifeline has closed is still tearing down its
    /// namespaces inside its groups); a group that outlasts that is reported, with its path
    /// and the processes it still holds, and left.
    pub fn remove(&self) {
        let deadline = Instant::now() + REMOVE_WAIT;
        for (controller, version, dir) in &self.groups {
            if let Err(error) = remove_group(*controller, *version, dir, deadline) {
                log::warn!("{error}");
            }
        }
    }
}

/// How long removing a box's groups waits for the processes still in them to leave.
pub const REMOVE_WAIT: Duration = Duration::from_secs(10);

fn remove_group(controller: Controller, version: Version, dir: &Path, deadline: Instant) -> Result<()> {
    let mut pause = Duration::from_micros(50);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {}
            Err(error) => return Err(Error::storage("remove cgroup", dir, &error)),
        }
        if Instant::now() >= deadline {
            return Err(Error::Engine(format!("failed to remove cgroup {}: processes {:?} stayed in it for {REMOVE_WAIT:?}", dir.display(), members(dir))));
        }
        kill_members(controller, version, dir);
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn members(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|line| line.trim().parse().ok()).collect()
}

/// SIGKILL to every process in the group. A v1 freezer group is thawed first: its frozen
/// processes could not act on the signal.
fn kill_members(controller: Controller, version: Version, dir: &Path) {
    if controller == Controller::Freezer && version == Version::V1 {
        let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    }
    if version == Version::V2 && std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    // Each process is pinned by a pidfd before the group is read again: one still listed
    // then is killed, and a pid that was reused meanwhile is never signalled.
    let pinned: Vec<(i32, OwnedFd)> = members(dir).into_iter().filter_map(|pid| Some((pid, process::pidfd_open(pid).ok()?))).collect();
    let still = members(dir);
    for (_, pidfd) in pinned.iter().filter(|(pid, _)| still.contains(pid)) {
        process::kill(pidfd);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn removing_a_box_group_kills_what_is_left_in_it() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: making cgroups needs root here (CI runs cargo test as root)");
            return;
        }
        let layout = CgroupLayout::detect();
        let cgroup = BoxCgroup::create(&layout, &format!("removal-test-{}", std::process::id()), Limits { memory_bytes: 1 << 30, cpus: 1, pids: 64 }).expect("create the groups");
        assert!(!cgroup.groups.is_empty(), "this host gives root no cgroups");
        let mut left_behind = std::process::Command::new("sleep").arg("600").spawn().expect("spawn sleep");
        for file in cgroup.membership_files() {
            std::fs::write(&file, left_behind.id().to_string()).expect("join the group");
        }
        cgroup.remove();
        let remaining: Vec<&PathBuf> = cgroup.groups.iter().map(|(_, _, dir)| dir).filter(|dir| dir.exists()).collect();
        if !remaining.is_empty() {
            let _ = left_behind.kill();
            panic!("groups outlived their removal: {remaining:?}");
        }
        let status = left_behind.wait().expect("wait for sleep");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
