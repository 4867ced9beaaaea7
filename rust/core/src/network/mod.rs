//! Boxes' networks: what a box reaches outside itself, and how.
//!
//! A box's network namespace has one interface besides loopback, a tun device made by its shim
//! ahead of need, and rules loaded then too, that divert every TCP connection leaving it to a
//! listener made inside that namespace and let UDP out through the interface ([`BoxSockets`]:
//! the listener and the interface's descriptor); everything else leaving it is refused
//! (`boxlite_protocol::network`). The runtime serves both from the host ([`BoxNetwork`]):
//! [`proxy`] makes the connections the policy ([`policy`]) allows, [`datagrams`] sends the
//! datagrams it allows, [`dns`] answers queries (over either), and [`secrets`] completes the
//! HTTPS requests that carry the box's secrets. There is no bridge, no NAT and no route from
//! the box to the host: a connection or datagram leaves only as one the runtime made.
//! Inbound, [`ports`] joins connections to a host port with ones it makes inside the box's
//! namespace, as [`tunnel`]s do on demand.
//! The sockets in the box's namespace come from the box's shim and init ([`Inside`]): the
//! runtime never needs to enter the namespace for them, which it may not do when it runs as an
//! ordinary user.
//!
//! # Rules
//!
//! 1. The policy is enforced outside the box. The box's namespace belongs to the host's user
//!    namespace (or, for an ordinary user's runtime, to the one its shim spawner made, in which
//!    the user is root), so box root (even with `NET_ADMIN`, which it holds over its own user
//!    namespace only, nested in that one) cannot change its rules, routes or interface; and the
//!    decision is the runtime's.
//! 2. A name resolves in the box only if the allow-list names it (or the list is empty); a
//!    connection to a listed name is made only to an address the runtime's resolver returned for
//!    it. Sending an allowed name in SNI or a Host header, or querying another resolver, changes
//!    nothing: the runtime looks at the address, and every query reaches its own resolver.
//! 3. Unless an IP rule lists them, no box reaches the host's own addresses (its loopback
//!    services among them), link-local addresses (cloud metadata at 169.254.169.254), its own
//!    link, or other boxes (which have no address outside their namespace at all).
//! 4. What the box may not do fails at once: a refused connection is reset, a refused datagram
//!    answered with ICMP "administratively prohibited", an unlisted name gets NXDOMAIN, and
//!    protocols other than TCP and UDP are rejected by the box's rules.
//! 5. A box's network is served while a runtime holds the box. Its sockets live as long as the
//!    box runs: its init keeps them, and a runtime that adopts a detached box serves the same
//!    ones and publishes its ports again, where they were. A runtime that closes stops serving
//!    its detached boxes before it lets go of the home, and once a program's runtime is gone a
//!    keeper serves them (`crate::keeper`). While nobody serves a box, what it sends waits for
//!    the next server: its connections in the listener's queue (the kernel's `somaxconn`,
//!    4,096), its datagrams in the interface's (500 packets).

mod datagrams;
mod dns;
mod policy;
mod ports;
mod proxy;
mod relay;
pub mod secrets;
mod sockets;
mod tunnel;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use boxlite_protocol::network::RESOLVER;

use crate::error::{Error, Result};
use crate::fork::ParentOnly;
pub use policy::Policy;
pub use secrets::{SecretProxy, SecretSpec};
pub use ports::{bind as bind_ports, HostSocket, PortSpec, Protocol, PublishedPort};
pub use tunnel::{Connecting, Forwarder, Forwarders, ListenAddress, PortConnector, PortStream, Tunnel};

/// Most connections and datagram flows relayed for one box at once, and most DNS queries in
/// flight for it.
const RELAYS_PER_BOX: usize = 1024;
const QUERIES_PER_BOX: usize = 128;

/// What this host offers boxes' networks, found when the runtime opens.
#[derive(Debug, Clone)]
pub struct HostNetwork {
    /// The nameservers the boxes' resolver asks.
    upstream: Arc<[SocketAddr]>,
    /// The resolv.conf every box with a network reads (mounted read-only).
    pub resolv_conf: PathBuf,
}

/// The environment variable naming the nameservers boxes' queries go to (comma-separated
/// addresses, `ip` or `ip:port`), instead of the host's resolv.conf.
pub const DNS_SERVERS_VARIABLE: &str = "BOXLITE_DNS_SERVERS";

impl HostNetwork {
    /// Finds the nameservers, and writes the boxes' resolv.conf under `dir`.
    pub fn detect(dir: &Path) -> Result<Self> {
        let host_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let upstream: Arc<[SocketAddr]> = dns::upstream_servers(std::env::var(DNS_SERVERS_VARIABLE).ok().as_deref(), &host_conf).into();
        fs_err::create_dir_all(dir)?;
        let resolv_conf = dir.join("resolv.conf");
        let text = format!("nameserver {}\n", Ipv4Addr::from(RESOLVER));
        if std::fs::read_to_string(&resolv_conf).ok().as_deref() != Some(text.as_str()) {
            fs_err::write(&resolv_conf, text)?;
        }
        Ok(Self { upstream, resolv_conf })
    }
}

/// What the runtime serves one box's way out on: the listener inside the box's network
/// namespace where its rules divert its connections, and its interface, where its datagrams
/// come out. Non-blocking. Kept by the runtime's process alone (`crate::fork`): a child forked
/// from it holds nothing of the box's network, whose namespace ends with the box.
#[derive(Debug)]
pub struct BoxSockets {
    proxy: ParentOnly<OwnedFd>,
    interface: ParentOnly<OwnedFd>,
}

impl BoxSockets {
    /// The sockets a box's shim made ahead of need and sent on its start-up socket
    /// (`boxlite_protocol::BOX_SOCKETS`). Blocking.
    pub fn receive(startup: BorrowedFd<'_>) -> Result<Self> {
        let mut marker = [0u8; 1];
        let (length, fds) = boxlite_protocol::recv_with_fds(startup, &mut marker).map_err(|error| Error::Network(format!("failed to receive the box's sockets: {error}")))?;
        match <[OwnedFd; 2]>::try_from(fds) {
            Ok([proxy, interface]) if length == 1 && marker[0] == boxlite_protocol::BOX_SOCKETS => Ok(Self::own(proxy, interface)),
            _ => Err(Error::Network("the box's shim did not send its sockets".to_string())),
        }
    }

    /// The sockets the init of a running box keeps (`boxlite_protocol::Request::Network`), for
    /// a runtime that adopts it: duplicates of the ones its shim sent the box's first runtime.
    pub async fn from_init(inside: &Inside) -> std::io::Result<Self> {
        let [proxy, interface] = crate::exec::fd::ControlSocket::ask_for_descriptors(&inside.socket_path, &boxlite_protocol::Request::Network).await?;
        Ok(Self::own(proxy, interface))
    }

    fn own(proxy: OwnedFd, interface: OwnedFd) -> Self {
        Self { proxy: ParentOnly::new(proxy), interface: ParentOnly::new(interface) }
    }
}

/// Sockets in one box's network namespace, made by its init on request
/// (`boxlite_protocol::Request::Socket`).
#[derive(Debug)]
pub struct Inside {
    box_id: String,
    /// Where the box's init listens.
    socket_path: PathBuf,
}

impl Inside {
    pub fn new(box_id: &str, socket_path: PathBuf) -> Self {
        Self { box_id: box_id.to_string(), socket_path }
    }

    /// A socket made in the box's network namespace, the runtime's process's alone.
    async fn socket(&self, datagram: bool) -> std::io::Result<ParentOnly<socket2::Socket>> {
        let [socket] = crate::exec::fd::ControlSocket::ask_for_descriptors(&self.socket_path, &boxlite_protocol::Request::Socket { datagram }).await?;
        Ok(sockets::received(socket))
    }

    /// A UDP socket in the box, connected to the box's `port` on its loopback.
    pub async fn datagram(&self, port: u16) -> std::io::Result<ParentOnly<tokio::net::UdpSocket>> {
        sockets::datagrams_with(self.socket(true).await?, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }
}

impl PortConnector for Inside {
    /// A connection to the box's `port` on its loopback.
    fn connect(&self, port: u16) -> Connecting<'_> {
        Box::pin(async move {
            let made = async {
                // The runtime's process's alone: a child forked from it holds no end of it, so
                // closing it here reaches the box (`crate::fork`).
                let inside = sockets::connect_with(self.socket(false).await?, SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
                let _ = inside.get().map(|inside| inside.set_nodelay(true));
                Ok::<_, std::io::Error>(inside)
            };
            let stream = made.await.map_err(|error| Error::Network(format!("cannot reach port {port} of box {}: {error}", self.box_id)))?;
            Ok(Box::new(stream) as Box<dyn PortStream>)
        })
    }
}

/// Serves a box's way out on `sockets`, or on the ones its init keeps (`inside`), until the
/// task is aborted.
async fn serve_way_out(sockets: Option<BoxSockets>, inside: Arc<Inside>, outbound: Arc<Outbound>) {
    let sockets = match sockets {
        Some(sockets) => sockets,
        None => match BoxSockets::from_init(&inside).await {
            Ok(sockets) => sockets,
            Err(error) => {
                log::warn!("box {} has no way out: its init gave no sockets: {error}", outbound.traffic.box_id);
                return;
            }
        },
    };
    match sockets.proxy.try_map(|proxy| tokio::net::TcpListener::from_std(proxy.into())) {
        Ok(proxy) => {
            tokio::join!(proxy::serve(proxy, Arc::clone(&outbound)), datagrams::serve(sockets.interface, Arc::clone(&outbound)));
        }
        Err(error) => log::warn!("box {} has no way out: {error}", outbound.traffic.box_id),
    }
}

/// The refusal to give a running box that has no interface a way out.
pub fn runs_without_network(box_id: &str) -> Error {
    Error::InvalidState(format!("box {box_id} runs without a network: it can get one only when it starts again (stop it, update, start it)"))
}

/// What serving a box's way out shares: its policy, where its queries go, its counters.
#[derive(Debug)]
struct Outbound {
    /// Replaced whole when the box's list changes; each query and connection takes the one in
    /// force when it comes.
    policy: std::sync::RwLock<Arc<Policy>>,
    upstream: Arc<[SocketAddr]>,
    traffic: Arc<BoxTraffic>,
    secrets: Option<SecretProxy>,
}

/// How a box's way out is served: the sockets its shim made in its namespace (`None`: the ones
/// its init keeps, for a box a runtime adopts), its policy, and the proxy of its secrets.
#[derive(Debug)]
pub struct WayOut {
    pub sockets: Option<BoxSockets>,
    pub policy: Policy,
    pub secrets: Option<SecretProxy>,
}

impl Outbound {
    fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// What one box's network serving shares: its published ports and its counters.
#[derive(Debug)]
struct BoxTraffic {
    box_id: String,
    published: Vec<PublishedPort>,
    /// The connections and datagram flows the runtime relays for the box at once (out,
    /// published ports, tunnels), and the DNS queries it answers at once: one box cannot take
    /// all of the runtime's descriptors. Past them a connection is reset, and a datagram or a
    /// query dropped.
    relays: Arc<tokio::sync::Semaphore>,
    queries: Arc<tokio::sync::Semaphore>,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    connections: AtomicU64,
    errors: AtomicU64,
}

impl BoxTraffic {
    fn new(box_id: &str, published: Vec<PublishedPort>) -> Self {
        Self {
            box_id: box_id.to_string(),
            published,
            relays: Arc::new(tokio::sync::Semaphore::new(RELAYS_PER_BOX)),
            queries: Arc::new(tokio::sync::Semaphore::new(QUERIES_PER_BOX)),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }
}

/// Counters of a box's traffic through its network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub tcp_connections: u64,
    pub tcp_errors: u64,
}

/// A box's network while the runtime serves it; dropping it stops the serving.
#[derive(Debug)]
pub struct BoxNetwork {
    traffic: Arc<BoxTraffic>,
    /// `None` for a box with loopback only.
    outbound: Option<Arc<Outbound>>,
    /// Where connections into the box are made.
    inside: Arc<Inside>,
    forwarders: Arc<tunnel::Forwarders>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BoxNetwork {
    /// Serves the network of box `box_id`, whose init listens at `socket_path`: its way out
    /// (`None`: loopback only), and its `published` ports (listeners from [`bind_ports`]). Call
    /// within the tokio runtime.
    pub fn serve(box_id: &str, socket_path: &Path, way_out: Option<WayOut>, published: Vec<(HostSocket, PublishedPort)>, host: &HostNetwork) -> Result<Self> {
        let traffic = Arc::new(BoxTraffic::new(box_id, published.iter().map(|(_, port)| *port).collect()));
        let registered = |error: std::io::Error| Error::Network(format!("failed to serve box {box_id}'s network: {error}"));
        let inside = Arc::new(Inside::new(box_id, socket_path.to_path_buf()));
        let mut tasks = Vec::new();
        let mut served_outbound = None;
        if let Some(WayOut { sockets, policy, secrets }) = way_out {
            let outbound = Arc::new(Outbound { policy: std::sync::RwLock::new(Arc::new(policy)), upstream: Arc::clone(&host.upstream), traffic: Arc::clone(&traffic), secrets });
            tasks.push(tokio::spawn(serve_way_out(sockets, Arc::clone(&inside), Arc::clone(&outbound))));
            served_outbound = Some(outbound);
        }
        for (socket, port) in published {
            let inside = Arc::clone(&inside);
            tasks.push(match socket {
                HostSocket::Tcp(listener) => tokio::spawn(ports::serve(listener.try_map(tokio::net::TcpListener::from_std).map_err(registered)?, port.guest_port, inside, Arc::clone(&traffic))),
                HostSocket::Udp(socket) => tokio::spawn(ports::serve_udp(socket.try_map(tokio::net::UdpSocket::from_std).map_err(registered)?, port.guest_port, inside, Arc::clone(&traffic))),
            });
        }
        Ok(Self { traffic, outbound: served_outbound, inside, forwarders: Arc::default(), tasks })
    }

    /// A tunnel to the box's `port`, for this run of the box.
    pub fn tunnel(&self, port: u16) -> Tunnel {
        Tunnel { port, connector: Arc::clone(&self.inside) as Arc<dyn PortConnector>, traffic: Arc::clone(&self.traffic), forwarders: Arc::clone(&self.forwarders) }
    }

    /// Ends the forwarders of the box's `port`.
    pub fn revoke_tunnels(&self, port: u16) {
        self.forwarders.revoke(Some(port));
    }

    /// Applies a new allow-list to the box's way out at once (queries and connections from
    /// now on; `None` allows nothing); what the resolver learned for names still listed stays
    /// reachable. A bad entry is an error and changes nothing.
    pub fn update_policy(&self, allow_net: Option<&[String]>) -> Result<()> {
        let Some(outbound) = &self.outbound else {
            if allow_net.is_none() {
                return Ok(());
            }
            return Err(runs_without_network(&self.traffic.box_id));
        };
        let widened = allow_net.zip(outbound.secrets.as_ref()).map(|(list, secrets)| secrets.widened(list));
        let replacement = Arc::new(outbound.policy().replaced(widened.as_deref().or(allow_net))?);
        *outbound.policy.write().unwrap_or_else(std::sync::PoisonError::into_inner) = replacement;
        Ok(())
    }

    /// Reads this network's counters, also after it stopped; `None` for a box with neither a
    /// way out nor published ports.
    pub fn meter(&self) -> Option<TrafficMeter> {
        (self.outbound.is_some() || !self.traffic.published.is_empty()).then(|| TrafficMeter(Arc::clone(&self.traffic)))
    }
}

/// Reads the counters of a box's network.
#[derive(Debug, Clone)]
pub struct TrafficMeter(Arc<BoxTraffic>);

impl TrafficMeter {
    /// The ports this network publishes (while it is served).
    pub fn published(&self) -> &[PublishedPort] {
        &self.0.published
    }

    pub fn counts(&self) -> TrafficCounts {
        let traffic = &self.0;
        TrafficCounts {
            bytes_sent: traffic.bytes_sent.load(Ordering::Relaxed),
            bytes_received: traffic.bytes_received.load(Ordering::Relaxed),
            tcp_connections: traffic.connections.load(Ordering::Relaxed),
            tcp_errors: traffic.errors.load(Ordering::Relaxed),
        }
    }
}

/// How long [`BoxNetwork::stop_serving`] waits for the serving to let go of its sockets.
const LET_GO_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl BoxNetwork {
    /// Stops serving `networks` and returns once their listeners (in the boxes and on the host)
    /// are closed, or after [`LET_GO_WAIT`]: the boxes' next runtime makes its own there.
    /// Blocking; call outside the tokio runtime's workers, while it runs.
    pub fn stop_serving(networks: Vec<Self>) {
        let tasks: Vec<_> = networks.into_iter().flat_map(|mut network| std::mem::take(&mut network.tasks)).collect();
        for task in &tasks {
            task.abort();
        }
        let deadline = std::time::Instant::now() + LET_GO_WAIT;
        while !tasks.iter().all(tokio::task::JoinHandle::is_finished) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl Drop for BoxNetwork {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.forwarders.revoke(None);
    }
}

/// After a failed accept (the runtime out of descriptors, say): wait a little rather than
/// spin, then accept again.
async fn after_failed_accept() {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

