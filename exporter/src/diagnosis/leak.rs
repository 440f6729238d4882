//! Memory leak: resident memory that grows steadily over a process's life. Judged on the
//! memory curve (samples and allocation steps): a straight-line fit that explains most of it,
//! growth in most intervals, enough bytes over enough time, and nothing given back at the end.
//! A step that allocates once and holds (a step function: poor fit, one growing interval) or
//! grows and then frees (ends well below its peak) is not a leak.

use crate::{
    config::DiagnosisSection,
    event::{Finding, FindingKind, Severity},
    present::units,
};

/// Least squares over `(seconds, bytes)`: slope (bytes/s) and R².
fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in points {
        sxx += (x - mean_x) * (x - mean_x);
        sxy += (x - mean_x) * (y - mean_y);
        syy += (y - mean_y) * (y - mean_y);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    Some((slope, sxy * sxy / (sxx * syy)))
}

/// A finding when `rss` (`(ns, bytes)`, oldest first) is a leak by `options`.
pub fn judge(rss: &[(u64, u64)], options: &DiagnosisSection) -> Option<Finding> {
    let (&(t0, first), &(t1, last)) = (rss.first()?, rss.last()?);
    let duration_s = t1.saturating_sub(t0) as f64 / 1e9;
    if rss.len() < 5 || duration_s < options.leak_min_duration.as_secs_f64() {
        return None;
    }
    let points: Vec<(f64, f64)> = rss
        .iter()
        .map(|&(t, b)| ((t - t0) as f64 / 1e9, b as f64))
        .collect();
    let (slope, r2) = fit(&points)?;
    let growth = slope * duration_s;
    let peak = rss.iter().map(|p| p.1).max().unwrap_or(0);
    let growing =
        rss.windows(2).filter(|w| w[1].1 > w[0].1).count() as f64 / (rss.len() - 1) as f64;
    let leak = slope > 0.0
        && growth >= options.leak_min_growth_bytes as f64
        && r2 >= options.leak_min_fit
        && growing >= 0.6
        && last as f64 >= 0.9 * peak as f64;
    if !leak {
        return None;
    }
    let mib_per_s = slope / (1024.0 * 1024.0);
    Some(Finding {
        kind: FindingKind::MemoryLeak,
        severity: Severity::Warning,
        summary: format!(
            "memory grew steadily by {} in {} ({}/s, fit R² {r2:.2}), {} → {}",
            units::bytes(growth as i64),
            units::duration(duration_s),
            units::bytes(slope as i64),
            units::bytes(first as i64),
            units::bytes(last as i64),
        ),
        value: (mib_per_s * 100.0).round() / 100.0,
        unit: "MiB/s",
        evidence: vec![
            ("slope_bytes_per_s", (slope.round() as i64).into()),
            ("fit_r2", ((r2 * 1000.0).round() / 1000.0).into()),
            (
                "growing_share",
                ((growing * 1000.0).round() / 1000.0).into(),
            ),
            (
                "duration_s",
                ((duration_s * 1000.0).round() / 1000.0).into(),
            ),
            ("rss_first_bytes", first.into()),
            ("rss_last_bytes", last.into()),
            ("rss_peak_bytes", peak.into()),
            ("points", rss.len().into()),
        ],
        involved: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const S: u64 = 1_000_000_000;

    fn curve(f: impl Fn(u64) -> u64) -> Vec<(u64, u64)> {
        (0..=30).map(|i| (i * S / 2, f(i))).collect()
    }

    #[test]
    fn steady_growth_is_a_leak_with_its_slope() {
        // 5 MiB every 500 ms for 15 s, with sampling noise.
        let f = judge(
            &curve(|i| 20 * MIB + i * 5 * MIB + (i % 3) * 100_000),
            &DiagnosisSection::default(),
        )
        .expect("a leak");
        assert_eq!(f.kind, FindingKind::MemoryLeak);
        assert!((f.value - 10.0).abs() < 0.2, "{}", f.value);
        assert!(f.number("fit_r2").unwrap() > 0.99);
        assert!(f.summary.contains("/s"), "{}", f.summary);
    }

    #[test]
    fn allocating_once_and_holding_is_not_a_leak() {
        let once = curve(|i| if i < 2 { 10 * MIB } else { 500 * MIB });
        assert_eq!(judge(&once, &DiagnosisSection::default()), None);
    }

    #[test]
    fn growing_then_freeing_is_not_a_leak() {
        let freed = curve(|i| {
            if i < 28 {
                10 * MIB + i * 10 * MIB
            } else {
                12 * MIB
            }
        });
        assert_eq!(judge(&freed, &DiagnosisSection::default()), None);
    }

    #[test]
    fn small_or_short_growth_is_not_a_leak() {
        let small = curve(|i| 10 * MIB + i * 100_000);
        assert_eq!(judge(&small, &DiagnosisSection::default()), None);
        let short: Vec<_> = curve(|i| 10 * MIB + i * 50 * MIB)[..8].to_vec();
        assert_eq!(judge(&short, &DiagnosisSection::default()), None);
    }
}
