//! Executions over REST: start one (`POST …/exec`), ask how it is, signal, resize or kill it,
//! and attach to it over a WebSocket — BoxLite's frames: binary `[1|2][bytes]` for stdout and
//! stderr, `{"type":"exit","exit_code":N}` then a normal close at the end; from the client,
//! binary frames are stdin and text frames `resize`, `signal` and `stdin_eof`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::boxes::{body, find, used, BoxPath};
use crate::error::{ApiError, ApiResult};
use crate::executions::{Claim, Session};
use crate::wire::{ClientControl, Exec, ExecutionBody, ExecutionCreated, ResizeBody, SignalBody};
use crate::{no_content, Server, Shared};

/// Keeps idle connections (and the proxies between) alive, as BoxLite's server does.
const PING_EVERY: Duration = Duration::from_secs(15);
/// A client that takes no frame for this long is gone: its claim goes back.
const WRITE_LIMIT: Duration = Duration::from_secs(20);
/// Largest frame or message taken from a client (stdin comes in pieces this big at most).
const CLIENT_MESSAGE_LIMIT: usize = 1 << 20;
/// After the exit frame and our close, how long the client has to close in turn.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

pub fn routes() -> Router<Arc<Server>> {
    Router::new()
        .route("/boxes/{box_id}/exec", post(exec))
        .route("/boxes/{box_id}/executions/{execution_id}", get(status).delete(kill))
        .route("/boxes/{box_id}/executions/{execution_id}/signal", post(signal))
        .route("/boxes/{box_id}/executions/{execution_id}/resize", post(resize))
        .route("/boxes/{box_id}/executions/{execution_id}/attach", get(attach))
        .route("/boxes/{box_id}/attach", get(attach_main))
}

#[derive(Deserialize)]
struct ExecutionPath {
    box_id: String,
    execution_id: String,
}

fn session(server: &Server, path: &ExecutionPath) -> ApiResult<Arc<Session>> {
    let handle = find(server, &path.box_id)?;
    server.executions.get(handle.id(), &path.execution_id)
}

async fn exec(State(server): Shared, Path(path): Path<BoxPath>, request: Result<Json<Exec>, JsonRejection>) -> ApiResult<Response> {
    let (request, stdin) = body(request)?.request()?;
    server.executions.check_room()?;
    let handle = used(&server, &path.box_id, true)?;
    let execution = handle.exec(request).await?;
    let session = server.executions.add(handle.id().to_string(), execution, stdin)?;
    let location = format!("/v1/boxes/{}/executions/{}", session.box_id, session.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(ExecutionCreated { execution_id: session.id.clone() })).into_response())
}

async fn status(State(server): Shared, Path(path): Path<ExecutionPath>) -> ApiResult<Json<ExecutionBody>> {
    Ok(Json(session(&server, &path)?.body()))
}

async fn kill(State(server): Shared, Path(path): Path<ExecutionPath>) -> ApiResult<Response> {
    let session = session(&server, &path)?;
    server.executions.kill(&session).await?;
    Ok(no_content())
}

async fn signal(State(server): Shared, Path(path): Path<ExecutionPath>, request: Result<Json<SignalBody>, JsonRejection>) -> ApiResult<Response> {
    let signal = body(request)?.signal;
    let session = session(&server, &path)?;
    match tokio::time::timeout(Duration::from_secs(10), session.control().signal(signal)).await {
        Err(_) => Err(ApiError::timeout(format!("execution {} did not take signal {signal} within 10 s", session.id))),
        Ok(result) => {
            result?;
            Ok(no_content())
        }
    }
}

async fn resize(State(server): Shared, Path(path): Path<ExecutionPath>, request: Result<Json<ResizeBody>, JsonRejection>) -> ApiResult<Response> {
    let size = body(request)?;
    session(&server, &path)?.control().resize(size.rows, size.cols)?;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachQuery {
    stdin: Option<String>,
}

impl AttachQuery {
    /// `stdin` absent, `1` or `true`: the client may write; `0` or `false`: it only reads.
    fn writable(&self) -> ApiResult<bool> {
        match self.stdin.as_deref() {
            None | Some("1" | "true") => Ok(true),
            Some("0" | "false") => Ok(false),
            Some(other) => Err(ApiError::invalid_argument(format!("stdin must be true or false, not {other:?}"))),
        }
    }
}

/// Rule 1 of `executions`: the claim is taken before the upgrade, so a second client gets a
/// plain 409 and no socket.
async fn attach(State(server): Shared, Path(path): Path<ExecutionPath>, Query(query): Query<AttachQuery>, upgrade: WebSocketUpgrade) -> ApiResult<Response> {
    let writable = query.writable()?;
    let session = session(&server, &path)?;
    server.lifecycle.touch(&session.box_id);
    let claim = session.claim().ok_or_else(|| ApiError::from(boxlite_core::Error::InvalidState(format!("execution {} already has an attached client", session.id))))?;
    Ok(upgraded(upgrade, claim, writable, server))
}

/// The box's main process, as `box.attach()` follows it (its output from the start of its run;
/// an ended run replayed); the answer names the execution (`x-boxlite-execution-id`), which the
/// execution routes then reach.
async fn attach_main(State(server): Shared, Path(path): Path<BoxPath>, Query(query): Query<AttachQuery>, upgrade: WebSocketUpgrade) -> ApiResult<Response> {
    let writable = query.writable()?;
    server.executions.check_room()?;
    let handle = used(&server, &path.box_id, false)?;
    let session = server.executions.add_main_follower(handle.id().to_string(), handle.attach(writable).await?)?;
    let claim = session.claim().ok_or_else(|| ApiError::from(boxlite_core::Error::Internal(format!("execution {} was claimed as it was made", session.id))))?;
    let mut response = upgraded(upgrade, claim, writable, Arc::clone(&server));
    if let Ok(value) = HeaderValue::from_str(&session.id) {
        response.headers_mut().insert("x-boxlite-execution-id", value);
    }
    Ok(response)
}

fn upgraded(upgrade: WebSocketUpgrade, claim: Claim, writable: bool, server: Arc<Server>) -> Response {
    let upgrade = upgrade.max_message_size(CLIENT_MESSAGE_LIMIT).max_frame_size(CLIENT_MESSAGE_LIMIT);
    upgrade.on_upgrade(move |socket| async move { follow(socket, claim, writable, server).await })
}

/// Sends the execution's output, then its exit, to the attached client, while a reader task
/// takes the client's frames. Returns when the exit was delivered, the client went, or the
/// server shuts down; the claim goes back then.
async fn follow(socket: WebSocket, mut claim: Claim, writable: bool, server: Arc<Server>) {
    let shutdown = server.shutdown.clone();
    let (mut sink, stream) = socket.split();
    let (notes, mut notes_received) = mpsc::channel::<String>(8);
    let mut reader = AbortOnDrop(tokio::spawn(read_client(stream, Arc::clone(claim.session()), writable, notes, Arc::clone(&server))));
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    // Rule 2 of `executions`: all output goes out, then the exit. Meanwhile the client's notes,
    // pings and the server's end are served, and a client that goes ends this.
    let session = Arc::clone(claim.session());
    let mut output_done = false;
    let status = loop {
        let frame = tokio::select! {
            chunk = claim.next(), if !output_done => match chunk {
                Some(chunk) => Message::Binary(chunk.frame.into()),
                None => {
                    output_done = true;
                    continue;
                }
            },
            status = session.exit(), if output_done => break status,
            note = notes_received.recv() => match note {
                Some(note) => Message::Text(note.into()),
                // The reader ended: the client closed or went away.
                None => return,
            },
            _ = ping.tick() => Message::Ping(Vec::new().into()),
            () = shutdown.cancelled() => {
                let going = Message::Close(Some(CloseFrame { code: 1001, reason: "the server is shutting down".into() }));
                let _ = tokio::time::timeout(WRITE_LIMIT, sink.send(going)).await;
                return;
            }
        };
        if !matches!(tokio::time::timeout(WRITE_LIMIT, sink.send(frame)).await, Ok(Ok(()))) {
            return;
        }
    };
    let exit = serde_json::json!({"type": "exit", "exit_code": status.exit_code, "timed_out": status.timed_out});
    if matches!(tokio::time::timeout(WRITE_LIMIT, sink.send(Message::Text(exit.to_string().into()))).await, Ok(Ok(()))) {
        let _ = tokio::time::timeout(WRITE_LIMIT, sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() })))).await;
        let _ = tokio::time::timeout(CLOSE_WAIT, reader.finished()).await;
    }
}

/// The client's reader, stopped when the follower returns, whichever way: the stdin of a client
/// that went must not reach the process after the next one attached.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    async fn finished(&mut self) {
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Takes the client's frames: stdin, then control messages; what cannot be done becomes an
/// error note on the socket, which stays open.
async fn read_client(mut stream: futures_util::stream::SplitStream<WebSocket>, session: Arc<Session>, writable: bool, notes: mpsc::Sender<String>, server: Arc<Server>) {
    let note = |message: String| serde_json::json!({"type": "error", "message": message}).to_string();
    while let Some(Ok(message)) = stream.next().await {
        let problem = match message {
            Message::Close(_) => return,
            Message::Ping(_) | Message::Pong(_) => None,
            _ if !writable => Some("read-only attach rejected a write".to_string()),
            Message::Binary(data) if data.is_empty() => None,
            Message::Binary(data) => {
                server.lifecycle.touch(&session.box_id);
                (!session.write_stdin(data.to_vec()).await).then(|| "stdin is closed".to_string())
            }
            Message::Text(text) => match serde_json::from_str::<ClientControl>(&text) {
                Err(error) => Some(format!("bad control message: {error}")),
                Ok(ClientControl::StdinEof) => {
                    session.close_stdin();
                    None
                }
                Ok(ClientControl::Resize { cols, rows }) => session.control().resize(rows, cols).err().map(|error| error.to_string()),
                Ok(ClientControl::Signal { sig }) => session.control().signal(sig).await.err().map(|error| error.to_string()),
            },
        };
        if let Some(problem) = problem {
            if notes.send(note(problem)).await.is_err() {
                return;
            }
        }
    }
}
