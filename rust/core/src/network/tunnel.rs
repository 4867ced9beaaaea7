//! Tunnels: a way from the host to one port of a running box, taken once, either as one
//! connection ([`Tunnel::connect`]) or as a listener on the host that forwards each connection
//! it accepts ([`Tunnel::forward`]). Forwarders end with the box's run, or when closed or
//! revoked. The connections are made by a [`PortConnector`]: the box's init for a box of this
//! runtime, a REST server for a remote box (`boxlite-client`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};

use super::{ports, BoxTraffic};
use crate::fork::{forked_away, ParentOnly};
use crate::lock;
use crate::error::{Error, Result};

/// A byte stream to a box's port.
pub trait PortStream: AsyncRead + AsyncWrite + Send + Unpin {
    /// The stream as what it is, so a relay may splice a socket's.
    fn as_any(&self) -> &dyn std::any::Any;
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;
}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PortStream for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// A connection being made by a [`PortConnector`].
pub type Connecting<'a> = Pin<Box<dyn Future<Output = Result<Box<dyn PortStream>>> + Send + 'a>>;

/// Makes connections to the ports of one box.
pub trait PortConnector: Send + Sync + std::fmt::Debug + 'static {
    /// A connection to the box's `port`; an error names the box and the port.
    fn connect(&self, port: u16) -> Connecting<'_>;
}

/// Where a forwarder listens on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(address) => write!(formatter, "tcp://{address}"),
            Self::Unix(path) => write!(formatter, "unix://{}", path.display()),
        }
    }
}

/// A way to one port of a running box, taken once.
#[derive(Debug)]
pub struct Tunnel {
    pub(super) port: u16,
    pub(super) connector: Arc<dyn PortConnector>,
    pub(super) traffic: Arc<BoxTraffic>,
    pub(super) forwarders: Arc<Forwarders>,
}

impl Tunnel {
    /// A tunnel to `port` of box `box_id` whose connections `connector` makes, and whose
    /// forwarders `forwarders` keeps (a remote box's: `boxlite-client`).
    pub fn through(box_id: &str, port: u16, connector: Arc<dyn PortConnector>, forwarders: Arc<Forwarders>) -> Self {
        Self { port, connector, traffic: Arc::new(BoxTraffic::new(box_id, Vec::new())), forwarders }
    }

    /// One connection to the port.
    pub async fn connect(self) -> Result<Box<dyn PortStream>> {
        self.connector.connect(self.port).await
    }

    /// Listens at `listen` and joins each connection to one to the port, until the forwarder
    /// is closed, revoked, or the box's run ends. A unix socket's file is made (it must not
    /// exist) and removed when the forwarder ends.
    pub async fn forward(self, listen: ListenAddress) -> Result<Forwarder> {
        let failed = |error: std::io::Error| Error::Network(format!("cannot listen on {listen}: {error}"));
        let box_id = self.traffic.box_id.clone();
        let (task, local) = match &listen {
            ListenAddress::Tcp(address) => {
                let listener = ParentOnly::make(|| {
                    let listener = std::net::TcpListener::bind(address)?;
                    listener.set_nonblocking(true)?;
                    Ok(listener)
                })
                .and_then(|listener| listener.try_map(tokio::net::TcpListener::from_std)).map_err(failed)?;
                let local = ListenAddress::Tcp(listener.get().ok_or_else(forked_away).and_then(tokio::net::TcpListener::local_addr).map_err(failed)?);
                (tokio::spawn(ports::serve(listener, self.port, Arc::clone(&self.connector), Arc::clone(&self.traffic))), local)
            }
            ListenAddress::Unix(path) => {
                let listener = ParentOnly::make(|| {
                    let listener = std::os::unix::net::UnixListener::bind(path)?;
                    listener.set_nonblocking(true)?;
                    Ok(listener)
                })
                .and_then(|listener| listener.try_map(tokio::net::UnixListener::from_std)).map_err(failed)?;
                (tokio::spawn(ports::serve(listener, self.port, Arc::clone(&self.connector), Arc::clone(&self.traffic))), listen.clone())
            }
        };
        let state = Arc::new(ForwarderState { port: self.port, local: local.clone(), task: Mutex::new(Some(task)), closed: tokio::sync::watch::Sender::new(false) });
        if !self.forwarders.add(Arc::clone(&state)) {
            state.close();
            return Err(Error::InvalidState(format!("box {box_id}'s run ended: its tunnels went with it")));
        }
        Ok(Forwarder { state })
    }
}

/// A forwarder of a tunnel (see [`Tunnel::forward`]).
#[derive(Debug, Clone)]
pub struct Forwarder {
    state: Arc<ForwarderState>,
}

impl Forwarder {
    /// Where it listens (the port the host picked, for port 0).
    pub fn local_address(&self) -> &ListenAddress {
        &self.state.local
    }

    /// Resolves once it has ended.
    pub async fn wait(&self) {
        let mut closed = self.state.closed.subscribe();
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// Ends it (again: nothing).
    pub fn close(&self) {
        self.state.close();
    }
}

#[derive(Debug)]
struct ForwarderState {
    port: u16,
    local: ListenAddress,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    closed: tokio::sync::watch::Sender<bool>,
}

impl ForwarderState {
    fn close(&self) {
        let Some(task) = lock(&self.task).take() else { return };
        task.abort();
        if let ListenAddress::Unix(path) = &self.local {
            let _ = std::fs::remove_file(path);
        }
        self.closed.send_replace(true);
    }
}

/// The forwarders of one run of a box: all end with it, and a tunnel taken during the run
/// makes none after it.
#[derive(Debug, Default)]
pub struct Forwarders(Mutex<(Vec<Arc<ForwarderState>>, bool)>);

impl Forwarders {
    /// Keeps `forwarder`; false once the run has ended.
    fn add(&self, forwarder: Arc<ForwarderState>) -> bool {
        let mut forwarders = lock(&self.0);
        if forwarders.1 {
            return false;
        }
        forwarders.0.retain(|known| lock(&known.task).is_some());
        forwarders.0.push(forwarder);
        true
    }

    /// Ends the forwarders of `port`; with `None`, all of them, for good (the run ended).
    pub fn revoke(&self, port: Option<u16>) {
        let ended: Vec<Arc<ForwarderState>> = {
            let mut forwarders = lock(&self.0);
            forwarders.1 |= port.is_none();
            let (ended, kept) = forwarders.0.drain(..).partition(|forwarder| port.is_none_or(|port| forwarder.port == port));
            forwarders.0 = kept;
            ended
        };
        for forwarder in ended {
            forwarder.close();
        }
    }
}
