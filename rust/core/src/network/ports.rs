//! Published ports: listeners on the host whose connections the runtime joins to a port in the
//! box. Each connection is made from inside the box's network namespace to the box's loopback
//! (with a socket its init made there, `super::Inside`), so a server in the box reaches the host
//! whether it listens on 0.0.0.0 or on 127.0.0.1 only. A UDP port relays datagrams the same
//! way: each host peer gets a socket of its own in the box (so the server's answers go back to
//! the peer that asked), kept while the peer or the server sends within [`UDP_IDLE`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{relay, BoxTraffic, Inside, PortConnector};
use crate::error::{Error, Result};
use crate::fork::{forked_away, ParentOnly};

/// A port the user asked to publish (`ports=[(host_port, guest_port, protocol, host_ip)]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// `None` or 0: the host picks a free port each time the box starts.
    pub host_port: Option<u16>,
    pub guest_port: u16,
    /// Where the host listens; `None`: every address (BoxLite's default).
    pub host_ip: Option<IpAddr>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// How long a UDP port keeps a host peer's socket in the box after the last datagram either
/// way.
const UDP_IDLE: Duration = Duration::from_secs(60);

impl PortSpec {
    /// This port, on `host_port` where the host was to pick one: where a running box had it
    /// published, for the runtime that adopts the box.
    pub fn on(&self, host_port: Option<u16>) -> Self {
        let chosen = self.host_port.filter(|port| *port != 0).or(host_port);
        Self { host_port: chosen, ..self.clone() }
    }

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
    pub protocol: Protocol,
}

/// The host's socket of a published port, the runtime's process's alone from its making
/// (`crate::fork`): a child forked as the box starts keeps no port taken.
#[derive(Debug)]
pub enum HostSocket {
    Tcp(ParentOnly<TcpListener>),
    Udp(ParentOnly<UdpSocket>),
}

/// The host's sockets for `ports`, bound before the box starts: a port that is taken is an
/// error naming it, and nothing of the box is made.
pub fn bind(ports: &[PortSpec]) -> Result<Vec<(HostSocket, PublishedPort)>> {
    ports
        .iter()
        .map(|port| {
            let address = SocketAddr::new(port.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port.host_port.unwrap_or(0));
            let failed = |error: std::io::Error| Error::Network(format!("cannot publish box port {}/{} on host {address}: {error}", port.guest_port, port.protocol.as_str()));
            let (socket, host) = match port.protocol {
                Protocol::Tcp => {
                    let listener = ParentOnly::make(|| {
                        let listener = TcpListener::bind(address)?;
                        listener.set_nonblocking(true)?;
                        Ok(listener)
                    })
                    .map_err(failed)?;
                    let host = listener.get().ok_or_else(forked_away).and_then(TcpListener::local_addr).map_err(failed)?;
                    (HostSocket::Tcp(listener), host)
                }
                Protocol::Udp => {
                    let socket = ParentOnly::make(|| {
                        let socket = UdpSocket::bind(address)?;
                        socket.set_nonblocking(true)?;
                        Ok(socket)
                    })
                    .map_err(failed)?;
                    let host = socket.get().ok_or_else(forked_away).and_then(UdpSocket::local_addr).map_err(failed)?;
                    (HostSocket::Udp(socket), host)
                }
            };
            Ok((socket, PublishedPort { host, guest_port: port.guest_port, protocol: port.protocol }))
        })
        .collect()
}

/// A listener whose connections go into a box: a published port's (TCP) or a tunnel's (TCP or
/// a unix socket).
pub(super) trait Outside: Send + 'static {
    type Stream: relay::Socket + 'static;
    fn accept(&self) -> impl std::future::Future<Output = std::io::Result<Self::Stream>> + Send;
}

/// Each accepted connection is the runtime's process's alone as soon as it arrives.
impl Outside for tokio::net::TcpListener {
    type Stream = ParentOnly<tokio::net::TcpStream>;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        let stream = ParentOnly::new(tokio::net::TcpListener::accept(self).await?.0);
        let _ = stream.get().map(|stream| stream.set_nodelay(true));
        Ok(stream)
    }
}

impl Outside for tokio::net::UnixListener {
    type Stream = ParentOnly<tokio::net::UnixStream>;
    async fn accept(&self) -> std::io::Result<Self::Stream> {
        Ok(ParentOnly::new(tokio::net::UnixListener::accept(self).await?.0))
    }
}

/// Joins each connection to `listener` with one to the box's `guest_port`, until the task is
/// aborted, which ends the connections it joined too (a revoked tunnel's included). The
/// listener is the runtime's process's alone (`crate::fork`): after the runtime's end, the port
/// is free for whoever serves the box next.
pub(super) async fn serve<L: Outside + AsRawFd>(listener: ParentOnly<L>, guest_port: u16, inside: Arc<dyn PortConnector>, traffic: Arc<BoxTraffic>) {
    let Some(listener) = listener.get() else { return };
    let mut relays = tokio::task::JoinSet::new();
    loop {
        // Reaps the relays that ended.
        while relays.try_join_next().is_some() {}
        let Ok(outside) = listener.accept().await else {
            super::after_failed_accept().await;
            continue;
        };
        let Ok(slot) = Arc::clone(&traffic.relays).try_acquire_owned() else { continue };
        let (inside, traffic) = (Arc::clone(&inside), Arc::clone(&traffic));
        relays.spawn(async move {
            let _slot = slot;
            let inside = match inside.connect(guest_port).await {
                Ok(inside) => inside,
                Err(error) => {
                    log::debug!("box {}: nothing answered on its port {guest_port}: {error}", traffic.box_id);
                    return;
                }
            };
            let (to_box, from_box) = (&traffic.bytes_received, &traffic.bytes_sent);
            let _ = match relay::tcp(inside) {
                Ok(inside) => relay::join(outside, inside, to_box, from_box).await,
                Err(inside) => relay::copy(outside, inside, to_box, from_box).await,
            };
        });
    }
}

/// One host peer's way into a box's UDP port.
struct Flow {
    /// Connected to the box's port, from inside the box; the runtime's process's alone
    /// (`crate::fork`).
    socket: ParentOnly<tokio::net::UdpSocket>,
    /// Datagrams the peer sent: the flow is idle while this stays still (and the box is quiet).
    sent: AtomicU64,
}

/// Relays datagrams between `outside` (the host's socket) and the box's `guest_port`, a socket
/// in the box per host peer, until the task is aborted (which ends the peers' tasks too, and so
/// frees the host's port). A datagram that cannot be relayed (no socket to be had in the box,
/// the box's relay slots all taken) is dropped, as UDP may.
pub(super) async fn serve_udp(outside: ParentOnly<tokio::net::UdpSocket>, guest_port: u16, inside: Arc<Inside>, traffic: Arc<BoxTraffic>) {
    let held = Arc::new(outside);
    let Some(outside) = held.get() else { return };
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>> = Arc::default();
    let mut answering = tokio::task::JoinSet::new();
    let mut datagram = vec![0u8; 65_536];
    loop {
        // Reaps the tasks of peers that went quiet.
        while answering.try_join_next().is_some() {}
        let Ok((length, peer)) = outside.recv_from(&mut datagram).await else {
            super::after_failed_accept().await;
            continue;
        };
        let known = crate::lock(&flows).get(&peer).cloned();
        let flow = match known {
            Some(flow) => flow,
            None => {
                let Ok(slot) = Arc::clone(&traffic.relays).try_acquire_owned() else { continue };
                let Ok(socket) = inside.datagram(guest_port).await else { continue };
                let flow = Arc::new(Flow { socket, sent: AtomicU64::new(0) });
                crate::lock(&flows).insert(peer, Arc::clone(&flow));
                traffic.connections.fetch_add(1, Ordering::Relaxed);
                let (held, flows, flow_of_peer, traffic) = (Arc::clone(&held), Arc::clone(&flows), Arc::clone(&flow), Arc::clone(&traffic));
                answering.spawn(async move {
                    let _slot = slot;
                    if let Some(outside) = held.get() {
                        answer_peer(&flow_of_peer, outside, peer, &traffic).await;
                    }
                    crate::lock(&flows).remove(&peer);
                });
                flow
            }
        };
        flow.sent.fetch_add(1, Ordering::Relaxed);
        let Some(socket) = flow.socket.get() else { continue };
        if socket.send(&datagram[..length]).await.is_ok() {
            traffic.bytes_received.fetch_add(length as u64, Ordering::Relaxed);
        }
    }
}

/// Sends what the box answers on the flow's socket back to `peer`, until neither side has sent
/// for [`UDP_IDLE`].
async fn answer_peer(flow: &Flow, outside: &tokio::net::UdpSocket, peer: SocketAddr, traffic: &BoxTraffic) {
    let Some(socket) = flow.socket.get() else { return };
    let mut datagram = vec![0u8; 65_536];
    let mut seen = flow.sent.load(Ordering::Relaxed);
    loop {
        match tokio::time::timeout(UDP_IDLE, socket.recv(&mut datagram)).await {
            Ok(Ok(length)) => {
                if outside.send_to(&datagram[..length], peer).await.is_ok() {
                    traffic.bytes_sent.fetch_add(length as u64, Ordering::Relaxed);
                }
            }
            // Nothing listens on the box's port (an ICMP error came back); the peer's next
            // datagram finds out again.
            Ok(Err(_)) => {}
            Err(_elapsed) => {
                let now = flow.sent.load(Ordering::Relaxed);
                if now == seen {
                    return;
                }
                seen = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adopted_box_gets_the_host_port_it_had_where_the_host_picked_one() {
        let picked = PortSpec { host_port: None, guest_port: 80, host_ip: None, protocol: Protocol::Tcp };
        assert_eq!(picked.on(Some(40_000)).host_port, Some(40_000));
        assert_eq!(PortSpec { host_port: Some(0), ..picked.clone() }.on(Some(40_000)).host_port, Some(40_000));
        assert_eq!(picked.on(None), picked);
        let chosen = PortSpec { host_port: Some(8080), ..picked };
        assert_eq!(chosen.on(Some(40_000)), chosen);
    }
}
