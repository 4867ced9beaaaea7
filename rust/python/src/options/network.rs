//! Network options (`NetworkSpec` and its parts) and what `BoxInfo.network` reports.
//!
//! Boxes have a loopback interface only. `network=None` gives that; a spec that asks for
//! outbound traffic, an inbound allowlist or published ports is refused with
//! `UnsupportedError` when the box is created, never silently narrowed.

use pyo3::prelude::*;

use crate::pyrepr::{python_list, python_repr};

const NO_OUTBOUND: &str = "outbound networking is not supported yet: boxes have a loopback interface only. \
Leave network unset, or pass NetworkSpec(mode=\"disabled\")";

#[pyclass(module = "boxlite._native", get_all, set_all)]
#[derive(Clone)]
pub struct OutboundNetworkSpec {
    /// `"enabled"` or `"disabled"`.
    pub mode: String,
    /// Host patterns (`example.com`, `*.example.com`, IPs, CIDRs) reachable when enabled.
    pub allow_net: Vec<String>,
}

#[pymethods]
impl OutboundNetworkSpec {
    #[new]
    #[pyo3(signature = (mode = "enabled".to_string(), allow_net = Vec::new()))]
    fn new(mode: String, allow_net: Vec<String>) -> Self {
        Self { mode, allow_net }
    }

    fn __repr__(&self) -> String {
        format!("OutboundNetworkSpec(mode={}, allow_net={})", python_repr(Some(&self.mode)), python_list(&self.allow_net))
    }
}

#[pyclass(module = "boxlite._native", get_all, set_all)]
#[derive(Clone)]
pub struct InboundNetworkSpec {
    pub mode: String,
    pub allow_net: Vec<String>,
}

#[pymethods]
impl InboundNetworkSpec {
    #[new]
    #[pyo3(signature = (mode = "disabled".to_string(), allow_net = Vec::new()))]
    fn new(mode: String, allow_net: Vec<String>) -> Self {
        Self { mode, allow_net }
    }

    fn __repr__(&self) -> String {
        format!("InboundNetworkSpec(mode={}, allow_net={})", python_repr(Some(&self.mode)), python_list(&self.allow_net))
    }
}

/// A box's network. `mode`/`allow_net` are BoxLite's legacy spelling of `outbound`.
#[pyclass(module = "boxlite._native", get_all, set_all)]
#[derive(Clone)]
pub struct NetworkSpec {
    pub outbound: OutboundNetworkSpec,
    pub inbound: InboundNetworkSpec,
    pub mode: String,
    pub allow_net: Vec<String>,
}

#[pymethods]
impl NetworkSpec {
    #[new]
    #[pyo3(signature = (outbound = None, inbound = None, mode = None, allow_net = None))]
    fn new(outbound: Option<OutboundNetworkSpec>, inbound: Option<InboundNetworkSpec>, mode: Option<String>, allow_net: Option<Vec<String>>) -> Self {
        let outbound = outbound.unwrap_or_else(|| OutboundNetworkSpec {
            mode: mode.clone().unwrap_or_else(|| "enabled".to_string()),
            allow_net: allow_net.clone().unwrap_or_default(),
        });
        let inbound = inbound.unwrap_or_else(|| InboundNetworkSpec { mode: "disabled".to_string(), allow_net: Vec::new() });
        Self { mode: mode.unwrap_or_else(|| outbound.mode.clone()), allow_net: allow_net.unwrap_or_else(|| outbound.allow_net.clone()), outbound, inbound }
    }

    fn __repr__(&self) -> String {
        format!("NetworkSpec(outbound={}, inbound={})", self.outbound.__repr__(), self.inbound.__repr__())
    }
}

impl NetworkSpec {
    /// Whether boxes can have this network; the error says why not.
    pub fn check(&self) -> Result<(), boxlite_core::Error> {
        for mode in [&self.outbound.mode, &self.mode] {
            if mode != "enabled" && mode != "disabled" {
                return Err(boxlite_core::Error::InvalidArgument(format!("network mode must be \"enabled\" or \"disabled\", got {mode:?}")));
            }
        }
        // Either spelling may turn outbound traffic off.
        if self.outbound.mode == "enabled" && self.mode == "enabled" {
            return Err(boxlite_core::Error::Unsupported(NO_OUTBOUND.to_string()));
        }
        if self.inbound.mode != "disabled" || !self.inbound.allow_net.is_empty() {
            return Err(boxlite_core::Error::Unsupported("inbound networking is not supported yet: boxes have a loopback interface only".to_string()));
        }
        Ok(())
    }
}

/// A port published from a box to the host.
#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct PublishedPort {
    pub guest_port: u16,
    pub host_ip: String,
    pub host_port: u16,
    pub protocol: String,
}

#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct OutboundNetworkInfo {
    pub mode: String,
    pub allow_net: Vec<String>,
}

#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct InboundNetworkInfo {
    pub mode: String,
    pub allow_net: Vec<String>,
}

/// What a box's network is: for now, loopback only (outbound and inbound disabled).
#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct NetworkInfo {
    pub outbound: OutboundNetworkInfo,
    pub inbound: InboundNetworkInfo,
    pub mode: String,
    pub allow_net: Vec<String>,
    pub published_ports: Option<Vec<PublishedPort>>,
}

#[pymethods]
impl NetworkInfo {
    fn __repr__(&self) -> String {
        format!("NetworkInfo(outbound={:?}, inbound={:?}, published_ports=[])", self.outbound.mode, self.inbound.mode)
    }
}

impl NetworkInfo {
    pub fn loopback_only() -> Self {
        Self {
            outbound: OutboundNetworkInfo { mode: "disabled".to_string(), allow_net: Vec::new() },
            inbound: InboundNetworkInfo { mode: "disabled".to_string(), allow_net: Vec::new() },
            mode: "disabled".to_string(),
            allow_net: Vec::new(),
            published_ports: Some(Vec::new()),
        }
    }
}

/// One `ports` entry of `BoxOptions`, as given.
#[derive(Clone, Debug)]
pub struct PortSpec {
    pub host_port: Option<u16>,
    pub guest_port: u16,
    pub protocol: String,
    pub host_ip: Option<String>,
}
