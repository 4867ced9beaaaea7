//! The REST client: BoxLite's REST API (`boxlite serve`) as the operations of the core's
//! `Runtime` and `BoxHandle`, answering with the core's types (`BoxInfo`, `Execution`,
//! `BoxMetrics`, ...), so the binding serves a remote runtime through the paths that serve a
//! local one. The bodies are the server's own (`boxlite_server::wire`); errors come back through
//! the server's one mapping (`boxlite_server::error_from_code`).
//!
//! # Rules
//!
//! 1. Making a [`Client`] contacts nobody; each operation is its own request(s).
//! 2. Every answer that is not a success becomes the core's typed error for its code; a server
//!    that cannot be reached is a network error. No credential appears in an error, a log line
//!    or a `Debug`, and request URLs are left out of transport errors.
//! 3. Files stream: an upload is packed as it is sent, a download unpacked as it arrives.
//! 4. A remote execution is relayed into a core `Execution` (`exec::relayed`): its consumer
//!    reads pipes and waits as for a local one. Dropping it before its exit kills the remote
//!    process (the relay deletes the execution), as dropping a local one kills its group.
//! 5. A stream never hangs on a dead server: a connection that ends, fails, or stays silent
//!    past [`SILENCE_LIMIT`] (the server pings every 15 s) ends the execution with an error
//!    status. Nor does a request the server answers at once (a read, an exec's start, a
//!    kill: [`Client::quick`]): one unanswered for [`SILENCE_LIMIT`] is a network error. The
//!    others (a create, a start or stop, a copy, an archive) take as long as their work does.

mod archives;
mod boxes;
mod exec;
mod files;
mod tunnels;

use std::sync::Arc;
use std::time::Duration;

use boxlite_core::{BoxInfo, BoxOptions, Error, ImageRecord, Result, RuntimeMetrics};
use boxlite_server::wire;
use serde::de::DeserializeOwned;

pub use boxes::RemoteBox;

/// How long an attached stream may stay silent (no output, no ping) before the connection is
/// taken for dead.
pub const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// How long connecting to the server may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);

/// Gives the bearer token for each request (an API key, or a token that is renewed).
pub trait TokenSource: Send + Sync {
    /// The token to send now; `None` sends no `Authorization` header.
    fn token(&self) -> Result<Option<String>>;
}

/// Runs a task in the background for the client (the relays of its executions): the caller's
/// runtime decides where, and may wait for them when it closes.
pub type Spawn = Arc<dyn Fn(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) + Send + Sync>;

/// The settings a REST runtime's options carry besides the core's: BoxLite's lifecycle knobs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lifecycle {
    pub auto_stop: Option<u64>,
    pub auto_resume: Option<bool>,
}

/// A REST server's runtime, cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced when the client closes.
    http: std::sync::RwLock<reqwest::Client>,
    /// `{url}/v1` or `{url}/v1/{prefix}`.
    base: String,
    credential: Option<Arc<dyn TokenSource>>,
    spawn: Spawn,
    /// The tunnels' forwarders listening on this machine, by box id.
    forwarders: std::sync::Mutex<std::collections::HashMap<String, Arc<boxlite_core::network::Forwarders>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Client").field("base", &self.inner.base).field("credential", &self.inner.credential.as_ref().map(|_| "***")).finish()
    }
}

impl Client {
    /// A client of the server at `url` (`http://host:port`), under BoxLite's deployment
    /// `path_prefix` if one is given.
    pub fn new(url: &str, path_prefix: Option<&str>, credential: Option<Arc<dyn TokenSource>>, spawn: Spawn) -> Result<Self> {
        let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
            return Err(Error::Config(format!("the REST URL must be http:// or https://, not {url:?}")));
        };
        // A URL is shown (reprs, errors): a secret in it would be shown too.
        if rest.split('/').next().is_some_and(|authority| authority.contains('@')) {
            return Err(Error::Config("the REST URL must not carry credentials: give them as the options' credential".to_string()));
        }
        if rest.contains(['?', '#']) {
            return Err(Error::Config("the REST URL must not have a query or a fragment: it is the server's root (http://host:port[/path])".to_string()));
        }
        let http = http_client(None)?;
        let root = url.trim_end_matches('/');
        let base = match path_prefix.map(|prefix| prefix.trim_matches('/')).filter(|prefix| !prefix.is_empty()) {
            Some(prefix) => format!("{root}/v1/{}", segment(prefix)),
            None => format!("{root}/v1"),
        };
        Ok(Self { inner: Arc::new(Inner { http: std::sync::RwLock::new(http), base, credential, spawn, forwarders: std::sync::Mutex::default() }) })
    }

    /// Lets go of the connections kept for later requests. What the runtime still has to do
    /// as it closes (remove a box made for a cancelled `create`, end an execution nobody holds)
    /// goes on, each request on a connection of its own; new calls are refused above.
    pub fn close(&self) {
        match http_client(Some(0)) {
            Ok(closing) => *self.inner.http.write().unwrap_or_else(std::sync::PoisonError::into_inner) = closing,
            Err(error) => log::warn!(target: "boxlite", "the REST client keeps its connections: {error}"),
        }
    }

    /// Where the requests go: `{url}/v1[/{prefix}]` (no credential is in it).
    pub fn url_root(&self) -> &str {
        &self.inner.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.base)
    }

    fn http(&self) -> reqwest::Client {
        self.inner.http.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn token(&self) -> Result<Option<String>> {
        Ok(self.inner.credential.as_ref().map(|credential| credential.token()).transpose()?.flatten())
    }

    /// A request the server answers at once (rule 5).
    fn quick(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder> {
        Ok(self.request(method, path)?.timeout(SILENCE_LIMIT))
    }

    /// A request to `path` (below `/v1`), with the credential's token.
    fn request(&self, method: reqwest::Method, path: &str) -> Result<reqwest::RequestBuilder> {
        let builder = self.http().request(method, self.url(path));
        match self.token()? {
            Some(token) => Ok(builder.bearer_auth(token)),
            None => Ok(builder),
        }
    }

    /// What deleting the execution at `path` will need, kept by its relay.
    fn owned(&self, path: &str) -> Result<exec::Owned> {
        Ok(exec::Owned { http: self.http(), url: self.url(path), token: self.token()? })
    }

    fn spawn(&self, task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) {
        (self.inner.spawn)(task);
    }

    /// Sends a request; any answer but a success is the error it carries (rule 2).
    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = builder.send().await.map_err(unreachable)?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_of(response).await)
    }

    async fn json<T: DeserializeOwned>(&self, builder: reqwest::RequestBuilder) -> Result<T> {
        let response = self.send(builder).await?;
        response.json().await.map_err(|error| Error::Internal(format!("the REST server's answer did not parse: {}", error.without_url())))
    }

    /// Creates a box; resolves once the server made it (state `configured`).
    pub async fn create(&self, options: BoxOptions, lifecycle: Lifecycle, name: Option<String>) -> Result<RemoteBox> {
        let body = boxes::create_body(options, lifecycle, name)?;
        let created: wire::BoxBody = match self.json(self.request(reqwest::Method::POST, "/boxes")?.json(&body)).await {
            Ok(created) => created,
            // The local runtime's error for a taken name, so code runs the same on either.
            Err(Error::AlreadyExists(message)) => return Err(Error::InvalidArgument(message)),
            Err(error) => return Err(error),
        };
        Ok(RemoteBox::new(self.clone(), created))
    }

    /// The box with this id or name, or `None`.
    pub async fn get(&self, id_or_name: &str) -> Result<Option<RemoteBox>> {
        Ok(self.get_body(id_or_name).await?.map(|body| RemoteBox::new(self.clone(), body)))
    }

    pub async fn get_info(&self, id_or_name: &str) -> Result<Option<BoxInfo>> {
        Ok(self.get_body(id_or_name).await?.map(boxes::info))
    }

    async fn get_body(&self, id_or_name: &str) -> Result<Option<wire::BoxBody>> {
        match self.json(self.quick(reqwest::Method::GET, &format!("/boxes/{}", segment(id_or_name)))?).await {
            Ok(body) => Ok(Some(body)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The box named `name` if there is one, else a new one; and whether it was made. A box of
    /// that name the server is making meanwhile (its name taken, the box not yet listed) is
    /// waited for: the server says nothing when it is done, so this looks again every 20 ms.
    pub async fn get_or_create(&self, options: BoxOptions, lifecycle: Lifecycle, name: Option<String>) -> Result<(RemoteBox, bool)> {
        loop {
            if let Some(name) = &name {
                if let Some(found) = self.get(name).await? {
                    return Ok((found, false));
                }
            }
            match self.create(options.clone(), lifecycle, name.clone()).await {
                Ok(created) => return Ok((created, true)),
                Err(Error::InvalidArgument(message)) if name.is_some() && message.contains("already exists") => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Every box, newest first.
    pub async fn list_info(&self) -> Result<Vec<BoxInfo>> {
        let list: wire::BoxList = self.json(self.quick(reqwest::Method::GET, "/boxes")?).await?;
        Ok(list.boxes.into_iter().map(boxes::info).collect())
    }

    /// Deletes a box; a running one needs `force`. This client's forwarders to it end.
    pub async fn remove(&self, id_or_name: &str, force: bool) -> Result<()> {
        let box_id = match self.forwards_to(id_or_name) {
            // A name, while this client forwards to some box: which box is it?
            Some(false) => self.get_info(id_or_name).await.ok().flatten().map(|info| info.id),
            _ => Some(id_or_name.to_string()),
        };
        self.send(self.request(reqwest::Method::DELETE, &format!("/boxes/{}", segment(id_or_name)))?.query(&[("force", force)])).await?;
        if let Some(box_id) = box_id {
            self.end_forwarders(&box_id);
        }
        Ok(())
    }

    pub async fn metrics(&self) -> Result<RuntimeMetrics> {
        let body: wire::RuntimeMetricsBody = self.json(self.quick(reqwest::Method::GET, "/metrics")?).await?;
        Ok(RuntimeMetrics {
            boxes_created_total: body.boxes_created_total,
            boxes_failed_total: body.boxes_failed_total,
            boxes_stopped_total: body.boxes_stopped_total,
            num_running_boxes: body.num_running_boxes,
            total_commands_executed: body.total_commands_executed,
            total_exec_errors: body.total_exec_errors,
        })
    }

    /// Pulls an image on the server.
    pub async fn pull_image(&self, reference: &str) -> Result<ImageRecord> {
        let body = wire::PullImage { reference: reference.to_string() };
        let image: wire::ImageBody = self.json(self.request(reqwest::Method::POST, "/images/pull")?.json(&body)).await?;
        Ok(image_record(image))
    }

    /// The images the server has.
    pub async fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let list: wire::ImageList = self.json(self.quick(reqwest::Method::GET, "/images")?).await?;
        Ok(list.images.into_iter().map(image_record).collect())
    }
}

/// The HTTP client: HTTP/1 (the attach WebSocket is an upgrade), keeping at most
/// `idle_per_host` idle connections (unbounded when `None`).
fn http_client(idle_per_host: Option<usize>) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().http1_only().connect_timeout(CONNECT_LIMIT).tcp_nodelay(true);
    if let Some(idle) = idle_per_host {
        builder = builder.pool_max_idle_per_host(idle);
    }
    builder.build().map_err(|error| Error::Config(format!("failed to set up the REST client: {}", error.without_url())))
}

/// What the server tells of an image: no layers or config travel.
fn image_record(image: wire::ImageBody) -> ImageRecord {
    ImageRecord {
        reference: image.reference,
        repository: image.repository,
        tag: Some(image.tag).filter(|tag| !tag.is_empty()),
        manifest_digest: image.id,
        config_digest: String::new(),
        layers: Vec::new(),
        config: boxlite_core::image::ImageConfig::default(),
        cached_at: image.cached_at,
        size_bytes: image.size_bytes.unwrap_or(0),
    }
}

/// A transport failure (rule 2: without the URL).
fn unreachable(error: reqwest::Error) -> Error {
    let error = error.without_url();
    if error.is_connect() {
        return Error::Network(format!("the REST server cannot be reached: {error}"));
    }
    if error.is_timeout() {
        return Error::Network(format!("the REST server did not answer within {} s", SILENCE_LIMIT.as_secs()));
    }
    Error::Network(format!("the request to the REST server failed: {error}"))
}

/// The error an unsuccessful answer carries: BoxLite's envelope, or its status alone.
async fn error_of(response: reqwest::Response) -> Error {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Carried,
    }
    #[derive(serde::Deserialize)]
    struct Carried {
        message: String,
        code: String,
    }
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<Envelope>(&text) {
        Ok(Envelope { error }) => boxlite_server::error_from_code(status.as_u16(), &error.code, &error.message),
        Err(_) => {
            let code = match status.as_u16() {
                401 => "unauthenticated",
                403 => "permission_denied",
                404 => "not_found",
                409 => "invalid_state",
                _ => "",
            };
            let shown: String = text.chars().take(200).collect();
            boxlite_server::error_from_code(status.as_u16(), code, if shown.is_empty() { status.canonical_reason().unwrap_or("error") } else { &shown })
        }
    }
}

/// `text` as one path segment: everything but unreserved characters percent-encoded.
fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_tokio() -> Spawn {
        Arc::new(|task| drop(tokio::spawn(task)))
    }

    #[test]
    fn a_segment_stays_one_segment() {
        assert_eq!(segment("web-1.a_b~"), "web-1.a_b~");
        assert_eq!(segment("../a b/c"), "..%2Fa%20b%2Fc");
    }

    #[test]
    fn the_prefix_goes_after_the_version() {
        let client = Client::new("http://127.0.0.1:8100/", Some("/team-42/"), None, on_tokio()).expect("client");
        assert_eq!(client.url("/boxes"), "http://127.0.0.1:8100/v1/team-42/boxes");
        assert!(matches!(Client::new("ftp://x", None, None, on_tokio()), Err(Error::Config(_))));
        match Client::new("http://user:hunter2@host:1", None, None, on_tokio()) {
            Err(Error::Config(message)) => assert!(!message.contains("hunter2")),
            other => panic!("a URL with credentials must be refused, got {other:?}"),
        }
    }

    struct Key;

    impl TokenSource for Key {
        fn token(&self) -> Result<Option<String>> {
            Ok(Some("sk-very-secret".to_string()))
        }
    }

    #[tokio::test]
    async fn a_server_that_never_answers_a_quick_request_is_a_network_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let client = Client::new(&format!("http://{}", listener.local_addr().expect("address")), None, None, on_tokio()).expect("client");
        // Connections are taken and never answered, as by a server that hangs.
        let hung = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let began = std::time::Instant::now();
        match client.list_info().await {
            Err(Error::Network(message)) => assert!(message.contains("did not answer"), "{message}"),
            other => panic!("a hung server must be a network error, got {other:?}"),
        }
        assert!(began.elapsed() >= SILENCE_LIMIT);
        hung.abort();
    }

    #[test]
    fn the_credential_never_shows() {
        let client = Client::new("http://127.0.0.1:1", None, Some(Arc::new(Key)), on_tokio()).expect("client");
        assert!(!format!("{client:?}").contains("sk-very-secret"));
    }
}
