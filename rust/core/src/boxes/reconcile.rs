//! Settling a box whose init ended, and reconciling a home on open (rules 4 and 5): the one
//! state update both make, and what a dead box leaves behind.

use super::*;

/// Counts the settles in progress of boxes whose init ended on its own.
#[derive(Debug, Default)]
pub(super) struct Settling {
    count: Mutex<usize>,
    done: std::sync::Condvar,
}

/// One settle in progress, counted until it drops. It goes into the settle's blocking work:
/// closing the runtime drops the task that waits for that work, not the work.
pub(super) struct SettlingNow(Arc<Inner>);

impl Inner {
    pub(super) fn begin_settling(self: &Arc<Self>) -> SettlingNow {
        *lock(&self.settling.count) += 1;
        SettlingNow(Arc::clone(self))
    }
}

impl Settling {
    /// Blocks until no settle is in progress, or `limit` passed.
    pub(super) fn wait_until_none(&self, limit: Duration) {
        let count = lock(&self.count);
        let _ = self.done.wait_timeout_while(count, limit, |count| *count > 0);
    }
}

impl Drop for SettlingNow {
    fn drop(&mut self) {
        *lock(&self.0.settling.count) -= 1;
        self.0.settling.done.notify_all();
    }
}

/// The root of a box's writable layer belongs to its root user (`idmap` rule 2).
pub(super) fn own_upper_layer(dir: &Path, id_map: Option<IdMap>) -> Result<()> {
    let Some(owner) = crate::idmap::host_owner(id_map, 0) else { return Ok(()) };
    let upper = dir.join("upper");
    std::os::unix::fs::chown(&upper, Some(owner), Some(owner)).map_err(|error| Error::storage("chown", &upper, &error))
}

/// What is left to do once a box's init is gone, whoever noticed: remove its cgroup and
/// socket, record how its main process ended, and delete the box if it removes on stop.
pub(super) fn settle(inner: &Arc<Inner>, entry: &BoxEntry, status: BoxStatus) -> Result<()> {
    if status == BoxStatus::Stopped && matches!(entry.record().status, BoxStatus::Running | BoxStatus::Stopping) {
        inner.counters.boxes_stopped.fetch_add(1, Ordering::Relaxed);
    }
    // The socket first: the box is not reachable any more, while its groups may take a while.
    let _ = std::fs::remove_file(entry.dir.join("init.sock"));
    BoxCgroup::locate(&inner.cgroups, &entry.id).remove();
    let exit_code = recorded_exit(&entry.dir);
    if let Some(code) = exit_code.filter(|_| entry.record().main.is_some()) {
        log::debug!("box {}'s main process exited with {code}", entry.id);
    }
    if entry.record().remove_on_stop {
        log::debug!("removing box {} (it removes on stop)", entry.id);
        return Runtime { inner: Arc::clone(inner) }.delete(entry).inspect_err(|error| log::warn!("failed to remove box {}: {error}", entry.id));
    }
    log::debug!("box {} is {}", entry.id, status.as_str());
    entry.update(|record| record.ended(status, exit_code))
}

/// The exit the init wrote for the main process of the box's last run, if it did.
pub(super) fn recorded_exit(dir: &Path) -> Option<i32> {
    exec::read_recorded_exit(&std::fs::File::open(dir.join(MAIN_STATUS)).ok()?)
}

/// Rule 4, for one record found on disk. Returns the entry to keep, if any.
pub(super) fn reconcile(dir: &Path, record: BoxRecord, cgroups: &CgroupLayout) -> Option<BoxEntry> {
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
            *lock(&entry.killer) = adopted.as_ref().map(Live::killer);
            *live = adopted;
        }
        return Some(entry);
    }
    // A box whose runtime died while starting it may have its groups and socket and no record
    // of running yet: what no init holds goes whatever the record says.
    BoxCgroup::locate(cgroups, &entry.id).remove();
    let _ = std::fs::remove_file(dir.join("init.sock"));
    if was_running {
        log::info!("box {} was left running by a runtime that is gone, and its init is gone too: settling it as stopped", entry.id);
        if entry.record().remove_on_stop {
            let _ = std::fs::remove_dir_all(dir);
            return None;
        }
        let exit_code = recorded_exit(dir);
        let _ = entry.update(|record| record.ended(BoxStatus::Stopped, exit_code));
    }
    Some(entry)
}
