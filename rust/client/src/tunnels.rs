//! Tunnels to a remote box's ports. `tunnel(port)` asks the server where the port is reached
//! (`POST …/network/tunnel?port=N`, which also checks that the box runs); each connection is
//! then an HTTP/1.1 upgrade of a request to that path (`boxlite_server::TUNNEL_PROTOCOL`),
//! after which the bytes are the port's. A forwarder listens on this machine and makes one such
//! connection per connection it accepts; `revoke_tunnel`, and a stop through any handle of the
//! box, end this client's forwarders of the box.

use std::sync::Arc;

use boxlite_core::network::{Connecting, Forwarders, PortConnector, PortStream, Tunnel};
use boxlite_core::{lock, Result};
use boxlite_server::{wire, TUNNEL_PROTOCOL};
use reqwest::header::{CONNECTION, UPGRADE};
use reqwest::{Method, StatusCode};

use crate::boxes::RemoteBox;
use crate::{error_of, unreachable, Client};

/// Makes connections to one remote box's ports through its server.
#[derive(Debug)]
struct ThroughServer {
    client: Client,
    /// `/boxes/{box}/network/tunnel`.
    path: String,
}

impl PortConnector for ThroughServer {
    fn connect(&self, port: u16) -> Connecting<'_> {
        Box::pin(async move {
            let request = self.client.request(Method::GET, &self.path)?.query(&[("port", port)]).header(CONNECTION, "Upgrade").header(UPGRADE, TUNNEL_PROTOCOL);
            let response = request.send().await.map_err(unreachable)?;
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                return Err(error_of(response).await);
            }
            let upgraded = response.upgrade().await.map_err(unreachable)?;
            Ok(Box::new(upgraded) as Box<dyn PortStream>)
        })
    }
}

impl RemoteBox {
    /// A tunnel to the running box's `port`, and the URI the server gave for it.
    pub async fn tunnel(&self, port: u16) -> Result<(Tunnel, String)> {
        self.check_usable()?;
        let path = self.path("/network/tunnel");
        let descriptor: wire::TunnelDescriptor = self.client().json(self.client().request(Method::POST, &path)?.query(&[("port", port)])).await?;
        let connector = Arc::new(ThroughServer { client: self.client().clone(), path });
        Ok((Tunnel::through(self.id(), port, connector, self.client().forwarders(self.id())), descriptor.uri))
    }

    /// Ends this client's forwarders of the box's `port`.
    pub fn revoke_tunnel(&self, port: u16) -> Result<()> {
        self.check_usable()?;
        self.client().forwarders(self.id()).revoke(Some(port));
        Ok(())
    }
}

impl Client {
    /// The forwarders this client runs for box `box_id`.
    fn forwarders(&self, box_id: &str) -> Arc<Forwarders> {
        Arc::clone(lock(&self.inner.forwarders).entry(box_id.to_string()).or_default())
    }

    /// Whether this client runs forwarders for box `box_id`; `None` when it runs none at all.
    pub(crate) fn forwards_to(&self, box_id: &str) -> Option<bool> {
        let forwarders = lock(&self.inner.forwarders);
        (!forwarders.is_empty()).then(|| forwarders.contains_key(box_id))
    }

    /// Ends this client's forwarders for box `box_id` (it stopped): later tunnels get new ones.
    pub(crate) fn end_forwarders(&self, box_id: &str) {
        let ended = lock(&self.inner.forwarders).remove(box_id);
        if let Some(forwarders) = ended {
            forwarders.revoke(None);
        }
    }
}
