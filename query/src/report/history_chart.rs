//! A step against its history as an inline SVG for the HTML report: its duration in the last
//! runs of the pipeline, this run's point marked, the usual (the baseline's median) and the
//! limit above which a run is slower than usual as lines. Drawn on the server like the CPU
//! curve: a polyline needs no charting library.

use crate::analysis::history::Judge;

const WIDTH: f64 = 320.0;
const HEIGHT: f64 = 56.0;
/// Runs drawn at most: the newest.
pub const RUNS_DRAWN: usize = 40;

/// The chart of `series` (a step's `(run id, seconds)`, oldest first, this run last), or `None`
/// with fewer than two runs.
pub fn svg(series: &[(String, f64)], judge: &Judge) -> Option<String> {
    if series.len() < 2 {
        return None;
    }
    let shown = &series[series.len().saturating_sub(RUNS_DRAWN)..];
    let before: Vec<f64> = series[..series.len() - 1].iter().map(|r| r.1).collect();
    let baseline = judge.baseline(&before);
    let top = shown
        .iter()
        .map(|r| r.1)
        .chain(baseline.map(|b| b.limit_s))
        .fold(1e-6, f64::max)
        * 1.1;
    let x = |i: usize| i as f64 / (shown.len() - 1).max(1) as f64 * WIDTH;
    let y = |s: f64| HEIGHT - s / top * HEIGHT;
    let points: Vec<String> = shown
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{:.1},{:.1}", x(i), y(r.1)))
        .collect();
    let last = shown.len() - 1;
    let lines = baseline.map_or_else(String::new, |b| {
        format!(
            r#"<line class="usual" x1="0" y1="{u:.1}" x2="{WIDTH}" y2="{u:.1}"/><line class="limit" x1="0" y1="{l:.1}" x2="{WIDTH}" y2="{l:.1}"/>"#,
            u = y(b.p50_s),
            l = y(b.limit_s)
        )
    });
    Some(format!(
        r#"<svg class="history" viewBox="-4 -4 {w} {h}" width="{w}" height="{h}" role="img" aria-label="duration in the last {n} runs, this run last">{lines}<polyline class="runs" points="{points}"/><circle class="this" cx="{cx:.1}" cy="{cy:.1}" r="3"/></svg>"#,
        w = WIDTH + 8.0,
        h = HEIGHT + 8.0,
        n = shown.len(),
        points = points.join(" "),
        cx = x(last),
        cy = y(shown[last].1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Vec<(String, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("r{i}"), *v))
            .collect()
    }

    #[test]
    fn this_run_is_the_last_point_and_the_usual_a_line() {
        let drawn = svg(&series(&[1.0, 1.0, 1.0, 1.0, 1.0, 2.0]), &Judge::default()).unwrap();
        assert_eq!(drawn.matches("<polyline").count(), 1, "{drawn}");
        assert!(
            drawn.contains(r#"<circle class="this" cx="320.0""#),
            "{drawn}"
        );
        assert!(drawn.contains(r#"class="usual""#) && drawn.contains(r#"class="limit""#));
        // Too few earlier runs for a baseline: the runs alone.
        let short = svg(&series(&[1.0, 2.0]), &Judge::default()).unwrap();
        assert!(!short.contains("usual"), "{short}");
        assert_eq!(svg(&series(&[1.0]), &Judge::default()), None);
    }
}
