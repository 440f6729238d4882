//! A step against its own past runs: its baseline (the median and robust spread of its last
//! runs) and whether a run is slower than usual, since which run. The rule of `query
//! regressions` (query/src/query/sql/regressions.sql) for the run's summary, the Markdown
//! report and `compare --baseline-runs`; the tests hold the two to the same answers.

use crate::config::{HistorySection, MIN_BASELINE_RUNS};

/// The median, as DuckDB's `median` (the middle two averaged); 0 for no values.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The median absolute deviation, as DuckDB's `mad`.
pub fn mad(values: &[f64]) -> f64 {
    let m = median(values.to_vec());
    median(values.iter().map(|v| (v - m).abs()).collect())
}

/// The MAD of normally distributed values times this is their standard deviation.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// What counts as slower than usual (`[history]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judge {
    pub baseline_runs: usize,
    pub spread: f64,
    pub min_percent: f64,
    pub min_s: f64,
    /// Flaky without commits to tell: the outcome changes in this share of the runs.
    pub flip_percent: f64,
}

impl From<&HistorySection> for Judge {
    fn from(h: &HistorySection) -> Self {
        Self {
            baseline_runs: h.baseline_runs as usize,
            spread: h.regression_spread,
            min_percent: h.regression_min_percent,
            min_s: h.regression_min_time.as_secs_f64(),
            flip_percent: h.flaky_flip_percent,
        }
    }
}

impl Default for Judge {
    fn default() -> Self {
        Self::from(&HistorySection::default())
    }
}

/// A step's usual duration over some runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub runs: usize,
    pub p50_s: f64,
    /// 1.4826 × the median absolute deviation: a standard deviation that outliers do not move.
    pub spread_s: f64,
    /// A run longer than this is slower than usual.
    pub limit_s: f64,
}

/// A step of a run that took longer than usual, as the run's summary and report tell it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowerStep {
    pub step: String,
    /// How long it took in this run (its processes added up).
    pub duration_s: f64,
    /// Its baseline before it got slower.
    pub baseline: Baseline,
    /// The run where it got slower (this one, or an earlier one).
    pub since_run: String,
    /// Runs from that one to this one, both counted.
    pub runs_since: usize,
}

/// A step that failed in this run and is flaky: it passed and failed on the same commit, or,
/// where no commit ran twice, its outcome changed often (the rule of `query flaky`).
#[derive(Debug, Clone, PartialEq)]
pub struct FlakyStep {
    pub step: String,
    /// Its runs and failures, this run included.
    pub runs: usize,
    pub failures: usize,
    /// It passed and failed on one commit (else: it flips).
    pub same_commit: bool,
}

/// Whether a step with these outcomes (`(revision, failed)`, oldest first) is flaky, and how
/// it shows: `Some(true)` passed and failed on one commit, `Some(false)` flips without
/// commits to tell, `None` not flaky.
pub fn flaky(outcomes: &[(Option<&str>, bool)], flip_percent: f64) -> Option<bool> {
    use std::collections::HashMap;
    let mut by_commit: HashMap<&str, (usize, bool, bool)> = HashMap::new();
    for (revision, failed) in outcomes {
        if let Some(r) = revision {
            let e = by_commit.entry(r).or_default();
            e.0 += 1;
            if *failed {
                e.2 = true;
            } else {
                e.1 = true;
            }
        }
    }
    if by_commit
        .values()
        .any(|(_, passed, failed)| *passed && *failed)
    {
        return Some(true);
    }
    let failures = outcomes.iter().filter(|o| o.1).count();
    let passes = outcomes.len() - failures;
    let flips = outcomes.windows(2).filter(|w| w[0].1 != w[1].1).count();
    let repeated = by_commit.values().any(|(runs, _, _)| *runs > 1);
    (!repeated
        && failures >= 2
        && passes >= 2
        && 100.0 * flips as f64 / outcomes.len() as f64 >= flip_percent)
        .then_some(false)
}

/// One run of a step, as a history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRun {
    pub run_id: String,
    pub duration_s: f64,
    pub failed: bool,
    pub revision: Option<String>,
}

/// A run's steps (`steps`, from [`super::steps::per_step`]) against their histories
/// (`histories[step]`: its runs oldest first, this run last): those slower than usual, and
/// those that failed here and are flaky.
pub fn judge_run(
    steps: &std::collections::BTreeMap<String, super::steps::StepStats>,
    histories: &std::collections::BTreeMap<String, Vec<StepRun>>,
    judge: &Judge,
) -> (Vec<SlowerStep>, Vec<FlakyStep>) {
    let (mut slower, mut flaky_steps) = (Vec::new(), Vec::new());
    for (key, stats) in steps {
        let Some(runs) = histories.get(key) else {
            continue;
        };
        let durations: Vec<f64> = runs.iter().map(|r| r.duration_s).collect();
        if let Some(s) = judge.newest(&durations) {
            slower.push(SlowerStep {
                step: key.clone(),
                duration_s: stats.duration_s,
                baseline: s.baseline,
                since_run: runs[s.since].run_id.clone(),
                runs_since: runs.len() - s.since,
            });
        }
        if stats.failed > 0 {
            let outcomes: Vec<(Option<&str>, bool)> = runs
                .iter()
                .map(|r| (r.revision.as_deref(), r.failed))
                .collect();
            if let Some(same_commit) = flaky(&outcomes, judge.flip_percent) {
                flaky_steps.push(FlakyStep {
                    step: key.clone(),
                    runs: runs.len(),
                    failures: runs.iter().filter(|r| r.failed).count(),
                    same_commit,
                });
            }
        }
    }
    (slower, flaky_steps)
}

/// The newest run of a step was slower than usual.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slower {
    /// The baseline before the change.
    pub baseline: Baseline,
    /// The index (into the durations judged) of the first run of the change.
    pub since: usize,
}

impl Judge {
    /// The baseline of the last `baseline_runs` of `before` (oldest first); none from fewer
    /// than [`MIN_BASELINE_RUNS`].
    pub fn baseline(&self, before: &[f64]) -> Option<Baseline> {
        let runs = &before[before.len().saturating_sub(self.baseline_runs)..];
        if runs.len() < MIN_BASELINE_RUNS as usize {
            return None;
        }
        let p50 = median(runs.to_vec());
        let spread = MAD_TO_SIGMA * mad(runs);
        let margin = (self.spread * spread)
            .max(self.min_percent / 100.0 * p50)
            .max(self.min_s);
        Some(Baseline {
            runs: runs.len(),
            p50_s: p50,
            spread_s: spread,
            limit_s: p50 + margin,
        })
    }

    /// Whether the newest of `durations` (a step's runs, oldest first) is slower than usual,
    /// and since when. Run i is outside when longer than its baseline's limit, and shifted
    /// when the median of it and the runs after it (up to `baseline_runs`) is outside too; a
    /// change is the first run outside in a stretch of shifted runs, as `query regressions`
    /// finds them. After a change within the last `baseline_runs` runs, the newest is judged
    /// against the baseline from before it (the rolling one takes the slow runs in as they
    /// come); otherwise against its own.
    pub fn newest(&self, durations: &[f64]) -> Option<Slower> {
        let last = durations.len().checked_sub(1)?;
        let first = last.saturating_sub(2 * self.baseline_runs);
        let judged: Vec<Option<(Baseline, bool, bool)>> = (first..=last)
            .map(|i| {
                let baseline = self.baseline(&durations[..i])?;
                let after_end = (i + self.baseline_runs).min(durations.len());
                let after = median(durations[i..after_end].to_vec());
                Some((
                    baseline,
                    durations[i] > baseline.limit_s,
                    after > baseline.limit_s,
                ))
            })
            .collect();
        let at = |i: usize| judged[i - first];
        let shifted = |i: usize| at(i).is_some_and(|(_, _, s)| s);
        let mut change = None;
        let mut stretch_has_change = false;
        for i in first..=last {
            if !shifted(i) {
                stretch_has_change = false;
                continue;
            }
            if i > first && !shifted(i - 1) {
                stretch_has_change = false;
            }
            if let Some((baseline, true, true)) = at(i)
                && !stretch_has_change
            {
                stretch_has_change = true;
                change = Some(Slower { baseline, since: i });
            }
        }
        match change {
            Some(c) if last - c.since < self.baseline_runs => {
                (durations[last] > c.baseline.limit_s).then_some(c)
            }
            _ => match at(last) {
                Some((baseline, true, _)) => Some(Slower {
                    baseline,
                    since: last,
                }),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ±10 % around `base`, the same every time.
    fn noisy(base: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| base * (1.0 + 0.1 * (((i * 7919) % 21) as f64 - 10.0) / 10.0))
            .collect()
    }

    #[test]
    fn median_and_mad_agree_with_duckdb() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0]), 1.0);
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 10.0, 11.0]), 2.0);
    }

    #[test]
    fn noise_is_usual_and_a_lasting_slowdown_is_found_where_it_began() {
        let judge = Judge::default();
        let mut d = noisy(1.0, 19);
        for n in 1..=d.len() {
            assert_eq!(judge.newest(&d[..n]), None, "run {n}");
        }
        // Slower by half from the 20th run on: found at once, and still dated to it later.
        d.extend(noisy(1.5, 19));
        for n in 20..=38 {
            let slower = judge.newest(&d[..n]).expect("slower");
            assert_eq!(slower.since, 19, "judged at run {n}");
            assert!((slower.baseline.p50_s - 1.0).abs() < 0.05);
        }
        // Long enough and it is the usual: the baseline has caught up.
        d.extend(noisy(1.5, 2));
        assert_eq!(judge.newest(&d), None);
    }

    #[test]
    fn one_ordinary_run_inside_a_slow_stretch_does_not_move_its_start() {
        let judge = Judge::default();
        let mut d = noisy(1.0, 20);
        d.extend([2.0, 2.1, 1.0, 2.0, 2.05]);
        assert_eq!(judge.newest(&d).map(|s| s.since), Some(20));
        // A single slow run after a normal history is slower than usual, from itself.
        let mut spike = noisy(1.0, 20);
        spike.push(3.0);
        assert_eq!(judge.newest(&spike).map(|s| s.since), Some(20));
    }

    #[test]
    fn flaky_on_one_commit_or_by_flips_but_not_when_broken_once() {
        let c = Some("c1");
        assert_eq!(
            flaky(&[(c, false), (c, true), (c, false)], 20.0),
            Some(true)
        );
        assert_eq!(flaky(&[(c, true), (c, true)], 20.0), None);
        let flips: Vec<(Option<&str>, bool)> = (0..8).map(|i| (None, i % 4 == 3)).collect();
        assert_eq!(flaky(&flips, 20.0), Some(false));
        let broken: Vec<(Option<&str>, bool)> = (0..8).map(|i| (None, i >= 4)).collect();
        assert_eq!(flaky(&broken, 20.0), None);
    }

    #[test]
    fn too_few_runs_make_no_baseline() {
        assert_eq!(Judge::default().newest(&[1.0, 1.0, 1.0, 1.0, 9.0]), None);
        assert!(
            Judge::default()
                .newest(&[1.0, 1.0, 1.0, 1.0, 1.0, 9.0])
                .is_some()
        );
    }
}
