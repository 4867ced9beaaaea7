//! Boxes: create, list, get, remove, start, stop; their snapshots, clones and metrics.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use boxlite_core::{BoxHandle, Error};
use serde::Deserialize;
use std::sync::Arc;

use crate::error::{ApiError, ApiResult};
use crate::wire::{BoxBody, BoxList, BoxMetricsBody, CloneBox, CreateBox, CreateSnapshot, RuntimeMetricsBody, SnapshotBody, SnapshotList, StopBox};
use crate::{no_content, Server, Shared};

/// The longest grace a stop may give a box's processes before they are killed.
const MAX_STOP_GRACE: Duration = Duration::from_secs(300);

pub fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/boxes", post(create).get(list))
        .route("/boxes/{box_id}", get(get_box).head(head).delete(remove))
        .route("/boxes/{box_id}/start", post(start))
        .route("/boxes/{box_id}/stop", post(stop))
        .route("/boxes/{box_id}/metrics", get(box_metrics))
        .route("/boxes/{box_id}/clone", post(clone_box))
        .route("/boxes/{box_id}/snapshots", post(create_snapshot).get(list_snapshots))
        .route("/boxes/{box_id}/snapshots/{name}", get(get_snapshot).delete(remove_snapshot))
        .route("/boxes/{box_id}/snapshots/{name}/restore", post(restore_snapshot))
}

#[derive(Deserialize)]
pub struct BoxPath {
    pub box_id: String,
}

#[derive(Deserialize)]
pub struct SnapshotPath {
    box_id: String,
    name: String,
}

/// A JSON body, or BoxLite's 400 envelope saying what is wrong with it.
pub fn body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|Json(value)| value).map_err(|rejection| ApiError::invalid_argument(format!("bad request body: {}", rejection.body_text())))
}

/// An optional JSON body: none (or empty) is the default.
pub fn optional_body<T: serde::de::DeserializeOwned + Default>(bytes: &axum::body::Bytes) -> ApiResult<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|error| ApiError::invalid_argument(format!("bad request body: {error}")))
}

/// The box named or numbered `id_or_name`.
pub fn find(server: &Server, id_or_name: &str) -> ApiResult<BoxHandle> {
    server.runtime.get(id_or_name).ok_or_else(|| ApiError::from(Error::NotFound(format!("box not found: {id_or_name}"))))
}

/// The box, for a request that uses it (`lifecycle`): its disuse starts over. With `boots`, the
/// request starts a stopped box, which `auto_resume` off refuses.
pub fn used(server: &Server, id_or_name: &str, boots: bool) -> ApiResult<BoxHandle> {
    let handle = find(server, id_or_name)?;
    if boots && handle.info().status == "stopped" && !server.lifecycle.settings(handle.id()).auto_resume {
        return Err(ApiError::from(Error::InvalidState(format!("box {} is stopped and its auto_resume is off: start it first", handle.id()))));
    }
    server.lifecycle.touch(handle.id());
    Ok(handle)
}

/// A box as the API shows it.
pub fn shown(server: &Server, info: boxlite_core::BoxInfo) -> BoxBody {
    let lifecycle = server.lifecycle.settings(&info.id);
    BoxBody::new(info, lifecycle)
}

pub fn created(server: &Server, handle: &BoxHandle) -> Response {
    let location = format!("/v1/boxes/{}", handle.id());
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(shown(server, handle.info()))).into_response()
}

async fn create(State(server): Shared, request: Result<Json<CreateBox>, JsonRejection>) -> ApiResult<Response> {
    let (options, name, lifecycle) = body(request)?.options()?;
    let handle = server.runtime.create(options, name.clone()).await.map_err(|error| match (error, name) {
        // The local API calls a taken name an invalid argument; BoxLite's REST API, a conflict.
        (Error::InvalidArgument(message), Some(name)) if server.runtime.get(&name).is_some() => Error::AlreadyExists(message),
        (error, _) => error,
    })?;
    server.lifecycle.set(handle.id(), lifecycle);
    Ok(created(&server, &handle))
}

/// BoxLite's paging: without `pageSize`, every box in one page (what BoxLite's clients, which
/// read one page, need); with it, pages of that size, each naming the next by `pageToken`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListQuery {
    status: Option<String>,
    page_size: Option<usize>,
    page_token: Option<String>,
}

async fn list(State(server): Shared, Query(query): Query<ListQuery>) -> ApiResult<Json<BoxList>> {
    let matching = server.runtime.list_info().into_iter().filter(|info| query.status.as_deref().is_none_or(|status| status == info.status));
    let start = match &query.page_token {
        None => 0,
        Some(token) => token.parse::<usize>().map_err(|_| ApiError::invalid_argument(format!("pageToken {token:?} is not one this server gave")))?,
    };
    let size = match query.page_size {
        None => usize::MAX,
        Some(size @ 1..=1000) => size,
        Some(size) => return Err(ApiError::invalid_argument(format!("pageSize must be between 1 and 1000, got {size}"))),
    };
    let mut boxes: Vec<BoxBody> = matching.skip(start).take(size.saturating_add(1)).map(|info| shown(&server, info)).collect();
    let next_page_token = (boxes.len() > size).then(|| (start + size).to_string());
    boxes.truncate(size);
    Ok(Json(BoxList { boxes, next_page_token }))
}

async fn get_box(State(server): Shared, Path(path): Path<BoxPath>) -> ApiResult<Json<BoxBody>> {
    Ok(Json(shown(&server, find(&server, &path.box_id)?.info())))
}

async fn head(State(server): Shared, Path(path): Path<BoxPath>) -> StatusCode {
    if server.runtime.get(&path.box_id).is_some() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

async fn remove(State(server): Shared, Path(path): Path<BoxPath>, Query(query): Query<RemoveQuery>) -> ApiResult<Response> {
    let handle = find(&server, &path.box_id)?;
    server.runtime.remove(handle.id(), query.force).await?;
    server.lifecycle.forget(handle.id());
    Ok(no_content())
}

async fn start(State(server): Shared, Path(path): Path<BoxPath>) -> ApiResult<Json<BoxBody>> {
    let handle = used(&server, &path.box_id, false)?;
    handle.start().await?;
    Ok(Json(shown(&server, handle.info())))
}

async fn stop(State(server): Shared, Path(path): Path<BoxPath>, request: axum::body::Bytes) -> ApiResult<Json<BoxBody>> {
    let request: StopBox = optional_body(&request)?;
    let handle = find(&server, &path.box_id)?;
    let seconds = request.timeout_seconds.unwrap_or(boxlite_core::DEFAULT_STOP_GRACE.as_secs_f64());
    let grace = Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|grace| *grace <= MAX_STOP_GRACE)
        .ok_or_else(|| ApiError::invalid_argument(format!("timeout_seconds must be between 0 and {} seconds; got {seconds}", MAX_STOP_GRACE.as_secs())))?;
    handle.stop_with(grace).await?;
    let info = server.runtime.get_info(handle.id()).ok_or_else(|| ApiError::from(Error::NotFound(format!("box not found: {} (removed when it stopped)", handle.id()))))?;
    Ok(Json(shown(&server, info)))
}

async fn box_metrics(State(server): Shared, Path(path): Path<BoxPath>) -> ApiResult<Json<BoxMetricsBody>> {
    Ok(Json(find(&server, &path.box_id)?.metrics()?.into()))
}

pub async fn runtime_metrics(State(server): Shared) -> Json<RuntimeMetricsBody> {
    Json(server.runtime.metrics().into())
}

async fn clone_box(State(server): Shared, Path(path): Path<BoxPath>, request: axum::body::Bytes) -> ApiResult<Response> {
    let name = optional_body::<CloneBox>(&request)?.name;
    if let Some(name) = &name {
        crate::wire::check_name(name)?;
    }
    let source = used(&server, &path.box_id, false)?;
    let clone = source.clone_box(name).await?;
    // A clone keeps its source's lifecycle, as it keeps its options.
    server.lifecycle.set(clone.id(), server.lifecycle.settings(source.id()));
    Ok(created(&server, &clone))
}

async fn create_snapshot(State(server): Shared, Path(path): Path<BoxPath>, request: Result<Json<CreateSnapshot>, JsonRejection>) -> ApiResult<Response> {
    let name = body(request)?.name;
    let snapshot = used(&server, &path.box_id, false)?.snapshot_create(&name).await?;
    Ok((StatusCode::CREATED, Json(SnapshotBody::from(snapshot))).into_response())
}

async fn list_snapshots(State(server): Shared, Path(path): Path<BoxPath>) -> ApiResult<Json<SnapshotList>> {
    let snapshots = find(&server, &path.box_id)?.snapshot_list().await?;
    Ok(Json(SnapshotList { snapshots: snapshots.into_iter().map(SnapshotBody::from).collect() }))
}

async fn get_snapshot(State(server): Shared, Path(path): Path<SnapshotPath>) -> ApiResult<Json<SnapshotBody>> {
    let snapshot = find(&server, &path.box_id)?.snapshot_get(&path.name).await?;
    snapshot.map(|snapshot| Json(snapshot.into())).ok_or_else(|| ApiError::from(Error::NotFound(format!("snapshot '{}' not found", path.name))))
}

async fn remove_snapshot(State(server): Shared, Path(path): Path<SnapshotPath>) -> ApiResult<Response> {
    find(&server, &path.box_id)?.snapshot_remove(&path.name).await?;
    Ok(no_content())
}

async fn restore_snapshot(State(server): Shared, Path(path): Path<SnapshotPath>) -> ApiResult<Response> {
    used(&server, &path.box_id, false)?.snapshot_restore(&path.name).await?;
    Ok(no_content())
}
