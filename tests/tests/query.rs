//! The Parquet sink and `otel-pipetrace query`, checked against independent readers: the
//! official DuckDB CLI (same SQL, same rows) and pyarrow; a SIGKILLed agent's files read back;
//! bad data and bad SQL are one-line errors.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use pipetrace_tests::{
    assert_one_line_error, command, config_daemon,
    duckdb::{assert_same_rows, duckdb_json},
    query_json, require_root,
    rotel::TOOLS_VENV,
    status_of, wait_until,
};
use serde_json::Value;

fn venv_python() -> PathBuf {
    PathBuf::from(TOOLS_VENV).join("bin/python")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn query(data: &Path, args: &[&str]) -> Output {
    command()
        .arg("query")
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

/// A pipeline with repeated commands, a failure, a kill and nesting.
const PIPELINE: &str = r#"for i in 1 2 3; do /bin/sleep 0.0$i; done
sh -c '/bin/true; exit 4'
sh -c 'kill -9 $$'
(/bin/echo sub | /bin/cat > /dev/null)
exit 0
"#;

fn pipeline_script(dir: &Path) -> PathBuf {
    let script = dir.join("pipeline.sh");
    std::fs::write(&script, PIPELINE).unwrap();
    script
}

/// How many processes the pipeline runs, counted by strace (ptrace, not eBPF): one
/// `+++ exited` or `+++ killed` line per process.
fn processes_by_strace() -> usize {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-q", "-e", "trace=none", "-o"])
        .arg(&log)
        .arg("/bin/sh")
        .arg(pipeline_script(dir.path()))
        .output()
        .expect("strace (scripts/setup installs it)");
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("+++ exited with") || l.contains("+++ killed by"))
        .count()
}

/// One traced run of the pipeline into `data` (Parquet), also written as JSONL: the events.
fn traced_run(data: &Path) -> pipetrace_tests::Traced {
    let dir = tempfile::tempdir().unwrap();
    let script = pipeline_script(dir.path());
    let jsonl = dir.path().join("events.jsonl");
    let out = command()
        .arg("--parquet")
        .arg(data)
        .arg("--jsonl")
        .arg(&jsonl)
        .args(["run", "--", "/bin/sh"])
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    pipetrace_tests::traced(out, &jsonl)
}

/// The command line of each process recomputed from the JSONL: its last image's argv, or for a
/// fork that never exec'd, its parent's.
fn command_lines(t: &pipetrace_tests::Traced) -> Vec<(pipetrace_tests::Proc, String)> {
    let procs = t.processes();
    let mut out: Vec<(pipetrace_tests::Proc, String)> = Vec::new();
    for p in &procs {
        let line = if p.execs.is_empty() {
            out.iter()
                .rev()
                .find(|(q, _)| q.pid == p.tree_ppid)
                .map(|(_, l)| l.clone())
                .unwrap_or_else(|| panic!("no parent for {p:#?}"))
        } else {
            // Quoted as a shell would read it, like the agent's `command_line`.
            shlex::try_join(p.argv().iter().map(String::as_str)).unwrap()
        };
        out.push((p.clone(), line));
    }
    out
}

fn exit_ns(p: &pipetrace_tests::Proc, key: &str) -> u64 {
    p.exit.as_ref().unwrap()[key].as_u64().unwrap()
}

#[test]
fn queries_agree_with_the_runs_own_events_and_the_duckdb_cli() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    let expected = processes_by_strace();
    traced_run(data.path());
    let t = traced_run(data.path()); // two runs: the default is the latest one
    assert_eq!(t.processes().len(), expected, "JSONL vs strace");

    // durations, recomputed from the JSONL of the same run: processes, total and longest per
    // command line (the pipeline's commands have nothing run-specific: the step is the
    // command).
    let mut by_command: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for (p, line) in command_lines(&t) {
        let d = exit_ns(&p, "duration_ns");
        let e = by_command.entry(line).or_default();
        e.0 += 1;
        e.1 += d;
        e.2 = e.2.max(d);
    }
    let durations = query_json(data.path(), &["durations"]);
    assert_eq!(
        durations.len(),
        by_command.len(),
        "{durations:#?}\n{by_command:#?}"
    );
    for row in &durations {
        let command = row["step"].as_str().unwrap();
        // The script's own path is a temporary directory: its step key says so.
        let (processes, total, max) = by_command
            .iter()
            .find(|(line, _)| {
                *line == command
                    || line
                        .split("/tmp/")
                        .next()
                        .map(|head| format!("{head}/tmp/<tmp>/pipeline.sh"))
                        == Some(command.to_owned())
            })
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{command} not in the JSONL: {by_command:#?}"));
        let secs = |ns: u64| ns as f64 / 1e9;
        assert_eq!(row["processes"], *processes, "{command}");
        assert_eq!(row["runs"], 1, "{command}: the latest run only");
        assert!(
            (row["total_s"].as_f64().unwrap() - secs(*total)).abs() < 2e-6,
            "{row}"
        );
        assert!(
            (row["max_s"].as_f64().unwrap() - secs(*max)).abs() < 2e-6,
            "{row}"
        );
    }
    assert_eq!(
        by_command.values().map(|v| v.0).sum::<u64>() as usize,
        expected
    );

    let procs = t.processes();
    let rows = query_json(data.path(), &["processes"]);
    assert_eq!(rows.len(), expected, "latest run only");
    assert_eq!(
        query_json(data.path(), &["processes", "--run", "all"]).len(),
        2 * expected
    );
    // Runs newest first, each with its root command and how it ended; selected by `latest`,
    // `latest~1` and the start of an id.
    let runs = query_json(data.path(), &["runs"]);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    for r in &runs {
        assert_eq!(r["processes"], expected, "{r}");
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["exit_code"], 0, "{r}");
        assert!(
            r["command"].as_str().unwrap().ends_with("pipeline.sh"),
            "{r}"
        );
        assert!(r["duration_s"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(
        runs[0]["started"].as_str() > runs[1]["started"].as_str(),
        "{runs:#?}"
    );
    let pids_of = |run: &str| {
        let rows = query_json(data.path(), &["processes", "--run", run]);
        let mut pids: Vec<u64> = rows.iter().map(|r| r["pid"].as_u64().unwrap()).collect();
        pids.sort();
        pids
    };
    let (newest, older) = (
        runs[0]["run_id"].as_str().unwrap(),
        runs[1]["run_id"].as_str().unwrap(),
    );
    assert_eq!(pids_of("latest"), pids_of(newest));
    assert_eq!(pids_of("latest~1"), pids_of(older));
    assert_ne!(pids_of("latest~1"), pids_of("latest"));
    let prefix = (1..=older.len())
        .map(|n| &older[..n])
        .find(|p| !newest.starts_with(p))
        .unwrap();
    assert_eq!(pids_of(prefix), pids_of(older));
    for (run, needle) in [
        ("latest~2", "there are not 3 runs"),
        ("zzzz", "no such run"),
    ] {
        let out = query(data.path(), &["processes", "--run", run]);
        assert_one_line_error(&out, needle);
    }

    let failures = query_json(data.path(), &["failures"]);
    let statuses: Vec<&str> = failures
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "killed"], "{failures:#?}");
    assert_eq!(failures[0]["exit_code"], 4);
    assert_eq!(failures[1]["signal"], "SIGKILL");
    assert_eq!(failures[0]["parent_chain"], "dash > dash");
    // The script exits 0: both were absorbed by it, and none made the run fail.
    for f in &failures {
        assert!(
            f["outcome"]
                .as_str()
                .unwrap()
                .starts_with("absorbed by dash "),
            "{f}"
        );
    }
    // CPU and peak memory at exit: the JSONL's exit records, summed per binary.
    let mut cpu_by_binary: BTreeMap<String, f64> = BTreeMap::new();
    for p in &procs {
        let name = p.comm();
        *cpu_by_binary.entry(name).or_default() +=
            (exit_ns(p, "cpu_user_ns") + exit_ns(p, "cpu_system_ns")) as f64 / 1e9;
    }
    let cpu = query_json(data.path(), &["cpu"]);
    let cpu_total: f64 = cpu.iter().map(|r| r["cpu_s"].as_f64().unwrap()).sum();
    let jsonl_total: f64 = cpu_by_binary.values().sum();
    assert!(
        (cpu_total - jsonl_total).abs() < 1e-5 * cpu.len() as f64,
        "query cpu {cpu_total} s vs the JSONL's exits {jsonl_total} s: {cpu:#?}"
    );
    let memory = query_json(data.path(), &["memory"]);
    let jsonl_peak = procs
        .iter()
        .map(|p| exit_ns(p, "peak_rss_bytes"))
        .max()
        .unwrap();
    let query_peak = memory
        .iter()
        .filter_map(|r| r["max_peak_rss_bytes"].as_u64())
        .max()
        .unwrap();
    assert_eq!(query_peak, jsonl_peak, "{memory:#?}");
    let tree = query_json(data.path(), &["tree"]);
    assert_eq!(tree.len(), expected);
    assert_eq!(tree[0]["process"], "dash", "the root comes first");
    assert_eq!(tree[0]["depth"], 0);
    assert_eq!(tree[0]["start_s"], 0.0, "offsets from the run's start");
    // Below the root, each row's parent is the nearest row above it one level up.
    for (i, row) in tree.iter().enumerate().skip(1) {
        let depth = row["depth"].as_u64().unwrap();
        assert!(depth >= 1, "{row}");
        let parent = tree[..i]
            .iter()
            .rev()
            .find(|r| r["depth"].as_u64().unwrap() == depth - 1)
            .unwrap();
        assert_eq!(row["ppid"], parent["pid"], "{row}");
        assert!(!row["process"].as_str().unwrap().starts_with(' '), "{row}");
        assert!(row["start_s"].as_f64().unwrap() >= parent["start_s"].as_f64().unwrap());
    }

    // The files, read by the official DuckDB CLI with SQL written here (not the agent's).
    let independent = duckdb_json(&format!(
        "SELECT count(*) AS n, count(*) FILTER (WHERE status = 'failed') AS failed, \
         count(*) FILTER (WHERE status = 'killed') AS killed, count(DISTINCT run_id) AS runs \
         FROM read_parquet('{}/processes/*.parquet');",
        data.path().display()
    ));
    assert_eq!(independent[0]["n"], 2 * expected, "{independent:?}");
    assert_eq!(independent[0]["failed"], 2);
    assert_eq!(independent[0]["killed"], 2);
    assert_eq!(independent[0]["runs"], 2);

    // The embedded engine and the official CLI agree on every query's rows (engine parity:
    // the same SQL, so this checks the reading, not the SQL).
    for args in [
        vec!["durations"],
        vec!["cpu"],
        vec!["memory"],
        vec!["failures"],
        vec!["tree"],
        vec!["slowest", "--limit", "3"],
        vec!["runs"],
        vec!["processes", "--run", "all"],
        vec![
            "sql",
            "SELECT kind, count(*) AS n FROM run_events GROUP BY kind ORDER BY kind",
        ],
    ] {
        let ours = query_json(data.path(), &args);
        let script = query(data.path(), &[&args[..], &["--print-sql"]].concat());
        assert!(script.status.success(), "{}", stderr(&script));
        let oracle = duckdb_json(&stdout(&script));
        assert_same_rows(&args.join(" "), &ours, &oracle);
    }

    // Table and CSV render the same rows.
    let table = stdout(&query(data.path(), &["durations"]));
    assert!(
        table.contains(&format!("({} rows)", durations.len())),
        "{table}"
    );
    let csv = stdout(&query(data.path(), &["durations", "--format", "csv"]));
    assert_eq!(csv.lines().count(), durations.len() + 1, "{csv}");
}

/// The critical path of one traced command: (binary, command, share %) per segment, after
/// checking that the segments cover the root's lifetime back to back and their shares add up.
fn critical_path_of(dir: &Path, cmd: &[&str]) -> Vec<(String, String, f64)> {
    let data = dir.join("data");
    let out = command()
        .arg("--parquet")
        .arg(&data)
        .arg("run")
        .arg("--")
        .args(cmd)
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = query_json(&data, &["critical-path"]);
    let root = query_json(
        &data,
        &[
            "sql",
            "SELECT duration_s FROM run_processes WHERE parent_span_id IS NULL \
             OR parent_span_id NOT IN (SELECT span_id FROM run_processes)",
        ],
    );
    assert_eq!(root.len(), 1, "{root:?}");
    let wall = root[0]["duration_s"].as_f64().unwrap();
    let mut at = 0.0;
    let mut share = 0.0;
    for r in &rows {
        let start = r["start_s"].as_f64().unwrap();
        assert!(
            (start - at).abs() < 2e-6,
            "segments back to back: {rows:#?}"
        );
        at = start + r["duration_s"].as_f64().unwrap();
        share += r["share_percent"].as_f64().unwrap();
    }
    assert!(
        (at - wall).abs() < 1e-5,
        "they cover the root's {wall} s: {rows:#?}"
    );
    assert!(
        (share - 100.0).abs() < 0.1 * rows.len() as f64,
        "{share}: {rows:#?}"
    );
    rows.iter()
        .map(|r| {
            (
                r["binary"].as_str().unwrap().to_owned(),
                r["command"].as_str().unwrap().to_owned(),
                r["share_percent"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn share_of(path: &[(String, String, f64)], command: &str) -> Option<f64> {
    path.iter()
        .filter(|(_, c, _)| c == command)
        .map(|(_, _, s)| *s)
        .reduce(|a, b| a + b)
}

#[test]
fn the_critical_path_names_the_steps_that_took_the_time() {
    require_root!();
    // Shares of the wall time: a step kept waiting for a core (a 20 ms `rm` taking 80 ms on a
    // loaded runner) would take a share it does not have on its own.
    let _cores = pipetrace_tests::needs_idle_cores();
    let dir = tempfile::tempdir().unwrap();

    // A sequential script: every step is on the path, with its share of the wall time.
    let path = critical_path_of(dir.path(), &["sh", "-c", "sleep 0.1; sleep 0.3; sleep 0.1"]);
    let (a, b) = (share_of(&path, "sleep 0.1"), share_of(&path, "sleep 0.3"));
    assert!(
        a.is_some_and(|s| s > 25.0) && b.is_some_and(|s| s > 50.0),
        "{path:#?}"
    );
    assert_eq!(
        path.iter().filter(|(b, _, _)| b == "sleep").count(),
        3,
        "{path:#?}"
    );

    // A cleanup trap runs last, but the sleep took the time.
    let path = critical_path_of(
        dir.path(),
        &["sh", "-c", "trap 'rm -f no-such-file' EXIT; sleep 0.3"],
    );
    assert!(
        share_of(&path, "sleep 0.3").is_some_and(|s| s > 80.0),
        "{path:#?}"
    );
    assert!(share_of(&path, "rm -f no-such-file").is_some(), "{path:#?}");

    // A background job that outlives its parent did not hold it up.
    let path = critical_path_of(dir.path(), &["sh", "-c", "sleep 0.6 & sleep 0.2"]);
    assert!(
        share_of(&path, "sleep 0.2").is_some_and(|s| s > 80.0),
        "{path:#?}"
    );
    assert_eq!(share_of(&path, "sleep 0.6"), None, "{path:#?}");

    // make -j2: the longest chain (0.2 s then 0.3 s), not the short job beside it.
    std::fs::write(
        dir.path().join("Makefile"),
        "all: long short\nlong: first\n\tsleep 0.3\nfirst:\n\tsleep 0.2\nshort:\n\tsleep 0.1\n",
    )
    .unwrap();
    let path = critical_path_of(dir.path(), &["make", "-s", "-j2"]);
    assert!(
        share_of(&path, "sleep 0.2").is_some_and(|s| s > 30.0),
        "{path:#?}"
    );
    assert!(
        share_of(&path, "sleep 0.3").is_some_and(|s| s > 50.0),
        "{path:#?}"
    );
    assert_eq!(share_of(&path, "sleep 0.1"), None, "{path:#?}");
}

#[test]
fn pyarrow_reads_the_datasets() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    let expected = processes_by_strace();
    let traced = traced_run(data.path());
    let script = format!(
        "import pyarrow.dataset as ds, json\n\
         p = ds.dataset('{0}/processes', format='parquet').to_table()\n\
         e = ds.dataset('{0}/events', format='parquet').to_table()\n\
         print(json.dumps({{'processes': p.num_rows, 'events': e.num_rows, \
         'kinds': sorted(set(e.column('kind').to_pylist())), \
         'failed': sorted(p.filter(ds.field('status') != 'ok').column('status').to_pylist()), \
         'columns': p.column_names}}))",
        data.path().display()
    );
    let out = Command::new(venv_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(got["processes"], expected, "pyarrow vs strace: {got}");
    // The events rows are the run's JSONL records of the kinds the dataset holds (memory
    // steps appear when a process's RSS moved far enough).
    let kinds = ["fork", "exec", "exit", "memory_alloc", "memory_release"];
    let in_jsonl: Vec<&serde_json::Value> = traced
        .events
        .iter()
        .filter(|e| kinds.iter().any(|k| e["kind"] == *k))
        .collect();
    let jsonl_kinds: std::collections::BTreeSet<&str> =
        in_jsonl.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(got["kinds"], serde_json::json!(jsonl_kinds));
    assert_eq!(got["events"], in_jsonl.len(), "{got}");
    assert_eq!(got["failed"], serde_json::json!(["failed", "killed"]));
    for column in [
        "run_id",
        "pid",
        "ppid",
        "start",
        "end",
        "duration_s",
        "argv",
        "command_line",
        "exit_code",
        "signal",
        "cpu_user_s",
        "cpu_system_s",
        "peak_rss_bytes",
        "trace_id",
        "span_id",
        "parent_span_id",
    ] {
        assert!(
            got["columns"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == column),
            "{column}"
        );
    }
}

/// A daemon tracing the descendants of a script named `name` (created in `dir`, running
/// `body`), writing Parquet to `data` every `flush_interval`. Returns it and the script.
fn parquet_daemon(
    dir: &Path,
    data: &Path,
    body: &str,
    flush_interval: &str,
) -> (pipetrace_tests::Daemon, PathBuf) {
    let name = format!("ptq{}.sh", std::process::id() % 100_000);
    let script = dir.join(&name);
    std::fs::write(&script, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = dir.join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[scope]\nmode = \"descendants\"\nroot_names = [\"{name}\"]\n[output]\nparquet_dir = \"{}\"\nflush_interval = \"{flush_interval}\"\n[metrics]\nprometheus_listen = \"127.0.0.1:0\"\n",
            data.display()
        ),
    )
    .unwrap();
    let child = config_daemon(&config);
    (child, script)
}

#[test]
fn a_killed_daemon_leaves_readable_files() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut daemon, script) = parquet_daemon(
        dir.path(),
        data.path(),
        "for i in 1 2 3 4 5; do /bin/true; done\n",
        "500ms",
    );
    assert!(status_of(&mut Command::new(&script)).success());
    // Wait until the flushed files hold all six processes (read by the DuckDB CLI), then kill
    // without warning.
    let on_disk = || {
        std::fs::read_dir(data.path().join("processes")).is_ok_and(|mut d| d.next().is_some())
            && duckdb_json(&format!(
                "SELECT count(*) AS n FROM read_parquet('{}/processes/*.parquet');",
                data.path().display()
            ))[0]["n"]
                == 6
    };
    wait_until("six processes flushed", Duration::from_secs(30), on_disk);
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    let rows = query_json(
        data.path(),
        &[
            "sql",
            "SELECT command_line, status FROM processes ORDER BY start",
        ],
    );
    assert_eq!(rows.len(), 6, "the root and its 5 children: {rows:#?}");
    assert!(rows.iter().all(|r| r["status"] == "ok"));
    let oracle = duckdb_json(&format!(
        "SELECT count(*) AS n FROM read_parquet('{}/processes/*.parquet');",
        data.path().display()
    ));
    assert_eq!(oracle[0]["n"], 6);
}

#[test]
fn bad_data_and_bad_sql_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_one_line_error(
        &query(&d.join("missing"), &["durations"]),
        "no such file or directory",
    );
    std::fs::create_dir_all(d.join("empty/processes")).unwrap();
    assert_one_line_error(&query(&d.join("empty"), &["durations"]), "no Parquet data");

    // A file of another schema, made by the DuckDB CLI.
    let other = d.join("other");
    std::fs::create_dir_all(other.join("processes")).unwrap();
    duckdb_json(&format!(
        "COPY (SELECT 1 AS x) TO '{}/processes/a.parquet' (FORMAT parquet);",
        other.display()
    ));
    assert_one_line_error(
        &query(&other, &["durations"]),
        "not an otel-pipetrace processes file",
    );
    assert_one_line_error(
        &query(&other.join("processes/a.parquet"), &["durations"]),
        "not an otel-pipetrace",
    );

    // Not Parquet at all, and a truncated Parquet file.
    let junk = d.join("junk");
    std::fs::create_dir_all(junk.join("processes")).unwrap();
    std::fs::write(junk.join("processes/x.parquet"), "this is not parquet").unwrap();
    assert_one_line_error(&query(&junk, &["durations"]), "x.parquet");
    let good = d.join("good.parquet");
    duckdb_json(&format!(
        "COPY (SELECT range AS x FROM range(1000)) TO '{}' (FORMAT parquet);",
        good.display()
    ));
    let bytes = std::fs::read(&good).unwrap();
    let truncated = d.join("truncated");
    std::fs::create_dir_all(truncated.join("events")).unwrap();
    std::fs::write(
        truncated.join("events/t.parquet"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    assert_one_line_error(&query(&truncated, &["durations"]), "t.parquet");

    // Bad SQL, unknown query, bad run id, bad format: with valid data.
    let valid = d.join("valid");
    std::fs::create_dir_all(valid.join("processes")).unwrap();
    let out = command()
        .args(["query", "sql", "SELECT 1", "--data"])
        .arg(&valid)
        .output()
        .unwrap();
    assert_one_line_error(&out, "no Parquet data");
    assert_one_line_error(&query(d, &["nonsense"]), "unknown query");
    assert_one_line_error(&query(d, &["sql"]), "needs a statement");
    assert_one_line_error(&query(d, &["durations", "--format", "xml"]), "xml");
    assert_one_line_error(&query(d, &["durations", "--run", "'; drop"]), "run id");
}

#[test]
fn bad_sql_over_real_data_is_one_line() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    traced_run(data.path());
    assert_one_line_error(
        &query(data.path(), &["sql", "SELEC nonsense"]),
        "syntax error",
    );
    assert_one_line_error(
        &query(
            data.path(),
            &["sql", "SELECT no_such_column FROM processes"],
        ),
        "no_such_column",
    );
    assert_one_line_error(
        &query(data.path(), &["durations", "--run", "0123456789abcdef"]),
        "no such run",
    );
}

#[test]
fn sigterm_writes_every_buffered_row() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Nothing would be written for an hour: only the shutdown can write these rows.
    let (mut daemon, script) =
        parquet_daemon(dir.path(), data.path(), "/bin/true\n/bin/true\n", "1h");
    assert!(status_of(&mut Command::new(&script)).success());
    // Once the agent has taken in the three exits (its own counter), rows are waiting.
    let port = daemon.metrics_port();
    wait_until("the three exits counted", Duration::from_secs(30), || {
        pipetrace_tests::prometheus::get(port, "/metrics")
            .expect("the metrics endpoint answers")
            .lines()
            .filter(|l| l.starts_with("pipetrace_processes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
            == 3
    });
    assert_eq!(
        std::fs::read_dir(data.path().join("processes"))
            .unwrap()
            .count(),
        0,
        "nothing written before the shutdown"
    );
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
    let rows = query_json(data.path(), &["processes"]);
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let events = query_json(
        data.path(),
        &[
            "sql",
            "SELECT count(*) AS n FROM run_events WHERE kind = 'exit'",
        ],
    );
    assert_eq!(events[0]["n"], 3);
}

/// Files written before `step_key` and the CPU columns existed (made here by the DuckDB CLI
/// without them) still answer every query, the columns read as empty.
#[test]
fn data_from_before_later_columns_still_answers() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    traced_run(data.path());
    let old = tempfile::tempdir().unwrap();
    std::fs::create_dir(old.path().join("processes")).unwrap();
    duckdb_json(&format!(
        "COPY (SELECT * EXCLUDE (step_key, cpu_user_s, cpu_system_s, peak_rss_bytes) \
         FROM read_parquet('{}/processes/*.parquet')) TO '{}/processes/old.parquet' (FORMAT parquet);",
        data.path().display(),
        old.path().display()
    ));
    let durations = query_json(old.path(), &["durations"]);
    assert!(
        durations
            .iter()
            .any(|r| r["step"].as_str().unwrap().ends_with("pipeline.sh")),
        "the command stands in for the missing step key: {durations:#?}"
    );
    let cpu = query_json(old.path(), &["cpu"]);
    assert!(cpu.iter().all(|r| r["cpu_s"].is_null()), "{cpu:#?}");
    let report = command()
        .args(["report", "--data"])
        .arg(old.path())
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", stderr(&report));
    assert!(stdout(&report).contains("```mermaid"));
}

/// Every row of every dataset names its host: this machine's name by default, `output.host`
/// when set; read back by the DuckDB CLI. A bad host name is a one-line error.
#[test]
fn every_row_names_its_host() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let run = |data: &Path, env: &[(&str, &str)]| {
        let out = command()
            .envs(env.iter().copied())
            .args(["run", "--parquet"])
            .arg(data)
            .args([
                "--",
                "sh",
                "-c",
                "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 9))' 2>/dev/null; true",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let hosts = |data: &Path| -> Vec<Value> {
        duckdb_json(&format!(
            "SELECT DISTINCT host FROM read_parquet('{d}/*/*.parquet', union_by_name = true) ORDER BY host;",
            d = data.display()
        ))
    };
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let default = dir.path().join("default");
    run(&default, &[]);
    assert_eq!(
        hosts(&default),
        vec![serde_json::json!({"host": machine.trim()})]
    );
    // Three datasets, each with the column (the refused connect makes a connections row).
    for dataset in ["events", "processes", "connections"] {
        assert!(
            default.join(dataset).read_dir().unwrap().next().is_some(),
            "no {dataset} file"
        );
    }
    let named = dir.path().join("named");
    run(&named, &[("PIPETRACE_OUTPUT__HOST", "runner-7.ci")]);
    assert_eq!(
        hosts(&named),
        vec![serde_json::json!({"host": "runner-7.ci"})]
    );
    let rows = query_json(&named, &["sql", "SELECT DISTINCT host FROM processes"]);
    assert_eq!(rows, vec![serde_json::json!({"host": "runner-7.ci"})]);

    let out = command()
        .env("PIPETRACE_OUTPUT__HOST", "a/b")
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert_one_line_error(&out, "output.host");
}

/// Non-zero exits that a parent ignored (a helper that probes and exits 0, as a version
/// manager's do) are told apart from the failures that set the run's status: in the summary
/// line, `query failures` and the Markdown report; the processes keep their raw status.
#[test]
fn failures_a_parent_absorbed_are_counted_apart_from_the_runs_failure() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("job.sh");
    std::fs::write(
        &script,
        "sh -c 'readlink /nonexistent/a; readlink /nonexistent/b || :; exit 0'\nsh -c 'sh -c \"exit 5\"; exit $?'\nexit $?\n",
    )
    .unwrap();
    let out = command()
        .arg("--parquet")
        .arg(data.path())
        .args(["run", "--", "/bin/sh"])
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let summary = stderr(&out);
    assert!(
        summary.contains(
            "6 processes, 3 failed, 2 non-zero exits absorbed by their parents, 0 still running"
        ),
        "{summary}"
    );

    let failures = query_json(data.path(), &["failures"]);
    let outcomes: Vec<(&str, &str)> = failures
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap(),
                r["command"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 5, "{failures:#?}");
    assert!(
        outcomes[..3].iter().all(|(o, _)| *o == "propagated"),
        "the run's failures first: {outcomes:#?}"
    );
    for (outcome, command) in &outcomes[3..] {
        assert!(outcome.starts_with("absorbed by dash "), "{outcome}");
        assert!(command.starts_with("readlink /nonexistent/"), "{command}");
    }
    // The raw status stays: readlink failed.
    let raw = query_json(
        data.path(),
        &[
            "sql",
            "SELECT count(*) AS n FROM run_processes WHERE status = 'failed'",
        ],
    );
    assert_eq!(raw[0]["n"], 5, "{raw:#?}");

    let report = command()
        .args(["report", "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", stderr(&report));
    let report = stdout(&report);
    assert!(report.contains("### Failures (3)"), "{report}");
    assert!(
        report.contains("2 non-zero exits absorbed by their parent (not failures of the run)"),
        "{report}"
    );
}
