//! Pulling images from OCI registries (Docker Hub, GHCR, private and plain-HTTP registries)
//! into the content-addressed store, through `oci-client`.
//!
//! # Rules
//!
//! 1. A reference is pulled once: an image already in the index is used without contacting
//!    any registry, and concurrent pulls of one layer share one download (a lock per digest).
//! 2. Every blob is verified against its digest (the client checks downloads; the unpacker
//!    checks again while unpacking, and deletes a blob that fails), and written under
//!    `blobs/tmp` then renamed into place, so an interrupted pull, or a blob a crash left
//!    truncated, is never trusted by a later pull. (No fsync is needed for that.)
//! 3. Credentials never appear in `Debug` output, logs or error messages.
//! 4. Registry failures are bounded: connecting gives up after [`CONNECT_TIMEOUT`], a stalled
//!    transfer after [`READ_TIMEOUT`].

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::digest::sha256_hex;
use crate::Secret;
use super::unpack::{unpack_layer, LayerStore};
use super::{ConfigBlob, ImageConfig, PreparedImage};
use crate::error::{Error, Result};
use crate::home::Home;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Progress of a pull, called as layers download: (layer digest, bytes done, bytes in all).
/// Called from download tasks: it must return at once.
pub type PullProgress = std::sync::Arc<dyn Fn(&str, u64, u64) + Send + Sync>;
/// Least gap between two progress reports of one layer (the last report always comes).
const PROGRESS_STEP: u64 = 256 * 1024;

/// A file writer that reports how much went through it.
struct CountingWriter {
    /// Buffered: an unbuffered tokio file costs a trip to the blocking pool per network chunk.
    inner: tokio::io::BufWriter<tokio::fs::File>,
    done: u64,
    reported: u64,
    total: u64,
    digest: String,
    progress: Option<PullProgress>,
}

impl CountingWriter {
    fn report(&mut self) {
        if let Some(progress) = &self.progress {
            if self.done >= self.reported + PROGRESS_STEP {
                self.reported = self.done;
                progress(&self.digest, self.done, self.total);
            }
        }
    }
}

impl tokio::io::AsyncWrite for CountingWriter {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>, buffer: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(context, buffer);
        if let std::task::Poll::Ready(Ok(count)) = &polled {
            self.done += *count as u64;
            self.report();
        }
        polled
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(context)
    }
}
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

/// How to reach one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP (for registries configured so, e.g. on loopback).
    pub insecure_http: bool,
    pub skip_verify: bool,
    /// Tried, in order, for references that name no registry.
    pub search: bool,
    pub credentials: Credentials,
}

/// A pulled image, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The reference as the user wrote it (`python:slim`), as BoxLite reports it.
    pub reference: String,
    /// Where it was found: registry and repository (`docker.io/library/python`).
    pub repository: String,
    pub tag: Option<String>,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layers: Vec<String>,
    pub config: ImageConfig,
    pub cached_at: String,
    pub size_bytes: u64,
}

impl ImageRecord {
    pub fn prepared(&self, home: &Home) -> Option<PreparedImage> {
        let mut lower_dirs = Vec::with_capacity(self.layers.len());
        for digest in self.layers.iter().rev() {
            let dir = home.layers().join(sha256_hex(digest)?);
            if !dir.is_dir() {
                return None;
            }
            lower_dirs.push(dir);
        }
        Some(PreparedImage { lower_dirs, read_only_binds: Vec::new(), config: self.config.clone(), id: self.config_digest.clone() })
    }
}

impl fmt::Debug for ImageStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("ImageStore").field("registries", &self.registries).finish_non_exhaustive()
    }
}

/// The image store: the index of pulled images and the registries to pull from.
pub struct ImageStore {
    registries: Vec<RegistryConfig>,
    /// Readers (pulls, creates) share it; `prune` takes it alone, so it never deletes a layer
    /// that a create or pull in flight is about to use.
    gc: tokio::sync::RwLock<()>,
    /// One client per registry host, made once: making one loads the TLS trust store.
    clients: Mutex<HashMap<String, Client>>,
    /// Rule 1: one download per digest at a time.
    downloads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn index_path(home: &Home, reference: &str) -> PathBuf {
    home.images().join(format!("{:x}.json", Sha256::digest(reference.as_bytes())))
}

fn names_a_registry(text: &str) -> bool {
    text.split_once('/').is_some_and(|(first, _)| first.contains('.') || first.contains(':') || first == "localhost")
}

impl ImageStore {
    pub fn new(registries: Vec<RegistryConfig>) -> Self {
        Self { registries, gc: tokio::sync::RwLock::new(()), clients: Mutex::new(HashMap::new()), downloads: Mutex::new(HashMap::new()) }
    }

    /// The fully qualified references to try for `text`, in order.
    fn candidates(&self, text: &str) -> Result<Vec<Reference>> {
        let parsed: Reference = text.parse().map_err(|error| Error::InvalidArgument(format!("invalid image reference {text:?}: {error}")))?;
        if names_a_registry(text) {
            return Ok(vec![parsed]);
        }
        // One-word names are Docker Hub's official images, under `library/`, on every search
        // registry (as BoxLite asks for them): a Docker Hub mirror serves them there.
        let repository = parsed.repository();
        let mut candidates: Vec<Reference> = self
            .registries
            .iter()
            .filter(|registry| registry.search)
            .map(|registry| match parsed.digest() {
                Some(digest) => Reference::with_digest(registry.host.clone(), repository.to_string(), digest.to_string()),
                None => Reference::with_tag(registry.host.clone(), repository.to_string(), parsed.tag().unwrap_or("latest").to_string()),
            })
            .collect();
        candidates.push(parsed);
        Ok(candidates)
    }

    /// Rule 1: the image from the index, if every one of its layers is still unpacked (a record
    /// that cannot be read counts as missing: the image is pulled again and the record
    /// rewritten).
    pub fn cached(&self, home: &Home, text: &str) -> Result<Option<(ImageRecord, PreparedImage)>> {
        for reference in self.candidates(text)? {
            let path = index_path(home, &reference.whole());
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let Some(record) = parse_record(&path, &bytes) else { continue };
            if let Some(prepared) = record.prepared(home) {
                return Ok(Some((record, prepared)));
            }
        }
        Ok(None)
    }

    /// The image for `text`: from the index, or pulled.
    pub async fn ensure(&self, home: &Home, text: &str) -> Result<PreparedImage> {
        if let Some((_, prepared)) = self.cached(home, text)? {
            return Ok(prepared);
        }
        let record = self.pull(home, text, None).await?;
        record.prepared(home).ok_or_else(|| Error::Image(format!("{text}: layers vanished right after the pull")))
    }

    fn client_for(&self, reference: &Reference) -> (Client, RegistryAuth) {
        let registry = self.registries.iter().find(|registry| registry.host == reference.registry());
        let client = {
            let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            clients
                .entry(reference.registry().to_string())
                .or_insert_with(|| {
                    Client::new(ClientConfig {
                        protocol: if registry.is_some_and(|registry| registry.insecure_http) { ClientProtocol::Http } else { ClientProtocol::Https },
                        accept_invalid_certificates: registry.is_some_and(|registry| registry.skip_verify),
                        connect_timeout: Some(CONNECT_TIMEOUT),
                        read_timeout: Some(READ_TIMEOUT),
                        ..ClientConfig::default()
                    })
                })
                .clone()
        };
        let auth = match registry.map(|registry| &registry.credentials) {
            Some(Credentials::Basic { username, password }) => RegistryAuth::Basic(username.clone(), password.expose().to_string()),
            Some(Credentials::Bearer(token)) => RegistryAuth::Bearer(token.expose().to_string()),
            Some(Credentials::Anonymous) | None => RegistryAuth::Anonymous,
        };
        (client, auth)
    }

    /// Pulls `text` (trying search registries first for unqualified names) and indexes it.
    /// Only "not found" moves on to the next registry: any other failure (a registry that is
    /// down, refuses the credentials, or serves a bad blob) is reported as it is.
    pub async fn pull(&self, home: &Home, text: &str, progress: Option<PullProgress>) -> Result<ImageRecord> {
        let mut not_found = None;
        for reference in self.candidates(text)? {
            match self.pull_reference(home, &reference, text, progress.clone()).await {
                Ok(record) => return Ok(record),
                Err(error @ Error::NotFound(_)) => not_found = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(not_found.unwrap_or_else(|| Error::NotFound(format!("image {text}"))))
    }

    /// Pulls `reference`, which the user wrote as `written`.
    async fn pull_reference(&self, home: &Home, reference: &Reference, written: &str, progress: Option<PullProgress>) -> Result<ImageRecord> {
        let shown = reference.whole();
        let (client, auth) = self.client_for(reference);
        log::debug!("pulling {shown}");
        let (manifest, manifest_digest, config) =
            client.pull_manifest_and_config(reference, &auth).await.map_err(|error| registry_error(&shown, error))?;
        let config_digest = format!("sha256:{:x}", Sha256::digest(config.as_bytes()));
        if config_digest != manifest.config.digest {
            return Err(Error::Image(format!("{shown}: config has digest {config_digest}, the manifest says {}", manifest.config.digest)));
        }
        let image_config = serde_json::from_str::<ConfigBlob>(&config)
            .map_err(|error| Error::Image(format!("{shown}: bad image config: {error}")))?
            .image_config();
        let mut size_bytes = 0;
        for layer in &manifest.layers {
            // Rule 1: one download and one unpack per layer at a time, across concurrent pulls.
            let lock = {
                let mut downloads = self.downloads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                Arc::clone(downloads.entry(layer.digest.clone()).or_default())
            };
            let one_at_a_time = lock.lock().await;
            let fetched = self.fetch_layer(home, &client, reference, layer, progress.clone()).await;
            drop(one_at_a_time);
            // The lock map keeps only layers someone is working on.
            let mut downloads = self.downloads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if Arc::strong_count(&lock) == 2 {
                downloads.remove(&layer.digest);
            }
            drop(downloads);
            fetched?;
            size_bytes += u64::try_from(layer.size).unwrap_or(0);
        }
        let record = ImageRecord {
            reference: written.to_string(),
            repository: format!("{}/{}", reference.registry(), reference.repository()),
            tag: reference.tag().map(str::to_string),
            manifest_digest,
            config_digest,
            layers: manifest.layers.iter().map(|layer| layer.digest.clone()).collect(),
            config: image_config,
            cached_at: crate::clock::now().0,
            size_bytes,
        };
        let path = index_path(home, &shown);
        let staging = path.with_extension(format!("{}.tmp", rand::random::<u32>()));
        let bytes = serde_json::to_vec_pretty(&record).map_err(|error| Error::Internal(format!("cannot encode image record: {error}")))?;
        fs_err::write(&staging, bytes)?;
        fs_err::rename(&staging, &path)?;
        log::info!("pulled {shown} ({}, {} layers, {size_bytes} bytes)", record.config_digest, record.layers.len());
        Ok(record)
    }

    /// One layer, downloaded and unpacked unless it already is. The caller holds its lock.
    async fn fetch_layer(
        &self,
        home: &Home,
        client: &Client,
        reference: &Reference,
        layer: &oci_client::manifest::OciDescriptor,
        progress: Option<PullProgress>,
    ) -> Result<()> {
        if sha256_hex(&layer.digest).is_some_and(|hex| home.layers().join(hex).is_dir()) {
            // Unpacked already (a base layer another image shares): nothing to fetch.
            if let Some(progress) = &progress {
                let total = u64::try_from(layer.size).unwrap_or(0);
                progress(&layer.digest, total, total);
            }
            return Ok(());
        }
        let blob = self.download(home, client, reference, layer, progress).await?;
        let (store, digest) = (LayerStore::of(home), layer.digest.clone());
        let unpacked = tokio::task::spawn_blocking({
            let blob = blob.clone();
            move || unpack_layer(&store, &blob, &digest)
        })
        .await
        .map_err(|error| Error::Internal(format!("unpacking task failed: {error}")))?;
        if let Err(error) = unpacked {
            // A blob that does not unpack (damaged on disk) must not be trusted next time.
            let _ = tokio::fs::remove_file(&blob).await;
            return Err(error);
        }
        Ok(())
    }

    /// Rule 2: the blob at its final path, downloaded unless it is there. The caller holds the
    /// layer's lock.
    async fn download(
        &self,
        home: &Home,
        client: &Client,
        reference: &Reference,
        layer: &oci_client::manifest::OciDescriptor,
        progress: Option<PullProgress>,
    ) -> Result<PathBuf> {
        let hex = sha256_hex(&layer.digest).ok_or_else(|| Error::Image(format!("unsupported layer digest {:?}", layer.digest)))?;
        let destination = home.blobs().join(hex);
        let total = u64::try_from(layer.size).unwrap_or(0);
        if destination.is_file() {
            if let Some(progress) = &progress {
                progress(&layer.digest, total, total);
            }
            return Ok(destination);
        }
        let staging = home.blobs_tmp().join(format!("{hex}.{}", rand::random::<u32>()));
        let file = tokio::fs::File::create(&staging).await.map_err(|error| Error::storage("create", &staging, &error))?;
        let writer = CountingWriter { inner: tokio::io::BufWriter::with_capacity(1 << 20, file), done: 0, reported: 0, total, digest: layer.digest.clone(), progress: progress.clone() };
        let pulled = client.pull_blob(reference, layer, writer).await;
        if let Err(error) = pulled {
            let _ = tokio::fs::remove_file(&staging).await;
            return Err(registry_error(&reference.whole(), error));
        }
        if let Some(progress) = &progress {
            progress(&layer.digest, total, total);
        }
        tokio::fs::rename(&staging, &destination).await.map_err(|error| Error::storage("store blob", &destination, &error))?;
        Ok(destination)
    }

    pub fn list(&self, home: &Home) -> Vec<ImageRecord> {
        let mut records: Vec<ImageRecord> = std::fs::read_dir(home.images())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|extension| extension == "json"))
            .filter_map(|entry| std::fs::read(entry.path()).ok().and_then(|bytes| parse_record(&entry.path(), &bytes)))
            .collect();
        records.sort_by(|left, right| right.cached_at.cmp(&left.cached_at));
        records
    }

    /// Held while layers are being used or made (see `gc`).
    pub async fn hold(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gc.read().await
    }

    /// Deletes unpacked layers and blobs that neither an indexed image nor a box (`in_use`,
    /// layer directory names) uses. Returns how many layers went.
    pub async fn prune(&self, home: &Home, in_use: &std::collections::HashSet<PathBuf>) -> Result<usize> {
        let _alone = self.gc.write().await;
        let pulled: std::collections::HashSet<String> = self.list(home).iter().flat_map(|record| record.layers.iter().filter_map(|digest| sha256_hex(digest)).map(str::to_string)).collect();
        let mut removed = 0;
        for store in home.removable_layer_stores()? {
            // Pulled images' layers stay unpacked for this runtime's boxes; in the other stores
            // (boxes with other ids) only what a box uses stays, the rest unpacks again on need.
            let current = store == home.layers();
            for entry in fs_err::read_dir(&store)?.flatten() {
                let kept = in_use.contains(&entry.path()) || (current && pulled.contains(&*entry.file_name().to_string_lossy()));
                if !kept {
                    home.throw_away(&entry.path())?;
                    removed += 1;
                }
            }
        }
        for entry in fs_err::read_dir(home.blobs())?.flatten() {
            if !pulled.contains(&*entry.file_name().to_string_lossy()) {
                home.throw_away(&entry.path())?;
            }
        }
        Ok(removed)
    }

    /// Forgets an image (its layers stay until `prune`).
    /// The record of the image `text` names (normalised as a pull would: `alpine` is Docker
    /// Hub's `library/alpine:latest`).
    pub fn get(&self, home: &Home, text: &str) -> Result<ImageRecord> {
        for reference in self.candidates(text)? {
            let path = index_path(home, &reference.whole());
            if let Ok(bytes) = std::fs::read(&path) {
                if let Some(record) = parse_record(&path, &bytes) {
                    return Ok(record);
                }
            }
        }
        Err(Error::NotFound(format!("image {text} is not in the local store")))
    }

    pub fn remove(&self, home: &Home, text: &str) -> Result<()> {
        for reference in self.candidates(text)? {
            let path = index_path(home, &reference.whole());
            if path.exists() {
                fs_err::remove_file(&path)?;
                return Ok(());
            }
        }
        Err(Error::NotFound(format!("image {text} is not in the local store")))
    }
}

fn registry_error(reference: &str, error: OciDistributionError) -> Error {
    match error {
        OciDistributionError::ImageManifestNotFoundError(_) => Error::NotFound(format!("image {reference}: no such manifest")),
        OciDistributionError::RegistryError { envelope, .. } => {
            let unknown = envelope.errors.iter().any(|error| {
                matches!(error.code, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::BlobUnknown)
            });
            if unknown {
                Error::NotFound(format!("image {reference}: the registry does not know it"))
            } else {
                Error::Image(format!("image {reference}: the registry refused: {envelope}"))
            }
        }
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
            Error::Image(format!("image {reference}: access denied by the registry (check the credentials)"))
        }
        OciDistributionError::RequestError(error) if error.is_connect() || error.is_timeout() => {
            Error::Network(format!("image {reference}: cannot reach the registry: {error}"))
        }
        OciDistributionError::ServerError { code: 404, .. } => Error::NotFound(format!("image {reference}: not found on the registry")),
        other => Error::Image(format!("image {reference}: {other}")),
    }
}

/// An image's record in the index, or `None`, reported, when it cannot be read.
fn parse_record(path: &std::path::Path, bytes: &[u8]) -> Option<ImageRecord> {
    serde_json::from_slice(bytes).inspect_err(|error| log::warn!("image record {} is left out: {error}", path.display())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unqualified_names_try_search_registries_first() {
        let store = ImageStore::new(vec![RegistryConfig {
            host: "mirror.local:5000".to_string(),
            insecure_http: true,
            skip_verify: false,
            search: true,
            credentials: Credentials::Anonymous,
        }]);
        let names: Vec<String> = store.candidates("python:slim").expect("valid").iter().map(Reference::whole).collect();
        assert_eq!(names, vec!["mirror.local:5000/library/python:slim", "docker.io/library/python:slim"]);
        let names: Vec<String> = store.candidates("team/tool").expect("valid").iter().map(Reference::whole).collect();
        assert_eq!(names, vec!["mirror.local:5000/team/tool:latest", "docker.io/team/tool:latest"]);
        let names: Vec<String> = store.candidates("ghcr.io/org/tool:1").expect("valid").iter().map(Reference::whole).collect();
        assert_eq!(names, vec!["ghcr.io/org/tool:1"]);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let credentials = Credentials::Basic { username: "me".to_string(), password: Secret::new("hunter2".to_string()) };
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }
}
