//! OOM risk: a process whose resident memory came within a few percent of the memory limit it
//! runs under (its cgroup's, or one above it) — the step the OOM killer would end next, found
//! before it does. Only processes holding at least [`MIN_BYTES`] are looked at, so the limit
//! is read for few of them, once each.

use super::memory_limit::Limit;
use crate::{
    config::DiagnosisSection,
    event::{Finding, FindingKind, Severity},
    present::units,
};

/// Below this, no process is near any limit worth a finding.
pub const MIN_BYTES: u64 = 16 * 1024 * 1024;

/// A finding when `rss_bytes` is at least `diagnosis.oom_risk_percent` of `limit`.
pub fn judge(rss_bytes: u64, limit: &Limit, options: &DiagnosisSection) -> Option<Finding> {
    let share = rss_bytes as f64 / limit.bytes as f64;
    if share * 100.0 < f64::from(options.oom_risk_percent) {
        return None;
    }
    let percent = (share * 1000.0).round() / 10.0;
    Some(Finding {
        kind: FindingKind::OomRisk,
        severity: Severity::Warning,
        summary: format!(
            "{} resident, {percent} % of the {} memory limit of cgroup {}: a little more and the OOM killer ends it",
            units::bytes(rss_bytes as i64),
            units::bytes(limit.bytes as i64),
            limit.cgroup
        ),
        value: percent,
        unit: "%",
        evidence: vec![
            ("rss_bytes", rss_bytes.into()),
            ("limit_bytes", limit.bytes.into()),
            ("cgroup", limit.cgroup.clone().into()),
        ],
        involved: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_the_limit_is_a_risk_and_well_below_is_not() {
        let limit = Limit {
            bytes: 128 << 20,
            cgroup: "/ci/job".into(),
        };
        let options = DiagnosisSection::default();
        let f = judge(120 << 20, &limit, &options).expect("a risk at 94 %");
        assert_eq!(f.kind, FindingKind::OomRisk);
        assert_eq!(f.value, 93.8);
        assert!(f.summary.contains("/ci/job"), "{}", f.summary);
        assert_eq!(judge(64 << 20, &limit, &options), None);
    }
}
