//! Executions a client started over REST, kept by the server between requests: their output
//! waits (bounded, so a process that outruns its client waits on its pipe) for the one attached
//! client, their stdin is written in order, and their exit stays known for a while after.
//!
//! Rules (docs/serve.md):
//! 1. One attached client at a time: attaching claims the output; the claim goes back when
//!    the client goes, and the next attach continues with what was not yet sent (nothing is
//!    sent twice; output already on its way to a client that went away goes with it).
//! 2. All of an execution's output reaches the client before its exit frame.
//! 3. Nobody attached for `reconnect_grace`: the execution is killed and forgotten (a follower
//!    of the box's main process is only forgotten). Ended and unattached for `retention`:
//!    forgotten, or sooner, the longest ended first, when [`MAX_KEPT`] are kept and another
//!    comes. Killed through the API: forgotten at once.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxlite_core::exec::{AsyncDescriptor, IoCounters};
use boxlite_core::ParentOnly;
use boxlite_core::{lock, Execution, ExecutionControl, ExitStatus};
use tokio::sync::{mpsc, watch};

use crate::error::{ApiError, ApiResult};
use crate::wire::ExecutionBody;

/// Output chunks held for a client before the process waits on its pipe.
const OUTPUT_CHUNKS: usize = 16;
/// Stdin chunks held before the client's frames wait for the process to read.
const STDIN_CHUNKS: usize = 16;
/// What a pipe holds before it is enlarged (Linux's default).
const DEFAULT_PIPE_BYTES: usize = 64 * 1024;
/// How long a kill may take to be acknowledged by the box's init.
pub const KILL_LIMIT: Duration = Duration::from_secs(10);
/// Executions kept at most (running, or ended and within their retention).
const MAX_KEPT: usize = 4096;
/// How long output may still come once the process ended (from what it left running).
const QUIET_AFTER_EXIT: Duration = Duration::from_millis(200);

/// A chunk of output as its attach frame: the channel it came on (1 stdout, 2 stderr), then
/// the bytes.
pub struct Chunk {
    pub frame: Vec<u8>,
}

/// How long executions are kept (rule 3).
#[derive(Debug, Clone, Copy)]
pub struct Keeping {
    pub reconnect_grace: Duration,
    pub retention: Duration,
}

pub struct Session {
    pub id: String,
    pub box_id: String,
    started_at: String,
    began: Instant,
    control: ExecutionControl,
    /// Held so the execution stays wanted while the server keeps it.
    _execution: Execution,
    /// Shared with the task that sees the exit, which closes it: an ended process reads no
    /// more, and its pipe is let go.
    stdin: Arc<Mutex<Option<mpsc::Sender<Vec<u8>>>>>,
    /// Rule 1: `None` while a client is attached.
    output: Mutex<Option<mpsc::Receiver<Chunk>>>,
    exit: watch::Receiver<Option<(ExitStatus, Instant)>>,
    killed: AtomicBool,
    /// A follower of the box's main process (`GET …/attach`): the process is the box's, not the
    /// client's, so going unattached forgets the follower and never kills the process.
    follows_main: bool,
    /// Since when nobody is attached; `None` while someone is.
    unattached_since: Mutex<Option<Instant>>,
}

impl Session {
    /// Takes over a started execution: its output is read from now on, into the bounded queue.
    fn start(box_id: String, mut execution: Execution, stdin_text: Option<String>, follows_main: bool) -> ApiResult<Arc<Self>> {
        let register = |fd: Option<ParentOnly<OwnedFd>>| fd.map(AsyncDescriptor::new).transpose().map_err(|error| ApiError::from(boxlite_core::Error::Internal(format!("failed to watch an execution's stream: {error}"))));
        let stdout = register(execution.stdout.take())?;
        let stderr = register(execution.stderr.take())?;
        let stdin = register(execution.stdin.take())?;
        let control = execution.control();
        let (output_sender, output) = mpsc::channel(OUTPUT_CHUNKS);
        let pumps = [(1, stdout), (2, stderr)].map(|(channel, stream)| tokio::spawn(pump(channel, stream, output_sender.clone(), Arc::clone(&execution.io), control.clone())));
        drop(output_sender);
        let stdin = stdin.map(|stdin| {
            let (sender, receiver) = mpsc::channel(STDIN_CHUNKS);
            tokio::spawn(feed(stdin, receiver, Arc::clone(&execution.io)));
            if let Some(text) = stdin_text {
                // Rule: text given with the request is all the stdin there is.
                let _ = sender.try_send(text.into_bytes());
                return None;
            }
            Some(sender)
        });
        let stdin = Arc::new(Mutex::new(stdin.flatten()));
        let (exit_sender, exit) = watch::channel(None);
        let (ending, stdin_to_close) = (control.clone(), Arc::clone(&stdin));
        tokio::spawn(async move {
            for pump in pumps {
                let _ = pump.await;
            }
            let status = ending.wait().await;
            lock(&stdin_to_close).take();
            exit_sender.send_replace(Some((status, Instant::now())));
        });
        Ok(Arc::new(Self {
            id: execution.id.clone(),
            box_id,
            started_at: boxlite_core::clock::now().0,
            began: Instant::now(),
            control,
            _execution: execution,
            stdin,
            output: Mutex::new(Some(output)),
            exit,
            killed: AtomicBool::new(false),
            follows_main,
            unattached_since: Mutex::new(Some(Instant::now())),
        }))
    }

    pub fn control(&self) -> &ExecutionControl {
        &self.control
    }

    /// Rule 1: the output, for the one client attaching; `None` if one is attached.
    pub fn claim(self: &Arc<Self>) -> Option<Claim> {
        // Attached before the output is taken, so the reaper never sees a taken output unattached;
        // if another client holds it, attached is true anyway.
        *lock(&self.unattached_since) = None;
        let output = lock(&self.output).take()?;
        Some(Claim { session: Arc::clone(self), output: Some(output) })
    }

    /// Stdin for the process, in order; `false` once stdin was closed.
    pub async fn write_stdin(&self, data: Vec<u8>) -> bool {
        let sender = lock(&self.stdin).clone();
        match sender {
            Some(sender) => sender.send(data).await.is_ok(),
            None => false,
        }
    }

    /// Closes the process's stdin once what was written before has been delivered.
    pub fn close_stdin(&self) {
        lock(&self.stdin).take();
    }

    pub async fn exit(&self) -> ExitStatus {
        let mut exit = self.exit.clone();
        let ended = exit.wait_for(Option::is_some).await.ok().and_then(|ended| ended.clone());
        ended.map(|(status, _)| status).unwrap_or_else(|| self.control.try_status().unwrap_or(ExitStatus { exit_code: -1, signal: None, timed_out: false, error: Some("the execution's end was lost".to_string()) }))
    }

    pub fn body(&self) -> ExecutionBody {
        let ended = self.exit.borrow().clone();
        let (status, exit_code, duration_ms, error_message) = match ended {
            None => ("running", None, None, None),
            Some((status, at)) => {
                let state = if status.timed_out {
                    "timed_out"
                } else if self.killed.load(Ordering::Acquire) {
                    "killed"
                } else {
                    "completed"
                };
                (state, Some(status.exit_code), Some(at.duration_since(self.began).as_millis() as u64), status.error)
            }
        };
        ExecutionBody { execution_id: self.id.clone(), status: status.to_string(), exit_code, started_at: self.started_at.clone(), duration_ms, error_message }
    }
}

/// Rule 1: an attached client's hold on the output; dropping it gives the output back.
pub struct Claim {
    session: Arc<Session>,
    output: Option<mpsc::Receiver<Chunk>>,
}

impl Claim {
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The next chunk; `None` once the process's output has all been taken (rule 2).
    pub async fn next(&mut self) -> Option<Chunk> {
        self.output.as_mut()?.recv().await
    }
}

impl Drop for Claim {
    /// The time first, then the output: a client that claims in between must find itself
    /// attached, not the reaper's.
    fn drop(&mut self) {
        *lock(&self.session.unattached_since) = Some(Instant::now());
        *lock(&self.session.output) = self.output.take();
    }
}

/// Reads one output stream into the queue, counting its bytes in the box's metrics. It ends at
/// the end of the stream, or once the process has ended and the stream stayed quiet for
/// [`QUIET_AFTER_EXIT`]: a child the process left running may hold the stream open for good, and
/// the exit must still be told (rule 2 holds: what was read goes out before the exit). What
/// such a child writes later is read and dropped, so it neither blocks nor gets EPIPE.
async fn pump(channel: u8, stream: Option<AsyncDescriptor>, sender: mpsc::Sender<Chunk>, io: Arc<IoCounters>, control: ExecutionControl) {
    let Some(stream) = stream else { return };
    let mut enlarged = false;
    let header = [channel];
    loop {
        let quiet_after_exit = async {
            control.wait().await;
            tokio::time::sleep(QUIET_AFTER_EXIT).await;
        };
        let frame = tokio::select! {
            biased;
            read = stream.read_chunk_after(&header, boxlite_core::exec::CHUNK_SIZE) => match read {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(_) => return,
            },
            () = quiet_after_exit => {
                tokio::spawn(async move {
                    while let Ok(Some(chunk)) = stream.read_chunk(boxlite_core::exec::CHUNK_SIZE).await {
                        io.received.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                });
                return;
            }
        };
        // A read that filled a default pipe: the process streams, give it room (fewer, larger
        // frames); a short command's pipe stays small.
        let read = frame.len() - 1;
        if !enlarged && read >= DEFAULT_PIPE_BYTES {
            stream.enlarge_pipe();
            enlarged = true;
        }
        io.received.fetch_add(read as u64, Ordering::Relaxed);
        if sender.send(Chunk { frame }).await.is_err() {
            return;
        }
    }
}

/// Writes the client's stdin to the process in order, counting it in the box's metrics.
async fn feed(stdin: AsyncDescriptor, mut chunks: mpsc::Receiver<Vec<u8>>, io: Arc<IoCounters>) {
    while let Some(chunk) = chunks.recv().await {
        if stdin.write_all(&chunk).await.is_err() {
            return;
        }
        io.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
}

/// The server's executions, by id.
pub struct Executions {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    keeping: Keeping,
}

impl Executions {
    pub fn new(keeping: Keeping) -> Self {
        Self { sessions: Mutex::new(HashMap::new()), keeping }
    }

    /// Whether another execution may be kept (each holds up to [`OUTPUT_CHUNKS`] of output).
    /// At [`MAX_KEPT`], ended executions nobody is attached to are forgotten early, the
    /// longest ended first, to make room (rule 3); only running or attached ones refuse it.
    pub fn check_room(&self) -> ApiResult<()> {
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_KEPT {
            let mut ended: Vec<(Instant, String)> = sessions
                .values()
                .filter(|session| lock(&session.unattached_since).is_some())
                .filter_map(|session| session.exit.borrow().as_ref().map(|(_, at)| (*at, session.id.clone())))
                .collect();
            ended.sort_unstable();
            let over = sessions.len() + 1 - MAX_KEPT;
            for (_, id) in ended.into_iter().take(over) {
                sessions.remove(&id);
            }
        }
        if sessions.len() >= MAX_KEPT {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "ResourceExhaustedError",
                "resource_exhausted",
                format!("the server keeps {MAX_KEPT} executions already; attach to them or wait for them to end"),
            ));
        }
        Ok(())
    }

    pub fn add(&self, box_id: String, execution: Execution, stdin: Option<String>) -> ApiResult<Arc<Session>> {
        self.keep(Session::start(box_id, execution, stdin, false)?)
    }

    /// A follower of the box's main process (rule 3 forgets it, never kills the process).
    pub fn add_main_follower(&self, box_id: String, execution: Execution) -> ApiResult<Arc<Session>> {
        self.keep(Session::start(box_id, execution, None, true)?)
    }

    fn keep(&self, session: Arc<Session>) -> ApiResult<Arc<Session>> {
        lock(&self.sessions).insert(session.id.clone(), Arc::clone(&session));
        Ok(session)
    }

    /// The execution `execution_id` of box `box_id` (an id under another box is not found).
    pub fn get(&self, box_id: &str, execution_id: &str) -> ApiResult<Arc<Session>> {
        lock(&self.sessions).get(execution_id).filter(|session| session.box_id == box_id).cloned().ok_or_else(|| ApiError::execution_not_found(execution_id))
    }

    /// Whether an execution the server keeps still runs in box `box_id`.
    pub fn running_in(&self, box_id: &str) -> bool {
        lock(&self.sessions).values().any(|session| session.box_id == box_id && session.exit.borrow().is_none())
    }

    /// SIGKILL to the execution's process group; then it is forgotten (rule 3).
    pub async fn kill(&self, session: &Arc<Session>) -> ApiResult<()> {
        session.killed.store(true, Ordering::Release);
        match tokio::time::timeout(KILL_LIMIT, session.control.kill()).await {
            Err(_) => return Err(ApiError::timeout(format!("execution {} did not take the kill within {KILL_LIMIT:?}", session.id))),
            Ok(result) => result?,
        }
        lock(&self.sessions).remove(&session.id);
        Ok(())
    }

    /// Rule 3, once: kills what nobody came back to, forgets what ended long enough ago.
    pub async fn reap(&self) {
        let now = Instant::now();
        let mut abandoned = Vec::new();
        lock(&self.sessions).retain(|_, session| {
            let Some(since) = *lock(&session.unattached_since) else { return true };
            let ended = session.exit.borrow().as_ref().map(|(_, at)| *at);
            match ended {
                Some(at) => now.duration_since(at.max(since)) < self.keeping.retention,
                None if now.duration_since(since) >= self.keeping.reconnect_grace => {
                    if !session.follows_main {
                        abandoned.push(Arc::clone(session));
                    }
                    false
                }
                None => true,
            }
        });
        for session in abandoned {
            log::info!("execution {} of box {}: nobody attached for {:?}, killing it", session.id, session.box_id, self.keeping.reconnect_grace);
            session.killed.store(true, Ordering::Release);
            let _ = tokio::time::timeout(KILL_LIMIT, session.control.kill()).await;
        }
    }

    /// Every kept execution is killed (the server is going away and nobody can reach them).
    pub async fn kill_all(&self) {
        let sessions: Vec<_> = lock(&self.sessions).drain().map(|(_, session)| session).collect();
        for session in sessions.into_iter().filter(|session| !session.follows_main) {
            if session.control.try_status().is_none() {
                let _ = tokio::time::timeout(KILL_LIMIT, session.control.kill()).await;
            }
        }
    }
}
