//! `Box.network`: tunnels to the box's ports (`tunnel`, for a local or a REST runtime's box),
//! and its outbound policy, changed while it runs (a local box's); an inbound allow-list is not
//! built yet (`unsupported`).

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::backend::BoxRef;
use crate::dispatcher::{Payload, Shared};
use crate::options::{InboundNetworkSpec, OutboundNetworkSpec};
use crate::unsupported::{refuse, Missing};

#[pyclass(module = "boxlite._native", frozen)]
pub struct NetworkHandle {
    pub shared: Arc<Shared>,
    pub handle: BoxRef,
}

fn check_port(port: i64) -> PyResult<u16> {
    u16::try_from(port).ok().filter(|port| *port != 0).ok_or_else(|| PyValueError::new_err(format!("port must be an integer between 1 and 65535, got {port}")))
}

#[pymethods]
impl NetworkHandle {
    /// A tunnel to the running box's `port` (`BoxTunnel`).
    fn tunnel<'py>(&self, py: Python<'py>, port: i64) -> PyResult<Bound<'py, PyAny>> {
        let port = check_port(port)?;
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.tunnel(port).await.map(Payload::from) })
    }

    /// Ends the forwarders of the box's tunnels to `port`.
    fn revoke_tunnel<'py>(&self, py: Python<'py>, port: i64) -> PyResult<Bound<'py, PyAny>> {
        let port = check_port(port)?;
        let handle = self.handle.clone();
        self.shared.submit(py, async move { handle.revoke_tunnel(port).await.map(Payload::from) })
    }

    fn update_inbound<'py>(&self, py: Python<'py>, spec: PyRef<'py, InboundNetworkSpec>) -> PyResult<Bound<'py, PyAny>> {
        let _ = spec;
        refuse(&self.shared, py, Missing::InboundPolicy)
    }

    /// The box's outbound traffic from now on: what `spec.allow_net` allows, or nothing when
    /// `spec.mode` is `"disabled"`.
    fn update_outbound<'py>(&self, py: Python<'py>, spec: PyRef<'py, OutboundNetworkSpec>) -> PyResult<Bound<'py, PyAny>> {
        let allow_net = spec.to_core().map_err(|error| crate::errors::to_py(py, &error))?;
        let handle = Arc::clone(self.handle.local("changing a box's outbound policy").map_err(|error| crate::errors::to_py(py, &error))?);
        self.shared.submit(py, async move { handle.update_outbound(allow_net).await.map(Payload::from) })
    }
}
