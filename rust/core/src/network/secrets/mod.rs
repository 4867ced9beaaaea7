//! Secrets a box uses without holding them.
//!
//! The box sees each secret's placeholder (in `BOXLITE_SECRET_<NAME>`). Its HTTPS connections
//! to a secret's hosts end at the runtime, which answers with a certificate from the box's own
//! authority (trusted in the box; its key stays outside), puts the values in place of the
//! placeholders in each request, and sends the request on over TLS to the real host.
//!
//! # Rules
//!
//! 1. A value leaves the runtime only inside TLS to a host that proved it is one of the
//!    secret's hosts (its certificate verified, against the host's trust store, for the name
//!    the box asked for, at the address the policy let the box reach), and only in the request
//!    target and header values: never in a body, which a server may echo back to the box, and
//!    never to another secret's hosts.
//! 2. Only connections to port 443 whose TLS ClientHello names a secret's host are opened;
//!    every other connection is relayed as it came, byte for byte. A secret's hosts are
//!    reachable on that port whatever the allow-list ([`SecretProxy::widened`], as BoxLite).
//! 3. The values and the authority's key stay in the box's directory on the host, readable by
//!    the runtime's user alone: never in the box's filesystem, a log, an error or a `Debug`.
//! 4. The box speaks to those hosts the protocol the host chose in TLS (ALPN) among those the
//!    box offered: HTTP/2 ([`http2`]) or HTTP/1.1 ([`http1`]), the runtime offering the host
//!    no other. A request to switch protocols (a WebSocket, a `CONNECT`) is refused with 403,
//!    since what follows it could not be rewritten.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::io::BufReader;
use tokio::net::TcpStream;

/// The refusal's text when a box tries to take a connection that carries secrets to another
/// protocol (an HTTP/1.1 `Upgrade`, an HTTP/2 `CONNECT`): one sentence for both.
macro_rules! no_protocol_switch {
    () => {
        "boxlite: a connection that carries secrets cannot switch protocols.\r\n"
    };
}

mod http1;
mod http2;

use super::BoxTraffic;
use crate::error::{Error, Result};
use crate::fork::ParentOnly;
use crate::Secret;

/// The port whose connections may carry secrets.
pub const HTTPS_PORT: u16 = 443;

/// The prefix of the environment variables that hold the placeholders in the box.
pub const ENV_PREFIX: &str = "BOXLITE_SECRET_";

/// Where, under a box's directory, its secrets and authority are kept (mode 0700).
pub const SECRETS_DIR: &str = "secrets";
const SECRETS_FILE: &str = "secrets.json";
const AUTHORITY_KEY_FILE: &str = "authority.key";

/// How long the runtime waits for a box's ClientHello before relaying the connection as it is
/// (a protocol whose server speaks first sends none).
const HELLO_WAIT: Duration = Duration::from_secs(3);
/// How long a certificate made for one name serves before a new one is made.
const LEAF_RENEWAL: Duration = Duration::from_secs(24 * 3600);

/// One secret: its `value` goes, in place of `placeholder`, into requests to `hosts` (names,
/// or `*.suffix` for the names one level below `suffix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub name: String,
    pub value: Secret,
    pub hosts: Vec<String>,
    pub placeholder: String,
}

impl SecretSpec {
    /// BoxLite's placeholder for a secret that names none: `<BOXLITE_SECRET:name>`.
    pub fn default_placeholder(name: &str) -> String {
        format!("<BOXLITE_SECRET:{name}>")
    }

    /// The variable that holds the placeholder in the box: `BOXLITE_SECRET_` and the name,
    /// upper-cased, with anything but letters and digits made `_`.
    pub fn env_name(&self) -> String {
        let name: String = self.name.chars().map(|character| if character.is_ascii_alphanumeric() { character.to_ascii_uppercase() } else { '_' }).collect();
        format!("{ENV_PREFIX}{name}")
    }

    fn validate(&self) -> Result<()> {
        let invalid = |why: String| Error::InvalidArgument(format!("bad secret {:?}: {why}", self.name));
        if self.name.is_empty() {
            return Err(Error::InvalidArgument("a secret needs a name".to_string()));
        }
        if self.hosts.is_empty() {
            return Err(invalid("it names no hosts, so no request could carry it".to_string()));
        }
        for host in &self.hosts {
            let name = host.strip_prefix("*.").unwrap_or(host);
            super::policy::check_name(name).map_err(|why| invalid(format!("host {host:?}: {why}")))?;
        }
        if self.placeholder.is_empty() {
            return Err(invalid("its placeholder is empty".to_string()));
        }
        if self.placeholder.bytes().chain(self.value.expose().bytes()).any(|byte| byte == b'\r' || byte == b'\n' || byte == 0) {
            return Err(invalid("its value and placeholder may not hold line breaks or NUL (they go into HTTP headers)".to_string()));
        }
        if self.value.expose().contains(&self.placeholder) {
            return Err(invalid("its value holds its placeholder".to_string()));
        }
        Ok(())
    }

    fn serves(&self, server_name: &str) -> bool {
        self.hosts.iter().any(|host| host_matches(host, server_name))
    }
}

/// Checks a box's secrets: each one whole, and no two with one variable or placeholder.
pub fn validate(secrets: &[SecretSpec]) -> Result<()> {
    for (index, secret) in secrets.iter().enumerate() {
        secret.validate()?;
        for other in &secrets[..index] {
            if other.env_name() == secret.env_name() {
                return Err(Error::InvalidArgument(format!("secrets {:?} and {:?} would share the variable {}", other.name, secret.name, secret.env_name())));
            }
            if other.placeholder.contains(&secret.placeholder) || secret.placeholder.contains(&other.placeholder) {
                return Err(Error::InvalidArgument(format!("secrets {:?} and {:?} have overlapping placeholders", other.name, secret.name)));
            }
        }
    }
    Ok(())
}

/// Variables that point clients with trust stores of their own at the box's bundle, which
/// holds the box's authority: Python's `requests` and `ssl`, Node.
const TRUST_VARIABLES: &[&str] = &["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"];

/// The box's environment with its secrets' placeholders, and the trust variables the user did
/// not set.
pub fn box_env(mut env: Vec<(String, String)>, secrets: &[SecretSpec]) -> Vec<(String, String)> {
    if secrets.is_empty() {
        return env;
    }
    for variable in TRUST_VARIABLES {
        if !env.iter().any(|(key, _)| key == variable) {
            env.push((variable.to_string(), boxlite_protocol::TRUST_BUNDLE.to_string()));
        }
    }
    for secret in secrets {
        let key = secret.env_name();
        env.retain(|(existing, _)| *existing != key);
        env.push((key, secret.placeholder.clone()));
    }
    env
}

/// `pattern` (a name, or `*.suffix`: one label more than `suffix`) covers `name`; case aside.
fn host_matches(pattern: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => name.strip_suffix(suffix).and_then(|label| label.strip_suffix('.')).is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => name == pattern,
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSecret {
    name: String,
    value: String,
    hosts: Vec<String>,
    placeholder: String,
}

/// The authority of every box has one name (a clone keeps its source's, which its copied trust
/// bundle holds); its key, the box's own, tells them apart and signs every certificate the box
/// sees.
fn authority_params() -> Result<rcgen::CertificateParams> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(certificate_error)?;
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "boxlite");
    params.distinguished_name.push(rcgen::DnType::CommonName, "boxlite secrets authority");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    Ok(params)
}

fn certificate_error(error: rcgen::Error) -> Error {
    Error::Internal(format!("cannot make a certificate for the box's secrets: {error}"))
}

/// Writes `contents` to a new file that only the runtime's user may read.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|error| Error::storage("create", path, &error))?;
    file.write_all(contents).map_err(|error| Error::storage("write", path, &error))
}

/// Keeps `secrets` under `box_dir` with a new authority; returns the authority's certificate
/// (PEM). Blocking.
pub fn store(box_dir: &Path, secrets: &[SecretSpec]) -> Result<String> {
    let dir = box_dir.join(SECRETS_DIR);
    std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|error| Error::storage("create", &dir, &error))?;
    let key = rcgen::KeyPair::generate().map_err(certificate_error)?;
    let authority = authority_params()?.self_signed(&key).map_err(certificate_error)?.pem();
    let stored: Vec<StoredSecret> = secrets
        .iter()
        .map(|secret| StoredSecret { name: secret.name.clone(), value: secret.value.expose().to_string(), hosts: secret.hosts.clone(), placeholder: secret.placeholder.clone() })
        .collect();
    let encoded = serde_json::to_vec(&stored).map_err(|error| Error::Internal(format!("cannot encode the box's secrets: {error}")))?;
    write_private(&dir.join(SECRETS_FILE), &encoded)?;
    write_private(&dir.join(AUTHORITY_KEY_FILE), key.serialize_pem().as_bytes())?;
    Ok(authority)
}

/// Gives the box in `to_box_dir` the secrets (and authority) of the box in `from_box_dir`, if
/// it has any: a clone's trust bundle, copied with its files, holds that authority. Blocking.
pub fn copy(from_box_dir: &Path, to_box_dir: &Path) -> Result<()> {
    let from = from_box_dir.join(SECRETS_DIR);
    if !from.exists() {
        return Ok(());
    }
    let to = to_box_dir.join(SECRETS_DIR);
    std::fs::DirBuilder::new().mode(0o700).create(&to).map_err(|error| Error::storage("create", &to, &error))?;
    for file in [SECRETS_FILE, AUTHORITY_KEY_FILE] {
        write_private(&to.join(file), &fs_err::read(from.join(file))?)?;
    }
    Ok(())
}

/// The application protocols the runtime speaks on a connection that carries secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    const HTTP1: &[u8] = b"http/1.1";
    const HTTP2: &[u8] = b"h2";

    fn alpn(self) -> Vec<u8> {
        match self {
            Self::Http1 => Self::HTTP1.to_vec(),
            Self::Http2 => Self::HTTP2.to_vec(),
        }
    }
}

/// What the ClientHello of a box's connection to a secret's host asks for.
pub(super) struct Hello {
    server_name: String,
    offers_http2: bool,
}

/// The box's side of TLS for one name and protocol, with when its certificate was made.
type Leaf = (Instant, Arc<rustls::ServerConfig>);

/// What completes the HTTPS requests of one box that carry its secrets.
pub struct SecretProxy {
    box_id: String,
    secrets: Vec<SecretSpec>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// Certificates made for the names the box asked for and the protocol it gets, with when
    /// they were made.
    leaves: Mutex<HashMap<(String, Protocol), Leaf>>,
    /// TLS to the hosts, offering HTTP/1.1 alone...
    upstream_http1: Arc<rustls::ClientConfig>,
    /// ...or HTTP/2 first, for a box that offered it.
    upstream_http2: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for SecretProxy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SecretProxy").field("box_id", &self.box_id).field("secrets", &self.secrets).finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_error(error: rustls::Error) -> Error {
    Error::Network(format!("cannot set up TLS for the box's secrets: {error}"))
}

impl SecretProxy {
    /// The proxy of the box in `box_dir`, if it has secrets. Upstream hosts are verified
    /// against the host's trust store (`SSL_CERT_FILE` or `SSL_CERT_DIR` when set). Blocking.
    pub fn load(box_dir: &Path, box_id: &str) -> Result<Option<Self>> {
        let dir = box_dir.join(SECRETS_DIR);
        let key_path = dir.join(AUTHORITY_KEY_FILE);
        let key_pem = match std::fs::read_to_string(&key_path) {
            Ok(pem) => pem,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::storage("read", &key_path, &error)),
        };
        let key = rcgen::KeyPair::from_pem(&key_pem).map_err(certificate_error)?;
        let stored_path = dir.join(SECRETS_FILE);
        let stored = fs_err::read(&stored_path)?;
        let stored: Vec<StoredSecret> = serde_json::from_slice(&stored).map_err(|error| Error::Storage(format!("corrupt secrets file {}: {error}", stored_path.display())))?;
        let secrets = stored.into_iter().map(|secret| SecretSpec { name: secret.name, value: Secret::new(secret.value), hosts: secret.hosts, placeholder: secret.placeholder }).collect();
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            log::warn!("box {box_id}: no trusted certificates on this host: requests that carry its secrets will fail ({} errors loading them)", found.errors.len());
        }
        let mut upstream_http1 = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(tls_error)?.with_root_certificates(roots).with_no_client_auth();
        upstream_http1.alpn_protocols = vec![Protocol::Http1.alpn()];
        let mut upstream_http2 = upstream_http1.clone();
        upstream_http2.alpn_protocols = vec![Protocol::Http2.alpn(), Protocol::Http1.alpn()];
        Ok(Some(Self {
            box_id: box_id.to_string(),
            secrets,
            issuer: rcgen::Issuer::new(authority_params()?, key),
            leaves: Mutex::default(),
            upstream_http1: Arc::new(upstream_http1),
            upstream_http2: Arc::new(upstream_http2),
        }))
    }

    /// `allow_net` with the secrets' hosts on port 443 added, as BoxLite does: a box may reach
    /// over HTTPS the hosts its secrets go to. An empty list allows them already.
    pub fn widened(&self, allow_net: &[String]) -> Vec<String> {
        let mut widened = allow_net.to_vec();
        if !allow_net.is_empty() {
            widened.extend(self.secrets.iter().flat_map(|secret| &secret.hosts).map(|host| format!("{host}:{HTTPS_PORT}")));
        }
        widened
    }

    /// The box's side of TLS for `server_name`, speaking `protocol`: a certificate for it from
    /// the box's authority.
    fn server_config(&self, server_name: &str, protocol: Protocol) -> Result<Arc<rustls::ServerConfig>> {
        let mut leaves = crate::lock(&self.leaves);
        let leaf = (server_name.to_string(), protocol);
        if let Some((made, config)) = leaves.get(&leaf) {
            if made.elapsed() < LEAF_RENEWAL {
                return Ok(Arc::clone(config));
            }
        }
        let mut params = rcgen::CertificateParams::new(vec![server_name.to_string()]).map_err(certificate_error)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, server_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(7);
        let key = rcgen::KeyPair::generate().map_err(certificate_error)?;
        let certificate = params.signed_by(&key, &self.issuer).map_err(certificate_error)?;
        let chain = vec![CertificateDer::from(certificate.der().to_vec())];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(tls_error)?.with_no_client_auth().with_single_cert(chain, private).map_err(tls_error)?;
        config.alpn_protocols = vec![protocol.alpn()];
        let config = Arc::new(config);
        leaves.insert(leaf, (Instant::now(), Arc::clone(&config)));
        Ok(config)
    }

    /// What the box's connection asks for in its ClientHello, when the name it asks for is a
    /// secret's host: the connection is then the proxy's to complete (rule 2). Reads nothing:
    /// what the box sent stays for whoever takes the connection.
    pub(super) async fn claims(&self, inbound: &TcpStream) -> Option<Hello> {
        let hello = read_hello(inbound).await?;
        self.secrets.iter().any(|secret| secret.serves(&hello.server_name)).then_some(hello)
    }

    /// Completes the box's connection to the name its `hello` asked for at `destination` (an
    /// address the policy allowed): TLS to the real host first, then to the box in the
    /// protocol the host chose (rule 4), then its requests, with the values of the secrets of
    /// that host in place.
    pub(super) async fn complete(&self, inbound: ParentOnly<TcpStream>, destination: SocketAddr, hello: Hello, traffic: &BoxTraffic) -> std::result::Result<(), String> {
        let Hello { server_name, offers_http2 } = hello;
        let verified_name = ServerName::try_from(server_name.clone()).map_err(|_| format!("{server_name:?} is not a host name"))?;
        let connection = tokio::time::timeout(super::proxy::CONNECT_WAIT, super::sockets::connect(destination))
            .await
            .map_err(|_| format!("{destination} did not answer"))?
            .map_err(|error| format!("could not reach {destination}: {error}"))?;
        let _ = connection.get().map(|connection| connection.set_nodelay(true));
        let upstream_config = if offers_http2 { &self.upstream_http2 } else { &self.upstream_http1 };
        let upstream = tokio_rustls::TlsConnector::from(Arc::clone(upstream_config))
            .connect(verified_name, connection)
            .await
            .map_err(|error| format!("{server_name} at {destination} did not prove its name: {error}"))?;
        let protocol = if upstream.get_ref().1.alpn_protocol() == Some(Protocol::HTTP2) { Protocol::Http2 } else { Protocol::Http1 };
        let config = self.server_config(&server_name, protocol).map_err(|error| error.to_string())?;
        let _ = inbound.get().map(|inbound| inbound.set_nodelay(true));
        let inside = tokio_rustls::TlsAcceptor::from(config).accept(inbound).await.map_err(|error| format!("the box's TLS to {server_name} failed: {error}"))?;
        let secrets: Vec<&SecretSpec> = self.secrets.iter().filter(|secret| secret.serves(&server_name)).collect();
        if protocol == Protocol::Http2 {
            let moved = http2::Moved { sent: &traffic.bytes_sent, received: &traffic.bytes_received };
            return http2::relay(inside, upstream, &secrets, &moved).await;
        }
        let (from_box, to_box) = tokio::io::split(inside);
        let (from_host, to_host) = tokio::io::split(upstream);
        let (refusal, refused) = tokio::sync::oneshot::channel();
        let (sent, received) = tokio::join!(http1::send_requests(BufReader::new(from_box), to_host, &secrets, refusal), http1::send_responses(from_host, to_box, refused));
        traffic.bytes_sent.fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
        traffic.bytes_received.fetch_add(received, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// The server name and protocols in the ClientHello that starts `stream`, read with
/// `MSG_PEEK`; `None` for a connection that is not TLS, names nothing, or sends no hello
/// within [`HELLO_WAIT`].
async fn read_hello(stream: &TcpStream) -> Option<Hello> {
    let mut buffer = vec![0u8; 16 << 10];
    let deadline = tokio::time::Instant::now() + HELLO_WAIT;
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await.ok()?.ok()?;
        if peeked == 0 {
            return None;
        }
        let mut acceptor = rustls::server::Acceptor::default();
        let mut unread = &buffer[..peeked];
        while !unread.is_empty() {
            if acceptor.read_tls(&mut unread).ok()? == 0 {
                break;
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let hello = accepted.client_hello();
                let offers_http2 = hello.alpn().is_some_and(|mut protocols| protocols.any(|protocol| protocol == Protocol::HTTP2));
                return hello.server_name().map(|name| Hello { server_name: name.to_string(), offers_http2 });
            }
            // The hello is longer than what came so far: look again once more has come.
            Ok(None) if peeked < buffer.len() && tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(5)).await,
            _ => return None,
        }
    }
}

#[cfg(test)]
impl SecretSpec {
    /// A secret for the tests of this module and its parts.
    fn for_test(name: &str, value: &str, hosts: &[&str], placeholder: &str) -> Self {
        Self { name: name.to_string(), value: Secret::new(value.to_string()), hosts: hosts.iter().map(|host| host.to_string()).collect(), placeholder: placeholder.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_exactly_or_one_label_below_a_wildcard() {
        assert!(host_matches("api.example.com", "API.example.com."));
        assert!(!host_matches("api.example.com", "example.com"));
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "evilexample.com"));
    }

    #[test]
    fn bad_secrets_are_refused_by_name_without_their_value() {
        let error = validate(&[SecretSpec::for_test("key", "v\r\nX-Injected: 1", &["api.example.com"], "<K>")]).expect_err("line break");
        assert!(error.to_string().contains("\"key\"") && !error.to_string().contains("Injected"), "{error}");
        assert!(validate(&[SecretSpec::for_test("key", "v", &[], "<K>")]).is_err());
        assert!(validate(&[SecretSpec::for_test("key", "v", &["bad host"], "<K>")]).is_err());
        assert!(validate(&[SecretSpec::for_test("a-b", "v", &["x.example"], "<A>"), SecretSpec::for_test("a_b", "w", &["x.example"], "<B>")]).is_err());
        assert!(validate(&[SecretSpec::for_test("a", "v", &["x.example"], "<A>"), SecretSpec::for_test("b", "w", &["x.example"], "<A>")]).is_err());
        assert!(validate(&[SecretSpec::for_test("open-ai key", "v", &["*.example.com", "api.example.org"], "<K>")]).is_ok());
        assert_eq!(SecretSpec::for_test("open-ai key", "v", &["x.example"], "<K>").env_name(), "BOXLITE_SECRET_OPEN_AI_KEY");
    }

    #[test]
    fn the_authority_signs_certificates_for_the_names_asked_for() {
        let dir = std::env::temp_dir().join(format!("boxlite-secrets-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        fs_err::create_dir_all(&dir).expect("dir");
        let key = SecretSpec::for_test("key", "sk-live", &["api.example.com"], "<K>");
        let authority_pem = store(&dir, &[key]).expect("stored");
        let key_mode = std::fs::metadata(dir.join(SECRETS_DIR).join(AUTHORITY_KEY_FILE)).expect("key").permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key_mode) & 0o777, 0o600);
        assert!(authority_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let proxy = SecretProxy::load(&dir, "abc").expect("loaded").expect("has secrets");
        assert!(!format!("{proxy:?}").contains("sk-live"));
        let config = proxy.server_config("api.example.com", Protocol::Http1).expect("leaf");
        assert!(Arc::ptr_eq(&config, &proxy.server_config("api.example.com", Protocol::Http1).expect("cached")));
        assert_eq!(proxy.server_config("api.example.com", Protocol::Http2).expect("leaf").alpn_protocols, vec![b"h2".to_vec()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
