//! `Boxlite.rest()`: a runtime whose boxes live on a REST server. The client is
//! `boxlite-client`; here only what Python gives it: the options, and the credential, whose
//! token Python code makes (`Credential.get_token()`).

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use boxlite_client::{Client, TokenSource};
use pyo3::prelude::*;

use crate::errors;
use crate::tasks::Tasks;

/// How long before its expiry a token is renewed.
const RENEW_BEFORE_SECONDS: f64 = 30.0;

/// A Python `Credential`'s token, renewed on the event loop's thread (tokio workers never call
/// into Python: the `gil` module's rule 1): every call on the runtime renews it when it is
/// missing or about to expire; requests read the token kept.
pub struct PyCredential {
    credential: Py<PyAny>,
    token: Mutex<Option<(String, Option<f64>)>>,
}

impl PyCredential {
    /// Renews the token if it is missing or about to expire.
    pub fn renew(&self, py: Python<'_>) -> PyResult<()> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs_f64()).unwrap_or(0.0);
        let fresh = crate::gil::lock(py, &self.token).as_ref().is_some_and(|(_, expires_at)| expires_at.is_none_or(|at| at - RENEW_BEFORE_SECONDS > now));
        if fresh {
            return Ok(());
        }
        let issued = self.credential.bind(py).call_method0("get_token")?;
        let token: String = issued.getattr("token")?.extract()?;
        let expires_at: Option<f64> = issued.getattr("expires_at")?.extract()?;
        *crate::gil::lock(py, &self.token) = Some((token, expires_at));
        Ok(())
    }
}

impl TokenSource for PyCredential {
    fn token(&self) -> boxlite_core::Result<Option<String>> {
        let kept = self.token.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match kept.as_ref() {
            Some((token, _)) => Ok(Some(token.clone())),
            None => Err(boxlite_core::Error::Config("the REST credential has given no token yet".to_string())),
        }
    }
}

/// The client for `options` (a `BoxliteRestOptions`), and its credential if it has one; its
/// background tasks run on `tasks`, counted (a closing runtime lets them end what they started).
/// Contacts nobody.
pub fn client(py: Python<'_>, options: &Bound<'_, PyAny>, tasks: &Arc<Tasks>) -> PyResult<(Client, Option<Arc<PyCredential>>)> {
    let expected = py.import("boxlite.rest")?.getattr("BoxliteRestOptions")?;
    if !options.is_instance(&expected)? {
        let given = options.get_type().name()?;
        return Err(pyo3::exceptions::PyTypeError::new_err(format!("Boxlite.rest takes a BoxliteRestOptions, not {given}")));
    }
    let url: String = options.getattr("url")?.extract()?;
    let path_prefix: Option<String> = options.getattr("path_prefix")?.extract()?;
    let credential = options.getattr("credential")?;
    let credential = (!credential.is_none()).then(|| Arc::new(PyCredential { credential: credential.unbind(), token: Mutex::new(None) }));
    let source = credential.clone().map(|credential| credential as Arc<dyn TokenSource>);
    let tasks = Arc::downgrade(tasks);
    let spawn: boxlite_client::Spawn = Arc::new(move |task| {
        // A runtime that is stopping takes no new task: the relay goes, and with it its socket.
        if let Some(tasks) = tasks.upgrade() {
            let _ = tasks.try_spawn(task);
        }
    });
    let client = Client::new(&url, path_prefix.as_deref(), source, spawn).map_err(|error| errors::to_py(py, &error))?;
    Ok((client, credential))
}
