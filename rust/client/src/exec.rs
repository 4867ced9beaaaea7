//! Executions of a remote box (rules 4 and 5 of the crate): `POST …/exec` starts the process,
//! the attach WebSocket carries its output, stdin, signals, terminal size and exit, and a relay
//! task moves them between the WebSocket and the core `Execution` the caller holds.


use boxlite_core::exec::{relayed, AsyncDescriptor, Relay, RelayCommand, CHUNK_SIZE};
use boxlite_core::{Error, ExecRequest, Execution, ExitStatus, Result};
use boxlite_server::wire;
use futures_util::{SinkExt, StreamExt};
use reqwest::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use reqwest::{Method, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::boxes::RemoteBox;
use crate::{error_of, segment, unreachable, Client, SILENCE_LIMIT};

type Socket = WebSocketStream<reqwest::Upgraded>;
type Sink = futures_util::stream::SplitSink<Socket, Message>;
type Commands = tokio::sync::mpsc::UnboundedReceiver<RelayCommand>;

/// The attach frames' stream bytes: `[1][stdout]`, `[2][stderr]`.
const STDOUT_FRAME: u8 = 1;
const STDERR_FRAME: u8 = 2;
/// What a pipe holds before it is enlarged (Linux's default).
const DEFAULT_PIPE_BYTES: usize = 64 * 1024;

impl RemoteBox {
    /// Starts `request` in the box (booting it if the server allows) and attaches to it.
    pub async fn exec(&self, request: ExecRequest) -> Result<Execution> {
        self.check_usable()?;
        let tty = request.tty;
        let body = wire::Exec {
            command: request.command,
            args: request.args,
            env: request.env.into_iter().collect(),
            timeout_seconds: request.timeout.map(|timeout| timeout.as_secs_f64()),
            working_dir: request.cwd,
            user: request.user,
            tty: tty.is_some(),
            tty_rows: tty.as_ref().map(|size| size.rows),
            tty_cols: tty.as_ref().map(|size| size.cols),
            stdin: None,
        };
        let created: wire::ExecutionCreated = self.client.json(self.client.quick(Method::POST, &self.path("/exec"))?.json(&body)).await?;
        let execution_path = self.path(&format!("/executions/{}", segment(&created.execution_id)));
        let socket = match self.client.websocket(&format!("{execution_path}/attach")).await {
            Ok((socket, _)) => socket,
            Err(error) => {
                // Nobody will attach: the process goes now, not after the server's grace.
                let _ = self.client.send(self.client.quick(Method::DELETE, &execution_path)?).await;
                return Err(error);
            }
        };
        let owned = self.client.owned(&execution_path)?;
        relay(&self.client, socket, created.execution_id, Some(owned), tty.is_some())
    }

    /// Attaches to an execution the server keeps (one this or another client started), from
    /// the output it has not yet sent to anyone. Leaving it does not end it.
    pub async fn reattach(&self, execution_id: &str, stdin: bool) -> Result<Execution> {
        self.check_usable()?;
        let path = format!("{}?stdin={stdin}", self.path(&format!("/executions/{}/attach", segment(execution_id))));
        let (socket, _) = self.client.websocket(&path).await?;
        relay(&self.client, socket, execution_id.to_string(), None, true)
    }

    /// Follows the box's main process, as a local `attach` does; with `stdin`, its stdin.
    pub async fn attach(&self, stdin: bool) -> Result<Execution> {
        self.check_usable()?;
        let (socket, execution_id) = self.client.websocket(&format!("{}?stdin={stdin}", self.path("/attach"))).await?;
        let execution_id = execution_id.unwrap_or_default();
        // Leaving a followed main process never stops it: nothing to delete when dropped.
        relay(&self.client, socket, execution_id, None, true)
    }
}

impl Client {
    /// Opens the WebSocket at `path`; with the `x-boxlite-execution-id` the server named.
    async fn websocket(&self, path: &str) -> Result<(Socket, Option<String>)> {
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        let request = self
            .request(Method::GET, path)?
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, "websocket")
            .header(SEC_WEBSOCKET_VERSION, "13")
            .header(SEC_WEBSOCKET_KEY, &key);
        let response = request.send().await.map_err(unreachable)?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(error_of(response).await);
        }
        let expected = derive_accept_key(key.as_bytes());
        if response.headers().get(SEC_WEBSOCKET_ACCEPT) != HeaderValue::from_str(&expected).ok().as_ref() {
            return Err(Error::Network("the REST server answered the WebSocket handshake wrongly".to_string()));
        }
        let execution_id = response.headers().get("x-boxlite-execution-id").and_then(|value| value.to_str().ok()).map(str::to_string);
        let upgraded = response.upgrade().await.map_err(unreachable)?;
        // Output frames are up to a chunk (256 KiB) each: read them in few calls.
        let config = WebSocketConfig::default().read_buffer_size(CHUNK_SIZE * 2);
        Ok((WebSocketStream::from_raw_socket(upgraded, Role::Client, Some(config)).await, execution_id))
    }
}

/// The core `Execution` for an attached WebSocket, and the task that relays it (rule 4),
/// spawned through the client's spawner (the runtime counts it, so a closing runtime lets it
/// end its execution). `owned`: the execution to delete (killing the process) when the caller
/// drops it.
fn relay(client: &Client, socket: Socket, execution_id: String, owned: Option<Owned>, tty: bool) -> Result<Execution> {
    let (execution, relay, commands) = relayed(execution_id, tty, true)?;
    client.spawn(Box::pin(Relaying { relay, owned }.run(socket, commands)));
    Ok(execution)
}

/// An execution a relay started and ends: its URL, and what a request needs to delete it even
/// after its runtime was closed (a closing runtime ends what it started).
pub(crate) struct Owned {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
    pub(crate) token: Option<String>,
}

impl Owned {
    /// Kills and forgets the execution on the server.
    async fn delete(&self) -> Result<()> {
        let mut request = self.http.delete(&self.url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(unreachable)?;
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(error_of(response).await)
    }
}

struct Relaying {
    relay: Relay,
    owned: Option<Owned>,
}

/// What ended a relay.
enum Ending {
    /// The exit arrived, or the connection ended (the status then says how).
    Over,
    /// The caller let go of the execution first.
    Abandoned,
}

impl Relaying {
    async fn run(self, socket: Socket, mut commands: Commands) {
        let (mut sink, mut stream) = socket.split();
        let mut stdin_open = self.relay.stdin.is_some();
        let ending = loop {
            let silence = tokio::time::sleep(SILENCE_LIMIT);
            tokio::select! {
                frame = stream.next() => {
                    let delivered = match frame {
                        Some(Ok(Message::Binary(data))) => self.deliver(&data, &mut sink, &mut commands).await,
                        Some(Ok(Message::Text(text))) => {
                            self.take_note(&text);
                            Ok(())
                        }
                        Some(Ok(Message::Close(_))) | None => Err(self.lost("the REST server closed the connection before the process exited")),
                        Some(Ok(_)) => Ok(()), // pings are answered by the socket itself
                        Some(Err(error)) => Err(self.lost(&format!("the connection to the REST server failed: {error}"))),
                    };
                    if let Err(ending) = delivered {
                        break ending;
                    }
                }
                chunk = read_stdin(self.relay.stdin.as_ref()), if stdin_open => {
                    let sent = match chunk {
                        Some(bytes) => sink.send(Message::Binary(bytes.into())).await,
                        None => {
                            stdin_open = false;
                            sink.send(Message::Text(r#"{"type":"stdin_eof"}"#.into())).await
                        }
                    };
                    if sent.is_err() {
                        stdin_open = false;
                    }
                }
                command = commands.recv() => match command {
                    Some(command) => self.carry_out(command, &mut sink).await,
                    None => break Ending::Abandoned,
                },
                () = self.relay.abandoned() => break Ending::Abandoned,
                () = silence => break self.lost("the REST server went silent"),
            }
        };
        if matches!(ending, Ending::Abandoned) && !self.relay.finished() {
            self.delete().await;
        }
        let _ = sink.close().await;
    }

    /// Output for a stream, written into its pipe; the caller's commands and abandonment are
    /// still heard while the pipe is full (a caller that reads nothing holds the process back,
    /// as a pipe would, but can still kill it).
    async fn deliver(&self, data: &[u8], sink: &mut Sink, commands: &mut Commands) -> std::result::Result<(), Ending> {
        let Some((&kind, bytes)) = data.split_first() else { return Ok(()) };
        let pipe = match kind {
            STDOUT_FRAME => &self.relay.stdout,
            STDERR_FRAME => &self.relay.stderr,
            _ => return Ok(()),
        };
        if bytes.len() > DEFAULT_PIPE_BYTES {
            // The process streams: room for whole frames (a short command's pipe stays small).
            pipe.enlarge_pipe();
        }
        let write = pipe.write_all(bytes);
        tokio::pin!(write);
        loop {
            tokio::select! {
                // Nobody reads this stream any more: its output is dropped, as a closed pipe's.
                _ = &mut write => return Ok(()),
                command = commands.recv() => match command {
                    Some(command) => self.carry_out(command, sink).await,
                    None => return Err(Ending::Abandoned),
                },
                () = self.relay.abandoned() => return Err(Ending::Abandoned),
            }
        }
    }

    /// A signal goes as a text frame; SIGKILL to the whole group deletes the execution (the
    /// server kills its process group); a resize goes as a text frame.
    async fn carry_out(&self, command: RelayCommand, sink: &mut Sink) {
        match command {
            RelayCommand::Signal { signal, group, done } => {
                let result = match &self.owned {
                    Some(owned) if group && signal == libc::SIGKILL => owned.delete().await,
                    _ => {
                        let note = serde_json::json!({"type": "signal", "sig": signal}).to_string();
                        sink.send(Message::Text(note.into())).await.map_err(|error| Error::Network(format!("failed to send the signal: {error}")))
                    }
                };
                let _ = done.send(result);
            }
            RelayCommand::Resize { rows, cols } => {
                let note = serde_json::json!({"type": "resize", "rows": rows, "cols": cols}).to_string();
                let _ = sink.send(Message::Text(note.into())).await;
            }
        }
    }

    /// A text frame: the exit, or an error about something asked that could not be done.
    fn take_note(&self, text: &str) {
        #[derive(serde::Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Note {
            Exit {
                exit_code: i32,
                #[serde(default)]
                timed_out: bool,
            },
            Error {
                message: String,
            },
        }
        match serde_json::from_str::<Note>(text) {
            Ok(Note::Exit { exit_code, timed_out }) => {
                self.relay.finish(ExitStatus { exit_code, signal: (exit_code < 0).then_some(-exit_code), timed_out, error: None });
            }
            Ok(Note::Error { message }) => log::warn!(target: "boxlite", "the REST server could not do what was asked of an execution: {message}"),
            Err(_) => log::debug!(target: "boxlite", "an attach frame this client does not know was skipped"),
        }
    }

    /// The connection ended: unless the exit came first, the status says so (rule 5).
    fn lost(&self, why: &str) -> Ending {
        self.relay.finish(ExitStatus { exit_code: -1, signal: None, timed_out: false, error: Some(why.to_string()) });
        Ending::Over
    }

    async fn delete(&self) {
        if let Some(owned) = &self.owned {
            if let Err(error) = owned.delete().await {
                log::warn!(target: "boxlite", "failed to end an execution nobody holds any more: {error}");
            }
        }
    }
}

/// The next chunk the caller wrote to stdin; `None` at its end.
async fn read_stdin(stdin: Option<&AsyncDescriptor>) -> Option<Vec<u8>> {
    stdin?.read_chunk(CHUNK_SIZE).await.ok().flatten()
}
