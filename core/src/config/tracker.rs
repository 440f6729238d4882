//! `[tracker]`: how long ended processes are remembered, and the sweep for lost exits.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSection {
    /// How long an ended process is remembered, for children and events that arrive late.
    #[serde(with = "humantime_serde")]
    pub retain_ended: Duration,
    /// At most this many ended processes are remembered.
    pub max_ended: usize,
    /// How often live processes are checked against /proc for lost exit records (0 = never).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

impl Default for TrackerSection {
    fn default() -> Self {
        Self {
            retain_ended: Duration::from_secs(10),
            max_ended: 16_384,
            sweep_interval: Duration::from_secs(30),
        }
    }
}

impl TrackerSection {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.max_ended == 0 {
            return Invalid::key("tracker.max_ended", "must be at least 1".into());
        }
        Ok(())
    }
}
