//! Network options (`NetworkSpec` and its parts) and what `BoxInfo.network` reports.
//!
//! `network=None` gives a box outbound traffic (BoxLite's default), under the policy of the
//! core's `network` module; `NetworkSpec(mode="disabled")` leaves it loopback only. `ports`
//! publishes TCP ports. What is not built yet (an inbound allow-list, UDP ports) is refused with
//! `UnsupportedError` when the box is created, never silently narrowed.

use pyo3::prelude::*;

use crate::pyrepr::{python_list, python_repr};

/// Immutable: `NetworkSpec.outbound` gives a copy, so a change made through it would be lost
/// silently, and with it the policy the user meant.
#[pyclass(module = "boxlite._native", frozen, get_all)]
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

impl OutboundNetworkSpec {
    /// The core's outbound option: `None` for no traffic, else the allow-list.
    pub fn to_core(&self) -> Result<Option<Vec<String>>, boxlite_core::Error> {
        check_mode(&self.mode)?;
        Ok((self.mode == "enabled").then(|| self.allow_net.clone()))
    }
}

fn check_mode(mode: &str) -> Result<(), boxlite_core::Error> {
    if mode != "enabled" && mode != "disabled" {
        return Err(boxlite_core::Error::InvalidArgument(format!("network mode must be \"enabled\" or \"disabled\", got {mode:?}")));
    }
    Ok(())
}

/// Immutable, as [`OutboundNetworkSpec`].
#[pyclass(module = "boxlite._native", frozen, get_all)]
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
    /// The core's network option: `None` for loopback only, else the allow-list (either
    /// spelling; `outbound`'s when both have one). The error says why boxes cannot have it.
    pub fn to_core(&self) -> Result<Option<Vec<String>>, boxlite_core::Error> {
        check_mode(&self.outbound.mode)?;
        check_mode(&self.mode)?;
        if self.inbound.mode != "disabled" || !self.inbound.allow_net.is_empty() {
            return Err(boxlite_core::Error::Unsupported("inbound networking is not supported yet: a box's network is outbound only".to_string()));
        }
        // Either spelling may turn outbound traffic off.
        if self.outbound.mode == "disabled" || self.mode == "disabled" {
            return Ok(None);
        }
        let allow_net = if self.outbound.allow_net.is_empty() { &self.allow_net } else { &self.outbound.allow_net };
        Ok(Some(allow_net.clone()))
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

#[pymethods]
impl PublishedPort {
    fn __repr__(&self) -> String {
        format!("PublishedPort(host_ip={:?}, host_port={}, guest_port={}, protocol={:?})", self.host_ip, self.host_port, self.guest_port, self.protocol)
    }
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

/// What a box's network is: outbound traffic (under its allow-list) or loopback only; inbound
/// traffic is not built yet.
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
        let ports: Vec<String> = self.published_ports.iter().flatten().map(PublishedPort::__repr__).collect();
        format!("NetworkInfo(outbound={:?}, allow_net={}, inbound={:?}, published_ports=[{}])", self.outbound.mode, python_list(&self.allow_net), self.inbound.mode, ports.join(", "))
    }
}

impl NetworkInfo {
    /// Every field, keys sorted: `BoxInfo`'s repr.
    pub fn json(&self) -> serde_json::Value {
        let ports: Option<Vec<serde_json::Value>> = self.published_ports.as_ref().map(|ports| {
            ports.iter().map(|port| serde_json::json!({"guest_port": port.guest_port, "host_ip": port.host_ip, "host_port": port.host_port, "protocol": port.protocol})).collect()
        });
        serde_json::json!({
            "allow_net": self.allow_net,
            "inbound": {"allow_net": self.inbound.allow_net, "mode": self.inbound.mode},
            "mode": self.mode,
            "outbound": {"allow_net": self.outbound.allow_net, "mode": self.outbound.mode},
            "published_ports": ports,
        })
    }

    /// `outbound`: the box's allow-list, `None` for loopback only.
    pub fn new(outbound: Option<Vec<String>>, published: &[boxlite_core::network::PublishedPort]) -> Self {
        let mode = if outbound.is_some() { "enabled" } else { "disabled" }.to_string();
        let allow_net = outbound.unwrap_or_default();
        Self {
            outbound: OutboundNetworkInfo { mode: mode.clone(), allow_net: allow_net.clone() },
            inbound: InboundNetworkInfo { mode: "disabled".to_string(), allow_net: Vec::new() },
            mode,
            allow_net,
            published_ports: Some(
                published
                    .iter()
                    .map(|port| PublishedPort { guest_port: port.guest_port, host_ip: port.host.ip().to_string(), host_port: port.host.port(), protocol: port.protocol.as_str().to_string() })
                    .collect(),
            ),
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

impl PortSpec {
    pub fn to_core(&self) -> Result<boxlite_core::network::PortSpec, boxlite_core::Error> {
        let protocol = if self.protocol == "udp" { boxlite_core::network::Protocol::Udp } else { boxlite_core::network::Protocol::Tcp };
        let host_ip = self
            .host_ip
            .as_deref()
            .map(|ip| ip.parse().map_err(|_| boxlite_core::Error::InvalidArgument(format!("a published port's host_ip must be an IP address, got {ip:?}"))))
            .transpose()?;
        Ok(boxlite_core::network::PortSpec { host_port: self.host_port.filter(|port| *port != 0), guest_port: self.guest_port, host_ip, protocol })
    }
}
