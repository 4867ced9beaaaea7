//! A box's persistent record: `boxes/<id>/box.json`, written atomically (write + rename).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use boxlite_protocol::ProcessLimits;

use super::options::Volume;
use super::state::BoxStatus;
use crate::error::{Error, Result};
use crate::idmap::IdMap;
use crate::image::PreparedImage;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoxRecord {
    pub id: String,
    pub name: Option<String>,
    /// The image as the user gave it (reference, layout path, or `host://`).
    pub image: String,
    pub status: BoxStatus,
    /// RFC 3339 with nanoseconds.
    pub created_at: String,
    pub created_at_nanos: u128,
    pub started_at: Option<String>,
    pub init_pid: Option<i32>,
    pub cpus: u8,
    pub memory_mib: u32,
    /// Delete the box when it stops (`auto_remove`, or `auto_delete > 0`).
    pub remove_on_stop: bool,
    pub detach: bool,
    pub working_dir: Option<String>,
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub prepared: PreparedImage,
    /// The box's main process (entrypoint + cmd), run on every start; `None` for a box that
    /// only runs what is exec'd in it.
    #[serde(default)]
    pub main: Option<Vec<String>>,
    /// The user chose the main command, so nothing may start the box implicitly (it would run
    /// the command as a side effect).
    #[serde(default)]
    pub main_chosen: bool,
    /// How the main process of the last run ended.
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Capability numbers box processes keep.
    #[serde(default = "default_capabilities")]
    pub capabilities: Vec<u32>,
    #[serde(default = "default_pids_limit")]
    pub pids_limit: u64,
    #[serde(default)]
    pub process_limits: ProcessLimits,
    /// The box's user namespace; records from before user namespaces have none.
    #[serde(default)]
    pub id_map: Option<IdMap>,
}

fn default_capabilities() -> Vec<u32> {
    boxlite_protocol::DEFAULT_CAPABILITIES.iter().filter_map(|name| boxlite_protocol::capability_number(name)).collect()
}

fn default_pids_limit() -> u64 {
    crate::cgroups::DEFAULT_PIDS_LIMIT
}

impl BoxRecord {
    pub fn save(&self, box_dir: &Path) -> Result<()> {
        let path = box_dir.join("box.json");
        let staging = box_dir.join(".box.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|error| Error::Internal(format!("cannot encode box record: {error}")))?;
        fs_err::write(&staging, bytes)?;
        fs_err::rename(&staging, &path)?;
        Ok(())
    }

    pub fn load(box_dir: &Path) -> Result<Self> {
        let path = box_dir.join("box.json");
        let bytes = fs_err::read(&path)?;
        serde_json::from_slice(&bytes).map_err(|error| Error::Storage(format!("corrupt box record {}: {error}", path.display())))
    }
}

pub fn now() -> (String, u128) {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (rfc3339(since_epoch.as_secs(), since_epoch.subsec_nanos()), since_epoch.as_nanos())
}

/// Formats a UTC timestamp as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn+00:00`.
pub fn rfc3339(seconds: u64, nanos: u32) -> String {
    let days = seconds / 86_400;
    let time = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let shifted = days as i64 + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}+00:00",
        time / 3600,
        (time % 3600) / 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000+00:00");
        assert_eq!(rfc3339(1_795_870_540, 289_582_752), "2026-11-28T12:55:40.289582752+00:00");
        assert_eq!(rfc3339(951_782_400, 1), "2000-02-29T00:00:00.000000001+00:00");
    }
}
