//! The runtime's image store and named volumes, as the boxes' runtime serves them.

use super::*;

impl Runtime {
    /// Pulls an image into the local store (or finds it there), reporting download progress.
    pub async fn pull_image(&self, reference: &str, progress: Option<crate::image::PullProgress>) -> Result<ImageRecord> {
        self.check_open()?;
        let _layers_in_use = self.inner.images.hold().await;
        if let Some((record, _)) = self.inner.images.cached(&self.inner.home, reference)? {
            return Ok(record);
        }
        self.inner.images.pull(&self.inner.home, reference, progress).await
    }

    /// Deletes layers and blobs that no pulled image and no box uses; returns how many layers.
    pub async fn prune_images(&self) -> Result<usize> {
        self.check_open()?;
        let _alone = self.inner.making.write().await;
        let entries: Vec<Arc<BoxEntry>> = lock(&self.inner.boxes).values().cloned().collect();
        let in_use = entries.iter().flat_map(|entry| entry.record().prepared.lower_dirs.clone()).collect();
        self.inner.images.prune(&self.inner.home, &in_use).await
    }

    /// Images in the local store, most recently pulled first.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        self.check_open()?;
        Ok(self.inner.images.list(&self.inner.home))
    }

    pub fn create_volume(&self, name: &str) -> Result<VolumeInfo> {
        self.check_open()?;
        self.inner.volumes.create(name)
    }

    pub fn get_volume(&self, name: &str) -> Result<VolumeInfo> {
        self.check_open()?;
        self.inner.volumes.get(name)
    }

    pub fn list_volumes(&self) -> Result<Vec<VolumeInfo>> {
        self.check_open()?;
        Ok(self.inner.volumes.list())
    }

    /// Deletes a named volume and its files, unless a box mounts it (`volumes` rule 2).
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        self.check_open()?;
        let _alone = self.inner.making.write().await;
        let users: Vec<String> = lock(&self.inner.boxes)
            .values()
            .filter(|entry| entry.record().volumes.iter().any(|volume| volume.named.as_deref() == Some(name)))
            .map(|entry| entry.id.clone())
            .collect();
        self.inner.volumes.remove(name, &users)
    }

    /// The pulled image `reference` names (normalised as a pull would).
    pub fn get_image(&self, reference: &str) -> Result<ImageRecord> {
        self.check_open()?;
        self.inner.images.get(&self.inner.home, reference)
    }

    pub fn remove_image(&self, reference: &str) -> Result<()> {
        self.check_open()?;
        self.inner.images.remove(&self.inner.home, reference)
    }
}
