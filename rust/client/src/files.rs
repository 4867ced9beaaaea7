//! Files in and out of a remote box, with the same `docker cp` conventions as a local box's
//! (rule 3 of the crate: streamed both ways). An upload is packed into a pipe as it is sent, as
//! one entry the server copies as the box's own `copy_in` would (`copy=true`), or as a
//! directory's entries when the source ends in `/.`. A download is unpacked as it arrives into
//! a staging directory beside the destination, through the same rules the server applies to
//! uploads, then put in place by the core's own `copy_out`, with that directory as the root.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use boxlite_core::files::{base_name, host_path, on_host, CopyOptions, Staging};
use boxlite_core::{Error, Result};
use futures_util::StreamExt;
use reqwest::Method;
use tokio::io::AsyncWriteExt;

use crate::boxes::RemoteBox;

impl RemoteBox {
    /// Copies a host file or directory into the box.
    pub async fn copy_in(&self, host_source: PathBuf, box_destination: String, options: CopyOptions) -> Result<()> {
        self.check_usable()?;
        host_path(&host_source)?;
        let contents_only = host_source.to_string_lossy().ends_with("/.");
        let metadata = if options.follow_symlinks { std::fs::metadata(&host_source) } else { std::fs::symlink_metadata(&host_source) }.map_err(|error| on_host("read", &host_source, &error))?;
        if metadata.is_dir() && !options.recursive {
            return Err(Error::Config(format!("{} is a directory and recursive copy is off", host_source.display())));
        }
        let name = if contents_only { PathBuf::from(".") } else { base_name(&host_source)? };
        // `follow_symlinks` follows the source itself, never the links inside a directory.
        let packed_source = if options.follow_symlinks { std::fs::canonicalize(&host_source).map_err(|error| on_host("read", &host_source, &error))? } else { host_source.clone() };
        let (reader, writer) = pipe()?;
        let packing = tokio::task::spawn_blocking(move || boxlite_core::files::pack_plain(&packed_source, &name, File::from(writer)).map(drop));
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(File::from(reader)), boxlite_core::exec::CHUNK_SIZE));
        let query = [("path", box_destination), ("overwrite", options.overwrite.to_string()), ("copy", (!contents_only).to_string())];
        let request = self.client.request(Method::PUT, &self.path("/files"))?.query(&query).header(reqwest::header::CONTENT_TYPE, "application/x-tar").body(body);
        let sent = self.client.send(request).await;
        let packed = packing.await.map_err(|error| Error::Internal(format!("packing the upload failed: {error}")))?;
        match (packed, sent) {
            // The upload stopped being read: the server refused it or went away, and says which.
            (Err(error), Err(refused)) if error.kind() == std::io::ErrorKind::BrokenPipe => Err(refused),
            // A source that could not be read is the error, not the upload it cut short.
            (Err(error), _) => Err(on_host("read", &host_source, &error)),
            (Ok(()), sent) => sent.map(drop),
        }
    }

    /// Copies a file or directory out of the box.
    pub async fn copy_out(&self, box_source: String, host_destination: PathBuf, options: CopyOptions) -> Result<()> {
        self.check_usable()?;
        host_path(&host_destination)?;
        let contents_only = box_source.ends_with("/.");
        let parent = match host_destination.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(Error::NotFound(format!("{} does not exist on the host", parent.display())));
        }
        // Beside the destination, so putting the download in place stays on one filesystem.
        let staging = Staging::new(&parent, ".boxlite-download")?;
        let query = [("path", box_source.clone()), ("follow_symlinks", options.follow_symlinks.to_string())];
        let response = self.client.send(self.client.request(Method::GET, &self.path("/files"))?.query(&query)).await?;
        let (reader, writer) = pipe()?;
        let into = staging.path().join("c");
        let unpacking = tokio::task::spawn_blocking(move || unpack(File::from(reader), &into));
        let mut writer = tokio::fs::File::from_std(File::from(writer));
        let mut body = response.bytes_stream();
        let mut streamed = Ok(());
        while let Some(chunk) = body.next().await {
            let written = match chunk {
                Ok(chunk) => writer.write_all(&chunk).await.map_err(|error| Error::storage("unpack into", staging.path(), &error)),
                Err(error) => Err(Error::Network(format!("the download broke off: {}", error.without_url()))),
            };
            if let Err(error) = written {
                streamed = Err(error);
                break;
            }
        }
        drop(writer);
        let unpacked = unpacking.await.map_err(|error| Error::Internal(format!("unpacking the download failed: {error}")))?;
        streamed?;
        let name = unpacked?;
        let source = format!("/c/{}{}", name.display(), if contents_only { "/." } else { "" });
        let root = staging.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let root: OwnedFd = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(&root).map_err(|error| Error::storage("open", &root, &error))?.into();
            boxlite_core::files::copy_out(root, &source, &host_destination, options, None)
        })
        .await
        .map_err(|error| Error::Internal(format!("copying the download failed: {error}")))?
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    boxlite_core::exec::pipe().map_err(|error| Error::Engine(format!("failed to create a pipe: {error}")))
}

/// Unpacks a download into `into`, under the rules the server applies to uploads, and names
/// the one entry at its top.
fn unpack(archive: File, into: &Path) -> Result<PathBuf> {
    let bad = |what: String| Error::Storage(format!("the download from the REST server is not a tar this client takes: {what}"));
    boxlite_core::files::unpack_plain(archive, into)?.map_err(bad)?;
    let mut top = std::fs::read_dir(into).map_err(|error| Error::storage("read", into, &error))?.filter_map(|entry| entry.ok().map(|entry| PathBuf::from(entry.file_name())));
    match (top.next(), top.next()) {
        (Some(name), None) => Ok(name),
        _ => Err(bad("it does not hold exactly one file or directory".to_string())),
    }
}
