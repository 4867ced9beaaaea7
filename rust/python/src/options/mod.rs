//! Configuration value classes: Options (the runtime), BoxOptions (one box) and its parts.

mod advanced;
mod network;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

pub use advanced::{AdvancedBoxOptions, ContainerCapabilities, HealthCheckOptions, Secret, SecurityOptions};
pub use network::{InboundNetworkInfo, InboundNetworkSpec, NetworkInfo, NetworkSpec, OutboundNetworkInfo, OutboundNetworkSpec, PublishedPort};
use network::PortSpec;

use crate::pyrepr::python_repr;

/// Runtime options.
#[pyclass(module = "boxlite._native", get_all, set_all)]
pub struct Options {
    /// The runtime's home directory; `None` means `$BOXLITE_HOME`, else `~/.boxlite`.
    pub home_dir: Option<String>,
    pub image_registries: Vec<Py<PyAny>>,
}

#[pymethods]
impl Options {
    #[new]
    #[pyo3(signature = (home_dir = None, image_registries = Vec::new()))]
    fn new(home_dir: Option<String>, image_registries: Vec<Py<PyAny>>) -> Self {
        Self { home_dir, image_registries }
    }

    fn __repr__(&self) -> String {
        format!("Options(home_dir={}, image_registries=<{} registries>)", python_repr(self.home_dir.as_deref()), self.image_registries.len())
    }
}

impl Options {
    pub fn clone_ref(&self, py: Python<'_>) -> Self {
        Self { home_dir: self.home_dir.clone(), image_registries: self.image_registries.iter().map(|registry| registry.clone_ref(py)).collect() }
    }

    /// The registries as the core takes them; anything but an `ImageRegistry` is a TypeError.
    pub fn registries(&self, py: Python<'_>) -> PyResult<Vec<boxlite_core::RegistryConfig>> {
        self.image_registries
            .iter()
            .map(|registry| {
                let registry = registry.bind(py).cast::<crate::images::ImageRegistry>().map_err(PyErr::from)?;
                let registry = registry.try_borrow()?;
                Ok(registry.to_core())
            })
            .collect()
    }

    pub fn resolved_home(&self) -> std::path::PathBuf {
        if let Some(home) = self.home_dir.as_ref().filter(|home| !home.is_empty()) {
            return home.into();
        }
        if let Some(home) = std::env::var_os("BOXLITE_HOME").filter(|home| !home.is_empty()) {
            return home.into();
        }
        let user_home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        std::path::PathBuf::from(user_home).join(".boxlite")
    }
}

/// How to make one box. Every field reads back as given; `None` means the runtime's default.
/// Options this engine cannot honour are refused by `create()` with `UnsupportedError`.
#[pyclass(module = "boxlite._native")]
#[derive(Default)]
pub struct BoxOptions {
    /// An image reference, or `"host://"` for the built-in image (the default).
    #[pyo3(get, set)]
    pub image: Option<String>,
    /// A local OCI image layout directory; wins over `image`.
    #[pyo3(get, set)]
    pub rootfs_path: Option<String>,
    #[pyo3(get, set)]
    pub cpus: Option<u8>,
    #[pyo3(get, set)]
    pub memory_mib: Option<u32>,
    #[pyo3(get, set)]
    pub disk_size_gb: Option<u64>,
    #[pyo3(get, set)]
    pub working_dir: Option<String>,
    #[pyo3(get, set)]
    pub env: Vec<(String, String)>,
    volumes: Vec<VolumeSpec>,
    #[pyo3(get, set)]
    pub network: Option<NetworkSpec>,
    ports: Vec<PortSpec>,
    #[pyo3(get, set)]
    pub auto_remove: Option<bool>,
    #[pyo3(get, set)]
    pub auto_stop: Option<u64>,
    #[pyo3(get, set)]
    pub auto_delete: Option<u64>,
    #[pyo3(get, set)]
    pub auto_resume: Option<bool>,
    #[pyo3(get, set)]
    pub detach: Option<bool>,
    #[pyo3(get, set)]
    pub entrypoint: Option<Vec<String>>,
    #[pyo3(get, set)]
    pub cmd: Option<Vec<String>>,
    #[pyo3(get, set)]
    pub user: Option<String>,
    #[pyo3(get, set)]
    pub tty: Option<bool>,
    #[pyo3(get, set)]
    pub advanced: Option<Py<AdvancedBoxOptions>>,
    #[pyo3(get, set)]
    pub secrets: Vec<Secret>,
}

/// One `volumes` entry as given: a host path (or a `volume://` name), its path in the box.
#[derive(Clone, Debug)]
struct VolumeSpec {
    host: String,
    guest: String,
    read_only: bool,
}

/// The value of the first of `names` present in `entry` (BoxLite accepts several spellings).
fn dict_field<'py>(entry: &Bound<'py, PyDict>, names: &[&str]) -> PyResult<Option<Bound<'py, PyAny>>> {
    for name in names {
        if let Some(value) = entry.get_item(name)? {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

fn parse_volume(entry: &Bound<'_, PyAny>) -> PyResult<VolumeSpec> {
    let flag = |value: Bound<'_, PyAny>| -> PyResult<bool> {
        if !value.is_instance_of::<PyBool>() {
            let kind = value.get_type().name()?;
            return Err(PyTypeError::new_err(format!("'{kind}' object cannot be cast as 'bool'")));
        }
        value.extract()
    };
    if let Ok(entry) = entry.cast::<PyTuple>() {
        if !(2..=3).contains(&entry.len()) {
            return Err(PyRuntimeError::new_err("volumes tuples must be (host, guest[, read_only])"));
        }
        let read_only = if entry.len() == 3 { flag(entry.get_item(2)?)? } else { false };
        return Ok(VolumeSpec { host: entry.get_item(0)?.extract()?, guest: entry.get_item(1)?.extract()?, read_only });
    }
    if let Ok(entry) = entry.cast::<PyDict>() {
        let field = |names: &[&str]| dict_field(entry, names);
        let host = field(&["host", "host_path", "source"])?.ok_or_else(|| PyRuntimeError::new_err("a volumes dict needs 'host' (or 'host_path', or a 'volume://' 'source')"))?;
        let guest = field(&["guest", "guest_path"])?.ok_or_else(|| PyRuntimeError::new_err("a volumes dict needs 'guest' (or 'guest_path')"))?;
        let read_only = field(&["read_only", "ro"])?.map(flag).transpose()?.unwrap_or(false);
        return Ok(VolumeSpec { host: host.extract()?, guest: guest.extract()?, read_only });
    }
    Err(PyRuntimeError::new_err("volumes entries must be tuple or dict"))
}

fn parse_port(entry: &Bound<'_, PyAny>) -> PyResult<PortSpec> {
    let protocol = |value: Option<Bound<'_, PyAny>>| -> PyResult<String> {
        let text: Option<String> = value.map(|value| value.extract()).transpose()?;
        Ok(if text.is_some_and(|text| text.eq_ignore_ascii_case("udp")) { "udp" } else { "tcp" }.to_string())
    };
    if let Ok(entry) = entry.cast::<PyTuple>() {
        if !(2..=4).contains(&entry.len()) {
            return Err(PyRuntimeError::new_err("ports tuples must be (host, guest[, protocol[, host_ip]])"));
        }
        return Ok(PortSpec {
            host_port: entry.get_item(0)?.extract()?,
            guest_port: entry.get_item(1)?.extract()?,
            protocol: protocol(entry.get_item(2).ok())?,
            host_ip: entry.get_item(3).ok().map(|value| value.extract()).transpose()?,
        });
    }
    if let Ok(entry) = entry.cast::<PyDict>() {
        let field = |names: &[&str]| dict_field(entry, names);
        let guest = field(&["guest_port", "guest"])?.ok_or_else(|| PyRuntimeError::new_err("a ports dict needs 'guest_port'"))?;
        return Ok(PortSpec {
            host_port: field(&["host_port", "host"])?.map(|value| value.extract()).transpose()?.flatten(),
            guest_port: guest.extract()?,
            protocol: protocol(field(&["protocol"])?)?,
            host_ip: field(&["host_ip"])?.map(|value| value.extract()).transpose()?.flatten(),
        });
    }
    Err(PyRuntimeError::new_err("ports entries must be tuple or dict"))
}

fn parse_all<T>(entries: Option<&Bound<'_, PyAny>>, parse: fn(&Bound<'_, PyAny>) -> PyResult<T>) -> PyResult<Vec<T>> {
    let Some(entries) = entries.filter(|entries| !entries.is_none()) else { return Ok(Vec::new()) };
    if entries.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("expected a list of entries, not a str"));
    }
    entries.try_iter()?.map(|entry| parse(&entry?)).collect()
}

#[pymethods]
impl BoxOptions {
    #[new]
    #[pyo3(signature = (
        image = None, rootfs_path = None, cpus = None, memory_mib = None, disk_size_gb = None, working_dir = None,
        env = Vec::new(), volumes = None, network = None, ports = None, auto_remove = None, auto_stop = None,
        auto_delete = None, auto_resume = None, detach = None, entrypoint = None, cmd = None, user = None, tty = None,
        advanced = None, secrets = Vec::new()
    ))]
    #[expect(clippy::too_many_arguments, reason = "mirrors BoxLite's keyword constructor")]
    fn new(
        image: Option<String>,
        rootfs_path: Option<String>,
        cpus: Option<u8>,
        memory_mib: Option<u32>,
        disk_size_gb: Option<u64>,
        working_dir: Option<String>,
        env: Vec<(String, String)>,
        volumes: Option<&Bound<'_, PyAny>>,
        network: Option<NetworkSpec>,
        ports: Option<&Bound<'_, PyAny>>,
        auto_remove: Option<bool>,
        auto_stop: Option<u64>,
        auto_delete: Option<u64>,
        auto_resume: Option<bool>,
        detach: Option<bool>,
        entrypoint: Option<Vec<String>>,
        cmd: Option<Vec<String>>,
        user: Option<String>,
        tty: Option<bool>,
        advanced: Option<Py<AdvancedBoxOptions>>,
        secrets: Vec<Secret>,
    ) -> PyResult<Self> {
        Ok(Self {
            image,
            rootfs_path,
            cpus,
            memory_mib,
            disk_size_gb,
            working_dir,
            env,
            volumes: parse_all(volumes, parse_volume)?,
            network,
            ports: parse_all(ports, parse_port)?,
            auto_remove,
            auto_stop,
            auto_delete,
            auto_resume,
            detach,
            entrypoint,
            cmd,
            user,
            tty,
            advanced,
            secrets,
        })
    }

    /// `(host, guest, read_only)` for each volume.
    #[getter]
    fn volumes(&self) -> Vec<(String, String, bool)> {
        self.volumes.iter().map(|volume| (volume.host.clone(), volume.guest.clone(), volume.read_only)).collect()
    }

    #[setter]
    fn set_volumes(&mut self, volumes: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.volumes = parse_all(volumes, parse_volume)?;
        Ok(())
    }

    /// `(host_port, guest_port, protocol, host_ip)` for each published port.
    #[getter]
    fn ports(&self) -> Vec<(Option<u16>, u16, String, Option<String>)> {
        self.ports.iter().map(|port| (port.host_port, port.guest_port, port.protocol.clone(), port.host_ip.clone())).collect()
    }

    #[setter]
    fn set_ports(&mut self, ports: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.ports = parse_all(ports, parse_port)?;
        Ok(())
    }

    fn __repr__(&self) -> String {
        let number = |value: Option<u32>| value.map_or_else(|| "None".to_string(), |value| value.to_string());
        format!(
            "BoxOptions(image={}, rootfs_path={}, cpus={}, memory_mib={}, advanced={})",
            python_repr(self.image.as_deref()),
            python_repr(self.rootfs_path.as_deref()),
            number(self.cpus.map(u32::from)),
            number(self.memory_mib),
            if self.advanced.is_some() { "true" } else { "false" }
        )
    }
}

impl BoxOptions {
    /// The options for a box of `backend`: the core's, and BoxLite's lifecycle knobs, which
    /// only a REST server keeps.
    pub fn for_backend(&self, py: Python<'_>, backend: &crate::backend::Backend) -> Result<(boxlite_core::BoxOptions, boxlite_client::Lifecycle), boxlite_core::Error> {
        match backend {
            crate::backend::Backend::Local(_) => Ok((self.to_core(py)?, boxlite_client::Lifecycle::default())),
            crate::backend::Backend::Remote(_) => Ok((self.shared_options(py)?, boxlite_client::Lifecycle { auto_stop: self.auto_stop, auto_resume: self.auto_resume })),
        }
    }

    /// The core's options for a local box, or why this engine cannot make such a box.
    pub fn to_core(&self, py: Python<'_>) -> Result<boxlite_core::BoxOptions, boxlite_core::Error> {
        use boxlite_core::Error::Unsupported;
        if self.auto_stop.is_some() {
            return Err(Unsupported("auto_stop is only available on a REST runtime".to_string()));
        }
        if self.auto_resume == Some(true) {
            return Err(Unsupported("auto_resume is only available on a REST runtime".to_string()));
        }
        self.shared_options(py)
    }

    /// The core's options, for a box of either kind of runtime.
    fn shared_options(&self, py: Python<'_>) -> Result<boxlite_core::BoxOptions, boxlite_core::Error> {
        // BoxLite's default: outbound traffic, to anywhere the policy allows.
        let network = self.network.as_ref().map_or_else(|| Ok(Some(Vec::new())), NetworkSpec::to_core)?;
        let ports = self.ports.iter().map(PortSpec::to_core).collect::<Result<Vec<_>, _>>()?;
        let volumes = self
            .volumes
            .iter()
            .map(|volume| {
                let named = volume.host.strip_prefix(boxlite_core::volumes::SCHEME).map(str::to_string);
                if let Some(name) = &named {
                    boxlite_core::volumes::check_name(name)?;
                }
                let host_path = if named.is_some() { std::path::PathBuf::new() } else { volume.host.clone().into() };
                Ok(boxlite_core::Volume { host_path, guest_path: volume.guest.clone(), read_only: volume.read_only, named })
            })
            .collect::<Result<Vec<_>, boxlite_core::Error>>()?;
        let mut options = boxlite_core::BoxOptions {
            image: self.image.clone(),
            rootfs_path: self.rootfs_path.clone(),
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            working_dir: self.working_dir.clone(),
            env: self.env.clone(),
            auto_remove: self.auto_remove,
            auto_delete: self.auto_delete,
            detach: self.detach,
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
            user: self.user.clone(),
            tty: self.tty == Some(true),
            volumes,
            disk_size_gb: self.disk_size_gb,
            network,
            ports,
            secrets: self.secrets.iter().map(Secret::to_core).collect(),
            ..Default::default()
        };
        if let Some(advanced) = &self.advanced {
            advanced.borrow(py).apply(py, &mut options)?;
        }
        Ok(options)
    }
}

/// How `copy_in`/`copy_out` treat directories, existing files and symlinks.
#[pyclass(module = "boxlite._native", get_all, set_all)]
#[derive(Clone, Copy)]
pub struct CopyOptions {
    pub recursive: bool,
    pub overwrite: bool,
    pub follow_symlinks: bool,
}

#[pymethods]
impl CopyOptions {
    #[new]
    #[pyo3(signature = (recursive = true, overwrite = true, follow_symlinks = false))]
    fn new(recursive: bool, overwrite: bool, follow_symlinks: bool) -> Self {
        Self { recursive, overwrite, follow_symlinks }
    }

    fn __repr__(&self) -> String {
        let flag = |value: bool| if value { "True" } else { "False" };
        format!("CopyOptions(recursive={}, overwrite={}, follow_symlinks={})", flag(self.recursive), flag(self.overwrite), flag(self.follow_symlinks))
    }
}

impl CopyOptions {
    pub fn to_core(options: Option<&Self>) -> boxlite_core::files::CopyOptions {
        options.map_or_else(boxlite_core::files::CopyOptions::default, |options| boxlite_core::files::CopyOptions {
            recursive: options.recursive,
            overwrite: options.overwrite,
            follow_symlinks: options.follow_symlinks,
        })
    }
}
