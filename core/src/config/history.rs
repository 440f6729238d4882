//! `[history]`: how a step is judged against its own past runs — the baseline `query baseline`
//! shows, what `query regressions`, `compare --baseline-runs` and the run's summary call slower
//! than usual, and what `query flaky` calls flaky.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySection {
    /// A step's baseline: its last this many runs (of the same pipeline).
    pub baseline_runs: u32,
    /// The history queries look at each pipeline's last this many runs (the baseline of the
    /// earliest ones included): a change older than that is the step's normal by now.
    pub lookback_runs: u32,
    /// Slower than usual: above the baseline's median by more than this many robust standard
    /// deviations (1.4826 × the median absolute deviation)...
    pub regression_spread: f64,
    /// ...and by more than this share of the median, in percent...
    pub regression_min_percent: f64,
    /// ...and by more than this.
    #[serde(with = "humantime_serde")]
    pub regression_min_time: Duration,
    /// Without commits to tell, a step is flaky when its outcome changes between consecutive
    /// runs at least this often, in percent of its runs (and it both passed and failed twice).
    pub flaky_flip_percent: f64,
    /// `run` compares each step with its baseline in its summary (local history only).
    pub summary: bool,
}

impl Default for HistorySection {
    fn default() -> Self {
        Self {
            baseline_runs: 20,
            lookback_runs: 500,
            regression_spread: 3.0,
            regression_min_percent: 10.0,
            regression_min_time: Duration::from_millis(100),
            flaky_flip_percent: 20.0,
            summary: true,
        }
    }
}

/// Fewer earlier runs than this make no baseline: the median and spread of two or three runs
/// say little.
pub const MIN_BASELINE_RUNS: u32 = 5;

impl HistorySection {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if !(MIN_BASELINE_RUNS..=10_000).contains(&self.baseline_runs) {
            return Invalid::key(
                "history.baseline_runs",
                format!("from {MIN_BASELINE_RUNS} to 10000 runs"),
            );
        }
        if self.lookback_runs < self.baseline_runs + 1 || self.lookback_runs > 1_000_000 {
            return Invalid::key(
                "history.lookback_runs",
                "more than history.baseline_runs, at most 1000000".into(),
            );
        }
        let finite = |key: &str, v: f64, max: f64| {
            if v.is_finite() && (0.0..=max).contains(&v) {
                Ok(())
            } else {
                Invalid::key(key, format!("a number from 0 to {max}"))
            }
        };
        finite("history.regression_spread", self.regression_spread, 100.0)?;
        finite(
            "history.regression_min_percent",
            self.regression_min_percent,
            10_000.0,
        )?;
        finite("history.flaky_flip_percent", self.flaky_flip_percent, 100.0)?;
        if self.regression_min_time > Duration::from_secs(24 * 3600) {
            return Invalid::key("history.regression_min_time", "at most 24h".into());
        }
        Ok(())
    }
}
