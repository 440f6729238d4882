//! `[diagnosis]`: which verdicts the agent draws from the samples and `/proc`, and the
//! thresholds behind each. Every finding can be turned off.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Invalid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiagnosisSection {
    /// Resident memory growing steadily over a process's life.
    pub memory_leak: bool,
    /// The growth must span at least this long...
    #[serde(with = "humantime_serde")]
    pub leak_min_duration: Duration,
    /// ...add at least this many bytes...
    pub leak_min_growth_bytes: u64,
    /// ...and fit a straight line at least this well (R², 0..1).
    pub leak_min_fit: f64,
    /// A live process with no CPU progress, blocked on something that does not move either.
    pub hang: bool,
    /// No CPU progress for this long before a process is looked at.
    #[serde(with = "humantime_serde")]
    pub hang_after: Duration,
    /// Traced processes waiting on each other in a cycle (found among the stalled ones).
    pub deadlock: bool,
    /// A core kept busy with no I/O at all.
    pub runaway: bool,
    /// For this long...
    #[serde(with = "humantime_serde")]
    pub runaway_after: Duration,
    /// ...at or above this share of one core, in percent.
    pub runaway_cpu_percent: u32,
    /// Resident memory near the memory limit the process runs under (its cgroup's)...
    pub oom_risk: bool,
    /// ...at or above this share of it, in percent.
    pub oom_risk_percent: u32,
    /// A program starting itself, one inside the other...
    pub fork_explosion: bool,
    /// ...this many levels deep.
    pub fork_depth: u32,
    /// Processes outside the run busy while the run's steps waited for a CPU: the run's steps
    /// waited at least this long in all...
    pub noisy_neighbour: bool,
    #[serde(with = "humantime_serde")]
    pub neighbour_min_wait: Duration,
    /// ...while processes outside the run used at least this share of the machine, in percent.
    pub neighbour_min_share_percent: u32,
    /// The run against the runner it ran on (undersized, oversized), for runs this long...
    pub runner_size: bool,
    #[serde(with = "humantime_serde")]
    pub runner_min_duration: Duration,
    /// ...undersized: every core busy for at least this share of the run, in percent...
    pub undersized_cpu_percent: u32,
    /// ...or memory at `oom_risk_percent` of the limit for at least this share of it;
    pub undersized_memory_percent: u32,
    /// ...oversized: at least this many cores, of which (and of whose memory) the run never
    /// used more than `oversized_max_percent`.
    pub oversized_min_cores: u32,
    pub oversized_max_percent: u32,
}

impl Default for DiagnosisSection {
    fn default() -> Self {
        Self {
            memory_leak: true,
            leak_min_duration: Duration::from_secs(10),
            leak_min_growth_bytes: 32 * 1024 * 1024,
            leak_min_fit: 0.9,
            hang: true,
            hang_after: Duration::from_secs(120),
            deadlock: true,
            runaway: true,
            runaway_after: Duration::from_secs(300),
            runaway_cpu_percent: 90,
            oom_risk: true,
            oom_risk_percent: 90,
            fork_explosion: true,
            fork_depth: 50,
            noisy_neighbour: true,
            neighbour_min_wait: Duration::from_secs(10),
            neighbour_min_share_percent: 25,
            runner_size: true,
            runner_min_duration: Duration::from_secs(60),
            undersized_cpu_percent: 50,
            undersized_memory_percent: 10,
            oversized_min_cores: 4,
            oversized_max_percent: 25,
        }
    }
}

impl DiagnosisSection {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if !(0.0..=1.0).contains(&self.leak_min_fit) {
            return Invalid::key(
                "diagnosis.leak_min_fit",
                format!(
                    "{} is out of range: an R² between 0 and 1",
                    self.leak_min_fit
                ),
            );
        }
        if self.leak_min_duration < Duration::from_secs(1) {
            return Invalid::key("diagnosis.leak_min_duration", "at least 1s".into());
        }
        if self.hang_after < Duration::from_secs(1) {
            return Invalid::key("diagnosis.hang_after", "at least 1s".into());
        }
        if self.runaway_after < Duration::from_secs(1) {
            return Invalid::key("diagnosis.runaway_after", "at least 1s".into());
        }
        if self.fork_depth < 2 {
            return Invalid::key(
                "diagnosis.fork_depth",
                format!("{} is too small: at least 2 levels", self.fork_depth),
            );
        }
        if self.runner_min_duration < Duration::from_secs(1) {
            return Invalid::key("diagnosis.runner_min_duration", "at least 1s".into());
        }
        // Shares, each with the range that makes sense for it and what it is a share of.
        for (key, value, lowest, of) in [
            (
                "runaway_cpu_percent",
                self.runaway_cpu_percent,
                1,
                " (percent of one core)",
            ),
            (
                "oom_risk_percent",
                self.oom_risk_percent,
                50,
                " (percent of the memory limit)",
            ),
            (
                "neighbour_min_share_percent",
                self.neighbour_min_share_percent,
                1,
                " (percent)",
            ),
            (
                "undersized_cpu_percent",
                self.undersized_cpu_percent,
                1,
                " (percent)",
            ),
            (
                "undersized_memory_percent",
                self.undersized_memory_percent,
                1,
                " (percent)",
            ),
            (
                "oversized_max_percent",
                self.oversized_max_percent,
                1,
                " (percent)",
            ),
        ] {
            if !(lowest..=100).contains(&value) {
                return Invalid::key(
                    &format!("diagnosis.{key}"),
                    format!("{value} is out of range: {lowest}..=100{of}"),
                );
            }
        }
        if self.oversized_min_cores == 0 {
            return Invalid::key(
                "diagnosis.oversized_min_cores",
                "0 is too small: at least 1 core".into(),
            );
        }
        Ok(())
    }
}
