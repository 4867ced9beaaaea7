//! Images from Python: registry configuration (`ImageRegistry`), `Boxlite.images` and what its
//! operations return.

use std::sync::Arc;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::backend::Backend;
use crate::dispatcher::{list, object, Deliver, Event, Payload, Shared};
use crate::pyrepr::python_repr;

/// One registry to pull from. Credentials never appear in `repr()`.
#[pyclass(module = "boxlite._native", get_all, set_all)]
#[derive(Clone)]
pub struct ImageRegistry {
    /// `host[:port]`, not a URL.
    pub host: String,
    /// `"https"` (default) or `"http"` (plain HTTP, e.g. a registry on loopback).
    pub transport: String,
    pub skip_verify: bool,
    /// Try this registry for image names that name no registry.
    pub search: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub bearer_token: Option<String>,
}

#[pymethods]
impl ImageRegistry {
    #[new]
    #[pyo3(signature = (host, transport = "https", skip_verify = false, search = false, username = None, password = None, bearer_token = None))]
    fn new(
        host: String,
        transport: &str,
        skip_verify: bool,
        search: bool,
        username: Option<String>,
        password: Option<String>,
        bearer_token: Option<String>,
    ) -> PyResult<Self> {
        if host.trim().is_empty() {
            return Err(PyRuntimeError::new_err("image registry host is required"));
        }
        if host.contains("://") || host.contains('/') {
            return Err(PyRuntimeError::new_err(format!("image registry host must be host[:port], not a URL: {host}")));
        }
        if !["", "https", "http"].contains(&transport) {
            return Err(PyRuntimeError::new_err(format!("unsupported registry transport: {transport}")));
        }
        if username.is_some() != password.is_some() {
            return Err(PyRuntimeError::new_err("registry username and password must be provided together"));
        }
        Ok(Self { host, transport: transport.to_string(), skip_verify, search, username, password, bearer_token })
    }

    fn __repr__(&self) -> String {
        let auth = match (&self.bearer_token, &self.username) {
            (Some(_), _) => "bearer",
            (None, Some(_)) => "basic",
            (None, None) => "anonymous",
        };
        format!(
            "ImageRegistry(host={}, transport={}, skip_verify={}, search={}, auth={auth})",
            python_repr(Some(&self.host)),
            python_repr(Some(&self.transport)),
            if self.skip_verify { "True" } else { "False" },
            if self.search { "True" } else { "False" },
        )
    }
}

impl ImageRegistry {
    pub fn to_core(&self) -> boxlite_core::RegistryConfig {
        let credentials = match (&self.bearer_token, &self.username, &self.password) {
            (Some(token), _, _) => boxlite_core::Credentials::Bearer(boxlite_core::Secret::new(token.clone())),
            (None, Some(username), Some(password)) => {
                boxlite_core::Credentials::Basic { username: username.clone(), password: boxlite_core::Secret::new(password.clone()) }
            }
            _ => boxlite_core::Credentials::Anonymous,
        };
        boxlite_core::RegistryConfig {
            host: self.host.clone(),
            insecure_http: self.transport == "http",
            skip_verify: self.skip_verify,
            search: self.search,
            credentials,
        }
    }
}

#[pyclass(module = "boxlite._native", frozen, get_all)]
pub struct ImagePullResult {
    /// The fully qualified reference that was pulled.
    pub reference: String,
    pub config_digest: String,
    pub layer_count: usize,
}

impl ImagePullResult {
    /// The pull of `record`, asked for as `written` (which `reference` echoes, as BoxLite's).
    fn pulled(record: &boxlite_core::ImageRecord, written: String) -> Self {
        Self { reference: written, config_digest: record.config_digest.clone(), layer_count: record.layers.len() }
    }
}

#[pymethods]
impl ImagePullResult {
    fn __repr__(&self) -> String {
        format!("ImagePullResult(reference={}, config_digest={}, layer_count={})", python_repr(Some(&self.reference)), python_repr(Some(&self.config_digest)), self.layer_count)
    }
}

/// `pull()` resolves to an `ImagePullResult`.
impl Deliver for ImagePullResult {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        object(event_loop, *self)
    }
}

#[pyclass(module = "boxlite._native", frozen, get_all)]
pub struct ImageInfo {
    pub reference: String,
    pub repository: String,
    pub tag: Option<String>,
    /// The image's config digest.
    pub id: String,
    pub cached_at: String,
    pub size_bytes: Option<u64>,
}

impl From<&boxlite_core::ImageRecord> for ImageInfo {
    fn from(record: &boxlite_core::ImageRecord) -> Self {
        Self {
            reference: record.reference.clone(),
            repository: record.repository.clone(),
            tag: record.tag.clone(),
            id: record.config_digest.clone(),
            cached_at: record.cached_at.clone(),
            size_bytes: Some(record.size_bytes),
        }
    }
}

#[pymethods]
impl ImageInfo {
    fn __repr__(&self) -> String {
        format!("ImageInfo(reference={}, id={}, cached_at={})", python_repr(Some(&self.reference)), python_repr(Some(&self.id)), python_repr(Some(&self.cached_at)))
    }
}

/// A version of an image: one manifest, and the tags that name it.
#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct ImageVersion {
    /// The manifest's digest.
    pub digest: String,
    pub size_bytes: u64,
    /// The reference it was pulled as.
    pub source_ref: String,
    /// The tags that name it.
    pub aliases: Vec<String>,
    /// When it was pulled (RFC 3339).
    pub recorded_at: String,
    /// Not kept by a local store: `None`.
    pub last_used_at: Option<String>,
    /// Not kept by a local store: `None`.
    pub upstream_missing_at: Option<String>,
}

#[pymethods]
impl ImageVersion {
    fn __repr__(&self) -> String {
        format!("ImageVersion(digest={}, aliases={:?}, recorded_at={})", python_repr(Some(&self.digest)), self.aliases, python_repr(Some(&self.recorded_at)))
    }
}

/// A tag moved from one version to another (a REST server's history; a local store keeps none).
#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct ImageAliasEvent {
    pub alias: String,
    pub from_digest: Option<String>,
    pub to_digest: Option<String>,
    pub actor: Option<String>,
    pub recorded_at: String,
}

/// An image by name: its versions (one per manifest pulled under the name) and their tags.
#[pyclass(module = "boxlite._native", frozen, get_all)]
pub struct ImageDetail {
    /// The repository (`docker.io/library/alpine`).
    pub name: String,
    /// Newest first.
    pub versions: Vec<ImageVersion>,
    /// Every tag of every version.
    pub aliases: Vec<String>,
    pub history: Vec<ImageAliasEvent>,
    /// Whether a server's curators keep it; `False` for a local store.
    pub curated: bool,
}

impl ImageDetail {
    /// The image `asked` names, with every record pulled under the same repository.
    fn gather(asked: &boxlite_core::ImageRecord, all: &[boxlite_core::ImageRecord]) -> Self {
        let mut versions: Vec<ImageVersion> = Vec::new();
        for record in all.iter().filter(|record| record.repository == asked.repository) {
            match versions.iter_mut().find(|version| version.digest == record.manifest_digest) {
                Some(version) => version.aliases.extend(record.tag.clone()),
                None => versions.push(ImageVersion {
                    digest: record.manifest_digest.clone(),
                    size_bytes: record.size_bytes,
                    source_ref: record.reference.clone(),
                    aliases: record.tag.clone().into_iter().collect(),
                    recorded_at: record.cached_at.clone(),
                    last_used_at: None,
                    upstream_missing_at: None,
                }),
            }
        }
        let aliases = versions.iter().flat_map(|version| version.aliases.iter().cloned()).collect();
        Self { name: asked.repository.clone(), versions, aliases, history: Vec::new(), curated: false }
    }
}

#[pymethods]
impl ImageDetail {
    fn __repr__(&self) -> String {
        format!("ImageDetail(name={}, versions={}, aliases={:?})", python_repr(Some(&self.name)), self.versions.len(), self.aliases)
    }
}

/// `get()` resolves to an `ImageDetail`.
impl Deliver for ImageDetail {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        object(event_loop, *self)
    }
}

/// `list()` resolves to a list of `ImageInfo`.
impl Deliver for Vec<ImageInfo> {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        list(event_loop, *self)
    }
}

/// `Boxlite.images`: the runtime's image store.
#[pyclass(module = "boxlite._native", frozen)]
pub struct ImageHandle {
    shared: Arc<Shared>,
    backend: Backend,
}

impl ImageHandle {
    /// What only BoxLite's cloud serves: refused here, and by `boxlite serve` so far.
    fn refuse_rest_only<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let missing = match self.backend {
            Backend::Local(_) => crate::unsupported::Missing::RestOnlyImages,
            Backend::Remote(_) => crate::unsupported::Missing::ImagesNotServed,
        };
        crate::unsupported::refuse(&self.shared, py, missing)
    }

    pub fn new(shared: &Arc<Shared>, backend: &Backend) -> Self {
        Self { shared: Arc::clone(shared), backend: backend.clone() }
    }
}

#[pymethods]
impl ImageHandle {
    /// Pulls an image (or finds it in the local store); resolves to an `ImagePullResult`.
    /// `progress(layer_digest, bytes_done, bytes_total)` is called on the event loop as layers
    /// download (never reordered; under heavy load, when the queue is full, a report is skipped).
    #[pyo3(signature = (reference, progress = None))]
    fn pull<'py>(&self, py: Python<'py>, reference: String, progress: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(callback) = &progress {
            if !callback.is_callable() {
                return Err(pyo3::exceptions::PyTypeError::new_err("progress must be callable"));
            }
        }
        let reports = progress.is_some();
        let crate::dispatcher::Registered { target, future, channel, .. } = self.shared.register_with_progress(py, progress.map(Bound::unbind))?;
        let reporter: Option<boxlite_core::PullProgress> = reports.then(|| {
            let channel = Arc::clone(&channel);
            Arc::new(move |layer: &str, done: u64, total: u64| {
                channel.try_push(Event::Progress { target, layer: layer.to_string(), done, total });
            }) as boxlite_core::PullProgress
        });
        let backend = self.backend.clone();
        self.shared.complete_with(target, channel, async move {
            // A REST server pulls without reporting progress: the callback is not called.
            let record = match backend {
                Backend::Local(core) => core.pull_image(&reference, reporter).await?,
                Backend::Remote(client) => client.pull_image(&reference).await?,
            };
            Ok(Payload::from(ImagePullResult::pulled(&record, reference)))
        });
        Ok(future)
    }

    /// Resolves to the `ImageDetail` of the pulled image `name` (normalised as a pull would);
    /// `NotFoundError` when it was not pulled.
    fn get<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend.clone();
        self.shared.submit(py, async move {
            let core = backend.local("an image's details")?;
            let asked = core.get_image(&name)?;
            Ok(Payload::from(ImageDetail::gather(&asked, &core.list_images()?)))
        })
    }

    /// Resolves to the images in the local store, most recently pulled first.
    fn list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend.clone();
        self.shared.submit(py, async move {
            let records = match backend {
                Backend::Local(core) => core.list_images()?,
                Backend::Remote(client) => client.list_images().await?,
            };
            Ok(Payload::from(records.iter().map(ImageInfo::from).collect::<Vec<_>>()))
        })
    }

    /// Deletes unpacked layers and downloaded blobs that no pulled image and no box uses;
    /// resolves to how many layers went.
    /// Cache usage against a quota (REST-only).
    fn usage<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.refuse_rest_only(py)
    }

    /// Aliases (REST-only).
    fn create_alias<'py>(&self, py: Python<'py>, name: String, alias: String, digest: String) -> PyResult<Bound<'py, PyAny>> {
        let _ = (name, alias, digest);
        self.refuse_rest_only(py)
    }

    fn delete_alias<'py>(&self, py: Python<'py>, name: String, alias: String) -> PyResult<Bound<'py, PyAny>> {
        let _ = (name, alias);
        self.refuse_rest_only(py)
    }

    /// Registry credentials kept by a server (REST-only): raises at once.
    #[getter]
    fn registries(&self, py: Python<'_>) -> PyResult<()> {
        Err(crate::unsupported::refuse_now(py, crate::unsupported::Missing::RegistryCredentials))
    }

    fn prune<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend.clone();
        self.shared.submit(py, async move { backend.local("pruning images")?.prune_images().await.map(Payload::from) })
    }

    /// Forgets an image in the local store (its layers go at the next `prune`).
    fn remove<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend.clone();
        self.shared.submit(py, async move { backend.local("removing an image")?.remove_image(&name).map(Payload::from) })
    }
}
