//! How a process ended, as Python sees it.


use boxlite_core::ExitStatus as CoreExitStatus;
use pyo3::prelude::*;



/// How a process ended.
#[pyclass(module = "boxlite._native", frozen, get_all)]
#[derive(Clone)]
pub struct ExitStatus {
    /// The exit code, or -N when signal N ended the process.
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// Set when the outcome did not come from the process itself.
    pub error_message: Option<String>,
    /// The execution's timeout ended it.
    pub timed_out: bool,
    /// `close()` ended the execution before its exit was known.
    pub forced: bool,
}

#[pymethods]
impl ExitStatus {
    #[getter]
    fn success(&self) -> bool {
        self.exit_code == 0 && self.error_message.is_none()
    }

    fn __repr__(&self) -> String {
        format!(
            "ExitStatus(exit_code={}, signal={}, timed_out={}, forced={}, error_message={})",
            self.exit_code,
            self.signal.map_or_else(|| "None".to_string(), |signal| signal.to_string()),
            if self.timed_out { "True" } else { "False" },
            if self.forced { "True" } else { "False" },
            self.error_message.as_ref().map_or_else(|| "None".to_string(), |message| format!("{message:?}")),
        )
    }
}

impl From<CoreExitStatus> for ExitStatus {
    fn from(status: CoreExitStatus) -> Self {
        Self { exit_code: status.exit_code, signal: status.signal, error_message: status.error, timed_out: status.timed_out, forced: false }
    }
}
