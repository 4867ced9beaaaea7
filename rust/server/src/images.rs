//! Images: pull and list.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::boxes::body;
use crate::error::ApiResult;
use crate::wire::{ImageBody, ImageList, PullImage};
use crate::{Server, Shared};

pub fn routes() -> Router<Arc<Server>> {
    Router::new().route("/images", get(list)).route("/images/pull", post(pull))
}

async fn pull(State(server): Shared, request: Result<Json<PullImage>, JsonRejection>) -> ApiResult<Json<ImageBody>> {
    let reference = body(request)?.reference;
    Ok(Json(server.runtime.pull_image(&reference, None).await?.into()))
}

async fn list(State(server): Shared) -> ApiResult<Json<ImageList>> {
    let images = server.runtime.list_images()?.into_iter().map(ImageBody::from).collect();
    Ok(Json(ImageList { images, next_page_token: None }))
}
