//! Runaway: a process that keeps at least `diagnosis.runaway_cpu_percent` of a core busy for
//! `diagnosis.runaway_after` while making no read, write, send or receive call and starting no
//! child — a loop that makes no progress (a shell `while :`, a recursion that never returns).
//! A busy build step reads, writes or forks as it goes.

use super::history::{Counters, History};
use crate::{
    config::DiagnosisSection,
    event::{Finding, FindingKind, Severity},
    present::units,
};

/// Moves the busy window on by one sample; a finding once it is long enough. A window goes on
/// while the process makes no I/O call and starts no child, and keeps at least half the
/// threshold in every interval (a step sharing its core with others dips); it is a runaway
/// when its average over the whole window reaches the threshold.
pub fn judge(h: &mut History, now: &Counters, options: &DiagnosisSection) -> Option<Finding> {
    let last = h.last?;
    let dt = now.at_ns.saturating_sub(last.at_ns);
    if dt == 0 {
        return None;
    }
    let threshold = f64::from(options.runaway_cpu_percent) / 100.0;
    let interval_share = now.cpu_ns.saturating_sub(last.cpu_ns) as f64 / dt as f64;
    // Without the kernel's I/O counters, no I/O cannot be shown: nothing is judged.
    let quiet = matches!((now.io_calls, last.io_calls), (Some(a), Some(b)) if a == b)
        && now.children == last.children;
    if interval_share < threshold / 2.0 || !quiet {
        h.busy_since = None;
        return None;
    }
    let (since, cpu_then) = *h.busy_since.get_or_insert((last.at_ns, last.cpu_ns));
    let busy_ns = now.at_ns.saturating_sub(since);
    let busy_s = busy_ns as f64 / 1e9;
    let share = now.cpu_ns.saturating_sub(cpu_then) as f64 / busy_ns.max(1) as f64;
    if busy_s < options.runaway_after.as_secs_f64()
        || share < threshold
        || h.has_found(FindingKind::Runaway)
    {
        return None;
    }
    let percent = (share * 100.0).round();
    Some(Finding {
        kind: FindingKind::Runaway,
        severity: Severity::Warning,
        summary: format!(
            "{percent:.0} % of a core for {} with no I/O call, no network use and no child started",
            units::duration(busy_s)
        ),
        value: (busy_s * 10.0).round() / 10.0,
        unit: "s",
        evidence: vec![
            ("busy_s", ((busy_s * 1000.0).round() / 1000.0).into()),
            ("cpu_percent", percent.into()),
            ("io_calls", now.io_calls.unwrap_or(0).into()),
            ("children", now.children.into()),
        ],
        involved: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn options() -> DiagnosisSection {
        DiagnosisSection {
            runaway_after: std::time::Duration::from_secs(5),
            ..Default::default()
        }
    }

    /// Feeds `n` one-second samples with `cpu` ns of CPU each and `io` calls each.
    fn feed(h: &mut History, n: u64, cpu: u64, io: u64) -> Option<Finding> {
        let mut found = None;
        for _ in 0..n {
            let last = h.last.unwrap_or(Counters {
                at_ns: 0,
                cpu_ns: 0,
                io_calls: Some(0),
                children: 0,
            });
            let now = Counters {
                at_ns: last.at_ns + S,
                cpu_ns: last.cpu_ns + cpu,
                io_calls: last.io_calls.map(|c| c + io),
                children: 0,
            };
            if h.last.is_none() {
                h.last = Some(last);
            }
            found = found.or(judge(h, &now, &options()));
            h.last = Some(now);
        }
        found
    }

    #[test]
    fn a_busy_core_without_io_is_a_runaway() {
        let mut h = History::default();
        let f = feed(&mut h, 8, 990_000_000, 0).expect("a runaway");
        assert_eq!(f.kind, FindingKind::Runaway);
        assert!(f.value >= 5.0);
        assert_eq!(f.number("cpu_percent"), Some(99.0));
    }

    #[test]
    fn a_busy_step_that_does_io_or_a_half_busy_one_is_not() {
        assert_eq!(feed(&mut History::default(), 10, 990_000_000, 3), None);
        assert_eq!(feed(&mut History::default(), 10, 500_000_000, 0), None);
    }

    #[test]
    fn a_loop_sharing_its_core_is_judged_on_its_average() {
        // Alternating 95 % and 60 % of a core: 77 % on average, over a 70 % threshold.
        let mut h = History::default();
        let mut found = None;
        for _ in 0..4 {
            found = found.or(feed(&mut h, 1, 950_000_000, 0));
            found = found.or(feed(&mut h, 1, 600_000_000, 0));
        }
        let options = DiagnosisSection {
            runaway_cpu_percent: 70,
            ..options()
        };
        assert!(found.is_none(), "judged at the default 90 %");
        let mut h = History::default();
        let mut found = None;
        for i in 0..8 {
            let cpu = if i % 2 == 0 { 950_000_000 } else { 600_000_000 };
            let last = h.last.unwrap_or(Counters {
                at_ns: 0,
                cpu_ns: 0,
                io_calls: Some(0),
                children: 0,
            });
            let now = Counters {
                at_ns: last.at_ns + S,
                cpu_ns: last.cpu_ns + cpu,
                ..last
            };
            h.last.get_or_insert(last);
            found = found.or(judge(&mut h, &now, &options));
            h.last = Some(now);
        }
        let f = found.expect("a runaway at 70 %");
        assert!(
            (75.0..=85.0).contains(&f.number("cpu_percent").unwrap()),
            "{f:?}"
        );
    }

    #[test]
    fn a_pause_starts_the_window_over() {
        let mut h = History::default();
        assert_eq!(feed(&mut h, 4, 990_000_000, 0), None);
        assert_eq!(feed(&mut h, 1, 0, 0), None);
        assert_eq!(feed(&mut h, 4, 990_000_000, 0), None);
        assert!(feed(&mut h, 3, 990_000_000, 0).is_some());
    }
}
