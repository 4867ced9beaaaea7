//! What the runtime and each box count, and the figures `metrics()` gives.

use super::*;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeMetrics {
    pub boxes_created_total: u64,
    pub boxes_failed_total: u64,
    pub boxes_stopped_total: u64,
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
    /// Host bytes the box's own filesystem takes (`disk_size_gb`); `None` without one.
    pub disk_bytes: Option<u64>,
    /// The box's traffic through its network since it last started; `None` without one.
    pub network: Option<crate::network::TrafficCounts>,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) boxes_created: AtomicU64,
    pub(super) boxes_failed: AtomicU64,
    /// Running boxes that stopped (asked to, or their main process ended).
    pub(super) boxes_stopped: AtomicU64,
    pub(super) commands: AtomicU64,
    pub(super) exec_errors: AtomicU64,
}
