//! Read-only metadata classes: BoxInfo, BoxStateInfo, RuntimeMetrics, BoxMetrics.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::dispatcher::{list, object, Deliver, Shared};
use crate::options::NetworkInfo;

/// none, starting, healthy or unhealthy (`HealthCheckOptions`; none for a box without checks,
/// or that does not run).
#[pyclass(module = "boxlite._native", frozen, eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct HealthState {
    value: &'static str,
}

#[pymethods]
impl HealthState {
    #[getter]
    fn value(&self) -> &'static str {
        self.value
    }

    #[staticmethod]
    fn none() -> Self {
        Self { value: "none" }
    }

    #[staticmethod]
    fn starting() -> Self {
        Self { value: "starting" }
    }

    #[staticmethod]
    fn healthy() -> Self {
        Self { value: "healthy" }
    }

    #[staticmethod]
    fn unhealthy() -> Self {
        Self { value: "unhealthy" }
    }

    fn is_none(&self) -> bool {
        self.value == "none"
    }

    fn is_starting(&self) -> bool {
        self.value == "starting"
    }

    fn is_healthy(&self) -> bool {
        self.value == "healthy"
    }

    fn is_unhealthy(&self) -> bool {
        self.value == "unhealthy"
    }

    fn __str__(&self) -> &'static str {
        self.value
    }

    fn __repr__(&self) -> String {
        format!("<HealthState: {}>", self.value)
    }
}

#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct HealthStatus {
    pub state: HealthState,
    pub failures: u32,
    pub last_check: Option<String>,
}

#[pymethods]
impl HealthStatus {
    fn __repr__(&self) -> String {
        format!("HealthStatus(state={}, failures={})", self.state.__repr__(), self.failures)
    }
}

#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct BoxStateInfo {
    /// configured, running, stopping, stopped, failed or unknown.
    pub status: String,
    pub running: bool,
    /// The box init's host pid while running.
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
}

/// Pretty-printed JSON, as BoxLite's metadata types show themselves.
fn json_repr(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[pymethods]
impl BoxStateInfo {
    /// Every field, keys sorted (as BoxLite).
    fn __repr__(&self) -> String {
        json_repr(&self.json())
    }
}

impl BoxStateInfo {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({"exit_code": self.exit_code, "pid": self.pid, "running": self.running, "status": self.status})
    }
}

#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct BoxInfo {
    pub id: String,
    pub name: Option<String>,
    pub state: BoxStateInfo,
    /// RFC 3339, nanoseconds.
    pub created_at: String,
    pub started_at: Option<String>,
    pub image: String,
    pub cpus: u8,
    pub memory_mib: u32,
    pub auto_stop: u64,
    pub auto_delete: u64,
    pub auto_resume: bool,
    pub detach: bool,
    pub network: Option<NetworkInfo>,
    pub health_status: HealthStatus,
    pub last_activity_at: Option<String>,
}

impl From<boxlite_core::BoxInfo> for BoxInfo {
    fn from(info: boxlite_core::BoxInfo) -> Self {
        Self {
            id: info.id,
            name: info.name,
            state: BoxStateInfo { status: info.status.to_string(), running: info.running, pid: info.pid, exit_code: info.exit_code },
            created_at: info.created_at,
            started_at: info.started_at,
            image: info.image,
            cpus: info.cpus,
            memory_mib: info.memory_mib,
            auto_stop: info.auto_stop,
            auto_delete: info.auto_delete,
            auto_resume: info.auto_resume,
            detach: info.detach,
            network: Some(NetworkInfo::new(info.network, &info.published_ports)),
            health_status: HealthStatus { state: HealthState { value: info.health.state.as_str() }, failures: info.health.failures, last_check: info.health.last_check },
            last_activity_at: None,
        }
    }
}

#[pymethods]
impl BoxInfo {
    /// The Ray node a box of `Boxlite.ray` lives on; a box of a local runtime has none.
    #[getter]
    fn node(&self) -> Option<String> {
        None
    }

    /// Every field, keys sorted (as BoxLite).
    fn __repr__(&self) -> String {
        let health = serde_json::json!({"failures": self.health_status.failures, "last_check": self.health_status.last_check, "state": self.health_status.state.value});
        json_repr(&serde_json::json!({
            "auto_delete": self.auto_delete,
            "auto_resume": self.auto_resume,
            "auto_stop": self.auto_stop,
            "cpus": self.cpus,
            "created_at": self.created_at,
            "detach": self.detach,
            "health_status": health,
            "id": self.id,
            "image": self.image,
            "last_activity_at": self.last_activity_at,
            "memory_mib": self.memory_mib,
            "name": self.name,
            "network": self.network.as_ref().map(NetworkInfo::json),
            "started_at": self.started_at,
            "state": self.state.json(),
        }))
    }
}

#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct RuntimeMetrics {
    pub boxes_created_total: u64,
    pub boxes_failed_total: u64,
    pub num_running_boxes: u64,
    pub total_commands_executed: u64,
    pub total_exec_errors: u64,
}

impl From<boxlite_core::RuntimeMetrics> for RuntimeMetrics {
    fn from(metrics: boxlite_core::RuntimeMetrics) -> Self {
        Self {
            boxes_created_total: metrics.boxes_created_total,
            boxes_failed_total: metrics.boxes_failed_total,
            num_running_boxes: metrics.num_running_boxes,
            total_commands_executed: metrics.total_commands_executed,
            total_exec_errors: metrics.total_exec_errors,
        }
    }
}

#[pymethods]
impl RuntimeMetrics {
    fn __repr__(&self) -> String {
        format!(
            "RuntimeMetrics(boxes_created={}, boxes_failed={}, running={}, commands={}, errors={})",
            self.boxes_created_total, self.boxes_failed_total, self.num_running_boxes, self.total_commands_executed, self.total_exec_errors
        )
    }
}

#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct BoxMetrics {
    pub commands_executed_total: u64,
    pub exec_errors_total: u64,
    pub guest_boot_duration_ms: Option<u64>,
    pub total_create_duration_ms: Option<u64>,
    /// Memory the box's processes use now (its cgroup), while it runs.
    pub memory_bytes: Option<u64>,
    /// CPU time the box's processes used, in nanoseconds.
    pub cpu_time_ns: Option<u64>,
    /// CPU time over wall time since the box started, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    /// Processes in the box now.
    pub processes: Option<u64>,
    pub bytes_sent_total: u64,
    pub bytes_received_total: u64,
    /// Host bytes the box's own filesystem takes (`disk_size_gb`); None without one.
    pub disk_bytes: Option<u64>,
    /// The box's traffic through its network since it last started (bytes the box sent and
    /// received over the connections the runtime made for it; connections it opened, and the
    /// ones refused or failed). None for a box with loopback only.
    pub network_bytes_sent: Option<u64>,
    pub network_bytes_received: Option<u64>,
    pub network_tcp_connections: Option<u64>,
    pub network_tcp_errors: Option<u64>,
    /// Boot stages: the image made ready (at create), and the box's init started.
    pub stage_image_prepare_ms: Option<u64>,
    pub stage_box_spawn_ms: Option<u64>,
    /// Stages of the VM engine; None here.
    pub stage_filesystem_setup_ms: Option<u64>,
    pub stage_guest_rootfs_ms: Option<u64>,
    pub stage_box_config_ms: Option<u64>,
    pub stage_container_init_ms: Option<u64>,
}

impl From<boxlite_core::BoxMetrics> for BoxMetrics {
    fn from(metrics: boxlite_core::BoxMetrics) -> Self {
        Self {
            commands_executed_total: metrics.commands_executed_total,
            exec_errors_total: metrics.exec_errors_total,
            guest_boot_duration_ms: metrics.boot_duration_ms,
            total_create_duration_ms: metrics.create_duration_ms,
            memory_bytes: metrics.memory_bytes,
            cpu_time_ns: metrics.cpu_time_ns,
            cpu_percent: metrics.cpu_percent,
            processes: metrics.processes,
            bytes_sent_total: metrics.bytes_sent_total,
            bytes_received_total: metrics.bytes_received_total,
            disk_bytes: metrics.disk_bytes,
            network_bytes_sent: metrics.network.map(|network| network.bytes_sent),
            network_bytes_received: metrics.network.map(|network| network.bytes_received),
            network_tcp_connections: metrics.network.map(|network| network.tcp_connections),
            network_tcp_errors: metrics.network.map(|network| network.tcp_errors),
            stage_image_prepare_ms: metrics.create_duration_ms,
            stage_box_spawn_ms: metrics.boot_duration_ms,
            stage_filesystem_setup_ms: None,
            stage_guest_rootfs_ms: None,
            stage_box_config_ms: None,
            stage_container_init_ms: None,
        }
    }
}

#[pymethods]
impl BoxMetrics {
    fn __repr__(&self) -> String {
        format!("BoxMetrics(commands_executed_total={}, exec_errors_total={})", self.commands_executed_total, self.exec_errors_total)
    }
}

/// `Box.info()` resolves to a `BoxInfo`.
impl Deliver for boxlite_core::BoxInfo {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        object(event_loop, BoxInfo::from(*self))
    }
}

/// `get_info()` of a box nobody has resolves to `None`.
impl Deliver for Option<boxlite_core::BoxInfo> {
    fn into_python<'py>(self: Box<Self>, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match *self {
            Some(info) => Box::new(info).into_python(shared, event_loop),
            None => Ok(event_loop.py().None().into_bound(event_loop.py())),
        }
    }
}

/// `list_info()` resolves to a list of `BoxInfo`.
impl Deliver for Vec<boxlite_core::BoxInfo> {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        list(event_loop, self.into_iter().map(BoxInfo::from))
    }
}

impl Deliver for boxlite_core::RuntimeMetrics {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        object(event_loop, RuntimeMetrics::from(*self))
    }
}

impl Deliver for boxlite_core::BoxMetrics {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        object(event_loop, BoxMetrics::from(*self))
    }
}
