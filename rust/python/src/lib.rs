//! `boxlite._native`: the Python extension. This file only declares the module and its exports;
//! see `dispatcher` for the async core and `gil` for the one place that attaches to Python.

mod asyncio;
mod backend;
mod boxes;
mod channel;
mod dispatcher;
mod errors;
mod execution;
mod gil;
mod images;
mod info;
mod keeper;
mod log_bridge;
mod options;
mod pyrepr;
mod queue;
mod registry;
mod rest;
mod runtime;
mod serve;
mod tasks;
#[cfg(feature = "testing")]
mod testing;
mod unsupported;
mod volumes;
mod watch;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
fn _native(py: Python<'_>, module: &Bound<'_, PyModule>) -> PyResult<()> {
    log_bridge::install(py)?;
    errors::resolve(py)?;
    dispatcher::resolve(py)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add("HOST_IMAGE", boxlite_core::image::HOST_IMAGE)?;
    module.add_function(wrap_pyfunction!(serve::serve, module)?)?;
    module.add_function(wrap_pyfunction!(keeper::keep_detached_networks, module)?)?;
    module.add_class::<serve::Server>()?;
    module.add_class::<runtime::Boxlite>()?;
    module.add_class::<options::Options>()?;
    module.add_class::<options::BoxOptions>()?;
    module.add_class::<options::CopyOptions>()?;
    module.add_class::<options::NetworkSpec>()?;
    module.add_class::<options::OutboundNetworkSpec>()?;
    module.add_class::<options::InboundNetworkSpec>()?;
    module.add_class::<options::AdvancedBoxOptions>()?;
    module.add_class::<options::ContainerCapabilities>()?;
    module.add_class::<options::SecurityOptions>()?;
    module.add_class::<options::HealthCheckOptions>()?;
    module.add_class::<options::Secret>()?;
    module.add_class::<options::NetworkInfo>()?;
    module.add_class::<options::OutboundNetworkInfo>()?;
    module.add_class::<options::InboundNetworkInfo>()?;
    module.add_class::<options::PublishedPort>()?;
    module.add_class::<info::HealthState>()?;
    module.add_class::<unsupported::SnapshotOptions>()?;
    module.add_class::<unsupported::ExportOptions>()?;
    module.add_class::<unsupported::CloneOptions>()?;
    module.add_class::<boxes::SnapshotHandle>()?;
    module.add_class::<boxes::SnapshotInfo>()?;
    module.add_class::<boxes::NetworkHandle>()?;
    module.add_class::<boxes::BoxTunnel>()?;
    module.add_class::<boxes::BoxConnection>()?;
    module.add_class::<boxes::SocketAddress>()?;
    module.add_class::<boxes::TunnelForwarder>()?;
    module.add_class::<volumes::VolumeHandle>()?;
    module.add_class::<volumes::VolumeInfo>()?;
    module.add_class::<info::HealthStatus>()?;
    module.add_class::<boxes::Box>()?;
    module.add_class::<execution::Execution>()?;
    module.add_class::<execution::ExecStream>()?;
    module.add_class::<execution::ExecStdin>()?;
    module.add_class::<execution::ExitStatus>()?;
    module.add_class::<images::ImageRegistry>()?;
    module.add_class::<images::ImageHandle>()?;
    module.add_class::<images::ImagePullResult>()?;
    module.add_class::<images::ImageInfo>()?;
    module.add_class::<images::ImageDetail>()?;
    module.add_class::<images::ImageVersion>()?;
    module.add_class::<images::ImageAliasEvent>()?;
    module.add_class::<info::BoxInfo>()?;
    module.add_class::<info::BoxStateInfo>()?;
    module.add_class::<info::RuntimeMetrics>()?;
    module.add_class::<info::BoxMetrics>()?;
    #[cfg(feature = "testing")]
    {
        // Not in `__all__`: the stub, which describes the release build, has no such name.
        let testing = testing::module(py)?;
        module.setattr("_testing", &testing)?;
        py.import("sys")?.getattr("modules")?.set_item("boxlite._native._testing", testing)?;
    }
    Ok(())
}
