//! Where a runtime's boxes live: on this machine (the core's `Runtime`) or on a REST server
//! (`boxlite-client`). Both answer with the core's types, so every Python class above serves
//! either through one path; what only one of them can do says so with `UnsupportedError`.

use std::path::PathBuf;
use std::sync::Arc;

use boxlite_client::{Client, Lifecycle, RemoteBox};
use boxlite_core::files::CopyOptions;
use boxlite_core::network::Tunnel;
use boxlite_core::{BoxHandle, BoxInfo, BoxMetrics, BoxOptions, Error, Result, RuntimeMetrics, SnapshotInfo};

/// A runtime: local, or a REST server's.
#[derive(Clone)]
pub enum Backend {
    Local(boxlite_core::Runtime),
    Remote(Client),
}

/// One box of either kind of runtime.
#[derive(Clone)]
pub enum BoxRef {
    Local(Arc<BoxHandle>),
    Remote(Arc<RemoteBox>),
}

/// A tunnel just made, and the URI a REST server gave for it.
pub struct Opened {
    pub tunnel: Tunnel,
    pub uri: Option<String>,
}

/// The error of what a REST runtime cannot do.
pub fn not_over_rest(what: &str) -> Error {
    Error::Unsupported(format!("{what} is not available on a REST runtime"))
}

impl Backend {
    /// The local runtime, for what only it can do (`what`, for the error otherwise).
    pub fn local(&self, what: &str) -> Result<&boxlite_core::Runtime> {
        match self {
            Self::Local(core) => Ok(core),
            Self::Remote(_) => Err(not_over_rest(what)),
        }
    }

    /// Makes a box; `lifecycle` is BoxLite's, which only a REST server keeps.
    pub async fn create(&self, options: BoxOptions, lifecycle: Lifecycle, name: Option<String>) -> Result<BoxRef> {
        match self {
            Self::Local(core) => Ok(BoxRef::Local(Arc::new(core.create(options, name).await?))),
            Self::Remote(client) => Ok(BoxRef::Remote(Arc::new(client.create(options, lifecycle, name).await?))),
        }
    }

    /// The box named `name` if there is one, else a new one; and whether it was made.
    pub async fn get_or_create(&self, options: BoxOptions, lifecycle: Lifecycle, name: Option<String>) -> Result<(BoxRef, bool)> {
        match self {
            Self::Local(core) => core.get_or_create(options, name).await.map(|(handle, created)| (BoxRef::Local(Arc::new(handle)), created)),
            Self::Remote(client) => client.get_or_create(options, lifecycle, name).await.map(|(remote, created)| (BoxRef::Remote(Arc::new(remote)), created)),
        }
    }

    pub async fn get(&self, id_or_name: &str) -> Result<Option<BoxRef>> {
        match self {
            Self::Local(core) => Ok(core.get(id_or_name).map(|handle| BoxRef::Local(Arc::new(handle)))),
            Self::Remote(client) => Ok(client.get(id_or_name).await?.map(|remote| BoxRef::Remote(Arc::new(remote)))),
        }
    }

    pub async fn get_info(&self, id_or_name: &str) -> Result<Option<BoxInfo>> {
        match self {
            Self::Local(core) => Ok(core.get_info(id_or_name)),
            Self::Remote(client) => client.get_info(id_or_name).await,
        }
    }

    pub async fn list_info(&self) -> Result<Vec<BoxInfo>> {
        match self {
            Self::Local(core) => Ok(core.list_info()),
            Self::Remote(client) => client.list_info().await,
        }
    }

    pub async fn remove(&self, id_or_name: &str, force: bool) -> Result<()> {
        match self {
            Self::Local(core) => core.remove(id_or_name, force).await,
            Self::Remote(client) => client.remove(id_or_name, force).await,
        }
    }

    pub async fn metrics(&self) -> Result<RuntimeMetrics> {
        match self {
            Self::Local(core) => Ok(core.metrics()),
            Self::Remote(client) => client.metrics().await,
        }
    }

    /// A server imports every archive as untrusted, whatever `untrusted` says.
    pub async fn import_box(&self, archive: PathBuf, name: Option<String>, untrusted: bool) -> Result<BoxRef> {
        match self {
            Self::Local(core) => Ok(BoxRef::Local(Arc::new(core.import_box(archive, name, untrusted).await?))),
            Self::Remote(client) => Ok(BoxRef::Remote(Arc::new(client.import_box(archive, name).await?))),
        }
    }
}

impl BoxRef {
    pub fn id(&self) -> &str {
        match self {
            Self::Local(handle) => handle.id(),
            Self::Remote(remote) => remote.id(),
        }
    }

    pub fn name(&self) -> Option<String> {
        match self {
            Self::Local(handle) => handle.name(),
            Self::Remote(remote) => remote.name(),
        }
    }

    /// The local box, for what only it can do (`what`, for the error otherwise).
    pub fn local(&self, what: &str) -> Result<&Arc<BoxHandle>> {
        match self {
            Self::Local(handle) => Ok(handle),
            Self::Remote(_) => Err(not_over_rest(what)),
        }
    }

    /// The runtime the box belongs to.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Local(handle) => Backend::Local(handle.runtime()),
            Self::Remote(remote) => Backend::Remote(remote.client().clone()),
        }
    }

    pub async fn info(&self) -> Result<BoxInfo> {
        match self {
            Self::Local(handle) => Ok(handle.info()),
            Self::Remote(remote) => remote.info().await,
        }
    }

    pub async fn start(&self) -> Result<()> {
        match self {
            Self::Local(handle) => handle.start().await,
            Self::Remote(remote) => remote.start().await,
        }
    }

    pub async fn stop(&self) -> Result<()> {
        match self {
            Self::Local(handle) => handle.stop().await,
            Self::Remote(remote) => remote.stop().await,
        }
    }

    pub async fn copy_in(&self, host_source: PathBuf, box_destination: String, options: CopyOptions) -> Result<()> {
        match self {
            Self::Local(handle) => handle.copy_in(host_source, box_destination, options).await,
            Self::Remote(remote) => remote.copy_in(host_source, box_destination, options).await,
        }
    }

    pub async fn copy_out(&self, box_source: String, host_destination: PathBuf, options: CopyOptions) -> Result<()> {
        match self {
            Self::Local(handle) => handle.copy_out(box_source, host_destination, options).await,
            Self::Remote(remote) => remote.copy_out(box_source, host_destination, options).await,
        }
    }

    pub async fn metrics(&self) -> Result<BoxMetrics> {
        match self {
            Self::Local(handle) => handle.metrics(),
            Self::Remote(remote) => remote.metrics().await,
        }
    }

    pub async fn export(&self, dest: PathBuf) -> Result<PathBuf> {
        match self {
            Self::Local(handle) => handle.export(dest).await,
            Self::Remote(remote) => remote.export(dest).await,
        }
    }

    pub async fn clone_box(&self, name: Option<String>) -> Result<BoxRef> {
        match self {
            Self::Local(handle) => Ok(Self::Local(Arc::new(handle.clone_box(name).await?))),
            Self::Remote(remote) => Ok(Self::Remote(Arc::new(remote.clone_box(name).await?))),
        }
    }

    /// A tunnel to the running box's `port`.
    pub async fn tunnel(&self, port: u16) -> Result<Opened> {
        match self {
            Self::Local(handle) => Ok(Opened { tunnel: handle.tunnel(port).await?, uri: None }),
            Self::Remote(remote) => remote.tunnel(port).await.map(|(tunnel, uri)| Opened { tunnel, uri: Some(uri) }),
        }
    }

    /// Ends this runtime's forwarders of the box's tunnels to `port`.
    pub async fn revoke_tunnel(&self, port: u16) -> Result<()> {
        match self {
            Self::Local(handle) => handle.revoke_tunnel(port).await,
            Self::Remote(remote) => remote.revoke_tunnel(port),
        }
    }

    pub async fn snapshot_create(&self, name: &str) -> Result<SnapshotInfo> {
        match self {
            Self::Local(handle) => handle.snapshot_create(name).await,
            Self::Remote(remote) => remote.snapshot_create(name).await,
        }
    }

    pub async fn snapshot_list(&self) -> Result<Vec<SnapshotInfo>> {
        match self {
            Self::Local(handle) => handle.snapshot_list().await,
            Self::Remote(remote) => remote.snapshot_list().await,
        }
    }

    pub async fn snapshot_get(&self, name: &str) -> Result<Option<SnapshotInfo>> {
        match self {
            Self::Local(handle) => handle.snapshot_get(name).await,
            Self::Remote(remote) => remote.snapshot_get(name).await,
        }
    }

    pub async fn snapshot_remove(&self, name: &str) -> Result<()> {
        match self {
            Self::Local(handle) => handle.snapshot_remove(name).await,
            Self::Remote(remote) => remote.snapshot_remove(name).await,
        }
    }

    pub async fn snapshot_restore(&self, name: &str) -> Result<()> {
        match self {
            Self::Local(handle) => handle.snapshot_restore(name).await,
            Self::Remote(remote) => remote.snapshot_restore(name).await,
        }
    }
}
