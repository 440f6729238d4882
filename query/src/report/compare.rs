//! Two runs side by side, step by step (steps matched by their step key): duration, CPU, peak
//! memory, storage and network bytes before and after, steps that are new or missing, new failures, and the steps
//! slower than the thresholds. The baseline is one run or the median of several.

use std::{collections::BTreeMap, fmt::Write, sync::Arc};

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array};

pub use crate::analysis::steps::StepStats;
use crate::{
    analysis::{
        history::{MAD_TO_SIGMA, mad, median},
        run::RunView,
        steps::per_step,
    },
    config::MIN_BASELINE_RUNS,
    present::{summary::cut, units},
};

/// When a step counts as slower (or faster): by more than `percent` and by more than `min_s`
/// seconds and, against several runs, by more than `spread` robust standard deviations of the
/// step's durations over them (the rule of `query regressions`).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub percent: f64,
    pub min_s: f64,
    pub spread: Option<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            percent: 20.0,
            min_s: 0.1,
            spread: None,
        }
    }
}

/// Each step's robust standard deviation over the baseline runs it ran in (from at least
/// [`MIN_BASELINE_RUNS`] of them).
fn spreads(maps: &[BTreeMap<String, StepStats>]) -> BTreeMap<String, f64> {
    let mut durations: BTreeMap<&String, Vec<f64>> = BTreeMap::new();
    for map in maps {
        for (key, s) in map {
            durations.entry(key).or_default().push(s.duration_s);
        }
    }
    durations
        .into_iter()
        .filter(|(_, d)| d.len() >= MIN_BASELINE_RUNS as usize)
        .map(|(key, d)| (key.clone(), MAD_TO_SIGMA * mad(&d)))
        .collect()
}

/// The median step of several runs: a step is in the baseline when it ran in at least half of
/// them, its numbers are the medians over the runs it ran in, and it counts as failed when it
/// failed in most of them.
fn median_steps(maps: &[BTreeMap<String, StepStats>]) -> BTreeMap<String, StepStats> {
    let mut keys: Vec<&String> = maps.iter().flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = BTreeMap::new();
    for key in keys {
        let present: Vec<&StepStats> = maps.iter().filter_map(|m| m.get(key)).collect();
        if present.len() * 2 < maps.len() {
            continue;
        }
        let cpus: Vec<f64> = present.iter().filter_map(|s| s.cpu_s).collect();
        let medians = |get: fn(&StepStats) -> Option<i64>| {
            let values: Vec<f64> = present
                .iter()
                .filter_map(|s| get(s).map(|b| b as f64))
                .collect();
            (!values.is_empty()).then(|| median(values) as i64)
        };
        out.insert(
            key.clone(),
            StepStats {
                processes: median(present.iter().map(|s| f64::from(s.processes)).collect()).round()
                    as u32,
                duration_s: median(present.iter().map(|s| s.duration_s).collect()),
                cpu_s: (!cpus.is_empty()).then(|| median(cpus)),
                peak_rss_bytes: medians(|s| s.peak_rss_bytes),
                storage_bytes: medians(|s| s.storage_bytes),
                network_bytes: medians(|s| s.network_bytes),
                failed: u32::from(
                    present.iter().filter(|s| s.failed > 0).count() * 2 > present.len(),
                ),
                command: present[0].command.clone(),
            },
        );
    }
    out
}

/// What changed about a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    NewFailure,
    Slower,
    New,
    Missing,
    Fixed,
    Faster,
    Same,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewFailure => "new failure",
            Self::Slower => "slower",
            Self::New => "new",
            Self::Missing => "missing",
            Self::Fixed => "fixed",
            Self::Faster => "faster",
            Self::Same => "",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub step: String,
    pub before: Option<StepStats>,
    pub after: Option<StepStats>,
    pub change: Change,
    /// The step's robust standard deviation over the baseline runs, when judged by it.
    pub spread_s: Option<f64>,
}

impl Row {
    pub fn delta_s(&self) -> f64 {
        self.after.as_ref().map_or(0.0, |a| a.duration_s)
            - self.before.as_ref().map_or(0.0, |b| b.duration_s)
    }
}

#[derive(Debug, Clone)]
pub struct Comparison {
    pub run_id: String,
    /// The baseline run ids (one, or the runs whose median it is).
    pub baseline_ids: Vec<String>,
    pub wall_before_s: f64,
    pub wall_after_s: f64,
    pub thresholds: Thresholds,
    /// The baseline's root command when it is not this run's (by step key): steps will not
    /// match, and the reader should know why.
    pub other_command: Option<String>,
    /// New failures first, then slower, new, missing, fixed, faster, unchanged; within each,
    /// the largest change in duration first.
    pub rows: Vec<Row>,
    /// Files read or written that differ from the baseline's: the cache-miss answer.
    pub files: Vec<crate::analysis::files::FileChange>,
}

impl Comparison {
    pub fn count(&self, change: Change) -> usize {
        self.rows.iter().filter(|r| r.change == change).count()
    }

    /// A regression: a step slower than the thresholds or failing where it did not.
    pub fn regressed(&self) -> bool {
        self.count(Change::Slower) + self.count(Change::NewFailure) > 0
    }
}

fn wall_s(run: &RunView) -> f64 {
    (run.end_ns() - run.start_ns()) as f64 / 1e9
}

pub fn compare(run: &RunView, baseline: &[&RunView], thresholds: Thresholds) -> Comparison {
    let after = per_step(run);
    // Each baseline run's steps, once for the medians and the spreads.
    let maps: Vec<BTreeMap<String, StepStats>> = baseline.iter().map(|r| per_step(r)).collect();
    let before = median_steps(&maps);
    let spreads = match thresholds.spread {
        Some(_) => spreads(&maps),
        None => BTreeMap::new(),
    };
    let mut keys: Vec<&String> = after.keys().chain(before.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows: Vec<Row> = keys
        .into_iter()
        .map(|key| {
            let (b, a) = (before.get(key).cloned(), after.get(key).cloned());
            let change = match (&b, &a) {
                (None, Some(_)) => Change::New,
                (Some(_), None) => Change::Missing,
                (Some(b), Some(a)) if a.failed > 0 && b.failed == 0 => Change::NewFailure,
                (Some(b), Some(a)) if a.failed == 0 && b.failed > 0 => Change::Fixed,
                (Some(b), Some(a)) => {
                    let delta = a.duration_s - b.duration_s;
                    let noise =
                        thresholds.spread.unwrap_or(0.0) * spreads.get(key).copied().unwrap_or(0.0);
                    let big = delta.abs() > thresholds.min_s
                        && delta.abs() > b.duration_s * thresholds.percent / 100.0
                        && delta.abs() > noise;
                    match (big, delta > 0.0) {
                        (true, true) => Change::Slower,
                        (true, false) => Change::Faster,
                        _ => Change::Same,
                    }
                }
                (None, None) => Change::Same,
            };
            Row {
                step: key.clone(),
                before: b,
                after: a,
                change,
                spread_s: spreads.get(key).copied(),
            }
        })
        .collect();
    rows.sort_by(|x, y| {
        x.change
            .cmp(&y.change)
            .then(y.delta_s().abs().total_cmp(&x.delta_s().abs()))
            .then(x.step.cmp(&y.step))
    });
    let root_step = |r: &RunView| r.roots().first().map(|&i| r.procs[i].step_key.clone());
    let other_command = baseline
        .iter()
        .filter_map(|b| root_step(b))
        .find(|step| Some(step) != root_step(run).as_ref());
    Comparison {
        other_command,
        run_id: run.run_id.clone(),
        baseline_ids: baseline.iter().map(|r| r.run_id.clone()).collect(),
        wall_before_s: median(baseline.iter().map(|r| wall_s(r)).collect()),
        wall_after_s: wall_s(run),
        thresholds,
        rows,
        files: crate::analysis::files::differences(
            &run.files,
            &baseline.iter().map(|b| &b.files).collect::<Vec<_>>(),
        ),
    }
}

/// File changes listed in the Markdown and the table at most.
pub const FILES_LISTED: usize = 30;

/// The files that differ from the baseline, as a record batch (the table after the steps').
pub fn files_batch(c: &Comparison) -> Result<Option<RecordBatch>, arrow::error::ArrowError> {
    if c.files.is_empty() {
        return Ok(None);
    }
    let listed = &c.files[..c.files.len().min(FILES_LISTED)];
    let text = |get: &dyn Fn(&crate::analysis::files::FileChange) -> String| -> ArrayRef {
        Arc::new(arrow::array::StringArray::from(
            listed.iter().map(get).collect::<Vec<_>>(),
        ))
    };
    RecordBatch::try_from_iter([
        ("file change", text(&|f| f.difference.words())),
        ("path", text(&|f| f.path.clone())),
        ("step", text(&|f| f.step.clone())),
    ])
    .map(Some)
}

/// The rows as a record batch: raw seconds and bytes for CSV and JSON, units in the table.
pub fn batch(c: &Comparison) -> Result<RecordBatch, arrow::error::ArrowError> {
    let f = |get: &dyn Fn(&Row) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from(
            c.rows.iter().map(get).collect::<Vec<_>>(),
        ))
    };
    let round = |v: f64| (v * 1e6).round() / 1e6;
    let i = |get: &dyn Fn(&StepStats) -> Option<i64>, after: bool| -> ArrayRef {
        Arc::new(Int64Array::from(
            c.rows
                .iter()
                .map(|r| {
                    if after {
                        r.after.as_ref()
                    } else {
                        r.before.as_ref()
                    }
                    .and_then(get)
                })
                .collect::<Vec<_>>(),
        ))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "change",
            Arc::new(StringArray::from_iter_values(
                c.rows.iter().map(|r| r.change.as_str()),
            )),
        ),
        (
            "before_s",
            f(&|r| r.before.as_ref().map(|s| round(s.duration_s))),
        ),
        (
            "after_s",
            f(&|r| r.after.as_ref().map(|s| round(s.duration_s))),
        ),
        ("delta_s", f(&|r| Some(round(r.delta_s())))),
        ("spread_s", f(&|r| r.spread_s.map(round))),
        (
            "delta_percent",
            f(&|r| match (&r.before, &r.after) {
                (Some(b), Some(_)) if b.duration_s > 0.0 => {
                    Some((r.delta_s() / b.duration_s * 1000.0).round() / 10.0)
                }
                _ => None,
            }),
        ),
        (
            "cpu_before_s",
            f(&|r| r.before.as_ref().and_then(|s| s.cpu_s).map(round)),
        ),
        (
            "cpu_after_s",
            f(&|r| r.after.as_ref().and_then(|s| s.cpu_s).map(round)),
        ),
        ("peak_before_bytes", i(&|s| s.peak_rss_bytes, false)),
        ("peak_after_bytes", i(&|s| s.peak_rss_bytes, true)),
        ("storage_before_bytes", i(&|s| s.storage_bytes, false)),
        ("storage_after_bytes", i(&|s| s.storage_bytes, true)),
        ("network_before_bytes", i(&|s| s.network_bytes, false)),
        ("network_after_bytes", i(&|s| s.network_bytes, true)),
        (
            "processes",
            Arc::new(UInt32Array::from(
                c.rows
                    .iter()
                    .map(|r| {
                        r.after
                            .as_ref()
                            .or(r.before.as_ref())
                            .map_or(0, |s| s.processes)
                    })
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "step",
            Arc::new(StringArray::from_iter_values(
                c.rows.iter().map(|r| r.step.clone()),
            )),
        ),
    ];
    RecordBatch::try_from_iter(columns)
}

/// Other steps listed in Markdown after the changed ones.
const MARKDOWN_UNCHANGED: usize = 10;

fn opt_duration(s: Option<&StepStats>) -> String {
    s.map_or_else(|| "—".into(), |s| units::duration(s.duration_s))
}

/// For a pull-request comment.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let verdict = if c.regressed() {
        "❌ regressed"
    } else {
        "✅ no regression"
    };
    let baseline = match c.baseline_ids.as_slice() {
        [one] => format!("`{one}`"),
        many => format!("the median of {} runs", many.len()),
    };
    let _ = writeln!(out, "## otel-pipetrace compare: {verdict}\n");
    let _ = writeln!(
        out,
        "Run `{}` against {baseline}: wall time {} → {} ({}). Slower means more than {} % and more than {}{}.\n",
        c.run_id,
        units::duration(c.wall_before_s),
        units::duration(c.wall_after_s),
        units::signed(
            units::duration(c.wall_after_s - c.wall_before_s),
            c.wall_after_s < c.wall_before_s
        ),
        c.thresholds.percent,
        units::duration(c.thresholds.min_s),
        match c.thresholds.spread {
            Some(k) => format!(
                " and more than {k} times the step's spread over the runs (1.4826 × MAD, from {MIN_BASELINE_RUNS} runs)"
            ),
            None => String::new(),
        },
    );
    if let Some(other) = &c.other_command {
        let _ = writeln!(
            out,
            "⚠️ The baseline ran another command: `{}`.\n",
            cut(other, 80).replace('`', "'")
        );
    }
    let _ = writeln!(
        out,
        "{} new failures · {} slower · {} faster · {} new · {} missing · {} fixed\n",
        c.count(Change::NewFailure),
        c.count(Change::Slower),
        c.count(Change::Faster),
        c.count(Change::New),
        c.count(Change::Missing),
        c.count(Change::Fixed),
    );
    let _ = writeln!(
        out,
        "| change | before | after | Δ | CPU before → after | peak memory before → after | step |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|---|");
    let mut unchanged = 0;
    for r in &c.rows {
        if r.change == Change::Same {
            unchanged += 1;
            if unchanged > MARKDOWN_UNCHANGED {
                continue;
            }
        }
        let cpu =
            |s: Option<&StepStats>| s.and_then(|s| s.cpu_s).map_or("—".into(), units::duration);
        let peak = |s: Option<&StepStats>| {
            s.and_then(|s| s.peak_rss_bytes)
                .map_or("—".into(), units::bytes)
        };
        let mark = match r.change {
            Change::NewFailure => "❌ new failure",
            Change::Slower => "🐢 slower",
            Change::Faster => "⚡ faster",
            Change::New => "➕ new",
            Change::Missing => "➖ missing",
            Change::Fixed => "✅ fixed",
            Change::Same => "",
        };
        let _ = writeln!(
            out,
            "| {mark} | {} | {} | {} | {} → {} | {} → {} | `{}` |",
            opt_duration(r.before.as_ref()),
            opt_duration(r.after.as_ref()),
            units::signed(units::duration(r.delta_s()), r.delta_s() < 0.0),
            cpu(r.before.as_ref()),
            cpu(r.after.as_ref()),
            peak(r.before.as_ref()),
            peak(r.after.as_ref()),
            cut(&r.step, 80).replace('|', "\\|").replace('`', "'"),
        );
    }
    if unchanged > MARKDOWN_UNCHANGED {
        let _ = writeln!(
            out,
            "\n{} more steps without a change.",
            unchanged - MARKDOWN_UNCHANGED
        );
    }
    if !c.files.is_empty() {
        let _ = writeln!(
            out,
            "\n### Files that differ ({}): why a step's cache missed\n",
            c.files.len()
        );
        let _ = writeln!(out, "| change | path | step |");
        let _ = writeln!(out, "|---|---|---|");
        for f in c.files.iter().take(FILES_LISTED) {
            let _ = writeln!(
                out,
                "| {} | `{}` | `{}` |",
                f.difference.words(),
                f.path.replace('|', "\\|").replace('`', "'"),
                cut(&f.step, 80).replace('|', "\\|").replace('`', "'"),
            );
        }
        if c.files.len() > FILES_LISTED {
            let _ = writeln!(
                out,
                "\n{} more: `otel-pipetrace query files --run {}`",
                c.files.len() - FILES_LISTED,
                c.run_id
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::run::{Proc, Status};

    /// A run of `make` (span 1, the whole run) and its steps `(step key, seconds, failed)`, one
    /// after the other.
    fn run(id: &str, steps: &[(&str, f64, bool)]) -> RunView {
        let proc =
            |span: u64, parent: Option<u64>, key: &str, start_s: f64, end_s: f64, failed| Proc {
                parent_span_id: parent,
                status: if failed { Status::Failed } else { Status::Ok },
                exit_code: Some(i32::from(failed)),
                ..Proc::sample(span, key, start_s, end_s)
            };
        let total: f64 = steps.iter().map(|s| s.1).sum();
        let mut procs = vec![proc(1, None, "make", 0.0, total, false)];
        let mut at = 0.0;
        for (i, (key, seconds, failed)) in steps.iter().enumerate() {
            procs.push(proc(i as u64 + 2, Some(1), key, at, at + seconds, *failed));
            at += seconds;
        }
        RunView::new(id.into(), procs)
    }

    fn change_of(c: &Comparison, step: &str) -> Change {
        c.rows.iter().find(|r| r.step == step).unwrap().change
    }

    #[test]
    fn a_step_is_slower_only_past_both_thresholds() {
        let before = run(
            "b",
            &[
                ("cc a.c", 1.0, false),
                ("cc b.c", 0.1, false),
                ("ld", 2.0, false),
            ],
        );
        // a.c: +50 % and +0.5 s; b.c: +100 % but only +0.1 s (not past 0.1 s); ld: +10 %.
        let after = run(
            "a",
            &[
                ("cc a.c", 1.5, false),
                ("cc b.c", 0.2, false),
                ("ld", 2.2, false),
            ],
        );
        let c = compare(&after, &[&before], Thresholds::default());
        assert_eq!(change_of(&c, "cc a.c"), Change::Slower);
        assert_eq!(change_of(&c, "cc b.c"), Change::Same);
        assert_eq!(change_of(&c, "ld"), Change::Same);
        assert!(c.regressed());
        // Slower steps lead, the largest change first: the whole `make` (+0.8 s), then a.c.
        let slower: Vec<(&str, f64)> = c
            .rows
            .iter()
            .take_while(|r| r.change == Change::Slower)
            .map(|r| (r.step.as_str(), (r.delta_s() * 10.0).round() / 10.0))
            .collect();
        assert_eq!(slower, [("make", 0.8), ("cc a.c", 0.5)]);
        assert!((c.wall_before_s - 3.1).abs() < 1e-9 && (c.wall_after_s - 3.9).abs() < 1e-9);
    }

    #[test]
    fn failures_new_and_missing_steps_are_named() {
        let before = run(
            "b",
            &[
                ("test", 1.0, true),
                ("lint", 1.0, false),
                ("old", 1.0, false),
            ],
        );
        let after = run(
            "a",
            &[
                ("test", 1.0, false),
                ("lint", 1.0, true),
                ("new", 1.0, false),
            ],
        );
        let c = compare(&after, &[&before], Thresholds::default());
        assert_eq!(change_of(&c, "test"), Change::Fixed);
        assert_eq!(change_of(&c, "lint"), Change::NewFailure);
        assert_eq!(change_of(&c, "new"), Change::New);
        assert_eq!(change_of(&c, "old"), Change::Missing);
        assert_eq!(c.rows[0].change, Change::NewFailure);
        assert!(c.regressed());
        assert_eq!(c.other_command, None);
    }

    #[test]
    fn the_baseline_of_several_runs_is_their_median() {
        let runs: Vec<RunView> = [1.0, 1.1, 5.0]
            .iter()
            .enumerate()
            .map(|(i, s)| run(&format!("b{i}"), &[("cc", *s, false)]))
            .collect();
        let baseline: Vec<&RunView> = runs.iter().collect();
        // One slow outlier does not move the median (1.1 s): 1.2 s is not slower.
        let same = compare(
            &run("a", &[("cc", 1.2, false)]),
            &baseline,
            Thresholds::default(),
        );
        assert_eq!(change_of(&same, "cc"), Change::Same);
        let row = same.rows.iter().find(|r| r.step == "cc").unwrap();
        assert!((row.before.as_ref().unwrap().duration_s - 1.1).abs() < 1e-9);
        let slower = compare(
            &run("a", &[("cc", 2.0, false)]),
            &baseline,
            Thresholds::default(),
        );
        assert_eq!(change_of(&slower, "cc"), Change::Slower);
        assert_eq!(slower.baseline_ids, ["b0", "b1", "b2"]);
    }
}
