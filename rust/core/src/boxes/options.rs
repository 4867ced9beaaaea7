//! What a user asks for when creating a box, and what they read back about it.

use std::path::PathBuf;

use boxlite_protocol::{capability_number, ProcessLimits, DEFAULT_CAPABILITIES};
use serde::{Deserialize, Serialize};

pub use crate::cgroups::DEFAULT_PIDS_LIMIT;
use crate::error::{Error, Result};
use crate::image::ImageConfig;

#[derive(Debug, Clone, Default)]
pub struct BoxOptions {
    pub image: Option<String>,
    pub rootfs_path: Option<String>,
    pub cpus: Option<u8>,
    pub memory_mib: Option<u32>,
    pub working_dir: Option<String>,
    pub env: Vec<(String, String)>,
    pub auto_remove: Option<bool>,
    pub auto_delete: Option<u64>,
    pub detach: Option<bool>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub user: Option<String>,
    /// Runs the box's main process on a terminal.
    pub tty: bool,
    pub volumes: Vec<Volume>,
    /// Capability names added to / dropped from the default set (`ALL` drops every one).
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    /// The box's process limit (its pids cgroup); the default is [`DEFAULT_PIDS_LIMIT`].
    pub max_processes: Option<u64>,
    pub process_limits: ProcessLimits,
    pub health_check: Option<super::HealthCheck>,
    /// The size of the box's own filesystem, which holds what the box writes (`disk`); `None`:
    /// the box writes to the home's filesystem, unbounded.
    pub disk_size_gb: Option<u64>,
    /// The box's network: `None` leaves it loopback only; `Some(allow_net)` lets it reach what
    /// the list allows (everything but what `network` rule 3 keeps out, when empty).
    pub network: Option<Vec<String>>,
    /// Ports of the box published on the host while it runs.
    pub ports: Vec<crate::network::PortSpec>,
    /// Secrets the box's HTTPS requests carry without the box holding them
    /// ([`crate::network::secrets`]); they need a network.
    pub secrets: Vec<crate::network::SecretSpec>,
}

/// A host path mounted into the box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// For a named volume, its data directory, found when the box is created.
    pub host_path: PathBuf,
    pub guest_path: String,
    pub read_only: bool,
    /// The named volume (`volume://name`) this is, if it is one.
    #[serde(default)]
    pub named: Option<String>,
}

/// Capabilities a box may add to the default set. The others would let a box without a user
/// namespace act on the host (load modules, mount, trace its init, make device nodes).
const ADDABLE_CAPABILITIES: &[&str] = &["NET_ADMIN", "NET_BROADCAST", "IPC_LOCK", "IPC_OWNER", "SYS_NICE", "SYS_RESOURCE", "LEASE", "WAKE_ALARM"];

pub const DEFAULT_CPUS: u8 = 1;
pub const DEFAULT_MEMORY_MIB: u32 = 1024;

impl BoxOptions {
    /// The box's main process: the user's `entrypoint` and `cmd`, each replacing the image's own
    /// (BoxLite's rule: an `entrypoint` alone keeps the image's CMD), joined. `None` when the
    /// result is empty and the user chose neither, i.e. an image with no default command.
    pub fn main_command(&self, image: &ImageConfig) -> Result<Option<Vec<String>>> {
        let entrypoint = self.entrypoint.as_ref().or(image.entrypoint.as_ref());
        let cmd = self.cmd.as_ref().or(image.cmd.as_ref());
        let argv: Vec<String> = entrypoint.into_iter().chain(cmd).flatten().cloned().collect();
        if argv.is_empty() {
            if self.entrypoint.is_some() || self.cmd.is_some() {
                return Err(Error::InvalidArgument("the box's main command is empty: the image has no entrypoint to go with cmd=[]".to_string()));
            }
            return Ok(None);
        }
        Ok(Some(argv))
    }

    /// `auto_delete` wins over `auto_remove`; the default removes a box when it stops.
    pub fn remove_on_stop(&self) -> bool {
        match self.auto_delete {
            Some(seconds) => seconds > 0,
            None => self.auto_remove.unwrap_or(true),
        }
    }

    /// The cgroup limits these options set themselves (the defaults aside).
    pub fn limits_asked(&self) -> Vec<&'static str> {
        [("cpus", self.cpus.is_some()), ("memory_mib", self.memory_mib.is_some()), ("max_processes", self.max_processes.is_some())]
            .into_iter()
            .filter_map(|(name, asked)| asked.then_some(name))
            .collect()
    }

    pub fn validate(&self) -> Result<()> {
        if self.remove_on_stop() && self.detach == Some(true) {
            return Err(Error::InvalidArgument(
                "remove-on-stop is incompatible with detach=true: a detached box must outlive this process; set auto_remove=False".to_string(),
            ));
        }
        if self.cpus == Some(0) {
            return Err(Error::InvalidArgument("cpus must be at least 1".to_string()));
        }
        if self.memory_mib == Some(0) {
            return Err(Error::InvalidArgument("memory_mib must be at least 1".to_string()));
        }
        if let Some(check) = &self.health_check {
            check.validate()?;
        }
        if self.disk_size_gb.is_some_and(|size| !(1..=super::disk::MAX_SIZE_GB).contains(&size)) {
            return Err(Error::InvalidArgument(format!("disk_size_gb must be between 1 and {}", super::disk::MAX_SIZE_GB)));
        }
        let command = self.entrypoint.iter().chain(&self.cmd).flatten();
        super::spec::check_process_strings(command, &self.env, self.working_dir.as_deref(), self.user.as_deref())?;
        if self.max_processes == Some(0) {
            return Err(Error::InvalidArgument("max_processes must be at least 1".to_string()));
        }
        if let Some(allow_net) = &self.network {
            crate::network::Policy::parse(allow_net)?;
        }
        for (index, port) in self.ports.iter().enumerate() {
            port.validate()?;
            let same_listener = |other: &crate::network::PortSpec| {
                other.protocol == port.protocol && other.host_port.is_some_and(|host_port| host_port != 0) && other.host_port == port.host_port && (other.host_ip.is_none() || port.host_ip.is_none() || other.host_ip == port.host_ip)
            };
            if let Some(other) = self.ports[..index].iter().find(|other| same_listener(other)) {
                return Err(Error::InvalidArgument(format!("host port {}/{} is published twice", other.host_port.unwrap_or_default(), port.protocol.as_str())));
            }
        }
        if !self.secrets.is_empty() && self.network.is_none() {
            return Err(Error::InvalidArgument("secrets travel only over the box's network, and this box has none".to_string()));
        }
        crate::network::secrets::validate(&self.secrets)?;
        self.validate_process_limits()?;
        self.capabilities()?;
        self.validate_volumes()
    }

    /// Each limit is positive and within what this process may set: box processes cannot raise
    /// a hard limit (in a user namespace, not even root in the box).
    fn validate_process_limits(&self) -> Result<()> {
        let limits = &self.process_limits;
        for (name, value, resource) in [
            ("max_open_files", limits.open_files, libc::RLIMIT_NOFILE),
            ("max_file_size", limits.file_size_bytes, libc::RLIMIT_FSIZE),
            ("max_cpu_time", limits.cpu_time_secs, libc::RLIMIT_CPU),
            ("max_memory", limits.address_space_bytes, libc::RLIMIT_AS),
        ] {
            let Some(value) = value else { continue };
            if value == 0 {
                return Err(Error::InvalidArgument(format!("{name} must be at least 1")));
            }
            let mut current = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit fills the rlimit we own.
            let known = unsafe { libc::getrlimit(resource, &mut current) } == 0;
            if known && current.rlim_max != libc::RLIM_INFINITY && value > current.rlim_max {
                return Err(Error::InvalidArgument(format!("{name} {value} is above the runtime's own hard limit ({})", current.rlim_max)));
            }
        }
        Ok(())
    }

    fn validate_volumes(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for volume in &self.volumes {
            let host = &volume.host_path;
            // A named volume's directory is found when the box is created (`volumes`).
            if volume.named.is_none() {
                if !host.is_absolute() {
                    return Err(Error::InvalidArgument(format!("volume source {} must be an absolute host path", host.display())));
                }
                if !host.exists() {
                    return Err(Error::NotFound(format!("volume source {}", host.display())));
                }
                let mode = if host.is_dir() { libc::R_OK | libc::X_OK } else { libc::R_OK };
                crate::host::accessible(host, mode).map_err(|error| Error::InvalidArgument(format!("volume source {} cannot be read by this runtime's user: {error}", host.display())))?;
            }
            let guest = volume.guest_path.trim_end_matches('/');
            if !volume.guest_path.starts_with('/') || guest.is_empty() || guest.split('/').any(|part| part == "..") {
                return Err(Error::InvalidArgument(format!("volume target {:?} must be an absolute path in the box, other than /, without '..'", volume.guest_path)));
            }
            if ["/proc", "/sys", "/dev"].iter().any(|protected| guest == *protected || guest.starts_with(&format!("{protected}/"))) {
                return Err(Error::InvalidArgument(format!("volume target {guest} is under /proc, /sys or /dev, which the box keeps for itself")));
            }
            if !seen.insert(guest.to_string()) {
                return Err(Error::InvalidArgument(format!("two volumes target {guest}")));
            }
        }
        Ok(())
    }

    /// The capability numbers box processes keep: the default set less `drop`, plus `add` (as
    /// Docker orders them, so `drop=["ALL"], add=[...]` keeps exactly `add`).
    pub fn capabilities(&self) -> Result<Vec<u32>> {
        let number = |name: &String| capability_number(name).ok_or_else(|| Error::InvalidArgument(format!("unknown capability {name:?}")));
        let default: Vec<u32> = DEFAULT_CAPABILITIES.iter().filter_map(|name| capability_number(name)).collect();
        let mut kept = default.clone();
        for name in &self.capabilities_drop {
            if name.eq_ignore_ascii_case("ALL") {
                kept.clear();
                continue;
            }
            let capability = number(name)?;
            kept.retain(|kept| *kept != capability);
        }
        for name in &self.capabilities_add {
            let capability = number(name)?;
            let bare = name.to_ascii_uppercase();
            let bare = bare.strip_prefix("CAP_").unwrap_or(&bare);
            if !default.contains(&capability) && !ADDABLE_CAPABILITIES.contains(&bare) {
                return Err(Error::InvalidArgument(format!(
                    "capability {name} cannot be added: it could act on the host from a box (addable beyond the default set: {})",
                    ADDABLE_CAPABILITIES.join(", ")
                )));
            }
            if !kept.contains(&capability) {
                kept.push(capability);
            }
        }
        kept.sort_unstable();
        Ok(kept)
    }
}

/// A snapshot of one box, as `BoxInfo` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxInfo {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    pub status: &'static str,
    pub running: bool,
    pub pid: Option<i32>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub cpus: u8,
    pub memory_mib: u32,
    /// 1 when the box is deleted on stop, 0 when it is kept.
    pub auto_delete: u64,
    /// BoxLite's lifecycle knobs a REST server enforces (a local box has neither: 0, false).
    pub auto_stop: u64,
    pub auto_resume: bool,
    pub detach: bool,
    /// How the main process of the last run ended (`-N` after signal N).
    pub exit_code: Option<i32>,
    pub health: super::HealthStatus,
    /// The box's network (`BoxOptions::network`).
    pub network: Option<Vec<String>>,
    /// The ports published while the box runs.
    pub published_ports: Vec<crate::network::PublishedPort>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_on_stop_follows_the_reference_precedence() {
        assert!(BoxOptions::default().remove_on_stop());
        assert!(!BoxOptions { auto_remove: Some(false), ..Default::default() }.remove_on_stop());
        assert!(BoxOptions { auto_remove: Some(false), auto_delete: Some(60), ..Default::default() }.remove_on_stop());
        assert!(!BoxOptions { auto_remove: Some(true), auto_delete: Some(0), ..Default::default() }.remove_on_stop());
    }

    #[test]
    fn main_command_follows_boxlite_rules() {
        let image = ImageConfig { entrypoint: Some(vec!["/entry".into()]), cmd: Some(vec!["default".into()]), ..Default::default() };
        let main = |entrypoint: Option<&[&str]>, cmd: Option<&[&str]>| {
            let owned = |words: &[&str]| words.iter().map(|word| (*word).to_string()).collect::<Vec<_>>();
            BoxOptions { entrypoint: entrypoint.map(owned), cmd: cmd.map(owned), ..Default::default() }.main_command(&image)
        };
        assert_eq!(main(None, None).unwrap(), Some(vec!["/entry".to_string(), "default".to_string()]));
        assert_eq!(main(None, Some(&["x"])).unwrap(), Some(vec!["/entry".to_string(), "x".to_string()]));
        assert_eq!(main(Some(&["/other"]), None).unwrap(), Some(vec!["/other".to_string(), "default".to_string()]));
        assert_eq!(main(Some(&["/other"]), Some(&[])).unwrap(), Some(vec!["/other".to_string()]));
        assert!(main(Some(&[]), Some(&[])).is_err());
        assert_eq!(BoxOptions::default().main_command(&ImageConfig::default()).unwrap(), None);
    }

    #[test]
    fn capabilities_start_from_the_default_set() {
        let options = |add: &[&str], drop: &[&str]| BoxOptions {
            capabilities_add: add.iter().map(|name| (*name).to_string()).collect(),
            capabilities_drop: drop.iter().map(|name| (*name).to_string()).collect(),
            ..Default::default()
        };
        let default = options(&[], &[]).capabilities().unwrap();
        assert_eq!(default.len(), DEFAULT_CAPABILITIES.len());
        assert!(options(&["cap_net_admin"], &[]).capabilities().unwrap().contains(&12));
        assert!(!options(&[], &["CHOWN"]).capabilities().unwrap().contains(&0));
        assert!(options(&[], &["ALL"]).capabilities().unwrap().is_empty());
        assert_eq!(options(&["NET_BIND_SERVICE"], &["ALL"]).capabilities().unwrap(), vec![10]);
        assert!(options(&["SYS_ADMIN"], &[]).capabilities().is_err());
        assert!(options(&["NOT_A_CAP"], &[]).capabilities().is_err());
    }

    #[test]
    fn detach_conflicts_with_remove_on_stop() {
        let error = BoxOptions { detach: Some(true), ..Default::default() }.validate().unwrap_err();
        assert!(error.to_string().contains("remove-on-stop is incompatible"));
        BoxOptions { detach: Some(true), auto_remove: Some(false), ..Default::default() }.validate().expect("valid");
    }
}
