//! Health checks: while a box with a [`HealthCheck`] runs, the runtime asks its init, every
//! `interval`, whether it answers (a `Ping` on a connection of its own, within `timeout`), and
//! keeps the outcome for `BoxInfo`. Failures in the first `start_period` of a run do not count;
//! after `retries` failures in a row the box is unhealthy, and one answer makes it healthy again.
//! A box that does not run has no health (`none`: `BoxEntry::info` says so).

use std::sync::Weak;
use std::time::{Duration, Instant};

use boxlite_protocol::{Reply, Request};
use serde::{Deserialize, Serialize};

use super::{lock, BoxEntry};
use crate::error::{Error, Result};
use crate::exec::fd::Packet;
use crate::exec::Connector;

/// A box's health check schedule, as its options set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl HealthCheck {
    pub fn validate(&self) -> Result<()> {
        if self.interval.is_zero() || self.timeout.is_zero() || self.retries == 0 {
            return Err(Error::InvalidArgument(format!(
                "a health check needs an interval and a timeout of at least a second and at least one retry, got interval={}s timeout={}s retries={}",
                self.interval.as_secs(),
                self.timeout.as_secs(),
                self.retries
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthState {
    /// No check runs: the box has none, or does not run.
    #[default]
    None,
    /// Running, not yet answered a check.
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthStatus {
    pub state: HealthState,
    /// Failed checks in a row.
    pub failures: u32,
    /// When the last check ended (RFC 3339).
    pub last_check: Option<String>,
}

impl HealthStatus {
    /// The outcome of one check: `answered` or not, `in_start_period` or after it, at `now`.
    fn record(&mut self, check: &HealthCheck, answered: bool, in_start_period: bool, now: String) {
        self.last_check = Some(now);
        if answered {
            self.failures = 0;
            self.state = HealthState::Healthy;
        } else if !in_start_period {
            self.failures += 1;
            if self.failures >= check.retries {
                self.state = HealthState::Unhealthy;
            }
        }
    }
}

/// Checks one run of the box in `entry` until `run_ended` resolves or the box goes.
pub(super) async fn watch(entry: Weak<BoxEntry>, connector: std::sync::Arc<Connector>, check: HealthCheck, run_ended: impl std::future::Future<Output = ()>) {
    let began = Instant::now();
    tokio::pin!(run_ended);
    loop {
        tokio::select! {
            () = &mut run_ended => break,
            () = tokio::time::sleep(check.interval) => {}
        }
        let answered = tokio::time::timeout(check.timeout, ping(&connector)).await.unwrap_or(false);
        let Some(entry) = entry.upgrade() else { return };
        let in_start_period = began.elapsed() < check.start_period;
        lock(&entry.health).record(&check, answered, in_start_period, crate::clock::now().0);
    }
}

/// Whether the init answers a `Ping` on a connection of its own.
async fn ping(connector: &Connector) -> bool {
    let Ok(socket) = connector.connect() else { return false };
    if socket.send(&Request::Ping, &[]).await.is_err() {
        return false;
    }
    matches!(socket.recv().await, Ok(Packet::Reply(Reply::Done, _)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK: HealthCheck = HealthCheck { interval: Duration::from_secs(1), timeout: Duration::from_secs(1), retries: 2, start_period: Duration::from_secs(5) };

    #[test]
    fn failures_count_after_the_start_period_and_one_answer_heals() {
        let mut status = HealthStatus { state: HealthState::Starting, ..HealthStatus::default() };
        status.record(&CHECK, false, true, "t1".to_string());
        assert_eq!((status.state, status.failures), (HealthState::Starting, 0), "not counted while starting");
        status.record(&CHECK, false, false, "t2".to_string());
        assert_eq!((status.state, status.failures), (HealthState::Starting, 1));
        status.record(&CHECK, false, false, "t3".to_string());
        assert_eq!((status.state, status.failures, status.last_check.as_deref()), (HealthState::Unhealthy, 2, Some("t3")));
        status.record(&CHECK, true, false, "t4".to_string());
        assert_eq!((status.state, status.failures), (HealthState::Healthy, 0));
        status.record(&CHECK, false, false, "t5".to_string());
        assert_eq!((status.state, status.failures), (HealthState::Healthy, 1), "one failure of two allowed");
    }

    #[test]
    fn a_check_needs_a_schedule() {
        assert!(CHECK.validate().is_ok());
        for bad in [HealthCheck { retries: 0, ..CHECK }, HealthCheck { interval: Duration::ZERO, ..CHECK }, HealthCheck { timeout: Duration::ZERO, ..CHECK }] {
            assert!(matches!(bad.validate(), Err(Error::InvalidArgument(_))));
        }
    }
}
