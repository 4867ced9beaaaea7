//! Tunnels over REST. `POST /boxes/{box}/network/tunnel?port=N` says where the running box's
//! port is reached (BoxLite's `TunnelDescriptor`: `{"uri": …}`); an HTTP/1.1 upgrade at that URI
//! (`GET`, `Connection: Upgrade`, `Upgrade: boxlite-tunnel`) becomes one connection to the port:
//! after `101 Switching Protocols` the bytes are the port's, both ways, and a half-close
//! travels as one. The connection to the box is made before the answer, so a box that is not
//! running or a port nobody listens on is an error status, not an upgrade that ends at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use boxlite_core::network::PortStream;
use boxlite_core::{lock, Error};
use serde::Deserialize;

use crate::boxes::{used, BoxPath};
use crate::error::{ApiError, ApiResult};
use crate::wire::TunnelDescriptor;
use crate::{Server, Shared};

/// The `Upgrade` token of a tunnel's connection.
pub const TUNNEL_PROTOCOL: &str = "boxlite-tunnel";
/// Most tunnel connections the server holds open at once (each is two sockets).
const OPEN_LIMIT: usize = 4096;
/// Each direction's buffer while relaying.
const RELAY_BUFFER: usize = 256 << 10;

pub fn routes() -> Router<Arc<Server>> {
    Router::new().route("/boxes/{box_id}/network/tunnel", post(prepare).get(open))
}

/// The tunnel connections open, per box: a box with one is in use (`auto_stop` waits).
#[derive(Default)]
pub struct OpenTunnels(Mutex<HashMap<String, usize>>);

impl OpenTunnels {
    pub fn open_in(&self, box_id: &str) -> bool {
        lock(&self.0).contains_key(box_id)
    }

    fn total(&self) -> usize {
        lock(&self.0).values().sum()
    }

    fn enter(self: &Arc<Self>, box_id: &str) -> Open {
        *lock(&self.0).entry(box_id.to_string()).or_default() += 1;
        Open { tunnels: Arc::clone(self), box_id: box_id.to_string() }
    }
}

/// One open tunnel connection, counted until dropped.
struct Open {
    tunnels: Arc<OpenTunnels>,
    box_id: String,
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut open = lock(&self.tunnels.0);
        if let Some(count) = open.get_mut(&self.box_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.box_id);
            }
        }
    }
}

#[derive(Deserialize)]
struct PortQuery {
    port: Option<i64>,
}

impl PortQuery {
    fn port(&self) -> ApiResult<u16> {
        self.port
            .and_then(|port| u16::try_from(port).ok())
            .filter(|port| *port != 0)
            .ok_or_else(|| ApiError::invalid_argument("the query parameter port must be an integer from 1 to 65535"))
    }
}

/// Where the box's port is reached: this very path, opened with an upgrade.
async fn prepare(State(server): Shared, Path(path): Path<BoxPath>, Query(query): Query<PortQuery>, OriginalUri(uri): OriginalUri, headers: HeaderMap) -> ApiResult<Json<TunnelDescriptor>> {
    let port = query.port()?;
    let handle = used(&server, &path.box_id, false)?;
    // A box that is not running has no port to reach.
    handle.tunnel(port).await?;
    let host = headers.get(header::HOST).and_then(|host| host.to_str().ok()).unwrap_or("localhost");
    Ok(Json(TunnelDescriptor { uri: format!("http://{host}{uri}") }))
}

/// One connection to the box's port, over this HTTP connection once upgraded.
async fn open(State(server): Shared, Path(path): Path<BoxPath>, Query(query): Query<PortQuery>, mut request: Request) -> ApiResult<Response> {
    let port = query.port()?;
    let asked = request.headers().get(header::UPGRADE).and_then(|value| value.to_str().ok()).is_some_and(|value| value.eq_ignore_ascii_case(TUNNEL_PROTOCOL));
    if !asked {
        return Err(ApiError::invalid_argument(format!("a tunnel is opened with an HTTP/1.1 upgrade: Connection: Upgrade, Upgrade: {TUNNEL_PROTOCOL}")));
    }
    if server.tunnels.total() >= OPEN_LIMIT {
        return Err(ApiError::from(Error::ResourceExhausted(format!("the server holds {OPEN_LIMIT} tunnel connections already"))));
    }
    let handle = used(&server, &path.box_id, false)?;
    let stream = handle.tunnel(port).await?.connect().await?;
    let open = server.tunnels.enter(handle.id());
    let upgrading = hyper::upgrade::on(&mut request);
    let shutdown = server.shutdown.clone();
    tokio::spawn(async move {
        let _open = open;
        let upgraded = match upgrading.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                log::debug!("a tunnel's connection was not upgraded: {error}");
                return;
            }
        };
        tokio::select! {
            () = relay(hyper_util::rt::TokioIo::new(upgraded), stream) => {}
            () = shutdown.cancelled() => {}
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response.headers_mut().insert(header::UPGRADE, HeaderValue::from_static(TUNNEL_PROTOCOL));
    Ok(response)
}

async fn relay(mut client: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin, mut port: Box<dyn PortStream>) {
    if let Err(error) = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut port, RELAY_BUFFER, RELAY_BUFFER).await {
        log::debug!("a tunnel's connection ended: {error}");
    }
}
