//! Clones: a new box with another's options and a copy of its files, independent of it from
//! then on. The copy is taken as a snapshot's is (`snapshots` rule 1: a running source is
//! frozen for it), with its owners moved into the clone's own id range (`idmap` rule 4); the
//! source's snapshots stay with the source. The clone is made stopped, as BoxLite's.

use super::layer::{shift_between, WritableLayer};
use super::*;

impl BoxHandle {
    /// The runtime this box belongs to.
    pub fn runtime(&self) -> Runtime {
        Runtime { inner: Arc::clone(&self.inner) }
    }

    /// Makes a stopped box with this box's options and a copy of its files, named `name`.
    pub async fn clone_box(&self, name: Option<String>) -> Result<BoxHandle> {
        self.check_exists()?;
        let runtime = self.runtime();
        runtime.reserve_name(name.as_deref())?;
        let cloned = self.clone_reserved(name.clone()).await;
        runtime.release_name(name.as_deref());
        cloned
    }

    /// Listed before the name is let go, so the name is never free while its box is made.
    async fn clone_reserved(&self, name: Option<String>) -> Result<BoxHandle> {
        let live = self.entry.live.lock().await;
        let _being_made = self.inner.making.read().await;
        self.check_exists()?;
        let source = self.entry.record().clone();
        let layer = self.writable_layer();
        let source_dir = self.entry.dir.clone();
        let inner = Arc::clone(&self.inner);
        self.with_layer_still(&live, move || {
            let subdirs: &[&str] = if source.disk_size_gb.is_some() { &["disk", "rootfs", "main"] } else { &["work", "rootfs", "main"] };
            Runtime::make_box(&inner, subdirs, |id, dir, id_map| {
                let target = WritableLayer::of(dir, source.disk_size_gb.is_some());
                layer.copy_shifted(target.path(), shift_between(source.id_map, id_map), inner.home.subordinate_helper())?;
                crate::network::secrets::copy(&source_dir, dir)?;
                let (created_at, created_at_nanos) = crate::clock::now();
                Ok(BoxRecord {
                    id: id.to_string(),
                    name,
                    status: BoxStatus::Stopped,
                    created_at,
                    created_at_nanos,
                    started_at: None,
                    init_pid: None,
                    exit_code: None,
                    published_host_ports: Vec::new(),
                    id_map,
                    subordinate_ids: inner.home.subordinate_ids_of(id_map),
                    ..source
                })
            })
        })
        .await
        .map(|entry| self.runtime().add_made(entry))
    }
}
