//! The user namespace of boxes: box uid and gid `n` (0 ≤ n < 65536) are host id 0x7000_0000 + n
//! (`boxlite_protocol::IdMap::BOXES`), so root in a box is an unprivileged host user.
//!
//! # Rules
//!
//! 1. Every box made while the host allows user namespaces gets this mapping; a box made before
//!    (its record has none) keeps running without one.
//! 2. What boxes see as theirs is owned by the shifted ids on disk (`IdMap::host_id`): unpacked
//!    layers, the `host://` skeleton, a box's upper layer, and what `copy_in` writes. Ids past
//!    the mapping become the box's `nobody`.
//! 3. Read-only volumes are idmapped mounts: host files owned by host root read as the box
//!    root's. Writable volumes are not (box root would write as host root there): box root
//!    writes to them as its host id, so their directory must be writable by it.

pub use boxlite_protocol::IdMap;

/// The mapping boxes get on this host, or `None` where a user namespace with it cannot be made
/// (user namespaces off, or a runtime that runs in a user namespace without these ids), or
/// where `BOXLITE_USER_NAMESPACES=0` turns them off. The shim tries it for real.
pub fn detect(shim: &std::path::Path) -> Option<IdMap> {
    if std::env::var_os("BOXLITE_USER_NAMESPACES").is_some_and(|value| value == "0") {
        return None;
    }
    let probe = std::process::Command::new(shim)
        .arg(boxlite_protocol::PROBE_USER_NAMESPACE)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match probe {
        Ok(status) if status.success() => Some(IdMap::BOXES),
        _ => {
            log::info!("boxes run without a user namespace: this host cannot map their ids");
            None
        }
    }
}
