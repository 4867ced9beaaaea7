//! A box on the server: its state, start and stop, snapshots, clones and metrics. Executions
//! are in `exec`, files in `files`.

use std::sync::atomic::{AtomicBool, Ordering};

use boxlite_core::{BoxInfo, BoxMetrics, BoxOptions, BoxStatus, Error, Result, SnapshotInfo};
use boxlite_server::wire;
use reqwest::Method;

use crate::{segment, Client, Lifecycle};

/// A handle to one box of a REST runtime. As a local handle, it is spent by `stop()`: what
/// would start the box again needs a new handle (`Client::get`).
pub struct RemoteBox {
    pub(crate) client: Client,
    id: String,
    name: Option<String>,
    spent: AtomicBool,
    /// The box is removed when it stops (`auto_delete` of 1 s, what `auto_remove` asks): a
    /// stop through this handle removes it at once, as a local box's stop does.
    removed_on_stop: bool,
}

impl std::fmt::Debug for RemoteBox {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("RemoteBox").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

impl RemoteBox {
    pub(crate) fn new(client: Client, body: wire::BoxBody) -> Self {
        Self { client, id: body.box_id, name: body.name, spent: AtomicBool::new(false), removed_on_stop: body.auto_delete == REMOVED_ON_STOP }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn name(&self) -> Option<String> {
        self.name.clone()
    }

    /// The runtime this box belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `/boxes/{id}{rest}`.
    pub(crate) fn path(&self, rest: &str) -> String {
        format!("/boxes/{}{rest}", segment(&self.id))
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        if self.spent.load(Ordering::Acquire) {
            return Err(Error::Stopped("Handle invalidated after stop(). Use runtime.get() to get a new handle.".to_string()));
        }
        Ok(())
    }

    pub async fn info(&self) -> Result<BoxInfo> {
        let body: wire::BoxBody = self.client.json(self.client.quick(Method::GET, &self.path(""))?).await?;
        Ok(info(body))
    }

    /// Boots the box; a running box is left as it is.
    pub async fn start(&self) -> Result<()> {
        self.check_usable()?;
        self.client.send(self.client.request(Method::POST, &self.path("/start"))?).await?;
        Ok(())
    }

    /// Stops the box (the server's default grace, then SIGKILL) and spends this handle.
    pub async fn stop(&self) -> Result<()> {
        if self.spent.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.client.end_forwarders(&self.id);
        match self.client.send(self.client.request(Method::POST, &self.path("/stop"))?).await {
            Ok(_) if self.removed_on_stop => match self.client.remove(&self.id, false).await {
                Ok(()) | Err(Error::NotFound(_)) => Ok(()),
                Err(error) => Err(error),
            },
            // Removed as it stopped, or by someone else: nothing left to stop.
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    pub async fn metrics(&self) -> Result<BoxMetrics> {
        self.check_usable()?;
        let body: wire::BoxMetricsBody = self.client.json(self.client.quick(Method::GET, &self.path("/metrics"))?).await?;
        let network = body.network_bytes_sent.map(|bytes_sent| boxlite_core::network::TrafficCounts {
            bytes_sent,
            bytes_received: body.network_bytes_received.unwrap_or(0),
            tcp_connections: body.network_tcp_connections.unwrap_or(0),
            tcp_errors: body.network_tcp_errors.unwrap_or(0),
        });
        Ok(BoxMetrics {
            commands_executed_total: body.commands_executed_total,
            exec_errors_total: body.exec_errors_total,
            boot_duration_ms: body.boot_timing.box_spawn_ms,
            create_duration_ms: body.boot_timing.total_create_ms,
            memory_bytes: body.memory_bytes,
            cpu_time_ns: body.cpu_time_ns,
            cpu_percent: body.cpu_percent,
            processes: body.processes,
            bytes_sent_total: body.bytes_sent_total,
            bytes_received_total: body.bytes_received_total,
            disk_bytes: None,
            network,
        })
    }

    /// A new, stopped box with this box's options and a copy of its files.
    pub async fn clone_box(&self, name: Option<String>) -> Result<RemoteBox> {
        let body = wire::CloneBox { name };
        let cloned: wire::BoxBody = self.client.json(self.client.request(Method::POST, &self.path("/clone"))?.json(&body)).await?;
        Ok(RemoteBox::new(self.client.clone(), cloned))
    }

    pub async fn snapshot_create(&self, name: &str) -> Result<SnapshotInfo> {
        let body = wire::CreateSnapshot { name: name.to_string() };
        let made: wire::SnapshotBody = self.client.json(self.client.request(Method::POST, &self.path("/snapshots"))?.json(&body)).await?;
        Ok(snapshot(made))
    }

    pub async fn snapshot_list(&self) -> Result<Vec<SnapshotInfo>> {
        let list: wire::SnapshotList = self.client.json(self.client.quick(Method::GET, &self.path("/snapshots"))?).await?;
        Ok(list.snapshots.into_iter().map(snapshot).collect())
    }

    pub async fn snapshot_get(&self, name: &str) -> Result<Option<SnapshotInfo>> {
        match self.client.json(self.client.quick(Method::GET, &self.path(&format!("/snapshots/{}", segment(name))))?).await {
            Ok(found) => Ok(Some(snapshot(found))),
            Err(Error::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    pub async fn snapshot_remove(&self, name: &str) -> Result<()> {
        self.client.send(self.client.request(Method::DELETE, &self.path(&format!("/snapshots/{}", segment(name))))?).await?;
        Ok(())
    }

    pub async fn snapshot_restore(&self, name: &str) -> Result<()> {
        self.client.send(self.client.request(Method::POST, &self.path(&format!("/snapshots/{}/restore", segment(name))))?).await?;
        Ok(())
    }
}

/// The `auto_delete` that stands for removal on stop.
const REMOVED_ON_STOP: u64 = 1;

fn snapshot(body: wire::SnapshotBody) -> SnapshotInfo {
    SnapshotInfo::reported(body.id, body.box_id, body.name, body.created_at, body.container_disk_bytes, body.size_bytes)
}

/// What the server tells of a box, as the core's `BoxInfo`; what the API does not carry is
/// left at its default.
pub(crate) fn info(body: wire::BoxBody) -> BoxInfo {
    let status = [BoxStatus::Configured, BoxStatus::Running, BoxStatus::Stopping, BoxStatus::Stopped, BoxStatus::Failed]
        .into_iter()
        .find(|status| status.as_str() == body.status)
        .unwrap_or(BoxStatus::Unknown);
    BoxInfo {
        running: status == BoxStatus::Running,
        status: status.as_str(),
        started_at: (body.updated_at != body.created_at).then_some(body.updated_at),
        id: body.box_id,
        name: body.name,
        image: body.image,
        pid: body.pid,
        created_at: body.created_at,
        cpus: body.cpus,
        memory_mib: body.memory_mib,
        auto_delete: u64::from(body.auto_delete > 0),
        auto_stop: body.auto_stop,
        auto_resume: body.auto_resume,
        detach: true,
        exit_code: body.exit_code,
        health: boxlite_core::HealthStatus::default(),
        network: body.network.and_then(wire::BoxNetwork::allow_net),
        published_ports: Vec::new(),
    }
}

/// The create request for `options`. What the REST API cannot carry is refused, never dropped:
/// host directories, published ports, resource limits beyond cpus and memory, health checks.
pub(crate) fn create_body(options: BoxOptions, lifecycle: Lifecycle, name: Option<String>) -> Result<wire::CreateBox> {
    let unsupported = |what: &str| Err(Error::Unsupported(format!("{what} cannot be set on a box of a REST runtime")));
    if options.volumes.iter().any(|volume| volume.named.is_none()) {
        return unsupported("a host directory volume (use a named volume, volume://name)");
    }
    if !options.ports.is_empty() {
        return unsupported("published ports");
    }
    if options.max_processes.is_some() || options.process_limits != boxlite_core::ProcessLimits::default() {
        return unsupported("a process limit");
    }
    if options.health_check.is_some() {
        return unsupported("a health check");
    }
    options.validate()?;
    // A box the options remove when it stops is deleted by the server right after (BoxLite's
    // auto_delete counts seconds; 0 is never), or by the stop of a handle (`RemoteBox::stop`).
    let auto_delete = match options.auto_delete {
        Some(seconds) => seconds,
        None if options.remove_on_stop() => REMOVED_ON_STOP,
        None => 0,
    };
    let network = match options.network {
        None => wire::Network { outbound: Some(wire::Direction { mode: Some("disabled".to_string()), allow_net: None }), ..Default::default() },
        Some(allow_net) => wire::Network { outbound: Some(wire::Direction { mode: Some("enabled".to_string()), allow_net: Some(allow_net) }), ..Default::default() },
    };
    let capabilities = (!options.capabilities_add.is_empty() || !options.capabilities_drop.is_empty())
        .then_some(wire::Advanced { capabilities: Some(wire::Capabilities { add: options.capabilities_add, drop: options.capabilities_drop }) });
    Ok(wire::CreateBox {
        name,
        image: options.image,
        rootfs_path: options.rootfs_path,
        cpus: options.cpus,
        memory_mib: options.memory_mib,
        disk_size_gb: options.disk_size_gb,
        working_dir: options.working_dir,
        env: options.env.into_iter().collect(),
        entrypoint: options.entrypoint,
        cmd: options.cmd,
        user: options.user,
        volumes: options
            .volumes
            .into_iter()
            .filter_map(|volume| volume.named.map(|managed_volume| wire::ManagedVolume { managed_volume, guest_path: volume.guest_path, read_only: volume.read_only }))
            .collect(),
        network: Some(network),
        secrets: options.secrets.iter().map(wire::Secret::of).collect(),
        detach: options.detach,
        tty: Some(options.tty),
        auto_stop: lifecycle.auto_stop,
        auto_delete: Some(auto_delete),
        auto_resume: lifecycle.auto_resume,
        advanced: capabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_api_cannot_carry_is_refused() {
        let host_volume = boxlite_core::Volume { host_path: "/srv".into(), guest_path: "/data".to_string(), read_only: false, named: None };
        let options = BoxOptions { volumes: vec![host_volume], ..BoxOptions::default() };
        assert!(matches!(create_body(options, Lifecycle::default(), None), Err(Error::Unsupported(_))));
        let options = BoxOptions { max_processes: Some(10), ..BoxOptions::default() };
        assert!(matches!(create_body(options, Lifecycle::default(), None), Err(Error::Unsupported(_))));
    }

    #[test]
    fn a_box_removed_on_stop_is_deleted_by_the_server() {
        let body = create_body(BoxOptions::default(), Lifecycle::default(), None).expect("body");
        assert_eq!(body.auto_delete, Some(1));
        let kept = BoxOptions { auto_remove: Some(false), ..BoxOptions::default() };
        assert_eq!(create_body(kept, Lifecycle::default(), None).expect("body").auto_delete, Some(0));
    }

    #[test]
    fn the_body_is_what_the_server_reads() {
        let options = BoxOptions { image: Some("alpine".to_string()), env: vec![("A".to_string(), "1".to_string())], network: None, ..BoxOptions::default() };
        let body = create_body(options, Lifecycle { auto_stop: Some(60), auto_resume: Some(false) }, Some("web".to_string())).expect("body");
        let json = serde_json::to_string(&body).expect("json");
        let read: wire::CreateBox = serde_json::from_str(&json).expect("the server parses it");
        let (options, name, settings) = read.options().expect("options");
        assert_eq!((options.image.as_deref(), name.as_deref(), options.network), (Some("alpine"), Some("web"), None));
        assert_eq!((settings.auto_stop, settings.auto_resume), (60, false));
    }
}
