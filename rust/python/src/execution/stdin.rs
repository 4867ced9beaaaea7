//! An execution's standard input: the writer task and `ExecStdin`.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use boxlite_core::exec::AsyncDescriptor;
use boxlite_core::ParentOnly;
use pyo3::prelude::*;
use tokio::sync::{mpsc, oneshot};

use crate::errors;
use crate::dispatcher::Payload;

use super::{locked, Execution};

/// Where `send_input` puts data for the stdin writer task, with the sender of its outcome.
pub(super) type StdinSender = mpsc::UnboundedSender<(Vec<u8>, oneshot::Sender<std::io::Result<()>>)>;

/// The process's stdin: its pipe until the first write, then the writer task that owns it
/// (which makes the pipe async only then).
pub(super) enum Stdin {
    Idle(ParentOnly<OwnedFd>),
    Writing(StdinSender),
}

/// The process's standard input.
#[pyclass(module = "boxlite._native", frozen)]
pub struct ExecStdin {
    pub(super) execution: Py<Execution>,
}

#[pymethods]
impl ExecStdin {
    /// Writes `data`; resolves once the process's pipe took all of it. Writes keep their order.
    fn send_input<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let execution = self.execution.get();
        execution.check_open(py)?;
        let sender = execution.stdin_writer(py)?;
        let (done, written) = oneshot::channel();
        sender.send((data.to_vec(), done)).map_err(|_| errors::invalid_state(py, "stdin is closed"))?;
        execution.shared.submit(py, async move {
            match written.await {
                Ok(Ok(())) => Ok(Payload::from(())),
                Ok(Err(error)) => Err(boxlite_core::Error::Execution(format!("failed to write to stdin: {error}"))),
                Err(_) => Err(boxlite_core::Error::InvalidState("stdin is closed".to_string())),
            }
        })
    }

    /// Closes stdin: the process reads end of file once earlier writes are in. Idempotent.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        drop(locked(&self.execution.get().stdin).take());
        Execution::ready_future(py, py.None().into_bound(py))
    }

    fn is_closed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let closed = locked(&self.execution.get().stdin).is_none();
        Execution::ready_future(py, closed.into_pyobject(py)?.to_owned().into_any())
    }
}

impl Execution {
    /// The stdin writer task's sender, starting the task on the first write. Writes keep their
    /// order: they queue on one task.
    pub(super) fn stdin_writer(&self, py: Python<'_>) -> PyResult<StdinSender> {
        let mut stdin = locked(&self.stdin);
        match stdin.take() {
            None => Err(errors::invalid_state(py, "stdin is closed")),
            Some(Stdin::Writing(sender)) => {
                *stdin = Some(Stdin::Writing(sender.clone()));
                Ok(sender)
            }
            Some(Stdin::Idle(pipe)) => {
                let (sender, mut receiver) = mpsc::unbounded_channel::<(Vec<u8>, oneshot::Sender<std::io::Result<()>>)>();
                let io = Arc::clone(&self.io);
                self.shared.spawn(async move {
                    let descriptor = match AsyncDescriptor::new(pipe) {
                        Ok(descriptor) => descriptor,
                        Err(error) => {
                            while let Some((_, done)) = receiver.recv().await {
                                let _ = done.send(Err(std::io::Error::new(error.kind(), error.to_string())));
                            }
                            return;
                        }
                    };
                    while let Some((data, done)) = receiver.recv().await {
                        let written = descriptor.write_all(&data).await;
                        if written.is_ok() {
                            io.sent.fetch_add(data.len() as u64, Ordering::Relaxed);
                        }
                        let _ = done.send(written);
                    }
                });
                *stdin = Some(Stdin::Writing(sender.clone()));
                Ok(sender)
            }
        }
    }
}
