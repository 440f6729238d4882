//! The local step history `run` compares each run with for its summary: per pipeline, one
//! JSON line per run with each step's duration, kept in `<parquet_dir>/history/`. The
//! summary cannot wait for DuckDB over the whole Parquet record (the agent does not link it,
//! and thousands of files take seconds): this file holds the last few baselines' worth of
//! runs and is read in milliseconds. `query baseline` and `query regressions` answer from the
//! Parquet record itself, with the same rule.

use std::{
    collections::BTreeMap,
    io::{BufRead, Write},
    path::{Path, PathBuf},
};

use pipetrace_core::analysis::{
    history::{FlakyStep, Judge, SlowerStep, StepRun, judge_run},
    run::RunView,
    steps::{per_step, pipeline},
};
use serde::{Deserialize, Serialize};

/// One run as the history keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    run_id: String,
    /// The commit it built, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revision: Option<String>,
    /// Each step's duration in seconds (its processes added up).
    steps: BTreeMap<String, f64>,
    /// The steps that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    failed: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("step history {path}: {source}")]
pub struct HistoryError {
    path: String,
    source: std::io::Error,
}

/// Runs kept per pipeline, in baselines: the baseline of a change as old as one baseline, and
/// the stretch after it.
const KEPT_BASELINES: usize = 3;

/// The file of `pipeline`'s runs under `dir` (the Parquet directory).
fn file_of(dir: &Path, pipeline: &str) -> PathBuf {
    dir.join("history")
        .join(format!("{:016x}.jsonl", fnv1a(pipeline.as_bytes())))
}

/// FNV-1a: a file name that stays the same across builds (std's hasher may change).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the history says of a run: its steps slower than usual, and those that failed and
/// are flaky.
#[derive(Debug, Default)]
pub struct Judged {
    pub slower: Vec<SlowerStep>,
    pub flaky: Vec<FlakyStep>,
}

/// Adds `run` (which built `revision`) to its pipeline's history under `dir` and judges its
/// steps against the runs before it.
pub fn record_and_judge(
    dir: &Path,
    run: &RunView,
    revision: Option<&str>,
    judge: &Judge,
) -> Result<Judged, HistoryError> {
    let Some(pipeline) = pipeline(run) else {
        return Ok(Judged::default());
    };
    let path = file_of(dir, pipeline);
    let error = |source| HistoryError {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        crate::sinks::create_private_dir(parent).map_err(error)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)
        .map_err(error)?;
    // Two runs of one pipeline ending together take turns (the lock goes with the file).
    // SAFETY: flock on a descriptor this function owns.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
    // A line that does not parse (a torn write, a future format) is skipped, not fatal.
    let earlier: Vec<Entry> = std::io::BufReader::new(&file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect();
    let steps = per_step(run);
    let entry = Entry {
        run_id: run.run_id.clone(),
        revision: revision.map(str::to_owned),
        steps: steps
            .iter()
            .map(|(k, s)| (k.clone(), s.duration_s))
            .collect(),
        failed: steps
            .iter()
            .filter(|(_, s)| s.failed > 0)
            .map(|(k, _)| k.clone())
            .collect(),
    };
    let mut histories: BTreeMap<String, Vec<StepRun>> = BTreeMap::new();
    for e in earlier.iter().chain([&entry]) {
        for (key, d) in &e.steps {
            if steps.contains_key(key) {
                histories.entry(key.clone()).or_default().push(StepRun {
                    run_id: e.run_id.clone(),
                    duration_s: *d,
                    failed: e.failed.contains(key),
                    revision: e.revision.clone(),
                });
            }
        }
    }
    let (slower, flaky) = judge_run(&steps, &histories, judge);
    let line = serde_json::to_string(&entry).map_err(|e| error(e.into()))? + "\n";
    let keep = KEPT_BASELINES * judge.baseline_runs;
    if earlier.len() + 1 > 2 * keep {
        // Rewritten whole now and then rather than trimmed on every run.
        let mut text = String::new();
        for e in &earlier[earlier.len() + 1 - keep..] {
            text += &(serde_json::to_string(e).map_err(|e| error(e.into()))? + "\n");
        }
        text += &line;
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(error)?;
    } else {
        (&file).write_all(line.as_bytes()).map_err(error)?;
    }
    Ok(Judged { slower, flaky })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipetrace_core::analysis::run::Proc;

    fn run(id: &str, seconds: f64) -> RunView {
        let root = Proc::sample(1, "sh pipeline.sh", 0.0, seconds + 0.1);
        let step = Proc {
            parent_span_id: Some(1),
            ..Proc::sample(2, "make test", 0.05, 0.05 + seconds)
        };
        RunView::new(id.into(), vec![root, step])
    }

    #[test]
    fn a_slower_step_is_told_against_the_runs_before_and_the_file_stays_short() {
        let dir = tempfile::tempdir().unwrap();
        let judge = Judge {
            baseline_runs: 5,
            ..Judge::default()
        };
        for i in 0..40 {
            let seconds = 1.0 + 0.01 * f64::from(i % 3);
            let judged =
                record_and_judge(dir.path(), &run(&format!("r{i}"), seconds), None, &judge);
            assert_eq!(judged.unwrap().slower, [], "run {i}");
        }
        let slower = record_and_judge(dir.path(), &run("slow", 2.0), None, &judge)
            .unwrap()
            .slower;
        let steps: Vec<&str> = slower.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(steps, ["make test", "sh pipeline.sh"]);
        assert_eq!(slower[0].since_run, "slow");
        assert_eq!(slower[0].runs_since, 1);
        assert!((slower[0].baseline.p50_s - 1.01).abs() < 1e-9);
        let file = file_of(dir.path(), "sh pipeline.sh");
        let lines = std::fs::read_to_string(file).unwrap().lines().count();
        assert!(lines <= 2 * KEPT_BASELINES * 5, "{lines} lines kept");
    }
}
