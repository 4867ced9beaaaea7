//! The JSON bodies of BoxLite's REST API, and their conversion to and from the core's types.
//! Requests refuse unknown fields: a knob the server does not know is an error, never ignored.
//! The REST client (`boxlite-client`) sends and reads these same types, so both sides change
//! together.

use std::collections::BTreeMap;
use std::time::Duration;

use boxlite_core::{BoxInfo, BoxMetrics, BoxOptions, ExecRequest, ImageRecord, RuntimeMetrics, SnapshotInfo, TtySize, Volume};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::lifecycle::Settings;

/// A field that may be left out or sent as `null` (BoxLite's clients send `null` for what they
/// leave unset): either way, its default.
fn null_as_default<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(deserializer: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBox {
    pub name: Option<String>,
    pub image: Option<String>,
    pub rootfs_path: Option<String>,
    pub cpus: Option<u8>,
    pub memory_mib: Option<u32>,
    pub disk_size_gb: Option<u64>,
    pub working_dir: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: BTreeMap<String, String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub user: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes: Vec<ManagedVolume>,
    pub network: Option<Network>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub secrets: Vec<Secret>,
    pub detach: Option<bool>,
    pub tty: Option<bool>,
    pub auto_stop: Option<u64>,
    pub auto_delete: Option<u64>,
    pub auto_resume: Option<bool>,
    pub advanced: Option<Advanced>,
}

/// A secret as BoxLite's API carries it; `placeholder` defaults as in the SDK.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    pub name: String,
    pub value: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub hosts: Vec<String>,
    pub placeholder: Option<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Secret").field("name", &self.name).field("hosts", &self.hosts).field("placeholder", &self.placeholder).finish_non_exhaustive()
    }
}

impl Secret {
    fn into_core(self) -> boxlite_core::network::SecretSpec {
        let placeholder = self.placeholder.unwrap_or_else(|| boxlite_core::network::SecretSpec::default_placeholder(&self.name));
        boxlite_core::network::SecretSpec { name: self.name, value: boxlite_core::Secret::new(self.value), hosts: self.hosts, placeholder }
    }

    pub fn of(secret: &boxlite_core::network::SecretSpec) -> Self {
        Self { name: secret.name.clone(), value: secret.value.expose().to_string(), hosts: secret.hosts.clone(), placeholder: Some(secret.placeholder.clone()) }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedVolume {
    pub managed_volume: String,
    pub guest_path: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub read_only: bool,
}

/// `{outbound: {mode, allow_net}, inbound: {mode}}`, or the older flat `{mode, allow_net}`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub outbound: Option<Direction>,
    pub inbound: Option<Direction>,
    pub mode: Option<String>,
    pub allow_net: Option<Vec<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Direction {
    pub mode: Option<String>,
    pub allow_net: Option<Vec<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advanced {
    pub capabilities: Option<Capabilities>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default, deserialize_with = "null_as_default")]
    pub add: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub drop: Vec<String>,
}

impl CreateBox {
    /// The core's options for this request. A server's boxes outlive the request that made
    /// them: detached and kept when stopped unless the request says otherwise.
    pub fn options(self) -> ApiResult<(BoxOptions, Option<String>, Settings)> {
        if let Some(name) = &self.name {
            check_name(name)?;
        }
        let lifecycle = Settings { auto_stop: self.auto_stop.unwrap_or(0), auto_delete: self.auto_delete.unwrap_or(0), auto_resume: self.auto_resume.unwrap_or(true) };
        let network = match self.network {
            None => Some(Vec::new()),
            Some(network) => network.outbound_allow_net()?,
        };
        let (capabilities_add, capabilities_drop) = self.advanced.and_then(|advanced| advanced.capabilities).map(|caps| (caps.add, caps.drop)).unwrap_or_default();
        let volumes = self
            .volumes
            .into_iter()
            .map(|volume| Volume { host_path: Default::default(), guest_path: volume.guest_path, read_only: volume.read_only, named: Some(volume.managed_volume) })
            .collect();
        let options = BoxOptions {
            image: self.image,
            rootfs_path: self.rootfs_path,
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            disk_size_gb: self.disk_size_gb,
            working_dir: self.working_dir,
            env: self.env.into_iter().collect(),
            entrypoint: self.entrypoint,
            cmd: self.cmd,
            user: self.user,
            tty: self.tty == Some(true),
            volumes,
            network,
            capabilities_add,
            capabilities_drop,
            secrets: self.secrets.into_iter().map(Secret::into_core).collect(),
            detach: Some(self.detach.unwrap_or(true)),
            auto_remove: Some(false),
            ..BoxOptions::default()
        };
        Ok((options, self.name, lifecycle))
    }
}

/// BoxLite's box names: 1 to 128 of letters, digits, `.`, `_` and `-`, starting with a letter or
/// a digit (names travel in URL paths).
pub fn check_name(name: &str) -> ApiResult<()> {
    let mut characters = name.chars();
    let first_fits = characters.next().is_some_and(|first| first.is_ascii_alphanumeric());
    if first_fits && name.len() <= 128 && characters.all(|other| other.is_ascii_alphanumeric() || matches!(other, '.' | '_' | '-')) {
        return Ok(());
    }
    Err(ApiError::invalid_argument(format!("a box name is 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit; not {name:?}")))
}

impl Network {
    /// The core's `network`: `None` for loopback only, else the outbound allow-list.
    fn outbound_allow_net(self) -> ApiResult<Option<Vec<String>>> {
        let flat = self.mode.is_some() || self.allow_net.is_some();
        if flat && (self.outbound.is_some() || self.inbound.is_some()) {
            return Err(ApiError::invalid_argument("network: use either {outbound, inbound} or the flat {mode, allow_net}, not both"));
        }
        if let Some(inbound) = &self.inbound {
            if inbound.mode.as_deref().is_some_and(|mode| mode != "disabled") || inbound.allow_net.as_ref().is_some_and(|list| !list.is_empty()) {
                return Err(ApiError::from(boxlite_core::Error::Unsupported("inbound network rules are not supported; publish ports instead".to_string())));
            }
        }
        let outbound = if flat { Direction { mode: self.mode, allow_net: self.allow_net } } else { self.outbound.unwrap_or_default() };
        match outbound.mode.as_deref().unwrap_or("enabled") {
            "enabled" => Ok(Some(outbound.allow_net.unwrap_or_default())),
            "disabled" if outbound.allow_net.as_ref().is_some_and(|list| !list.is_empty()) => Err(ApiError::invalid_argument("network: allow_net needs mode \"enabled\"")),
            "disabled" => Ok(None),
            other => Err(ApiError::invalid_argument(format!("network: mode must be \"enabled\" or \"disabled\", not {other:?}"))),
        }
    }
}

/// A box as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct BoxBody {
    pub box_id: String,
    pub name: Option<String>,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub pid: Option<i32>,
    pub image: String,
    pub cpus: u8,
    pub memory_mib: u32,
    pub labels: BTreeMap<String, String>,
    pub auto_stop: u64,
    pub auto_delete: u64,
    pub auto_resume: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// This server's addition to BoxLite's box: its network, in the create request's flat form
    /// (`mode` "disabled", or "enabled" with the outbound `allow_net`; empty allows everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<BoxNetwork>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoxNetwork {
    pub mode: String,
    pub allow_net: Vec<String>,
}

impl BoxNetwork {
    fn of(network: Option<Vec<String>>) -> Self {
        match network {
            Some(allow_net) => Self { mode: "enabled".to_string(), allow_net },
            None => Self { mode: "disabled".to_string(), allow_net: Vec::new() },
        }
    }

    /// The core's `network`: `None` for loopback only, else the outbound allow-list.
    pub fn allow_net(self) -> Option<Vec<String>> {
        (self.mode == "enabled").then_some(self.allow_net)
    }
}

impl BoxBody {
    pub fn new(info: BoxInfo, lifecycle: Settings) -> Self {
        Self {
            updated_at: info.started_at.clone().unwrap_or_else(|| info.created_at.clone()),
            box_id: info.id,
            name: info.name,
            status: info.status.to_string(),
            created_at: info.created_at,
            pid: info.pid,
            image: info.image,
            cpus: info.cpus,
            memory_mib: info.memory_mib,
            labels: BTreeMap::new(),
            auto_stop: lifecycle.auto_stop,
            auto_delete: lifecycle.auto_delete,
            auto_resume: lifecycle.auto_resume,
            exit_code: info.exit_code,
            network: Some(BoxNetwork::of(info.network)),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BoxList {
    pub boxes: Vec<BoxBody>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopBox {
    pub timeout_seconds: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    pub command: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub args: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: BTreeMap<String, String>,
    pub timeout_seconds: Option<f64>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tty: bool,
    /// The terminal's size when `tty`; 24x80 otherwise.
    pub tty_rows: Option<u16>,
    pub tty_cols: Option<u16>,
    /// Written to the process's stdin, which is then closed.
    pub stdin: Option<String>,
}

impl Exec {
    pub fn request(self) -> ApiResult<(ExecRequest, Option<String>)> {
        let timeout = match self.timeout_seconds {
            None => None,
            Some(seconds) => match Duration::try_from_secs_f64(seconds) {
                Ok(timeout) if !timeout.is_zero() => Some(timeout),
                _ => return Err(ApiError::invalid_argument(format!("timeout_seconds must be a positive number of seconds, got {seconds}"))),
            },
        };
        let tty = self.tty.then(|| TtySize { rows: self.tty_rows.unwrap_or(24), cols: self.tty_cols.unwrap_or(80) });
        let request = ExecRequest { command: self.command, args: self.args, env: self.env.into_iter().collect(), cwd: self.working_dir, user: self.user, tty, timeout };
        Ok((request, self.stdin))
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExecutionCreated {
    pub execution_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExecutionBody {
    pub execution_id: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub started_at: String,
    pub duration_ms: Option<u64>,
    pub error_message: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalBody {
    pub signal: i32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeBody {
    pub cols: u16,
    pub rows: u16,
}

/// A text frame from an attached client.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientControl {
    Resize { cols: u16, rows: u16 },
    Signal { sig: i32 },
    StdinEof,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RuntimeMetricsBody {
    pub boxes_created_total: u64,
    pub boxes_failed_total: u64,
    pub boxes_stopped_total: u64,
    pub num_running_boxes: u64,
    pub total_commands_executed: u64,
    pub total_exec_errors: u64,
}

impl From<RuntimeMetrics> for RuntimeMetricsBody {
    fn from(metrics: RuntimeMetrics) -> Self {
        Self {
            boxes_created_total: metrics.boxes_created_total,
            boxes_failed_total: metrics.boxes_failed_total,
            boxes_stopped_total: metrics.boxes_stopped_total,
            num_running_boxes: metrics.num_running_boxes,
            total_commands_executed: metrics.total_commands_executed,
            total_exec_errors: metrics.total_exec_errors,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BoxMetricsBody {
    pub commands_executed_total: u64,
    pub exec_errors_total: u64,
    pub bytes_sent_total: u64,
    pub bytes_received_total: u64,
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// This server's additions to BoxLite's metrics: the box's CPU time and processes.
    #[serde(default)]
    pub cpu_time_ns: Option<u64>,
    #[serde(default)]
    pub processes: Option<u64>,
    pub network_bytes_sent: Option<u64>,
    pub network_bytes_received: Option<u64>,
    pub network_tcp_connections: Option<u64>,
    pub network_tcp_errors: Option<u64>,
    pub boot_timing: BootTiming,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BootTiming {
    pub total_create_ms: Option<u64>,
    pub box_spawn_ms: Option<u64>,
}

impl From<BoxMetrics> for BoxMetricsBody {
    fn from(metrics: BoxMetrics) -> Self {
        let network = metrics.network.as_ref();
        Self {
            commands_executed_total: metrics.commands_executed_total,
            exec_errors_total: metrics.exec_errors_total,
            bytes_sent_total: metrics.bytes_sent_total,
            bytes_received_total: metrics.bytes_received_total,
            cpu_percent: metrics.cpu_percent,
            memory_bytes: metrics.memory_bytes,
            cpu_time_ns: metrics.cpu_time_ns,
            processes: metrics.processes,
            network_bytes_sent: network.map(|traffic| traffic.bytes_sent),
            network_bytes_received: network.map(|traffic| traffic.bytes_received),
            network_tcp_connections: network.map(|traffic| traffic.tcp_connections),
            network_tcp_errors: network.map(|traffic| traffic.tcp_errors),
            boot_timing: BootTiming { total_create_ms: metrics.create_duration_ms, box_spawn_ms: metrics.boot_duration_ms },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullImage {
    pub reference: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ImageBody {
    pub reference: String,
    pub repository: String,
    pub tag: String,
    pub id: String,
    pub cached_at: String,
    pub size_bytes: Option<u64>,
}

impl From<ImageRecord> for ImageBody {
    fn from(record: ImageRecord) -> Self {
        Self {
            reference: record.reference,
            repository: record.repository,
            tag: record.tag.unwrap_or_default(),
            id: record.manifest_digest,
            cached_at: record.cached_at,
            size_bytes: Some(record.size_bytes),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ImageList {
    pub images: Vec<ImageBody>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshot {
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub id: String,
    pub box_id: String,
    pub name: String,
    pub created_at: u64,
    pub container_disk_bytes: u64,
    pub size_bytes: u64,
}

impl From<SnapshotInfo> for SnapshotBody {
    fn from(info: SnapshotInfo) -> Self {
        Self { id: info.id, box_id: info.box_id, name: info.name, created_at: info.created_at, container_disk_bytes: info.container_disk_bytes, size_bytes: info.size_bytes }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotBody>,
}

/// Where a running box's port is reached (`POST /boxes/{box}/network/tunnel?port=N`).
#[derive(Debug, Serialize, Deserialize)]
pub struct TunnelDescriptor {
    pub uri: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneBox {
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> ApiResult<(BoxOptions, Option<String>, Settings)> {
        serde_json::from_str::<CreateBox>(json).map_err(|error| ApiError::invalid_argument(error.to_string()))?.options()
    }

    #[test]
    fn a_created_box_is_detached_kept_and_online_unless_asked() {
        let (options, name, lifecycle) = parse(r#"{"name": "web", "image": "alpine"}"#).expect("parse");
        assert_eq!(lifecycle, Settings::default());
        assert_eq!(name.as_deref(), Some("web"));
        assert_eq!((options.detach, options.auto_remove, options.network), (Some(true), Some(false), Some(Vec::new())));
    }

    #[test]
    fn names_are_what_fits_in_a_path() {
        for name in ["web".to_string(), "a.b_c-9".to_string(), "x".repeat(128)] {
            assert!(parse(&format!(r#"{{"name": "{name}"}}"#)).is_ok(), "{name}");
        }
        for name in ["".to_string(), "-web".to_string(), "wh*".to_string(), "a/b".to_string(), "caf\u{e9}".to_string(), "x".repeat(129)] {
            assert!(parse(&format!(r#"{{"name": "{name}"}}"#)).is_err(), "{name}");
        }
    }

    #[test]
    fn network_shapes() {
        let (options, _, _) = parse(r#"{"network": {"outbound": {"mode": "enabled", "allow_net": ["example.com"]}}}"#).expect("nested");
        assert_eq!(options.network, Some(vec!["example.com".to_string()]));
        let (options, _, _) = parse(r#"{"network": {"mode": "disabled"}}"#).expect("flat");
        assert_eq!(options.network, None);
        assert!(parse(r#"{"network": {"mode": "disabled", "outbound": {}}}"#).is_err());
        assert!(parse(r#"{"network": {"mode": "disabled", "allow_net": ["a.com"]}}"#).is_err());
    }

    #[test]
    fn null_is_left_unset() {
        let (options, name, _) = parse(r#"{"name": null, "env": null, "volumes": null, "cmd": null, "network": {"outbound": null}}"#).expect("nulls");
        assert_eq!((name, options.env, options.cmd, options.network), (None, Vec::new(), None, Some(Vec::new())));
        let exec: Exec = serde_json::from_str(r#"{"command": "true", "args": null, "env": null, "tty": null}"#).expect("exec nulls");
        assert!(exec.args.is_empty() && !exec.tty);
    }

    #[test]
    fn unknown_fields_and_unsupported_knobs_are_refused() {
        assert!(serde_json::from_str::<CreateBox>(r#"{"security": {"privileged": true}}"#).is_err());
        let (_, _, lifecycle) = parse(r#"{"auto_stop": 60, "auto_delete": 5, "auto_resume": false}"#).expect("lifecycle");
        assert_eq!(lifecycle, Settings { auto_stop: 60, auto_delete: 5, auto_resume: false });
        let (options, _, _) = parse(r#"{"secrets": [{"name": "k", "value": "sk-1", "hosts": ["api.example.com"]}]}"#).expect("secrets");
        assert_eq!(options.secrets[0].placeholder, "<BOXLITE_SECRET:k>");
        assert!(!format!("{options:?}").contains("sk-1"), "no value in Debug");
    }
}
