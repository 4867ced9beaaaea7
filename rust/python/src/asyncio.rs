//! The few asyncio operations the binding needs, in one leaf module: the running loop, and
//! resolving a future only if nobody did (a done future is left alone, so a late resolver is
//! never an error on the loop).

use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `asyncio.get_running_loop()`: raises RuntimeError("no running event loop") outside a loop.
pub fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let function = GET_RUNNING_LOOP.get_or_try_init(py, || {
        py.import("asyncio").and_then(|module| module.getattr("get_running_loop")).map(Bound::unbind)
    })?;
    function.bind(py).call0()
}

pub fn set_exception(py: Python<'_>, future: &Bound<'_, PyAny>, error: PyErr) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    future.call_method1("set_exception", (error.into_value(py),))?;
    Ok(())
}

pub fn set_result(future: &Bound<'_, PyAny>, value: Bound<'_, PyAny>) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    future.call_method1("set_result", (value,))?;
    Ok(())
}

type DeferredWork = Box<dyn for<'py> FnOnce(Python<'py>, Option<&Bound<'py, PyAny>>) + Send + Sync>;

/// A piece of Rust work scheduled on an event loop (or run as a done-callback, which passes
/// the finished future).
#[pyclass(module = "boxlite._native", frozen)]
pub struct Deferred {
    work: Mutex<Option<DeferredWork>>,
}

impl Deferred {
    pub fn new(work: impl FnOnce(Python<'_>) + Send + Sync + 'static) -> Self {
        Self { work: Mutex::new(Some(Box::new(move |py, _| work(py)))) }
    }

    pub fn new_with_arg(work: impl for<'py> FnOnce(Python<'py>, &Bound<'py, PyAny>) + Send + Sync + 'static) -> Self {
        Self {
            work: Mutex::new(Some(Box::new(move |py, argument| {
                if let Some(argument) = argument {
                    work(py, argument);
                }
            }))),
        }
    }
}

#[pymethods]
impl Deferred {
    #[pyo3(signature = (*arguments))]
    fn __call__(&self, py: Python<'_>, arguments: &Bound<'_, pyo3::types::PyTuple>) {
        let work = self.work.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(work) = work {
            let first = arguments.get_item(0).ok();
            work(py, first.as_ref());
        }
    }
}
