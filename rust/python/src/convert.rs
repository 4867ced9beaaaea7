//! Payloads become Python values here, on the event loop's thread, when a request resolves.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::boxes::Box;
use crate::dispatcher::Shared;
use crate::event::{OwnedBox, Payload};
use crate::execution::Execution;
use crate::images::{ImageInfo, ImagePullResult};
use crate::info::{BoxInfo, BoxMetrics, RuntimeMetrics};

fn box_object<'py>(py: Python<'py>, shared: &Arc<Shared>, owned: OwnedBox) -> PyResult<Bound<'py, PyAny>> {
    Ok(Py::new(py, Box::new(shared, owned))?.into_bound(py).into_any())
}

pub fn payload_to_py<'py>(py: Python<'py>, shared: &Arc<Shared>, event_loop: &Bound<'py, PyAny>, payload: Payload) -> PyResult<Bound<'py, PyAny>> {
    Ok(match payload {
        Payload::Unit => py.None().into_bound(py),
        Payload::Box(owned) => box_object(py, shared, owned)?,
        Payload::MaybeBox(owned) => match owned {
            Some(owned) => box_object(py, shared, owned)?,
            None => py.None().into_bound(py),
        },
        Payload::BoxCreated(owned, created) => {
            let value = box_object(py, shared, owned)?;
            PyTuple::new(py, [value, created.into_pyobject(py)?.to_owned().into_any()])?.into_any()
        }
        Payload::Info(info) => match info {
            Some(info) => Py::new(py, BoxInfo::from(info))?.into_bound(py).into_any(),
            None => py.None().into_bound(py),
        },
        Payload::InfoList(infos) => {
            let items = infos.into_iter().map(|info| Py::new(py, BoxInfo::from(info))).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Payload::RuntimeMetrics(metrics) => Py::new(py, RuntimeMetrics::from(metrics))?.into_bound(py).into_any(),
        Payload::BoxMetrics(metrics) => Py::new(py, BoxMetrics::from(metrics))?.into_bound(py).into_any(),
        Payload::Execution(execution) => Execution::attach(py, shared, event_loop, execution, None)?.into_bound(py).into_any(),
        Payload::ImagePulled(record) => Py::new(py, ImagePullResult::from(&record))?.into_bound(py).into_any(),
        Payload::Images(records) => {
            let items = records.iter().map(|record| Py::new(py, ImageInfo::from(record))).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Payload::Count(count) => count.into_pyobject(py)?.into_any(),
        #[cfg(feature = "testing")]
        Payload::Tracked(tracked) => tracked.deliver().into_pyobject(py)?.into_any(),
    })
}
