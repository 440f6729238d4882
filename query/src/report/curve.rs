//! The CPU curve a finding about the whole run carries (noisy neighbour, undersized runner) as
//! an inline SVG for the HTML report: the run's cores and the cores used outside it, over the
//! run. Drawn on the server: two polylines need no charting library.

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 90.0;

/// The SVG of the `curve` in a finding's evidence (`[[seconds, run cores, outside cores], …]`,
/// with `cores`), or `None` when it has none (or fewer than two points).
pub fn svg(evidence: &str) -> Option<String> {
    let ev: serde_json::Value = serde_json::from_str(evidence).ok()?;
    let points: Vec<[f64; 3]> = ev
        .get("curve")?
        .as_array()?
        .iter()
        .filter_map(|p| {
            let p = p.as_array()?;
            Some([
                p.first()?.as_f64()?,
                p.get(1)?.as_f64()?,
                p.get(2)?.as_f64()?,
            ])
        })
        .collect();
    if points.len() < 2 {
        return None;
    }
    // From the first interval's end to the last's.
    let from = points[0][0];
    let span_s = (points.last()?[0] - from).max(1e-3);
    let top = points
        .iter()
        .flat_map(|p| [p[1], p[2]])
        .fold(
            ev.get("cores").and_then(|c| c.as_f64()).unwrap_or(1.0),
            f64::max,
        )
        .max(1e-3);
    let line = |i: usize| {
        points
            .iter()
            .map(|p| {
                format!(
                    "{:.1},{:.1}",
                    (p[0] - from) / span_s * WIDTH,
                    HEIGHT - p[i] / top * HEIGHT
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(format!(
        r#"<svg class="curve" viewBox="0 -4 {WIDTH} {h}" width="{WIDTH}" height="{h}" role="img" aria-label="cores used by the run and outside it over {span:.0} s"><line class="axis" x1="0" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}"/><polyline class="others" points="{others}"/><polyline class="run" points="{run}"/></svg><div class="legend"><span class="run">the run</span> <span class="others">outside the run</span> <span class="scale">· height 0–{top:.1} cores, width {span:.0} s</span></div>"#,
        h = HEIGHT + 8.0,
        span = span_s,
        others = line(2),
        run = line(1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_lines_scaled_to_the_cores() {
        let ev = r#"{"cores":2,"curve":[[0,1.0,1.0],[1,1.0,1.0],[2,2.0,0.0]]}"#;
        let drawn = svg(ev).unwrap();
        assert_eq!(drawn.matches("<polyline").count(), 2, "{drawn}");
        // The run's last point at full height on the right edge.
        assert!(
            drawn.contains(r#"class="run" points="0.0,45.0 300.0,45.0 600.0,0.0""#),
            "{drawn}"
        );
        assert!(drawn.contains("height 0–2.0 cores, width 2 s"), "{drawn}");
        assert_eq!(svg(r#"{"cores":2}"#), None);
        assert_eq!(svg(r#"{"curve":[[0,1,1]]}"#), None);
        assert_eq!(svg("not json"), None);
    }
}
