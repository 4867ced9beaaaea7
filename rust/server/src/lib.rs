//! `boxlite serve`: BoxLite's REST API over a local [`Runtime`]. The work is the core's; this
//! crate is HTTP and WebSocket plumbing: routes, the JSON bodies ([`wire`]), the error envelope
//! ([`error`]), bearer-key checks and the executions kept between requests ([`executions`]).

mod archives;
mod attach;
mod boxes;
mod error;
mod executions;
mod files;
mod images;
mod lifecycle;
mod tunnels;
pub mod wire;

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use boxlite_core::Runtime;
use tokio_util::sync::CancellationToken;

pub use error::error_from_code;
pub use executions::Keeping;
pub use tunnels::TUNNEL_PROTOCOL;

/// How long requests in flight may take to finish once a stop began.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

/// What `boxlite serve` was asked for.
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Requests must carry `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Where uploads and downloads are staged; emptied at start.
    pub scratch_dir: PathBuf,
    /// Where boxes' `auto_stop`, `auto_delete` and `auto_resume` are kept between servers.
    pub lifecycle_file: PathBuf,
    pub keeping: Keeping,
    /// Largest upload accepted, in bytes.
    pub upload_limit: u64,
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServeConfig")
            .field("listen", &self.listen)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("scratch_dir", &self.scratch_dir)
            .field("lifecycle_file", &self.lifecycle_file)
            .field("keeping", &self.keeping)
            .field("upload_limit", &self.upload_limit)
            .finish()
    }
}

/// What every handler reaches.
pub(crate) struct Server {
    pub runtime: Runtime,
    pub executions: executions::Executions,
    pub lifecycle: lifecycle::Lifecycle,
    pub scratch_dir: PathBuf,
    pub upload_limit: u64,
    pub shutdown: CancellationToken,
    pub tunnels: Arc<tunnels::OpenTunnels>,
}

pub(crate) type Shared = State<Arc<Server>>;

/// Binds the listening socket (before anything else, so a port in use is the first error).
pub async fn bind(config: &ServeConfig) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.listen).await
}

/// Serves until `shutdown` is cancelled, then lets requests in flight finish, closes attached
/// clients with "going away" and kills the executions the server kept.
pub async fn serve(runtime: Runtime, config: ServeConfig, listener: tokio::net::TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    let _ = std::fs::remove_dir_all(&config.scratch_dir);
    std::fs::DirBuilder::new().mode(0o700).recursive(true).create(&config.scratch_dir)?;
    let lifecycle = lifecycle::Lifecycle::load(config.lifecycle_file.clone(), &runtime);
    let server = Arc::new(Server {
        runtime,
        executions: executions::Executions::new(config.keeping),
        lifecycle,
        scratch_dir: config.scratch_dir.clone(),
        upload_limit: config.upload_limit,
        shutdown: shutdown.clone(),
        tunnels: Arc::default(),
    });
    let reaper = tokio::spawn(reap(Arc::clone(&server), config.keeping));
    let lifecycle = tokio::spawn(keep_lifecycle(Arc::clone(&server)));
    let app = router(Arc::clone(&server), config.api_key.map(Arc::from));
    // Frames of an attached execution are small and answer each other: without TCP_NODELAY
    // each would wait out the peer's delayed acknowledgement (40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |connection: &mut tokio::net::TcpStream| {
        if let Err(error) = connection.set_nodelay(true) {
            log::debug!("failed to set TCP_NODELAY on a connection: {error}");
        }
    });
    let graceful = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    // Requests in flight get `SHUTDOWN_LIMIT` to finish; a slow download or stop does not hold
    // the server (or the kills below) any longer.
    let served = tokio::select! {
        served = graceful => served,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_LIMIT).await;
        } => {
            log::warn!("requests still in flight {SHUTDOWN_LIMIT:?} after the stop began: ending them");
            Ok(())
        }
    };
    reaper.abort();
    lifecycle.abort();
    server.executions.kill_all().await;
    served
}

async fn reap(server: Arc<Server>, keeping: Keeping) {
    let tick = (keeping.reconnect_grace.min(keeping.retention) / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        server.executions.reap().await;
    }
}

/// `lifecycle`, once a second.
async fn keep_lifecycle(server: Arc<Server>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    loop {
        interval.tick().await;
        server.lifecycle.tick(&server.runtime, |box_id| server.executions.running_in(box_id) || server.tunnels.open_in(box_id)).await;
    }
}

fn router(server: Arc<Server>, api_key: Option<Arc<str>>) -> Router {
    let api = Router::new()
        .merge(boxes::routes())
        .merge(archives::routes())
        .merge(attach::routes())
        .merge(files::routes())
        .merge(images::routes())
        .merge(tunnels::routes())
        .route("/metrics", get(boxes::runtime_metrics));
    Router::new()
        .route("/v1/me", get(me))
        .nest("/v1", api.clone())
        .nest("/v1/{prefix}", api)
        .layer(middleware::from_fn_with_state(api_key, authenticate))
        .route("/v1/config", get(config))
        .fallback(|| async { error::ApiError::from(boxlite_core::Error::NotFound("no such route".to_string())) })
        .layer(middleware::from_fn(error::envelope))
        .layer(middleware::from_fn(log_request))
        .with_state(server)
}

/// `Authorization: Bearer <key>`, compared in constant time, when the server has a key. Without
/// one, only clients that are not web pages get in: a request a browser sends for a page
/// (it carries `Origin`) or through a name that is not an address (DNS rebinding: `Host` is the
/// page's name) is refused, so a web page cannot drive the boxes of a server on loopback.
async fn authenticate(State(api_key): State<Option<Arc<str>>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    match &api_key {
        Some(expected) => {
            let given = headers.get("authorization").and_then(|value| value.to_str().ok()).and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")));
            if !given.is_some_and(|given| same_secret(given.as_bytes(), expected.as_bytes())) {
                return error::ApiError::unauthenticated().into_response();
            }
        }
        None if headers.contains_key("origin") => {
            return error::ApiError::forbidden("requests from web pages are refused: this server has no API key (--api-key)").into_response();
        }
        None if !headers.get("host").and_then(|host| host.to_str().ok()).is_some_and(names_an_address) => {
            return error::ApiError::forbidden("the Host header must be an address or localhost: this server has no API key (--api-key)").into_response();
        }
        None => {}
    }
    next.run(request).await
}

/// Whether a `Host` header names an IP address or localhost (with or without a port).
fn names_an_address(host: &str) -> bool {
    if host.parse::<SocketAddr>().is_ok() || host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = host.rsplit_once(':').filter(|(_, port)| port.parse::<u16>().is_ok()).map_or(host, |(name, _)| name);
    name.eq_ignore_ascii_case("localhost") || name.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok()
}

/// Equality whose time depends on the lengths only, not on where the bytes differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (index, byte) in expected.iter().enumerate() {
        difference |= usize::from(given.get(index).copied().unwrap_or(0) ^ byte);
    }
    std::hint::black_box(difference) == 0
}

/// One log line per request (method, path, status, time), and its `X-Request-Id`, given or made.
/// Never headers or bodies: they carry keys and file contents.
async fn log_request(request: Request, next: Next) -> Response {
    let began = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let request_id = request.headers().get("x-request-id").cloned().unwrap_or_else(|| {
        let id: u64 = rand::random();
        HeaderValue::from_str(&format!("{id:016x}")).unwrap_or(HeaderValue::from_static("0"))
    });
    let mut response = next.run(request).await;
    let status = response.status();
    let level = if status.is_server_error() { log::Level::Warn } else { log::Level::Info };
    log::log!(level, "{method} {path} -> {} in {:.1} ms", status.as_u16(), began.elapsed().as_secs_f64() * 1000.0);
    response.headers_mut().insert("x-request-id", request_id);
    response
}

async fn config() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "defaults": {"cpus": boxlite_core::DEFAULT_CPUS, "memory_mib": boxlite_core::DEFAULT_MEMORY_MIB},
        "capabilities": {
            "linux_capabilities_enabled": true,
            "tty_enabled": true,
            "streaming_enabled": true,
            "snapshots_enabled": true,
            "clone_enabled": true,
            "export_enabled": true,
            "import_enabled": true,
        },
    }))
}

async fn me() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "sub": "local",
        "principal_type": "service_account",
        "scopes": ["box:read", "box:write", "box:exec", "box:delete"],
        "path_prefix": null,
        "expires_at": null,
    }))
}

/// 204, for the routes that answer with nothing.
pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn hosts_that_name_an_address() {
        for host in ["127.0.0.1", "127.0.0.1:8100", "[::1]:8100", "::1", "localhost", "LOCALHOST:80"] {
            assert!(super::names_an_address(host), "{host}");
        }
        for host in ["evil.example", "evil.example:8100", "localhost.evil.example", "127.0.0.1.nip.io", ""] {
            assert!(!super::names_an_address(host), "{host}");
        }
    }

    #[test]
    fn secrets_match_only_exactly() {
        assert!(same_secret(b"blk_live_1", b"blk_live_1"));
        assert!(!same_secret(b"blk_live_", b"blk_live_1"));
        assert!(!same_secret(b"blk_live_10", b"blk_live_1"));
        assert!(!same_secret(b"", b"k"));
        assert!(!same_secret(b"blk_live_2", b"blk_live_1"));
    }
}
