//! `[run]`: how `otel-pipetrace run` ends: the grace period for descendants, the job summary,
//! and the status when the record is incomplete.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// How long `run` waits for the command's remaining descendants after it exits.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// Append the run's Markdown report to the file named by `$GITHUB_STEP_SUMMARY` (the job
    /// summary of GitHub Actions) when that variable is set.
    pub job_summary: bool,
    /// Exit with [`LOSS_EXIT_STATUS`] when the command succeeded but the record is incomplete:
    /// an event, an exit, a span, a row or an upload lost.
    pub fail_on_loss: bool,
}

/// `run`'s status when the command succeeded and `run.fail_on_loss` found something lost
/// (EX_TEMPFAIL: the record is incomplete, the run may be repeated).
pub const LOSS_EXIT_STATUS: i32 = 75;

impl Default for RunSection {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(5),
            job_summary: true,
            fail_on_loss: false,
        }
    }
}

impl RunSection {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.grace_period > Duration::from_secs(24 * 3600) {
            return Invalid::key("run.grace_period", "at most 24h".into());
        }
        Ok(())
    }
}
