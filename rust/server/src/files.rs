//! Files in and out of a box as tar streams, as BoxLite's API carries them: `PUT …/files?path=`
//! takes a tar whose entries land inside `path`; `GET …/files?path=` answers with a tar holding
//! the file or directory under its own name. Both are staged on disk in the server's scratch
//! directory, never held whole in memory, and go through the core's jailed copy.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use boxlite_core::files::{CopyOptions, Staging};
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
    /// The tar holds one file or directory, copied to `path` as `box.copy_in` copies a host
    /// path (inside `path` when that is a directory, else as `path`), instead of its entries
    /// landing inside `path`.
    #[serde(default)]
    copy: bool,
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

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| ApiError::from(Error::Internal(format!("blocking task failed: {error}"))))?
}

async fn upload(State(server): Shared, UrlPath(path): UrlPath<BoxPath>, Query(query): Query<UploadQuery>, body: Body) -> ApiResult<Response> {
    let handle = used(&server, &path.box_id, true)?;
    let staging = Staging::new(&server.scratch_dir, "upload")?;
    let archive_path = staging.path().join("upload.tar");
    let archive = receive(body, &archive_path, server.upload_limit).await?;
    let contents = staging.path().join("contents");
    let unpack_into = contents.clone();
    blocking(move || unpack(archive, &archive_path, &unpack_into)).await?;
    let source = if query.copy {
        single_entry(&contents)?
    } else {
        // `/.`: the entries go inside `path` (made if missing), not the directory holding them.
        PathBuf::from(format!("{}/.", contents.display()))
    };
    let staged = format!("{}/", contents.display());
    handle.copy_in(source, query.path, CopyOptions { recursive: true, overwrite: query.overwrite, follow_symlinks: false }).await.map_err(|error| {
        // The upload is named as its client named it, not by where this server staged it.
        let mut error = ApiError::from(error);
        error.message = error.message.replace(&staged, "");
        error
    })?;
    drop(staging);
    Ok(no_content())
}

/// Writes an upload's body into the new file `path` as it arrives (never held in memory);
/// more than `limit` bytes is 413.
pub(crate) async fn receive(body: Body, path: &Path, limit: u64) -> ApiResult<File> {
    let mut file = File::options().read(true).write(true).create_new(true).open(path).map_err(|error| ApiError::from(Error::storage("create", path, &error)))?;
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| ApiError::invalid_argument(format!("the upload broke off: {error}")))?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        file.write_all(&chunk).map_err(|error| ApiError::from(Error::storage("write", path, &error)))?;
    }
    Ok(file)
}

/// The one file or directory an upload with `copy=true` holds.
fn single_entry(contents: &Path) -> ApiResult<PathBuf> {
    let entries = std::fs::read_dir(contents).map_err(|error| ApiError::from(Error::storage("read", contents, &error)))?;
    let names: Vec<_> = entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect();
    match <[PathBuf; 1]>::try_from(names) {
        Ok([single]) => Ok(single),
        Err(names) => Err(ApiError::invalid_argument(format!("an upload with copy=true holds one file or directory, not {}", names.len()))),
    }
}

/// Unpacks a client's tar under the rules of `files::unpack_plain`.
fn unpack(mut archive: File, archive_path: &Path, into: &Path) -> ApiResult<()> {
    archive.seek(SeekFrom::Start(0)).map_err(|error| ApiError::from(Error::storage("read", archive_path, &error)))?;
    boxlite_core::files::unpack_plain(archive, into)?.map_err(|what| ApiError::invalid_argument(format!("bad upload tar: {what}")))
}

async fn download(State(server): Shared, UrlPath(path): UrlPath<BoxPath>, Query(query): Query<DownloadQuery>) -> ApiResult<Response> {
    let handle = used(&server, &path.box_id, true)?;
    let staging = Staging::new(&server.scratch_dir, "download")?;
    let name = Path::new(&query.path).file_name().map_or_else(|| PathBuf::from("root"), PathBuf::from);
    let copied = staging.path().join("contents").join(&name);
    std::fs::create_dir(staging.path().join("contents")).map_err(|error| ApiError::from(Error::storage("create", staging.path(), &error)))?;
    handle.copy_out(query.path, copied.clone(), CopyOptions { recursive: true, overwrite: true, follow_symlinks: query.follow_symlinks }).await?;
    let archive_path = staging.path().join("download.tar");
    let archive = blocking(move || pack(&copied, &name, &archive_path)).await?;
    // The staging directory goes now; the open archive stays readable until streamed.
    drop(staging);
    let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(archive), 256 * 1024);
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], Body::from_stream(stream)).into_response())
}

fn pack(source: &Path, name: &Path, archive_path: &Path) -> ApiResult<File> {
    let stored = |error: std::io::Error| ApiError::from(Error::storage("write", archive_path, &error));
    let archive = File::options().read(true).write(true).create_new(true).open(archive_path).map_err(stored)?;
    let mut archive = boxlite_core::files::pack_plain(source, name, archive).map_err(stored)?;
    archive.seek(SeekFrom::Start(0)).map_err(stored)?;
    Ok(archive)
}
