//! Configuration value classes: Options (the runtime) and BoxOptions (one box).

use pyo3::prelude::*;

/// `repr()` of an optional str, as Python writes it.
pub fn python_repr(value: Option<&str>) -> String {
    value.map_or_else(|| "None".to_string(), |text| format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'")))
}

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
#[pyclass(module = "boxlite._native", get_all, set_all)]
#[derive(Clone, Default)]
pub struct BoxOptions {
    /// An image reference, or `"host://"` for the built-in image (the default).
    pub image: Option<String>,
    /// A local OCI image layout directory; wins over `image`.
    pub rootfs_path: Option<String>,
    pub cpus: Option<u8>,
    pub memory_mib: Option<u32>,
    pub working_dir: Option<String>,
    pub env: Vec<(String, String)>,
    pub auto_remove: Option<bool>,
    pub auto_stop: Option<u64>,
    pub auto_delete: Option<u64>,
    pub detach: Option<bool>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub user: Option<String>,
}

#[pymethods]
impl BoxOptions {
    #[new]
    #[pyo3(signature = (
        image = None, rootfs_path = None, cpus = None, memory_mib = None, working_dir = None,
        env = Vec::new(), auto_remove = None, auto_stop = None, auto_delete = None, detach = None,
        entrypoint = None, cmd = None, user = None
    ))]
    #[expect(clippy::too_many_arguments, reason = "mirrors BoxLite's keyword constructor")]
    fn new(
        image: Option<String>,
        rootfs_path: Option<String>,
        cpus: Option<u8>,
        memory_mib: Option<u32>,
        working_dir: Option<String>,
        env: Vec<(String, String)>,
        auto_remove: Option<bool>,
        auto_stop: Option<u64>,
        auto_delete: Option<u64>,
        detach: Option<bool>,
        entrypoint: Option<Vec<String>>,
        cmd: Option<Vec<String>>,
        user: Option<String>,
    ) -> Self {
        Self { image, rootfs_path, cpus, memory_mib, working_dir, env, auto_remove, auto_stop, auto_delete, detach, entrypoint, cmd, user }
    }

    fn __repr__(&self) -> String {
        let number = |value: Option<u32>| value.map_or_else(|| "None".to_string(), |value| value.to_string());
        format!(
            "BoxOptions(image={}, rootfs_path={}, cpus={}, memory_mib={})",
            python_repr(self.image.as_deref()),
            python_repr(self.rootfs_path.as_deref()),
            number(self.cpus.map(u32::from)),
            number(self.memory_mib)
        )
    }
}

impl BoxOptions {
    pub fn to_core(&self) -> Result<boxlite_core::BoxOptions, boxlite_core::Error> {
        if self.auto_stop.is_some() {
            return Err(boxlite_core::Error::Unsupported("auto_stop is only available on a REST runtime".to_string()));
        }
        Ok(boxlite_core::BoxOptions {
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
        })
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
