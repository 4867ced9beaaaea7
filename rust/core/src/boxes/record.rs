//! A box's persistent record: `boxes/<id>/box.json`, written atomically (write, then exchange).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use boxlite_protocol::ProcessLimits;

use super::options::Volume;
use super::state::BoxStatus;
use crate::error::{Error, Result};
use crate::idmap::{IdMap, SubordinateIds};
use crate::image::PreparedImage;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoxRecord {
    pub id: String,
    pub name: Option<String>,
    /// The image as the user gave it (reference, layout path, or `host://`).
    pub image: String,
    pub status: BoxStatus,
    /// RFC 3339 with nanoseconds.
    pub created_at: String,
    pub created_at_nanos: u128,
    pub started_at: Option<String>,
    pub init_pid: Option<i32>,
    pub cpus: u8,
    pub memory_mib: u32,
    /// Delete the box when it stops (`auto_remove`, or `auto_delete > 0`).
    pub remove_on_stop: bool,
    pub detach: bool,
    pub working_dir: Option<String>,
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub prepared: PreparedImage,
    /// The box's main process (entrypoint + cmd), run on every start; `None` for a box that
    /// only runs what is exec'd in it.
    #[serde(default)]
    pub main: Option<Vec<String>>,
    /// The user chose the main command, so nothing may start the box implicitly (it would run
    /// the command as a side effect).
    #[serde(default)]
    pub main_chosen: bool,
    /// The main process runs on a terminal (`tty`).
    #[serde(default)]
    pub main_tty: bool,
    /// How the main process of the last run ended.
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Capability numbers box processes keep.
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<u32>,
    #[serde(default = "default_pids_limit")]
    pub pids_limit: u64,
    #[serde(default)]
    pub process_limits: ProcessLimits,
    /// The box's network (`BoxOptions::network`); records from before networks have none.
    #[serde(default)]
    pub network: Option<Vec<String>>,
    /// Ports published while the box runs (`BoxOptions::ports`).
    #[serde(default)]
    pub ports: Vec<crate::network::PortSpec>,
    /// The host ports the running box's `ports` were published on, in their order: a runtime
    /// that adopts the box publishes them there again, also those the host picked.
    #[serde(default)]
    pub published_host_ports: Vec<u16>,
    /// The box's user namespace; records from before user namespaces have none.
    #[serde(default)]
    pub id_map: Option<IdMap>,
    /// The subordinate ids an ordinary user's box with more than one id was made with: its
    /// files belong to them, so it runs only where the runtime maps the same ones. Records
    /// from before this was kept have none, and are taken to match.
    #[serde(default)]
    pub subordinate_ids: Option<SubordinateIds>,
    #[serde(default)]
    pub health_check: Option<super::HealthCheck>,
    /// The size of the box's own filesystem (`disk`), if it has one.
    #[serde(default)]
    pub disk_size_gb: Option<u64>,
    /// The certificate (PEM) of the authority of the box's secrets, which the box trusts; the
    /// secrets and the authority's key are in the box's directory
    /// ([`crate::network::secrets::SECRETS_DIR`]).
    #[serde(default)]
    pub secrets_authority: Option<String>,
}

fn default_capabilities() -> Vec<u32> {
    boxlite_protocol::DEFAULT_CAPABILITIES.iter().filter_map(|name| boxlite_protocol::capability_number(name)).collect()
}

fn default_pids_limit() -> u64 {
    crate::cgroups::DEFAULT_PIDS_LIMIT
}

impl BoxRecord {
    /// A running detached box with a network to serve (a way out or published ports): one a
    /// keeper serves once no runtime does (`keeper`).
    pub fn has_detached_network(&self) -> bool {
        self.detach && self.status == BoxStatus::Running && (self.network.is_some() || !self.ports.is_empty())
    }

    /// The state a record takes once its box's init is gone, whoever noticed (`settle` when
    /// this runtime saw it end, `reconcile` when a later runtime found it gone): `status`, no
    /// init, and, for a box with a main process, how that process ended in this run (`None`
    /// when the init recorded nothing).
    pub fn ended(&mut self, status: BoxStatus, main_exit: Option<i32>) {
        self.status = status;
        self.init_pid = None;
        if self.main.is_some() {
            self.exit_code = main_exit;
        }
    }

    pub fn save(&self, box_dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|error| Error::Internal(format!("cannot encode box record: {error}")))?;
        replace(&box_dir.join("box.json"), &box_dir.join(".box.json.tmp"), &bytes)
    }

    pub fn load(box_dir: &Path) -> Result<Self> {
        let path = box_dir.join("box.json");
        let bytes = fs_err::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|error| Error::Storage(format!("corrupt box record {}: {error}", path.display())))
    }
}

/// Writes `bytes` to `path` atomically: they go into `staging`, which then trades places with
/// `path` (`RENAME_EXCHANGE`). The old file's inode becomes the next staging file, so an update
/// frees no disk block: on a filesystem mounted with `discard` every freed block is a
/// synchronous discard (about 0.3 ms on this project's test hosts), and a box's record changes
/// on every start and stop.
fn replace(path: &Path, staging: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs_err::OpenOptions::new().create(true).write(true).open(staging)?;
    file.write_all(bytes)?;
    file.set_len(bytes.len() as u64)?;
    drop(file);
    match exchange(staging, path) {
        Ok(()) => Ok(()),
        // The first write (nothing to trade with), or a filesystem that cannot exchange.
        Err(error) if matches!(error.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) => Ok(fs_err::rename(staging, path)?),
        Err(error) => Err(Error::storage("replace", path, &error)),
    }
}

/// Swaps two paths atomically (`renameat2` with `RENAME_EXCHANGE`).
fn exchange(first: &Path, second: &Path) -> std::io::Result<()> {
    let first = std::ffi::CString::new(first.as_os_str().as_bytes())?;
    let second = std::ffi::CString::new(second.as_os_str().as_bytes())?;
    // SAFETY: two NUL-terminated paths that outlive the call; renameat2 keeps no pointer.
    let code = unsafe { libc::renameat2(libc::AT_FDCWD, first.as_ptr(), libc::AT_FDCWD, second.as_ptr(), libc::RENAME_EXCHANGE) };
    if code < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as an early runtime wrote it: without the fields added since.
    fn running_record(main: Option<&[&str]>) -> BoxRecord {
        let mut record: BoxRecord = serde_json::from_value(serde_json::json!({
            "id": "AbCdEfGhIjKl", "name": null, "image": "debian", "status": "running",
            "created_at": "2026-01-01T00:00:00.000000000+00:00", "created_at_nanos": 0,
            "started_at": null, "init_pid": 4242, "cpus": 1, "memory_mib": 512,
            "remove_on_stop": false, "detach": false, "working_dir": null, "env": [], "user": null,
            "prepared": {"lower_dirs": [], "read_only_binds": [], "config": {"env": [], "entrypoint": null, "cmd": null, "working_dir": null, "user": null}, "id": "host"}
        }))
        .expect("an old record loads");
        record.main = main.map(|argv| argv.iter().map(|arg| arg.to_string()).collect());
        record.exit_code = Some(7);
        record
    }

    #[test]
    fn an_ended_box_has_no_init_and_its_main_process_exit_is_this_runs() {
        let mut with_main = running_record(Some(&["sleep", "1"]));
        with_main.ended(BoxStatus::Stopped, Some(-9));
        assert_eq!((with_main.status, with_main.init_pid, with_main.exit_code), (BoxStatus::Stopped, None, Some(-9)));
        let mut unrecorded = running_record(Some(&["sleep", "1"]));
        unrecorded.ended(BoxStatus::Stopped, None);
        assert_eq!(unrecorded.exit_code, None, "an exit from an earlier run must not stand for this one");
        let mut without_main = running_record(None);
        without_main.ended(BoxStatus::Stopped, Some(3));
        assert_eq!((without_main.init_pid, without_main.exit_code), (None, Some(7)));
    }

    #[test]
    fn a_replaced_file_reads_whole_and_its_old_inode_is_reused() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("boxlite-record-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let (path, staging) = (dir.join("box.json"), dir.join(".box.json.tmp"));
        replace(&path, &staging, b"a longer first version").expect("first write");
        let first_inode = std::fs::metadata(&path).expect("stat").ino();
        replace(&path, &staging, b"second").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        assert_eq!(std::fs::metadata(&staging).expect("stat staging").ino(), first_inode);
        replace(&path, &staging, b"third, longer than the second").expect("third write");
        assert_eq!(std::fs::read(&path).expect("read"), b"third, longer than the second");
        assert_eq!(std::fs::metadata(&path).expect("stat").ino(), first_inode);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
