//! Boxes as `.boxlite` archives over REST: `POST …/boxes/{box}/export` answers with the archive
//! (written by the core into the scratch directory, then streamed and gone), and
//! `POST …/boxes/import[?name=N]` makes a stopped box of the archive in the body. An archive
//! from a client is always imported as untrusted: it may not mount the server's directories,
//! publish its ports, add capabilities or bring a disk image of its own.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use boxlite_core::files::Staging;
use serde::Deserialize;

use crate::boxes::{created, used, BoxPath};
use crate::error::{ApiError, ApiResult};
use crate::files::receive;
use crate::{Server, Shared};

/// Archives are streamed, so axum's body limit is off: `receive` counts what streams in.
pub fn routes() -> Router<Arc<Server>> {
    Router::new().route("/boxes/{box_id}/export", post(export)).route("/boxes/import", post(import)).layer(DefaultBodyLimit::disable())
}

async fn export(State(server): Shared, Path(path): Path<BoxPath>) -> ApiResult<Response> {
    let handle = used(&server, &path.box_id, false)?;
    let staging = Staging::new(&server.scratch_dir, "export")?;
    let archive_path = handle.export(staging.path().to_path_buf()).await?;
    let archive = std::fs::File::open(&archive_path).map_err(|error| ApiError::from(boxlite_core::Error::storage("open", &archive_path, &error)))?;
    let file_name = archive_path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    // The staging directory goes now; the open archive stays readable until streamed.
    drop(staging);
    let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(archive), boxlite_core::exec::CHUNK_SIZE);
    let disposition = format!("attachment; filename=\"{file_name}\"");
    Ok(([(header::CONTENT_TYPE, "application/octet-stream".to_string()), (header::CONTENT_DISPOSITION, disposition)], Body::from_stream(stream)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    name: Option<String>,
}

async fn import(State(server): Shared, Query(query): Query<ImportQuery>, body: Body) -> ApiResult<Response> {
    if let Some(name) = &query.name {
        crate::wire::check_name(name)?;
    }
    let staging = Staging::new(&server.scratch_dir, "import")?;
    let archive_path = staging.path().join("upload.boxlite");
    drop(receive(body, &archive_path, server.upload_limit).await?);
    let handle = server.runtime.import_box(archive_path, query.name, true).await?;
    drop(staging);
    Ok(created(&server, &handle))
}
