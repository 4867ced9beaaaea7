//! Expert box options (`AdvancedBoxOptions` and its parts) and `Secret`.
//!
//! What the namespace engine does with each:
//! - `ContainerCapabilities`: applied; `add` takes only capabilities that cannot act on the host
//!   from a box without a user namespace.
//! - `SecurityOptions`: `max_processes` is the box's pids limit; `max_open_files`,
//!   `max_file_size` (bytes), `max_cpu_time` (seconds) and `max_memory` (bytes of address space)
//!   are resource limits on every box process. The jail, seccomp and closing of inherited
//!   descriptors are always on: `jailer_enabled`, `seccomp_enabled` and `close_fds` set to
//!   False do not turn them off. `network_enabled=False` leaves the box loopback only.
//! - `HealthCheckOptions`: the runtime asks the running box's init whether it answers, every
//!   `interval` seconds (within `timeout`), and `BoxInfo.health_status` reports it; failures in
//!   the first `start_period` seconds of a run do not count, `retries` in a row make it
//!   unhealthy.
//! - Secrets: refused with `UnsupportedError` when a box is created.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::pyrepr::{python_list, python_repr};

/// Capability names added to and dropped from the default set. `add` and `drop` are Python
/// lists held by this object, as in BoxLite: `caps.add.append("NET_ADMIN")` changes it.
#[pyclass(module = "boxlite._native")]
pub struct ContainerCapabilities {
    add: Py<PyList>,
    drop: Py<PyList>,
}

/// The names in `list`, each a `str` (a list may have been given anything by `append`).
fn names(list: &Bound<'_, PyList>, field: &str) -> Result<Vec<String>, boxlite_core::Error> {
    list.iter()
        .map(|item| item.extract::<String>().map_err(|_| boxlite_core::Error::InvalidArgument(format!("ContainerCapabilities.{field} holds {}, not a capability name", item.repr().map(|text| text.to_string()).unwrap_or_default()))))
        .collect()
}

#[pymethods]
impl ContainerCapabilities {
    #[new]
    #[pyo3(signature = (add = Vec::new(), drop = Vec::new()))]
    fn new(py: Python<'_>, add: Vec<String>, drop: Vec<String>) -> PyResult<Self> {
        Ok(Self { add: PyList::new(py, add)?.unbind(), drop: PyList::new(py, drop)?.unbind() })
    }

    #[getter]
    fn add<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.add.bind(py).clone()
    }

    #[setter]
    fn set_add(&mut self, py: Python<'_>, add: Vec<String>) -> PyResult<()> {
        self.add = PyList::new(py, add)?.unbind();
        Ok(())
    }

    #[getter]
    fn drop<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.drop.bind(py).clone()
    }

    #[setter]
    fn set_drop(&mut self, py: Python<'_>, drop: Vec<String>) -> PyResult<()> {
        self.drop = PyList::new(py, drop)?.unbind();
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("ContainerCapabilities(add={}, drop={})", self.add.bind(py).repr()?, self.drop.bind(py).repr()?))
    }
}

impl ContainerCapabilities {
    fn empty(py: Python<'_>) -> PyResult<Py<Self>> {
        Py::new(py, Self { add: PyList::empty(py).unbind(), drop: PyList::empty(py).unbind() })
    }
}

#[pyclass(module = "boxlite._native", get_all, set_all)]
#[derive(Clone)]
pub struct SecurityOptions {
    pub jailer_enabled: bool,
    pub seccomp_enabled: bool,
    pub max_open_files: Option<u64>,
    pub max_file_size: Option<u64>,
    pub max_processes: Option<u64>,
    pub max_memory: Option<u64>,
    pub max_cpu_time: Option<u64>,
    pub network_enabled: bool,
    pub close_fds: bool,
}

#[pymethods]
impl SecurityOptions {
    #[new]
    #[pyo3(signature = (
        jailer_enabled = false, seccomp_enabled = false, max_open_files = None, max_file_size = None,
        max_processes = None, max_memory = None, max_cpu_time = None, network_enabled = true, close_fds = true
    ))]
    #[expect(clippy::too_many_arguments, reason = "mirrors BoxLite's keyword constructor")]
    fn new(
        jailer_enabled: bool,
        seccomp_enabled: bool,
        max_open_files: Option<u64>,
        max_file_size: Option<u64>,
        max_processes: Option<u64>,
        max_memory: Option<u64>,
        max_cpu_time: Option<u64>,
        network_enabled: bool,
        close_fds: bool,
    ) -> Self {
        Self { jailer_enabled, seccomp_enabled, max_open_files, max_file_size, max_processes, max_memory, max_cpu_time, network_enabled, close_fds }
    }

    /// No limits beyond the box's own.
    #[staticmethod]
    fn development() -> Self {
        Self::new(false, false, None, None, None, None, None, true, true)
    }

    /// Limits for everyday untrusted code.
    #[staticmethod]
    fn standard() -> Self {
        Self::new(true, true, Some(4096), None, Some(1024), None, None, true, true)
    }

    /// The tightest preset: few processes and files, bounded file sizes, no network.
    #[staticmethod]
    fn maximum() -> Self {
        Self::new(true, true, Some(256), Some(1 << 30), Some(128), None, Some(3600), false, true)
    }

    fn __repr__(&self) -> String {
        let number = |value: Option<u64>| value.map_or_else(|| "None".to_string(), |value| value.to_string());
        format!(
            "SecurityOptions(max_open_files={}, max_file_size={}, max_processes={}, max_memory={}, max_cpu_time={}, network_enabled={})",
            number(self.max_open_files),
            number(self.max_file_size),
            number(self.max_processes),
            number(self.max_memory),
            number(self.max_cpu_time),
            if self.network_enabled { "True" } else { "False" }
        )
    }
}

#[pyclass(module = "boxlite._native", get_all, set_all)]
#[derive(Clone)]
pub struct HealthCheckOptions {
    pub interval: u64,
    pub timeout: u64,
    pub retries: u32,
    pub start_period: u64,
}

#[pymethods]
impl HealthCheckOptions {
    #[new]
    #[pyo3(signature = (interval = 30, timeout = 10, retries = 3, start_period = 60))]
    fn new(interval: u64, timeout: u64, retries: u32, start_period: u64) -> Self {
        Self { interval, timeout, retries, start_period }
    }

    fn __repr__(&self) -> String {
        format!("HealthCheckOptions(interval={}, timeout={}, retries={}, start_period={})", self.interval, self.timeout, self.retries, self.start_period)
    }
}

/// `capabilities` is an object this one holds (an empty `ContainerCapabilities` by default),
/// so changing it in place changes these options, as in BoxLite.
#[pyclass(module = "boxlite._native")]
pub struct AdvancedBoxOptions {
    #[pyo3(get, set)]
    pub security: Option<SecurityOptions>,
    #[pyo3(get, set)]
    pub health_check: Option<HealthCheckOptions>,
    capabilities: Py<ContainerCapabilities>,
}

#[pymethods]
impl AdvancedBoxOptions {
    #[new]
    #[pyo3(signature = (security = None, health_check = None, capabilities = None))]
    fn new(py: Python<'_>, security: Option<SecurityOptions>, health_check: Option<HealthCheckOptions>, capabilities: Option<Py<ContainerCapabilities>>) -> PyResult<Self> {
        let capabilities = match capabilities {
            Some(capabilities) => capabilities,
            None => ContainerCapabilities::empty(py)?,
        };
        Ok(Self { security, health_check, capabilities })
    }

    #[getter]
    fn capabilities(&self, py: Python<'_>) -> Py<ContainerCapabilities> {
        self.capabilities.clone_ref(py)
    }

    /// `None` sets an empty one.
    #[setter]
    fn set_capabilities(&mut self, py: Python<'_>, capabilities: Option<Py<ContainerCapabilities>>) -> PyResult<()> {
        self.capabilities = match capabilities {
            Some(capabilities) => capabilities,
            None => ContainerCapabilities::empty(py)?,
        };
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let flag = |set: bool| if set { "set" } else { "None" };
        Ok(format!(
            "AdvancedBoxOptions(security={}, health_check={}, capabilities={})",
            flag(self.security.is_some()),
            flag(self.health_check.is_some()),
            self.capabilities.bind(py).repr()?
        ))
    }
}

impl AdvancedBoxOptions {
    /// Applies these options to the core's box options, or says why they cannot be.
    pub fn apply(&self, py: Python<'_>, options: &mut boxlite_core::BoxOptions) -> Result<(), boxlite_core::Error> {
        if let Some(check) = &self.health_check {
            options.health_check = Some(boxlite_core::HealthCheck {
                interval: Duration::from_secs(check.interval),
                timeout: Duration::from_secs(check.timeout),
                retries: check.retries,
                start_period: Duration::from_secs(check.start_period),
            });
        }
        let capabilities = self.capabilities.borrow(py);
        options.capabilities_add = names(capabilities.add.bind(py), "add")?;
        options.capabilities_drop = names(capabilities.drop.bind(py), "drop")?;
        if let Some(security) = &self.security {
            if !security.network_enabled {
                options.network = None;
            }
            options.max_processes = security.max_processes;
            options.process_limits = boxlite_core::ProcessLimits {
                open_files: security.max_open_files,
                file_size_bytes: security.max_file_size,
                cpu_time_secs: security.max_cpu_time,
                address_space_bytes: security.max_memory,
            };
        }
        Ok(())
    }
}

/// A value substituted for a placeholder in a box's HTTPS traffic to the given hosts. The value
/// never appears in `repr()`.
#[pyclass(module = "boxlite._native", get_all, set_all)]
#[derive(Clone)]
pub struct Secret {
    pub name: String,
    pub value: String,
    pub hosts: Vec<String>,
    pub placeholder: Option<String>,
}

#[pymethods]
impl Secret {
    #[new]
    #[pyo3(signature = (name, value, hosts = Vec::new(), placeholder = None))]
    fn new(name: String, value: String, hosts: Vec<String>, placeholder: Option<String>) -> Self {
        Self { name, value, hosts, placeholder }
    }

    fn get_placeholder(&self) -> String {
        self.placeholder.clone().unwrap_or_else(|| boxlite_core::network::SecretSpec::default_placeholder(&self.name))
    }

    fn __repr__(&self) -> String {
        format!("Secret(name={}, hosts={}, placeholder={}, value=[REDACTED])", python_repr(Some(&self.name)), python_list(&self.hosts), python_repr(Some(&self.get_placeholder())))
    }
}

impl Secret {
    pub fn to_core(&self) -> boxlite_core::network::SecretSpec {
        boxlite_core::network::SecretSpec {
            name: self.name.clone(),
            value: boxlite_core::Secret::new(self.value.clone()),
            hosts: self.hosts.clone(),
            placeholder: self.get_placeholder(),
        }
    }
}
