//! Published ports: listeners on the host whose connections the runtime joins to a port in the
//! box. Each connection is made from inside the box's network namespace to the box's loopback
//! (with a socket its init made there, `super::Inside`), so a server in the box reaches the host
//! whether it listens on 0.0.0.0 or on 127.0.0.1 only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{BoxTraffic, Inside, RELAY_BUFFER};
use crate::error::{Error, Result};

/// A port the user asked to publish (`ports=[(host_port, guest_port, protocol, host_ip)]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// `None` or 0: the host picks a free port each time the box starts.
    pub host_port: Option<u16>,
    pub guest_port: u16,
    /// Where the host listens; `None`: every address (BoxLite's default).
    pub host_ip: Option<IpAddr>,
}

impl PortSpec {
    pub fn validate(&self) -> Result<()> {
        if self.guest_port == 0 {
            return Err(Error::InvalidArgument("a published port's guest_port must be from 1 to 65535".to_string()));
        }
        Ok(())
    }
}

/// A port published while the box runs: where the host listens, and the box's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedPort {
    pub host: SocketAddr,
    pub guest_port: u16,
}

/// The host's listeners for `ports`, bound before the box starts: a port that is taken is an
/// error naming it, and nothing of the box is made.
pub fn bind(ports: &[PortSpec]) -> Result<Vec<(TcpListener, PublishedPort)>> {
    ports
        .iter()
        .map(|port| {
            let address = SocketAddr::new(port.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port.host_port.unwrap_or(0));
            let listener = TcpListener::bind(address).map_err(|error| Error::Network(format!("cannot publish box port {} on host {address}: {error}", port.guest_port)))?;
            listener.set_nonblocking(true).map_err(|error| Error::Network(format!("cannot publish on host {address}: {error}")))?;
            let host = listener.local_addr().map_err(|error| Error::Network(format!("cannot publish on host {address}: {error}")))?;
            Ok((listener, PublishedPort { host, guest_port: port.guest_port }))
        })
        .collect()
}

/// A listener whose connections go into a box: a published port's (TCP) or a tunnel's (TCP or
/// a unix socket).
pub(super) trait Outside: Send + 'static {
    type Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl std::future::Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Outside for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        let (stream, _) = tokio::net::TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Outside for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        Ok(tokio::net::UnixListener::accept(self).await?.0)
    }
}

/// Joins each connection to `listener` with one to the box's `guest_port`, until the task is
/// aborted.
pub(super) async fn serve<L: Outside>(listener: L, guest_port: u16, inside: Arc<Inside>, traffic: Arc<BoxTraffic>) {
    loop {
        let Ok(mut outside) = listener.accept().await else {
            super::after_failed_accept().await;
            continue;
        };
        let Ok(slot) = Arc::clone(&traffic.relays).try_acquire_owned() else { continue };
        let (inside, traffic) = (Arc::clone(&inside), Arc::clone(&traffic));
        tokio::spawn(async move {
            let _slot = slot;
            let mut inside = match inside.connect(guest_port).await {
                Ok(inside) => inside,
                Err(error) => {
                    log::debug!("box {}: nothing answered on its port {guest_port}: {error}", traffic.box_id);
                    return;
                }
            };
            if let Ok((to_box, from_box)) = tokio::io::copy_bidirectional_with_sizes(&mut outside, &mut inside, RELAY_BUFFER, RELAY_BUFFER).await {
                traffic.bytes_received.fetch_add(to_box, Ordering::Relaxed);
                traffic.bytes_sent.fetch_add(from_box, Ordering::Relaxed);
            }
        });
    }
}
