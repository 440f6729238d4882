//! The run's CPU and memory over time, for the curves of the HTML report: from each process's
//! live samples and its totals at exit, summed over the processes alive at each moment.

use super::run::RunView;

/// A process's RSS (and cumulative CPU, from live samples) at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Index into the run's processes.
    pub proc: usize,
    pub time_ns: i64,
    pub rss_bytes: i64,
    pub cpu_s: Option<f64>,
}

/// The run cut into equal buckets: CPU cores busy and RSS in use in each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curves {
    pub start_ns: i64,
    pub step_ns: i64,
    /// CPU seconds used in each bucket per second of it.
    pub cpu_cores: Vec<f64>,
    /// The RSS of every process alive at each bucket's middle, summed.
    pub rss_bytes: Vec<i64>,
}

/// `samples` of `run`, grouped by process and sorted by time.
fn by_process(run: &RunView, samples: &[Sample]) -> Vec<Vec<Sample>> {
    let mut out = vec![Vec::new(); run.procs.len()];
    for s in samples.iter().filter(|s| s.proc < run.procs.len()) {
        out[s.proc].push(*s);
    }
    for list in &mut out {
        list.sort_by_key(|s| s.time_ns);
    }
    out
}

/// The curves of `run` in `buckets` buckets (at least one).
pub fn curves(run: &RunView, samples: &[Sample], buckets: usize) -> Curves {
    let buckets = buckets.max(1);
    let start = run.start_ns();
    let span = (run.end_ns() - start).max(1);
    let step = (span + buckets as i64 - 1) / buckets as i64;
    let mut cpu = vec![0.0f64; buckets];
    let mut rss = vec![0i64; buckets];
    let bucket_of = |t: i64| (((t - start) / step).max(0) as usize).min(buckets - 1);
    for (i, own) in by_process(run, samples).iter().enumerate() {
        let p = &run.procs[i];
        let end = p.end_ns.max(p.start_ns);
        // Cumulative CPU: 0 at start, each sample, the total at exit; spread evenly between.
        let mut points = vec![(p.start_ns, 0.0)];
        points.extend(own.iter().filter_map(|s| s.cpu_s.map(|c| (s.time_ns, c))));
        if let Some(total) = p.cpu_s() {
            points.push((end, total));
        }
        for pair in points.windows(2) {
            let ((t0, c0), (t1, c1)) = (pair[0], pair[1]);
            let used = c1 - c0;
            if used <= 0.0 {
                continue;
            }
            if t1 <= t0 {
                cpu[bucket_of(t0)] += used;
                continue;
            }
            let first = bucket_of(t0);
            for (b, busy) in cpu[first..=bucket_of(t1)].iter_mut().enumerate() {
                let b0 = start + (first + b) as i64 * step;
                let overlap = t1.min(b0 + step) - t0.max(b0);
                if overlap > 0 {
                    *busy += used * overlap as f64 / (t1 - t0) as f64;
                }
            }
        }
        // RSS: the last sample at or before each bucket's middle (the first one before it);
        // a process never sampled counts its peak.
        let mut next = 0;
        let first = bucket_of(p.start_ns);
        for (b, in_use) in rss[first..=bucket_of(end)].iter_mut().enumerate() {
            let middle = start + (first + b) as i64 * step + step / 2;
            if middle < p.start_ns || middle >= end {
                continue;
            }
            while next + 1 < own.len() && own[next + 1].time_ns <= middle {
                next += 1;
            }
            *in_use += own
                .get(next)
                .map(|s| s.rss_bytes)
                .or(p.peak_rss_bytes)
                .unwrap_or(0);
        }
    }
    let seconds = step as f64 / 1e9;
    Curves {
        start_ns: start,
        step_ns: step,
        cpu_cores: cpu.into_iter().map(|c| c / seconds).collect(),
        rss_bytes: rss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::run::Proc;

    fn proc(span: u64, start_s: f64, end_s: f64, cpu_s: f64, peak: i64) -> Proc {
        Proc {
            cpu_user_s: Some(cpu_s),
            peak_rss_bytes: Some(peak),
            ..Proc::sample(span, "x", start_s, end_s)
        }
    }

    #[test]
    fn cpu_is_spread_over_the_lifetime_and_memory_sums_the_live_processes() {
        // Two processes over 10 s: one busy a full core for its 10 s, one half a core for 4 s.
        let run = RunView::new(
            "r".into(),
            vec![proc(1, 0.0, 10.0, 10.0, 100), proc(2, 2.0, 6.0, 2.0, 50)],
        );
        let c = curves(&run, &[], 10);
        assert_eq!(c.step_ns, 1_000_000_000);
        let rounded: Vec<f64> = c
            .cpu_cores
            .iter()
            .map(|v| (v * 100.0).round() / 100.0)
            .collect();
        assert_eq!(rounded, [1.0, 1.0, 1.5, 1.5, 1.5, 1.5, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(
            c.rss_bytes,
            [100, 100, 150, 150, 150, 150, 100, 100, 100, 100]
        );
    }

    #[test]
    fn samples_give_the_shape_between_start_and_exit() {
        let run = RunView::new("r".into(), vec![proc(1, 0.0, 4.0, 3.0, 900)]);
        let at = |s: f64, rss: i64, cpu: f64| Sample {
            proc: 0,
            time_ns: (s * 1e9) as i64,
            rss_bytes: rss,
            cpu_s: Some(cpu),
        };
        // Idle for 2 s, then busy: 3 CPU seconds in the last 2 s (the rest of the exit total).
        let samples = [at(1.0, 10, 0.0), at(2.0, 20, 0.0), at(3.0, 700, 1.5)];
        let c = curves(&run, &samples, 4);
        let rounded: Vec<f64> = c
            .cpu_cores
            .iter()
            .map(|v| (v * 100.0).round() / 100.0)
            .collect();
        assert_eq!(rounded, [0.0, 0.0, 1.5, 1.5]);
        // Before the first sample it counts the first; then the last one at or before.
        assert_eq!(c.rss_bytes, [10, 10, 20, 700]);
    }
}
