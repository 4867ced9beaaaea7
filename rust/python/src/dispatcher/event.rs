//! What travels through the completion queue: pure Rust values, never Python objects.
//!
//! A payload becomes a Python value on its loop's thread, by converting itself ([`Deliver`]):
//! the async core never names the classes it delivers. A payload that reaches nobody is
//! released by dropping it (rule 18), outside the interpreter; payloads that own something (a
//! box made for its caller, a running execution) let go of it in their own `Drop`.

use std::sync::Arc;

use boxlite_core::ExitStatus;
use pyo3::prelude::*;
use pyo3::pyclass::PyClass;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::PyList;

use super::Shared;

pub enum Event {
    /// The result of one request. Boxed: the queue's slots are as large as the largest event.
    Complete { target: u64, result: Box<Result<Payload, boxlite_core::Error>> },
    /// The one exit of an execution (its output is read on the loop: see `execution`).
    Exit { target: u64, status: ExitStatus },
    /// How far a pull's download of one layer got (lossy: dropped when the queue is full).
    Progress { target: u64, layer: String, done: u64, total: u64 },
}

/// A value a request resolves to, on its way to the loop that awaits it.
pub trait Deliver: Send + 'static {
    /// The Python value the request's future is resolved with, made on `event_loop`'s thread
    /// (the values that act on the runtime, such as a `Box`, keep `shared`).
    fn into_python<'py>(self: Box<Self>, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>;
}

/// The result of one request: any [`Deliver`] value.
pub struct Payload(Box<dyn Deliver>);

impl<T: Deliver> From<T> for Payload {
    fn from(value: T) -> Self {
        Self(Box::new(value))
    }
}

impl Payload {
    pub fn into_python<'py>(self, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.0.into_python(shared, event_loop)
    }
}

/// A payload's value as a new object of a Python class of this module.
pub fn object<'py, T: PyClass>(event_loop: &Bound<'py, PyAny>, value: T) -> PyResult<Bound<'py, PyAny>>
where
    PyClassInitializer<T>: From<T>,
{
    Ok(Bound::new(event_loop.py(), value)?.into_any())
}

/// A payload's values as a list of new objects.
pub fn list<'py, T: PyClass>(event_loop: &Bound<'py, PyAny>, values: impl IntoIterator<Item = T>) -> PyResult<Bound<'py, PyAny>>
where
    PyClassInitializer<T>: From<T>,
{
    let py = event_loop.py();
    let items = values.into_iter().map(|value| Bound::new(py, value)).collect::<PyResult<Vec<_>>>()?;
    Ok(PyList::new(py, items)?.into_any())
}

/// A request that succeeds with nothing resolves to `None`.
impl Deliver for () {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        Ok(event_loop.py().None().into_bound(event_loop.py()))
    }
}

/// A count (e.g. of images pruned) resolves to an `int`.
impl Deliver for usize {
    fn into_python<'py>(self: Box<Self>, _shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        Ok((*self).into_pyobject(event_loop.py())?.into_any())
    }
}
