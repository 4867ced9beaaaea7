//! The user namespace of boxes: box uid and gid `n` (0 ≤ n < [`SIZE`]) are host id
//! [`HOST_BASE`] + n, so root in a box is an unprivileged host user.
//!
//! # Rules
//!
//! 1. Every box made while the host allows user namespaces gets this mapping; a box made before
//!    (its record has none) keeps running without one.
//! 2. What boxes see as theirs is owned by the shifted ids on disk: unpacked layers, the
//!    `host://` skeleton, a box's upper layer, and what `copy_in` writes. Ids past the mapping
//!    become the box's `nobody`.
//! 3. Volumes are idmapped mounts: host files owned by host root are the box root's, and what the
//!    box writes there is owned by host root.

use serde::{Deserialize, Serialize};

/// First host id of the range. Above the pools that systemd-nspawn (up to 0x6FFF0000) and the
/// usual /etc/subuid ranges (from 100000) hand out, so no other container shares it.
pub const HOST_BASE: u32 = 0x7000_0000;
/// Ids per box: uids and gids 0..65535, as in a usual Linux system.
pub const SIZE: u32 = 65_536;
/// Where ids outside the mapping land: the box's `nobody`.
const NOBODY: u32 = 65_534;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub host_base: u32,
    pub size: u32,
}

impl IdMap {
    pub const BOXES: Self = Self { host_base: HOST_BASE, size: SIZE };

    /// The host id of box id `id` (rule 2).
    pub fn host_id(self, id: u64) -> u32 {
        let inside = u32::try_from(id).ok().filter(|id| *id < self.size).unwrap_or(NOBODY);
        self.host_base + inside
    }

    /// The mapping boxes get on this host, or `None` where user namespaces are off (or turned
    /// off for boxlite with `BOXLITE_USER_NAMESPACES=0`).
    pub fn detect() -> Option<Self> {
        if std::env::var_os("BOXLITE_USER_NAMESPACES").is_some_and(|value| value == "0") {
            return None;
        }
        let limit = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").ok()?;
        (limit.trim().parse::<u64>().ok()? > 0).then_some(Self::BOXES)
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
        assert_eq!(map.host_id(0), HOST_BASE);
        assert_eq!(map.host_id(1000), HOST_BASE + 1000);
        assert_eq!(map.host_id(70_000), HOST_BASE + NOBODY);
        assert_eq!(map.host_id(u64::MAX), HOST_BASE + NOBODY);
    }
}
