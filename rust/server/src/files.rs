//! Files in and out of a box as tar streams, as BoxLite's API carries them: `PUT …/files?path=`
//! takes a tar whose entries land inside `path`; `GET …/files?path=` answers with a tar holding
//! the file or directory under its own name. Both are staged on disk in the server's scratch
//! directory, never held whole in memory, and go through the core's jailed copy.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use boxlite_core::files::CopyOptions;
use boxlite_core::Error;
use futures_util::StreamExt;
use serde::Deserialize;

use crate::boxes::{used, BoxPath};
use crate::error::{ApiError, ApiResult};
use crate::{no_content, Server, Shared};

/// Uploads are not buffered, so axum's body limit is off: `upload` counts what streams in (413).
pub fn routes() -> Router<Arc<Server>> {
    Router::new().route("/boxes/{box_id}/files", get(download).put(upload)).layer(DefaultBodyLimit::disable())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    path: String,
    #[serde(default = "yes")]
    overwrite: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DownloadQuery {
    path: String,
    #[serde(default)]
    follow_symlinks: bool,
}

fn yes() -> bool {
    true
}

/// A directory of its own in the scratch directory (which only the server's user may enter:
/// an upload may hold set-id files), removed when dropped.
struct Staging(PathBuf);

impl Staging {
    fn new(server: &Server) -> ApiResult<Self> {
        let path = server.scratch_dir.join(format!("{:016x}", rand::random::<u64>()));
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(|error| ApiError::from(Error::storage("create", &path, &error)))?;
        Ok(Self(path))
    }
}

impl Drop for Staging {
    /// An upload may have made directories its owner cannot write (mode 0500): those are
    /// opened up, then the removal is tried again.
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.0).is_ok() {
            return;
        }
        let mut pending = vec![self.0.clone()];
        while let Some(directory) = pending.pop() {
            let _ = std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o700));
            let entries = std::fs::read_dir(&directory).into_iter().flatten().flatten();
            pending.extend(entries.filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir())).map(|entry| entry.path()));
        }
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            log::warn!("failed to remove the staging directory {}: {error}", self.0.display());
        }
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| ApiError::from(Error::Internal(format!("blocking task failed: {error}"))))?
}

async fn upload(State(server): Shared, UrlPath(path): UrlPath<BoxPath>, Query(query): Query<UploadQuery>, body: Body) -> ApiResult<Response> {
    let handle = used(&server, &path.box_id, true)?;
    let staging = Staging::new(&server)?;
    let archive_path = staging.0.join("upload.tar");
    let mut archive = File::options().read(true).write(true).create_new(true).open(&archive_path).map_err(|error| ApiError::from(Error::storage("create", &archive_path, &error)))?;
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| ApiError::invalid_argument(format!("the upload broke off: {error}")))?;
        received += chunk.len() as u64;
        if received > server.upload_limit {
            return Err(ApiError::payload_too_large(server.upload_limit));
        }
        archive.write_all(&chunk).map_err(|error| ApiError::from(Error::storage("write", &archive_path, &error)))?;
    }
    let contents = staging.0.join("contents");
    let unpack_into = contents.clone();
    blocking(move || unpack(archive, &archive_path, &unpack_into)).await?;
    // `/.`: the entries go inside `path` (made if missing), not the directory holding them.
    let source = PathBuf::from(format!("{}/.", contents.display()));
    handle.copy_in(source, query.path, CopyOptions { recursive: true, overwrite: query.overwrite, follow_symlinks: false }).await?;
    drop(staging);
    Ok(no_content())
}

/// Unpacks a client's tar: files, directories and symlinks, each inside `into` (entries that
/// would land outside it, links to other entries and device nodes are refused).
fn unpack(mut archive: File, archive_path: &Path, into: &Path) -> ApiResult<()> {
    archive.seek(SeekFrom::Start(0)).map_err(|error| ApiError::from(Error::storage("read", archive_path, &error)))?;
    std::fs::create_dir(into).map_err(|error| ApiError::from(Error::storage("create", into, &error)))?;
    // The tar crate's messages name the staging directory: the client is told of its upload.
    let staged = into.display().to_string();
    let bad = |what: String| ApiError::invalid_argument(format!("bad upload tar: {}", what.replace(&staged, "the upload")));
    let mut reader = tar::Archive::new(archive);
    reader.set_preserve_permissions(true);
    reader.set_preserve_mtime(true);
    reader.set_unpack_xattrs(false);
    for entry in reader.entries().map_err(|error| bad(error.to_string()))? {
        let mut entry = entry.map_err(|error| bad(error.to_string()))?;
        let name = entry.path().map_err(|error| bad(error.to_string()))?.display().to_string();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Directory | tar::EntryType::Symlink => {}
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName | tar::EntryType::GNULongLink => continue,
            other => return Err(bad(format!("{name}: entries of type {other:?} are not accepted"))),
        }
        if !entry.unpack_in(into).map_err(|error| bad(format!("{name}: {error}")))? {
            return Err(bad(format!("{name} would land outside the destination")));
        }
    }
    Ok(())
}

async fn download(State(server): Shared, UrlPath(path): UrlPath<BoxPath>, Query(query): Query<DownloadQuery>) -> ApiResult<Response> {
    let handle = used(&server, &path.box_id, true)?;
    let staging = Staging::new(&server)?;
    let name = Path::new(&query.path).file_name().map_or_else(|| PathBuf::from("root"), PathBuf::from);
    let copied = staging.0.join("contents").join(&name);
    std::fs::create_dir(staging.0.join("contents")).map_err(|error| ApiError::from(Error::storage("create", &staging.0, &error)))?;
    handle.copy_out(query.path, copied.clone(), CopyOptions { recursive: true, overwrite: true, follow_symlinks: query.follow_symlinks }).await?;
    let archive_path = staging.0.join("download.tar");
    let archive = blocking(move || pack(&copied, &name, &archive_path)).await?;
    // The staging directory goes now; the open archive stays readable until streamed.
    drop(staging);
    let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(archive), 256 * 1024);
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], Body::from_stream(stream)).into_response())
}

fn pack(source: &Path, name: &Path, archive_path: &Path) -> ApiResult<File> {
    let stored = |error: std::io::Error| ApiError::from(Error::storage("write", archive_path, &error));
    let archive = File::options().read(true).write(true).create_new(true).open(archive_path).map_err(stored)?;
    let mut builder = tar::Builder::new(archive);
    builder.follow_symlinks(false);
    if source.symlink_metadata().map_err(stored)?.is_dir() {
        builder.append_dir_all(name, source).map_err(stored)?;
    } else {
        builder.append_path_with_name(source, name).map_err(stored)?;
    }
    let mut archive = builder.into_inner().map_err(stored)?;
    archive.seek(SeekFrom::Start(0)).map_err(stored)?;
    Ok(archive)
}
