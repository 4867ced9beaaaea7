//! Tunnels (`Box.network.tunnel(port)`): `BoxTunnel`, taken once as a `BoxConnection` or a
//! `TunnelForwarder` listening at a `SocketAddress` (core `network::tunnel`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use boxlite_core::network::{Forwarder, ListenAddress, PortStream, Tunnel};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::backend::Opened;
use crate::dispatcher::{object, Deliver, Payload, Shared};
use crate::errors;

/// Where a forwarder listens: `SocketAddress.tcp(host, port)` or `SocketAddress.unix(path)`.
#[pyclass(module = "boxlite._native", frozen, eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct SocketAddress {
    address: ListenAddress,
}

#[pymethods]
impl SocketAddress {
    /// A TCP address; `host` must be a numeric IP. Port 0 lets the host pick one.
    #[staticmethod]
    #[pyo3(signature = (host = "127.0.0.1", port = 0))]
    fn tcp(host: &str, port: u16) -> PyResult<Self> {
        let ip: IpAddr = host.parse().map_err(|_| PyValueError::new_err(format!("host must be a numeric IP address, got {host:?}")))?;
        Ok(Self { address: ListenAddress::Tcp((ip, port).into()) })
    }

    /// A unix socket at an absolute path.
    #[staticmethod]
    fn unix(path: PathBuf) -> PyResult<Self> {
        if !path.is_absolute() {
            return Err(PyValueError::new_err(format!("a unix socket's path must be absolute, got {}", path.display())));
        }
        Ok(Self { address: ListenAddress::Unix(path) })
    }

    #[getter]
    fn kind(&self) -> &'static str {
        match self.address {
            ListenAddress::Tcp(_) => "tcp",
            ListenAddress::Unix(_) => "unix",
        }
    }

    #[getter]
    fn host(&self) -> Option<String> {
        match &self.address {
            ListenAddress::Tcp(address) => Some(address.ip().to_string()),
            ListenAddress::Unix(_) => None,
        }
    }

    #[getter]
    fn port(&self) -> Option<u16> {
        match &self.address {
            ListenAddress::Tcp(address) => Some(address.port()),
            ListenAddress::Unix(_) => None,
        }
    }

    #[getter]
    fn path(&self) -> Option<String> {
        match &self.address {
            ListenAddress::Tcp(_) => None,
            ListenAddress::Unix(path) => Some(path.display().to_string()),
        }
    }

    fn __str__(&self) -> String {
        self.address.to_string()
    }

    fn __repr__(&self) -> String {
        format!("SocketAddress({:?})", self.address.to_string())
    }
}

/// A way to one port of a running box; `connect()` or `forward()` takes it, once.
#[pyclass(module = "boxlite._native", frozen)]
pub struct BoxTunnel {
    shared: Arc<Shared>,
    tunnel: Mutex<Option<Tunnel>>,
    /// Where a REST server says the port is reached.
    uri: Option<String>,
}

impl BoxTunnel {
    fn take(&self, py: Python<'_>) -> PyResult<Tunnel> {
        let taken = self.tunnel.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        taken.ok_or_else(|| errors::to_py(py, &boxlite_core::Error::InvalidState("this tunnel has already been consumed: each tunnel is used once".to_string())))
    }
}

#[pymethods]
impl BoxTunnel {
    /// Where the REST server says the port is reached; `None` for a local box.
    fn uri(&self) -> Option<String> {
        self.uri.clone()
    }

    /// One connection to the port.
    fn connect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let tunnel = self.take(py)?;
        self.shared.submit(py, async move { tunnel.connect().await.map(Payload::from) })
    }

    /// A listener at `listen` whose connections each reach the port.
    fn forward<'py>(&self, py: Python<'py>, listen: PyRef<'py, SocketAddress>) -> PyResult<Bound<'py, PyAny>> {
        let tunnel = self.take(py)?;
        let address = listen.address.clone();
        self.shared.submit(py, async move { tunnel.forward(address).await.map(Payload::from) })
    }
}

impl Deliver for Opened {
    fn into_python<'py>(self: Box<Self>, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        object(event_loop, BoxTunnel { shared: Arc::clone(shared), tunnel: Mutex::new(Some(self.tunnel)), uri: self.uri })
    }
}

/// A connection to a box's port: one made in the box, or one relayed by a REST server.
type Stream = Box<dyn PortStream>;

/// One connection to a box's port: bytes in, bytes out.
#[pyclass(module = "boxlite._native", frozen)]
pub struct BoxConnection {
    shared: Arc<Shared>,
    reader: Arc<tokio::sync::Mutex<Option<ReadHalf<Stream>>>>,
    writer: Arc<tokio::sync::Mutex<Option<WriteHalf<Stream>>>>,
    /// Set by `close()`: a read waiting for data ends with `b""` rather than holding the close.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Bytes read from a connection.
struct Received(Vec<u8>);

impl Deliver for Received {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyBytes::new(event_loop.py(), &self.0).into_any())
    }
}

fn closed() -> boxlite_core::Error {
    boxlite_core::Error::InvalidState("the connection is closed".to_string())
}

fn failed(error: std::io::Error) -> boxlite_core::Error {
    boxlite_core::Error::Network(format!("the tunnel's connection failed: {error}"))
}

#[pymethods]
impl BoxConnection {
    /// Up to `max_bytes` bytes; `b""` at the end of the stream.
    fn read<'py>(&self, py: Python<'py>, max_bytes: usize) -> PyResult<Bound<'py, PyAny>> {
        if max_bytes == 0 {
            return Err(PyValueError::new_err("max_bytes must be at least 1"));
        }
        let reader = Arc::clone(&self.reader);
        let mut closing = self.closing.subscribe();
        self.shared.submit(py, async move {
            let nothing = || Ok(Payload::from(Received(Vec::new())));
            let read = async {
                let mut reader = reader.lock().await;
                let Some(reader) = reader.as_mut() else { return Ok(Vec::new()) };
                let mut buffer = vec![0u8; max_bytes.min(1 << 20)];
                let read = reader.read(&mut buffer).await.map_err(failed)?;
                buffer.truncate(read);
                Ok(buffer)
            };
            tokio::select! {
                read = read => read.map(|buffer| Payload::from(Received(buffer))),
                _ = closing.wait_for(|closing| *closing) => nothing(),
            }
        })
    }

    /// Writes all of `data`; resolves to its length.
    fn write<'py>(&self, py: Python<'py>, data: Vec<u8>) -> PyResult<Bound<'py, PyAny>> {
        let writer = Arc::clone(&self.writer);
        let mut closing = self.closing.subscribe();
        self.shared.submit(py, async move {
            let write = async {
                let mut writer = writer.lock().await;
                let writer = writer.as_mut().ok_or_else(closed)?;
                writer.write_all(&data).await.map_err(failed)?;
                Ok(Payload::from(data.len()))
            };
            tokio::select! {
                written = write => written,
                _ = closing.wait_for(|closing| *closing) => Err(closed()),
            }
        })
    }

    /// Ends this side's stream (the box's side reads its end); reading goes on.
    fn shutdown_write<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let writer = Arc::clone(&self.writer);
        self.shared.submit(py, async move {
            if let Some(mut writer) = writer.lock().await.take() {
                writer.shutdown().await.map_err(failed)?;
            }
            Ok(Payload::from(()))
        })
    }

    /// Closes the connection (again: nothing).
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (reader, writer) = (Arc::clone(&self.reader), Arc::clone(&self.writer));
        self.closing.send_replace(true);
        self.shared.submit(py, async move {
            drop(writer.lock().await.take());
            drop(reader.lock().await.take());
            Ok(Payload::from(()))
        })
    }
}

impl Deliver for Stream {
    fn into_python<'py>(self: Box<Self>, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (reader, writer) = tokio::io::split(*self);
        object(
            event_loop,
            BoxConnection {
                shared: Arc::clone(shared),
                reader: Arc::new(tokio::sync::Mutex::new(Some(reader))),
                writer: Arc::new(tokio::sync::Mutex::new(Some(writer))),
                closing: Arc::new(tokio::sync::watch::Sender::new(false)),
            },
        )
    }
}

/// A tunnel's listener on the host (`BoxTunnel.forward`); it ends with the box's run, when
/// closed, or when the port's tunnels are revoked.
#[pyclass(module = "boxlite._native", frozen)]
pub struct TunnelForwarder {
    shared: Arc<Shared>,
    forwarder: Forwarder,
}

#[pymethods]
impl TunnelForwarder {
    /// Where it listens (with the port the host picked, for port 0).
    fn local_addr(&self) -> SocketAddress {
        SocketAddress { address: self.forwarder.local_address().clone() }
    }

    /// Resolves once the forwarder has ended.
    fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let forwarder = self.forwarder.clone();
        self.shared.submit(py, async move {
            forwarder.wait().await;
            Ok(Payload::from(()))
        })
    }

    /// Ends it (again: nothing).
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let forwarder = self.forwarder.clone();
        self.shared.submit(py, async move {
            forwarder.close();
            Ok(Payload::from(()))
        })
    }

    fn __repr__(&self) -> String {
        format!("TunnelForwarder({:?})", self.forwarder.local_address().to_string())
    }
}

impl Deliver for Forwarder {
    fn into_python<'py>(self: Box<Self>, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        object(event_loop, TunnelForwarder { shared: Arc::clone(shared), forwarder: *self })
    }
}
