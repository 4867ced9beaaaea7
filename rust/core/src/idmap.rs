//! The user namespace of boxes: box uid and gid `n` (0 ≤ n < 65536) are host id 0x7000_0000 + n
//! ([`IdMap::BOXES`]), so root in a box is an unprivileged host user.
//!
//! # Rules
//!
//! 1. Every box made while the host allows user namespaces gets this mapping; a box made before
//!    (its record has none) keeps running without one.
//! 2. What boxes see as theirs is owned by the shifted ids on disk: unpacked layers, the
//!    `host://` skeleton, a box's upper layer, and what `copy_in` writes. Ids past the mapping
//!    become the box's `nobody`.
//! 3. Read-only volumes are idmapped mounts: host files owned by host root read as the box
//!    root's. Writable volumes are not (box root would write as host root there): box root
//!    writes to them as its host id, so their directory must be writable by it.

use serde::{Deserialize, Serialize};

/// Where ids outside the mapping land: the box's `nobody`.
const NOBODY: u32 = 65_534;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub host_base: u32,
    pub size: u32,
}

impl IdMap {
    pub const BOXES: Self = Self { host_base: boxlite_protocol::IdMap::BOXES.host_base, size: boxlite_protocol::IdMap::BOXES.size };

    /// The host id of box id `id` (rule 2).
    pub fn host_id(self, id: u64) -> u32 {
        let inside = u32::try_from(id).ok().filter(|id| *id < self.size).unwrap_or(NOBODY);
        self.host_base + inside
    }

    /// The mapping boxes get on this host, or `None` where a user namespace with it cannot be
    /// made (user namespaces off, or a runtime that runs in a user namespace without these
    /// ids), or where `BOXLITE_USER_NAMESPACES=0` turns them off. The shim tries it for real.
    pub fn detect(shim: &std::path::Path) -> Option<Self> {
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
            Ok(status) if status.success() => Some(Self::BOXES),
            _ => {
                log::info!("boxes run without a user namespace: this host cannot map their ids");
                None
            }
        }
    }
}

impl From<IdMap> for boxlite_protocol::IdMap {
    fn from(map: IdMap) -> Self {
        Self { host_base: map.host_base, size: map.size }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_shift_into_the_range_and_strays_become_nobody() {
        let map = IdMap::BOXES;
        let base = map.host_base;
        assert_eq!(map.host_id(0), base);
        assert_eq!(map.host_id(1000), base + 1000);
        assert_eq!(map.host_id(70_000), base + NOBODY);
        assert_eq!(map.host_id(u64::MAX), base + NOBODY);
    }
}
