//! The Parquet sink and `otel-pipetrace query`, checked against independent readers: the
//! official DuckDB CLI (same SQL, same rows) and pyarrow; a SIGKILLed agent's files read back;
//! bad data and bad SQL are one-line errors.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use pipetrace_tests::{
    assert_one_line_error, command, config_daemon, require_root, rotel::TOOLS_VENV,
};
use serde_json::Value;

fn duckdb_cli() -> PathBuf {
    let path = PathBuf::from(TOOLS_VENV).join("bin/duckdb");
    assert!(path.exists(), "{}: run scripts/setup", path.display());
    path
}

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

fn query_json(data: &Path, args: &[&str]) -> Vec<Value> {
    let out = query(data, &[args, &["--format", "json"]].concat());
    assert!(out.status.success(), "query {args:?}: {}", stderr(&out));
    match serde_json::from_str(&stdout(&out)) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("query {args:?}: not a JSON array: {other:?}"),
    }
}

/// Runs SQL in the official DuckDB CLI; rows as JSON objects.
fn duckdb_json(script: &str) -> Vec<Value> {
    let mut child = Command::new(duckdb_cli())
        .args(["-json", ":memory:"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "duckdb CLI: {}", stderr(&out));
    let text = stdout(&out);
    // One JSON array per statement that returns rows: the last one is the query's.
    let last = text
        .trim()
        .rsplit_once("\n[")
        .map_or(text.trim().to_owned(), |(_, t)| format!("[{t}"));
    if last.is_empty() {
        return Vec::new();
    }
    match serde_json::from_str(&last) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("duckdb CLI output is not a JSON array: {other:?}\n{text}"),
    }
}

/// Timestamps print differently (`T`/`Z` vs ` `/`+00`); compare their digits.
fn normalize(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() >= 19 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' => {
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            Value::String(digits.trim_end_matches('0').to_owned())
        }
        other => other.clone(),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => normalize(a) == normalize(b),
    }
}

fn assert_same_rows(name: &str, ours: &[Value], oracle: &[Value]) {
    assert_eq!(
        ours.len(),
        oracle.len(),
        "{name}: row count\nours {ours:#?}\ncli {oracle:#?}"
    );
    for (i, (a, b)) in ours.iter().zip(oracle).enumerate() {
        let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{name} row {i}: columns"
        );
        for (k, va) in a {
            assert!(
                same(va, &b[k]),
                "{name} row {i} column {k}: ours {va} vs CLI {}",
                b[k]
            );
        }
    }
}

/// A pipeline with repeated commands, a failure, a kill and nesting.
const PIPELINE: &str = r#"for i in 1 2 3; do /bin/sleep 0.0$i; done
sh -c '/bin/true; exit 4'
sh -c 'kill -9 $$'
(/bin/echo sub | /bin/cat > /dev/null)
exit 0
"#;

fn traced_run(data: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("pipeline.sh");
    std::fs::write(&script, PIPELINE).unwrap();
    let out = command()
        .arg("--parquet")
        .arg(data)
        .args(["run", "--", "/bin/sh"])
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn queries_agree_with_the_duckdb_cli_row_for_row() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    traced_run(data.path());
    let summary = traced_run(data.path()); // two runs: the default is the latest one
    let processes: usize = summary
        .split("otel-pipetrace: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();

    let durations = query_json(data.path(), &["durations"]);
    let sleeps: Vec<&Value> = durations
        .iter()
        .filter(|r| {
            r["command"]
                .as_str()
                .is_some_and(|c| c.starts_with("/bin/sleep"))
        })
        .collect();
    assert_eq!(sleeps.len(), 3, "{durations:#?}");
    assert!(sleeps.iter().all(|r| r["runs"] == 1));
    let rows = query_json(data.path(), &["processes"]);
    assert_eq!(rows.len(), processes, "latest run only");
    assert_eq!(
        query_json(data.path(), &["processes", "--run", "all"]).len(),
        2 * processes
    );
    let runs = query_json(data.path(), &["runs"]);
    assert_eq!(runs.len(), 2);

    let failures = query_json(data.path(), &["failures"]);
    let statuses: Vec<&str> = failures
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "killed"], "{failures:#?}");
    assert_eq!(failures[0]["exit_code"], 4);
    assert_eq!(failures[1]["signal"], 9);
    assert_eq!(failures[0]["parent_chain"], "dash > dash");
    // CPU and peak memory measured by the kernel at exit, for every binary.
    let cpu = query_json(data.path(), &["cpu"]);
    assert!(
        cpu.iter()
            .all(|r| r["cpu_s"].as_f64().is_some_and(|v| v > 0.0)),
        "{cpu:#?}"
    );
    let memory = query_json(data.path(), &["memory"]);
    assert!(
        memory
            .iter()
            .all(|r| r["max_peak_rss_bytes"].as_i64().is_some_and(|v| v > 0)),
        "{memory:#?}"
    );
    let tree = query_json(data.path(), &["tree"]);
    assert_eq!(tree.len(), processes);
    assert_eq!(
        tree[0]["process"], "dash",
        "the root comes first, unindented"
    );
    assert!(
        tree[1..]
            .iter()
            .all(|r| r["process"].as_str().unwrap().starts_with("  "))
    );

    for args in [
        vec!["durations"],
        vec!["cpu"],
        vec!["memory"],
        vec!["failures"],
        vec!["tree"],
        vec!["slowest", "--limit", "3"],
        vec!["critical-path"],
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

#[test]
fn pyarrow_reads_the_datasets() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    let summary = traced_run(data.path());
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
    assert!(
        summary.contains(&format!("otel-pipetrace: {} processes", got["processes"])),
        "{summary} vs {got}"
    );
    assert_eq!(got["kinds"], serde_json::json!(["exec", "exit", "fork"]));
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
    // The events rows: one exit per process, one fork per process but the root.
    assert!(got["events"].as_u64().unwrap() >= 2 * got["processes"].as_u64().unwrap());
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
            "[scope]\nmode = \"descendants\"\nroot_names = [\"{name}\"]\n[output]\nparquet_dir = \"{}\"\nflush_interval = \"{flush_interval}\"\n",
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
    assert!(Command::new(&script).status().unwrap().success());
    // Wait for a flush to land, then kill without warning.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(data.path().join("processes")).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "no processes file was flushed");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
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
    assert!(Command::new(&script).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
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
