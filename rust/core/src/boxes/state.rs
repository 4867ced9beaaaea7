//! A box's lifecycle states and what each allows. Every verb checks its guard here and refuses
//! with an invalid-state error naming the status; starting a running box is the one documented
//! no-op.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxStatus {
    /// Created; never booted.
    Configured,
    Running,
    /// Transient, while `stop()` runs.
    Stopping,
    /// The box's processes are gone; its writable layer is kept.
    Stopped,
    /// Booting failed; it can be started again or removed.
    Failed,
    Unknown,
}

impl BoxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Configured => "configured",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }

    pub fn can_start(self) -> bool {
        matches!(self, Self::Configured | Self::Stopped | Self::Failed)
    }

    pub fn can_stop(self) -> bool {
        matches!(self, Self::Running)
    }

    pub fn can_remove(self) -> bool {
        matches!(self, Self::Configured | Self::Stopped | Self::Failed | Self::Unknown)
    }

    /// Exec boots a configured or stopped box on the way.
    pub fn can_exec(self) -> bool {
        matches!(self, Self::Configured | Self::Running | Self::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::BoxStatus::*;

    #[test]
    fn guards_match_the_reference_state_machine() {
        let all = [Configured, Running, Stopping, Stopped, Failed, Unknown];
        let start: Vec<_> = all.iter().filter(|status| status.can_start()).collect();
        assert_eq!(start, [&Configured, &Stopped, &Failed]);
        let remove: Vec<_> = all.iter().filter(|status| status.can_remove()).collect();
        assert_eq!(remove, [&Configured, &Stopped, &Failed, &Unknown]);
        assert!(Running.can_stop() && !Stopping.can_stop());
        assert!(Stopped.can_exec() && !Stopping.can_exec());
    }
}
