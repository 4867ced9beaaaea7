//! Errors on the wire: every failure is BoxLite's envelope `{"error": {"message", "type",
//! "code"}}` with the status of its kind (the request's id is in the `X-Request-Id` header). The
//! one mapping from the core's error kinds to HTTP lives here; clients map `code` back.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use boxlite_core::Error;

/// A failed request: its status, BoxLite's `type` and `code`, and the message the user reads.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, code, message: message.into() }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::from(Error::InvalidArgument(message.into()))
    }

    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AuthError", "unauthenticated", "invalid or missing API key")
    }

    pub fn forbidden(message: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "PermissionError", "permission_denied", message)
    }

    pub fn execution_not_found(execution_id: &str) -> Self {
        Self::from(Error::NotFound(format!("execution not found: {execution_id}")))
    }

    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeError", "payload_too_large", format!("the upload is larger than this server's limit of {limit} bytes"))
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "TimeoutError", "timeout", message)
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let (status, kind, code) = match &error {
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "NotFoundError", "not_found"),
            Error::AlreadyExists(_) => (StatusCode::CONFLICT, "AlreadyExistsError", "already_exists"),
            Error::InvalidState(_) => (StatusCode::CONFLICT, "InvalidStateError", "invalid_state"),
            Error::Stopped(_) => (StatusCode::CONFLICT, "StoppedError", "stopped"),
            Error::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "InvalidArgumentError", "invalid_argument"),
            Error::Unsupported(_) => (StatusCode::BAD_REQUEST, "UnsupportedError", "unsupported"),
            Error::ResourceExhausted(_) => (StatusCode::TOO_MANY_REQUESTS, "ResourceExhaustedError", "resource_exhausted"),
            Error::Image(_) => (StatusCode::UNPROCESSABLE_ENTITY, "ImageError", "image_pull_failed"),
            Error::Execution(_) => (StatusCode::UNPROCESSABLE_ENTITY, "ExecutionError", "execution_failed"),
            Error::Config(_) => (StatusCode::INTERNAL_SERVER_ERROR, "ConfigError", "config_error"),
            Error::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "StorageError", "storage_error"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "internal"),
            Error::Engine(_) => (StatusCode::SERVICE_UNAVAILABLE, "EngineError", "engine_unavailable"),
            Error::Network(_) => (StatusCode::SERVICE_UNAVAILABLE, "NetworkError", "network_unavailable"),
        };
        Self::new(status, kind, code, error.to_string())
    }
}

/// The inverse of the mapping above, for clients: the core's error for an envelope's `code`
/// and `message` (the message without the prefix the kind's display adds again). A code this
/// side does not know is an internal error that keeps it.
pub fn error_from_code(status: u16, code: &str, message: &str) -> Error {
    let kind: fn(String) -> Error = match code {
        "not_found" => Error::NotFound,
        "already_exists" => Error::AlreadyExists,
        "invalid_state" => Error::InvalidState,
        "stopped" => Error::Stopped,
        "invalid_argument" => Error::InvalidArgument,
        "unsupported" => Error::Unsupported,
        "resource_exhausted" => Error::ResourceExhausted,
        "image_pull_failed" => Error::Image,
        "execution_failed" => Error::Execution,
        "config_error" => Error::Config,
        "storage_error" => Error::Storage,
        "internal" => Error::Internal,
        "engine_unavailable" => Error::Engine,
        "network_unavailable" => Error::Network,
        "unauthenticated" | "permission_denied" => return Error::Config(format!("the REST server refused the credential ({status} {code}): {message}")),
        "payload_too_large" => return Error::InvalidArgument(message.to_string()),
        "timeout" => return Error::Engine(format!("the REST server timed out: {message}")),
        _ => return Error::Internal(format!("the REST server answered {status} {code}: {message}")),
    };
    let prefix = kind(String::new()).to_string();
    kind(message.strip_prefix(prefix.as_str()).unwrap_or(message).to_string())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"message": self.message, "type": self.kind, "code": self.code}});
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

/// Longest plain-text error body taken into an envelope's message.
const PLAIN_ERROR_LIMIT: usize = 4096;

/// Every error answer is an envelope: those the framework makes itself (a query or path that
/// does not parse, a method a route lacks, a failed WebSocket upgrade) come as plain text, and
/// are wrapped here with the code of their status.
pub async fn envelope(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let bodiless = request.method() == axum::http::Method::HEAD;
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response.headers().get(axum::http::header::CONTENT_TYPE).is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json || bodiless {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), PLAIN_ERROR_LIMIT).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&body).trim().to_string();
    let (kind, code) = match status {
        StatusCode::NOT_FOUND => ("NotFoundError", "not_found"),
        StatusCode::CONFLICT => ("InvalidStateError", "invalid_state"),
        StatusCode::PAYLOAD_TOO_LARGE => ("PayloadTooLargeError", "payload_too_large"),
        status if status.is_server_error() => ("InternalError", "internal"),
        _ => ("InvalidArgumentError", "invalid_argument"),
    };
    let message = if message.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { message };
    ApiError::new(status, kind, code, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_keeps_its_message_and_gets_a_code() {
        let error = ApiError::from(Error::NotFound("box x".to_string()));
        assert_eq!((error.status, error.code, error.message.as_str()), (StatusCode::NOT_FOUND, "not_found", "not found: box x"));
        let error = ApiError::from(Error::Stopped("box y".to_string()));
        assert_eq!((error.status, error.kind), (StatusCode::CONFLICT, "StoppedError"));
    }

    #[test]
    fn a_client_gets_back_the_error_the_server_mapped() {
        for error in [Error::NotFound("box x".to_string()), Error::Stopped("y".to_string()), Error::Engine("z".to_string()), Error::ResourceExhausted("w".to_string())] {
            let wire = ApiError::from(error.clone());
            assert_eq!(error_from_code(wire.status.as_u16(), wire.code, &wire.message).to_string(), error.to_string());
        }
        let refused = ApiError::unauthenticated();
        assert!(matches!(error_from_code(401, refused.code, &refused.message), Error::Config(_)));
        assert!(matches!(error_from_code(418, "teapot", "short and stout"), Error::Internal(message) if message.contains("teapot")));
    }
}
