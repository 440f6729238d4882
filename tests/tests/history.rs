//! Across runs, on real runs traced by the real kernel programs: one pipeline run 30 times on
//! one commit, its steps' durations varying by ±10 % (the noise control), one step made slower
//! from run 20 on, one step failing one time in four (flaky) and one failing every time (not
//! flaky: failing). The slowdown must be found at run 20 and not before, dated to run 20 when
//! asked later, and no unchanged step flagged — in the run's own summary, the Markdown report,
//! `query regressions` (table and JSON), `compare --baseline-runs`, and the DuckDB CLI running
//! the same SQL over the same Parquet; the baseline checked against the CLI's own median.

use std::path::{Path, PathBuf};

use pipetrace_tests::{
    command,
    duckdb::{assert_same_rows, duckdb_json},
    needs_idle_cores, query_json, query_stdout, require_root, stdout_of,
};
use serde_json::Value;

const RUNS: usize = 30;
/// The first slower run (counted from 1).
const SLOWER_FROM: usize = 20;
/// The commit every run builds (the repository's detached HEAD).
const COMMIT: &str = "5e1f0c0ffee5e1f0c0ffee5e1f0c0ffee5e1f0c0";

/// `step.sh NAME` sleeps for NAME's line in `durations`; perl sleeps so that the command line
/// (the step key) stays the same whatever the duration.
const STEP: &str = r#"#!/bin/sh
d=$(sed -n "s/^$1 //p" durations)
D="$d" perl -e 'select(undef, undef, undef, $ENV{D})' "$1"
"#;

const PIPELINE: &str = r#"#!/bin/sh
./step.sh build
./step.sh test
./step.sh lint
./flaky.sh || true
./broken.sh || true
"#;

/// Fails in every fourth run.
const FLAKY: &str = "#!/bin/sh\n[ $(( $(cat run) % 4 )) -ne 0 ]\n";
const BROKEN: &str = "#!/bin/sh\nexit 2\n";

/// ±10 % of `base`, from a fixed sequence: the same noise in every test run.
fn noisy(base: f64, seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let unit = (*seed >> 33) as f64 / (1u64 << 31) as f64;
    base * (0.9 + 0.2 * unit)
}

struct History {
    dir: tempfile::TempDir,
    /// Each run's id, oldest first, and its end-of-run summary.
    runs: Vec<(String, String)>,
}

impl History {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

fn write_script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the pipeline `RUNS` times in a repository at `COMMIT`.
fn run_history() -> History {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    std::fs::create_dir_all(work.join(".git")).unwrap();
    std::fs::write(work.join(".git/HEAD"), format!("{COMMIT}\n")).unwrap();
    for (name, body) in [
        ("step.sh", STEP),
        ("pipeline.sh", PIPELINE),
        ("flaky.sh", FLAKY),
        ("broken.sh", BROKEN),
    ] {
        write_script(work, name, body);
    }
    let mut seed = 42;
    let mut runs = Vec::new();
    for n in 1..=RUNS {
        let test = if n >= SLOWER_FROM { 0.65 } else { 0.4 };
        let durations = format!(
            "build {:.3}\ntest {:.3}\nlint {:.3}\n",
            noisy(0.3, &mut seed),
            noisy(test, &mut seed),
            noisy(0.25, &mut seed)
        );
        std::fs::write(work.join("durations"), durations).unwrap();
        std::fs::write(work.join("run"), n.to_string()).unwrap();
        let out = command()
            .current_dir(work)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITLAB_CI")
            .env_remove("JENKINS_URL")
            .arg("--parquet")
            .arg(work.join("data"))
            .args(["run", "--summary", "full", "--", "./pipeline.sh"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "run {n}: {stderr}");
        let id = stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("run "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("run {n}: no run id in {stderr}"))
            .to_owned();
        runs.push((id, stderr));
    }
    History { dir, runs }
}

/// The steps a summary calls slower than usual.
fn slower_in_summary(summary: &str) -> Vec<String> {
    let mut lines = summary.lines().skip_while(|l| !l.starts_with("  slower"));
    let mut out = Vec::new();
    for line in lines.by_ref() {
        if !(line.starts_with("  slower") || line.starts_with("           ")) {
            break;
        }
        out.push(line.to_owned());
    }
    out
}

fn text<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().unwrap_or_default()
}

fn number(row: &Value, key: &str) -> f64 {
    row[key].as_f64().unwrap_or(f64::NAN)
}

/// The three steps that got slower: the pipeline, `step.sh test` and its perl.
fn is_test_step(step: &str) -> bool {
    step.ends_with("step.sh test") || step.ends_with("test") && step.starts_with("perl")
}

#[test]
fn a_slowdown_is_found_where_it_began_and_a_flaky_step_apart_from_a_failing_one() {
    require_root!();
    let _quiet = needs_idle_cores();
    let h = run_history();
    let data = h.data();
    let run20 = &h.runs[SLOWER_FROM - 1].0;

    // The summaries: nothing slower than usual before run 20; at run 20 the test step, since
    // this run; later, since run 20.
    for (n, (_, summary)) in h.runs.iter().enumerate().take(SLOWER_FROM - 1) {
        assert_eq!(
            slower_in_summary(summary),
            Vec::<String>::new(),
            "run {}: {summary}",
            n + 1
        );
    }
    let at20 = slower_in_summary(&h.runs[SLOWER_FROM - 1].1).join("\n");
    assert!(
        at20.contains("step.sh test") && at20.contains("since this run"),
        "{at20}"
    );
    assert!(!at20.contains("build") && !at20.contains("lint"), "{at20}");
    let at25 = slower_in_summary(&h.runs[24].1).join("\n");
    assert!(
        at25.contains("step.sh test") && at25.contains(&format!("since run {}", &run20[..8])),
        "{at25}"
    );

    // A flaky failure is told as one; the step that always fails is not flaky.
    let flaky_line = |n: usize| {
        h.runs[n - 1]
            .1
            .lines()
            .filter(|l| l.starts_with("  flaky") || l.contains("flaky.sh") && l.contains("failed"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let at8 = flaky_line(8);
    assert!(
        at8.contains("flaky.sh") && at8.contains("passed and failed on one commit"),
        "run 8: {}",
        h.runs[7].1
    );
    assert!(
        !h.runs[7]
            .1
            .lines()
            .any(|l| l.contains("flaky") && l.contains("broken.sh"))
    );
    assert_eq!(flaky_line(9), "", "run 9 passed: {}", h.runs[8].1);

    // query regressions: the test step (its shell, its perl and the pipeline as a whole),
    // since run 20, about 0.4 s → 0.65 s; nothing else.
    let regressions = query_json(&data, &["regressions"]);
    let steps: Vec<&str> = regressions.iter().map(|r| text(r, "step")).collect();
    assert_eq!(regressions.len(), 3, "{regressions:#?}");
    for row in &regressions {
        let step = text(row, "step");
        assert!(
            is_test_step(step) || step.ends_with("pipeline.sh"),
            "flagged {step}: {steps:?}"
        );
        assert_eq!(text(row, "since_run"), run20, "{row}");
        assert_eq!(row["runs_since"], RUNS - SLOWER_FROM + 1, "{row}");
        assert_eq!(row["still_slower"], true, "{row}");
    }
    let test = regressions
        .iter()
        .find(|r| text(r, "step").ends_with("step.sh test"))
        .expect("step.sh test regressed");
    assert!((0.38..0.46).contains(&number(test, "before_s")), "{test}");
    assert!((0.6..0.75).contains(&number(test, "after_s")), "{test}");
    assert!(number(test, "change_percent") > 40.0, "{test}");
    let table = query_stdout(&data, &["regressions", "--wide"]);
    assert!(
        table.contains("step.sh test") && table.contains(run20.as_str()),
        "{table}"
    );

    // The same SQL in the DuckDB CLI over the same files: the same rows.
    let sql = query_stdout(&data, &["regressions", "--print-sql"]);
    assert_same_rows("regressions", &regressions, &duckdb_json(&sql));

    // The baseline it was judged against, by the CLI's own SQL over the processes: the
    // median of the test step's 19 runs before run 20.
    let before = duckdb_json(&format!(
        "SELECT median(d) AS m FROM (SELECT run_id, sum(duration_s) AS d, min(start) AS t \
         FROM read_parquet('{}/processes/*.parquet') WHERE step_key LIKE '%step.sh test' \
         GROUP BY run_id ORDER BY t LIMIT {})",
        data.display(),
        SLOWER_FROM - 1
    ));
    assert!(
        (number(&before[0], "m") - number(test, "before_s")).abs() < 1e-6,
        "CLI {before:?} vs {test}"
    );

    // flaky: one in four on the same commit is flaky; the one failing every time is failing.
    let flaky = query_json(&data, &["flaky"]);
    let verdict = |suffix: &str| {
        flaky
            .iter()
            .find(|r| text(r, "step").ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix} in {flaky:#?}"))
    };
    let f = verdict("flaky.sh");
    assert_eq!(text(f, "verdict"), "flaky", "{f}");
    assert_eq!(f["failures"], RUNS / 4, "{f}");
    assert_eq!(f["commits_both_ways"], 1, "{f}");
    assert_eq!(f["last_failures"][0], "exit 1", "{f}");
    assert_eq!(text(f, "last_failed_run"), h.runs[27].0, "{f}");
    let b = verdict("broken.sh");
    assert_eq!(text(b, "verdict"), "failing", "{b}");
    assert_eq!(b["failures"], RUNS, "{b}");
    assert_eq!(b["last_failures"][0], "exit 2", "{b}");
    let flaky_sql = query_stdout(&data, &["flaky", "--print-sql"]);
    assert_same_rows("flaky", &flaky, &duckdb_json(&flaky_sql));

    // The baseline now: the last 20 runs, the slower ones most of them.
    let baseline = query_json(&data, &["baseline", "--step", "step.sh"]);
    let p50 = |suffix: &str| {
        baseline
            .iter()
            .find(|r| text(r, "step").ends_with(suffix))
            .map(|r| number(r, "p50_s"))
            .unwrap()
    };
    // 11 slower runs of 20: the median is the fastest two of them.
    assert!((0.55..0.75).contains(&p50("step.sh test")), "{baseline:#?}");
    assert!(
        (0.27..0.33).contains(&p50("step.sh build")),
        "{baseline:#?}"
    );
    assert!(baseline.iter().all(|r| r["runs"] == 20), "{baseline:#?}");

    // The Markdown report of run 20 says so; run 19's does not.
    let report = |run: &str| {
        let mut cmd = command();
        cmd.args(["report", "--format", "markdown", "--run", run, "--data"])
            .arg(&data);
        stdout_of(cmd, run)
    };
    let md20 = report(run20);
    let section = md20
        .split("### 🐢 Slower than usual")
        .nth(1)
        .unwrap_or_else(|| panic!("{md20}"));
    let section = section.split("###").next().unwrap();
    assert!(
        section.contains("step.sh test") && section.contains("this run"),
        "{section}"
    );
    assert!(!section.contains("build"), "{section}");
    assert!(!report(&h.runs[SLOWER_FROM - 2].0).contains("Slower than usual"));
    let md28 = report(&h.runs[27].0);
    let flaky_section = md28
        .split("### 🎲 Flaky")
        .nth(1)
        .unwrap_or_else(|| panic!("{md28}"));
    let flaky_section = flaky_section.split("###").next().unwrap();
    assert!(flaky_section.contains("flaky.sh") && !flaky_section.contains("broken.sh"));

    // The HTML report of run 20 charts the slower step against its history.
    let mut cmd = command();
    cmd.args(["report", "--format", "html", "--run", run20, "--data"])
        .arg(&data);
    let html = stdout_of(cmd, "report --format html");
    let section = html
        .split(r#"<section id="history">"#)
        .nth(1)
        .unwrap_or_else(|| panic!("no history section"));
    let section = section.split("</section>").next().unwrap();
    let slower_item = section
        .split("</li>")
        .find(|li| li.contains("step.sh test"))
        .unwrap_or_else(|| panic!("{section}"));
    assert!(
        slower_item.contains("slower than usual")
            && slower_item.contains(r#"<circle class="this""#),
        "{slower_item}"
    );
    // 19 earlier runs and this one, each a point.
    let points = slower_item
        .split(r#"points=""#)
        .nth(1)
        .and_then(|p| p.split('"').next())
        .unwrap();
    assert_eq!(points.split(' ').count(), SLOWER_FROM, "{points}");

    // compare --baseline-runs: run 20 regressed (status 4), run 19 did not.
    let compare = |run: &str| {
        let mut cmd = command();
        cmd.args(["compare", "--baseline-runs", "19", "--fail-on-regression"])
            .args(["--format", "json", "--run", run, "--data"])
            .arg(&data);
        cmd.output().unwrap()
    };
    let c20 = compare(run20);
    assert_eq!(c20.status.code(), Some(4));
    let rows: Vec<Value> = serde_json::from_slice(&c20.stdout).unwrap();
    let slower: Vec<&str> = rows
        .iter()
        .filter(|r| r["change"] == "slower")
        .map(|r| text(r, "step"))
        .collect();
    assert!(
        slower
            .iter()
            .all(|s| is_test_step(s) || s.ends_with("pipeline.sh"))
            && slower.iter().any(|s| s.ends_with("step.sh test")),
        "{slower:?}"
    );
    let c19 = compare(&h.runs[SLOWER_FROM - 2].0);
    assert_eq!(
        c19.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&c19.stdout)
    );

    // trend: the pipeline day by day, and a step's when asked.
    // (A day's rows each: the runs may cross midnight.)
    let runs_in = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["runs"].as_u64().unwrap())
            .sum::<u64>()
    };
    let trend = query_json(&data, &["trend"]);
    assert!(
        trend
            .iter()
            .all(|r| text(r, "step").ends_with("pipeline.sh")),
        "{trend:#?}"
    );
    assert_eq!(runs_in(&trend), RUNS as u64, "{trend:#?}");
    let test_trend = query_json(&data, &["trend", "--step", "step.sh test"]);
    assert!(
        test_trend
            .iter()
            .all(|r| text(r, "step").ends_with("step.sh test"))
    );
    assert_eq!(runs_in(&test_trend), RUNS as u64, "{test_trend:#?}");

    // `compact` makes the 30 runs' files one per dataset (one host, one or two days) and
    // changes no answer.
    let files = |dataset: &str| std::fs::read_dir(data.join(dataset)).unwrap().count();
    assert_eq!(files("processes"), RUNS);
    let mut compact = command();
    compact
        .args(["compact", "--min-age", "0s", "--data"])
        .arg(&data);
    stdout_of(compact, "compact");
    assert!(files("processes") <= 2, "{} files", files("processes"));
    assert_eq!(query_json(&data, &["regressions"]), regressions);
    assert_eq!(query_json(&data, &["flaky"]), flaky);
}
