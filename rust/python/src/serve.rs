//! `serve()`: the REST server (`boxlite-server`) over a runtime of its own, on a thread and a
//! tokio runtime of its own. The returned `Server` stops it; `boxlite serve` calls `stop()` from
//! its SIGINT and SIGTERM handlers (Python's: tokio's signal driver would hold a socket pair for
//! the whole process, in every program that imports boxlite).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use boxlite_core::lock;
use pyo3::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::errors;
use crate::options::Options;

/// A running `boxlite serve`; it stops when this goes away.
#[pyclass(module = "boxlite._native", frozen)]
pub struct Server {
    address: String,
    state: Arc<State>,
}

/// What the server's thread and its `Server` share.
struct State {
    shutdown: CancellationToken,
    /// `Some` once the server ended: how (an error message, if it failed).
    ended: Mutex<Option<Result<(), String>>>,
    ended_signal: Condvar,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.shutdown.cancel();
    }
}

/// A server streams output in chunks of up to 256 KiB, each a buffer of its own: above glibc's
/// starting mmap threshold (128 KiB), each would be mapped, faulted in page by page, zeroed and
/// unmapped again (a fifth of the server's CPU time at 1 GB/s). The server is a process of its
/// own (`boxlite serve`), so its allocator is told to keep such buffers on the heap and reuse
/// them.
fn keep_chunks_on_the_heap() {
    const MMAP_THRESHOLD: libc::c_int = 4 << 20;
    const TRIM_THRESHOLD: libc::c_int = 64 << 20;
    // SAFETY: mallopt only changes the allocator's tuning; it takes the allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Serves BoxLite's REST API on `host:port` over a runtime on `options`' home until stopped.
#[pyfunction]
#[pyo3(
    signature = (options, host = "127.0.0.1".to_string(), port = 8100, *, api_key = None, reconnect_grace = 300.0, retention = 300.0, upload_limit = 1 << 40),
    text_signature = "(options, host='127.0.0.1', port=8100, *, api_key=None, reconnect_grace=300.0, retention=300.0, upload_limit=1099511627776)"
)]
#[allow(clippy::too_many_arguments, reason = "the server's settings, each a keyword argument of the CLI's call")]
pub fn serve(
    py: Python<'_>,
    options: &Options,
    host: String,
    port: u16,
    api_key: Option<String>,
    reconnect_grace: f64,
    retention: f64,
    upload_limit: u64,
) -> PyResult<Server> {
    let failed = |error: boxlite_core::Error| errors::to_py(py, &error);
    let ip: IpAddr = host.parse().map_err(|_| failed(boxlite_core::Error::InvalidArgument(format!("host must be an IP address, not {host:?}"))))?;
    let seconds = |name: &str, value: f64| {
        Duration::try_from_secs_f64(value).ok().filter(|duration| !duration.is_zero()).ok_or_else(|| failed(boxlite_core::Error::InvalidArgument(format!("{name} must be a positive number of seconds"))))
    };
    let keeping = boxlite_server::Keeping { reconnect_grace: seconds("reconnect_grace", reconnect_grace)?, retention: seconds("retention", retention)? };
    crate::log_bridge::follow_python_level(py)?;
    keep_chunks_on_the_heap();
    let home = options.resolved_home();
    let registries = options.registries(py)?;
    let role = crate::runtime::program_role(py)?;
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("boxlite-serve").enable_all().build().map_err(|error| failed(boxlite_core::Error::Internal(format!("failed to start the server's runtime: {error}"))))?;
    let config = boxlite_server::ServeConfig { listen: SocketAddr::new(ip, port), api_key, scratch_dir: home.join("serve-scratch"), lifecycle_file: home.join("serve-lifecycle.json"), keeping, upload_limit };
    let started = crate::gil::detach(py, || {
        let _context = tokio.enter();
        let runtime = boxlite_core::Runtime::open(&home, registries, role)?;
        let bound = tokio.block_on(boxlite_server::bind(&config)).and_then(|listener| Ok((listener.local_addr()?, listener)));
        match bound {
            Ok((address, listener)) => Ok((runtime, address, listener)),
            Err(error) => {
                runtime.close();
                Err(boxlite_core::Error::InvalidArgument(format!("cannot listen on {}: {error}", config.listen)))
            }
        }
    });
    let (runtime, address, listener) = started.map_err(failed)?;
    log::info!("serving BoxLite's REST API on http://{address} (home {})", home.display());
    let state = Arc::new(State { shutdown: CancellationToken::new(), ended: Mutex::new(None), ended_signal: Condvar::new() });
    let running = Arc::clone(&state);
    let spawned = std::thread::Builder::new().name("boxlite-serve".to_string()).spawn(move || {
        let served = tokio.block_on(boxlite_server::serve(runtime.clone(), config, listener, running.shutdown.clone()));
        runtime.close();
        drop(tokio);
        *lock(&running.ended) = Some(served.map_err(|error| format!("the server failed: {error}")));
        running.ended_signal.notify_all();
    });
    spawned.map_err(|error| failed(boxlite_core::Error::Internal(format!("failed to start the server's thread: {error}"))))?;
    Ok(Server { address: address.to_string(), state })
}

#[pymethods]
impl Server {
    /// Where it listens ("127.0.0.1:8100").
    #[getter]
    fn address(&self) -> String {
        self.address.clone()
    }

    /// Begins a graceful stop: requests in flight finish, attached clients are closed.
    fn stop(&self) {
        self.state.shutdown.cancel();
    }

    /// Waits up to `timeout` seconds (`None`: as long as it takes) for the server to end; true
    /// once it has. A server that failed raises its error here.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let ended = crate::gil::detach(py, || {
            let (state, guard) = (&self.state, lock(&self.state.ended));
            let guard = match timeout {
                None => state.ended_signal.wait_while(guard, |ended| ended.is_none()).unwrap_or_else(PoisonError::into_inner),
                // A wait too long to count (or NaN) is a wait without end.
                Some(seconds) => match Duration::try_from_secs_f64(seconds.max(0.0)) {
                    Ok(limit) => state.ended_signal.wait_timeout_while(guard, limit, |ended| ended.is_none()).unwrap_or_else(PoisonError::into_inner).0,
                    Err(_) => state.ended_signal.wait_while(guard, |ended| ended.is_none()).unwrap_or_else(PoisonError::into_inner),
                },
            };
            guard.clone()
        });
        match ended {
            None => Ok(false),
            Some(Ok(())) => Ok(true),
            Some(Err(message)) => Err(errors::to_py(py, &boxlite_core::Error::Internal(message))),
        }
    }

    fn __repr__(&self) -> String {
        format!("Server(address={:?})", self.address)
    }
}
