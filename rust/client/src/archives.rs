//! Boxes as `.boxlite` archives through the server: an export is streamed into a file beside
//! its destination, then linked into place under the local runtime's rules (never replacing a
//! file); an import streams the archive up. The server imports every archive as untrusted.

use std::path::{Path, PathBuf};

use boxlite_core::{Error, Result};
use boxlite_server::wire;
use futures_util::StreamExt;
use reqwest::Method;
use tokio::io::AsyncWriteExt;

use crate::boxes::RemoteBox;
use crate::Client;

impl RemoteBox {
    /// Writes the box's archive at `dest` (inside it as `<name or id>.boxlite` when it is a
    /// directory); resolves to the archive's path.
    pub async fn export(&self, dest: PathBuf) -> Result<PathBuf> {
        let target = boxlite_core::export_destination(&dest, self.name().as_deref().unwrap_or(self.id()))?;
        let partial = boxlite_core::export_partial(&target);
        let written = self.download_into(&partial).await.and_then(|()| boxlite_core::link_into_place(&partial, &target));
        if let Err(error) = std::fs::remove_file(&partial) {
            if error.kind() != std::io::ErrorKind::NotFound {
                log::warn!(target: "boxlite", "the partial archive {} is left: {error}", partial.display());
            }
        }
        written.map(|()| target)
    }

    async fn download_into(&self, partial: &Path) -> Result<()> {
        let response = self.client.send(self.client.request(Method::POST, &self.path("/export"))?).await?;
        let stored = |error: std::io::Error| Error::storage("write", partial, &error);
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(partial).await.map_err(stored)?;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| Error::Network(format!("the export broke off: {}", error.without_url())))?;
            file.write_all(&chunk).await.map_err(stored)?;
        }
        file.sync_all().await.map_err(stored)
    }
}

impl Client {
    /// Makes a stopped box of the archive at `archive`, verified by the server as it reads it
    /// (always as untrusted: `untrusted=false` cannot ask a server for more).
    pub async fn import_box(&self, archive: PathBuf, name: Option<String>) -> Result<RemoteBox> {
        let file = tokio::fs::File::open(&archive).await.map_err(|error| boxlite_core::files::on_host("read", &archive, &error))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, boxlite_core::exec::CHUNK_SIZE));
        let mut request = self.request(Method::POST, "/boxes/import")?.header(reqwest::header::CONTENT_TYPE, "application/octet-stream").body(body);
        if let Some(name) = &name {
            request = request.query(&[("name", name)]);
        }
        let imported: wire::BoxBody = self.json(request).await?;
        Ok(RemoteBox::new(self.clone(), imported))
    }
}
