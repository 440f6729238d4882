//! The answers where CI users look: the summary at the end of `run`, reports, run comparison
//! and trace export, each checked on real traced pipelines against the run's own events.

use std::path::Path;

use pipetrace_tests::{
    command, query_json, query_stdout, real_python, require_root, script, traced,
};

/// A pipeline with a known shape: the slowest step, a memory-hungry one, and a failing last
/// step whose status becomes the script's.
fn failing_pipeline(dir: &Path) -> std::path::PathBuf {
    let python = real_python();
    script(
        dir,
        "pipeline.sh",
        &format!(
            "sleep 1.5\n{python} -c 'x = bytearray(96 << 20); import time; time.sleep(0.05)'\ntrue\nsh -c 'sleep 0.1; exit 3'\n"
        ),
    )
}

/// Seconds of a duration as the summary prints it (`663 ms`, `1.23 s`).
fn seconds(text: &str) -> f64 {
    let (value, unit) = text.trim().split_once(' ').expect("a value and a unit");
    let value: f64 = value.parse().unwrap();
    value
        * match unit {
            "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "min" => 60.0,
            _ => panic!("unit {unit}"),
        }
}

/// MiB of a size as printed (`96.3 MiB`).
fn mebibytes(text: &str) -> f64 {
    let (value, unit) = text.trim().split_once(' ').unwrap();
    let value: f64 = value.parse().unwrap();
    value
        * match unit {
            "KiB" => 1.0 / 1024.0,
            "MiB" => 1.0,
            "GiB" => 1024.0,
            _ => panic!("unit {unit}"),
        }
}

fn line_after<'a>(stderr: &'a str, label: &str) -> &'a str {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(&format!("  {label:<9}")))
        .unwrap_or_else(|| panic!("no {label} line in:\n{stderr}"))
}

#[test]
fn run_ends_with_a_summary_a_ci_reader_can_act_on() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = failing_pipeline(dir.path());
    let jsonl = dir.path().join("events.jsonl");
    let out = command()
        .arg("run")
        .arg("--jsonl")
        .arg(&jsonl)
        .arg("--parquet")
        .arg(dir.path().join("data"))
        .arg("--")
        .arg(&pipeline)
        .output()
        .unwrap();
    let t = traced(out, &jsonl);
    assert_eq!(t.status, 3, "{}", t.stderr);
    let stderr = &t.stderr;
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in a log: {stderr:?}"
    );

    // The totals line stays first, for scripts that parse it.
    assert!(t.summary().contains("processes, 2 failed"), "{stderr}");

    // Wall time covers the 1.5 s and 0.1 s sleeps; CPU is user + system.
    let wall = seconds(line_after(stderr, "wall"));
    assert!((0.5..10.0).contains(&wall), "wall {wall}: {stderr}");
    let cpu_line = line_after(stderr, "CPU");
    let (total, parts) = cpu_line.split_once(" (user ").unwrap();
    let (user, system) = parts.trim_end_matches(')').split_once(", system ").unwrap();
    let (total, user, system) = (seconds(total), seconds(user), seconds(system));
    assert!(
        (total - user - system).abs() <= 0.01 * total + 1e-3,
        "{cpu_line}"
    );
    // The run's own exit records agree on the CPU time.
    let procs = t.processes();
    let exits: Vec<&serde_json::Value> = procs.iter().filter_map(|p| p.exit.as_ref()).collect();
    let recorded_cpu: f64 = exits
        .iter()
        .map(|e| {
            e["cpu_user_ns"].as_f64().unwrap_or(0.0) + e["cpu_system_ns"].as_f64().unwrap_or(0.0)
        })
        .sum::<f64>()
        / 1e9;
    assert!(
        (total - recorded_cpu).abs() <= 0.01 * recorded_cpu + 0.002,
        "summary CPU {total} vs exit records {recorded_cpu}"
    );

    // Peak memory: the largest process, named, as the exit records measured it.
    let memory = line_after(stderr, "memory");
    let peak = exits
        .iter()
        .filter_map(|e| e["peak_rss_bytes"].as_i64())
        .max()
        .unwrap();
    let shown = mebibytes(memory.split(" peak").next().unwrap());
    let recorded = peak as f64 / (1 << 20) as f64;
    assert!(
        (shown - recorded).abs() <= 0.01 * recorded,
        "{memory} vs {peak} bytes"
    );
    assert!(shown >= 96.0, "{memory}");
    assert!(memory.contains("python"), "{memory}");

    // The three slowest steps, slowest first: the 1.5 s sleep leads (well
    // clear of the allocation step, which took 0.44 s on a loaded CI machine).
    let slowest: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("  slowest"))
        .take(3)
        .collect();
    assert_eq!(slowest.len(), 3, "{stderr}");
    assert!(slowest[0].ends_with("sleep 1.5"), "{stderr}");
    assert!(
        seconds(&slowest[0][11..slowest[0].len() - "sleep 1.5".len()]) >= 1.5,
        "{stderr}"
    );
    assert!(
        slowest
            .iter()
            .any(|l| l.ends_with("sh -c 'sleep 0.1; exit 3'")),
        "shell-quoted command expected: {stderr}"
    );

    // The failure chain: the script's status 3 came from the shell that exited 3.
    let failure: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("  failure"))
        .take(2)
        .collect();
    assert!(
        failure[0].contains("status 3") && failure[0].contains("pipeline.sh"),
        "{stderr}"
    );
    assert!(
        failure[1].contains("└ status 3  sh -c 'sleep 0.1; exit 3'"),
        "{stderr}"
    );
    let run_line = line_after(stderr, "run");
    let run_id = run_line.split_whitespace().next().unwrap();
    assert_eq!(run_id.len(), 16, "{run_line}");
}

#[test]
fn summary_line_keeps_the_totals_alone() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("events.jsonl");
    let out = command()
        .args(["run", "--summary", "line", "--parquet"])
        .arg(dir.path().join("data"))
        .arg("--jsonl")
        .arg(&jsonl)
        .args(["--", "sh", "-c", "sleep 0.1"])
        .output()
        .unwrap();
    let t = traced(out, &jsonl);
    assert_eq!(t.status, 0, "{}", t.stderr);
    let lines: Vec<&str> = t.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", t.stderr);
    assert!(lines[0].contains(" processes, 0 failed"), "{}", t.stderr);
}

/// `otel-pipetrace query ARGS` on a terminal `columns` wide (a pty from `script`), as a person
/// sees it.
fn on_terminal(columns: u16, data: &Path, args: &[&str]) -> String {
    let bin = pipetrace_tests::bin();
    let words: Vec<String> = std::iter::once(bin.display().to_string())
        .chain(["query", "--data"].map(String::from))
        .chain(std::iter::once(data.display().to_string()))
        .chain(args.iter().map(|a| a.to_string()))
        .map(|w| shlex::try_quote(&w).unwrap().into_owned())
        .collect();
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!("stty cols {columns} rows 50; {}", words.join(" ")))
        .arg("/dev/null")
        .output()
        .expect("script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{text}");
    text
}

fn width(line: &str) -> usize {
    line.chars().count()
}

#[test]
fn tables_read_in_units_fit_the_terminal_and_fold_short_processes() {
    require_root!();
    let _cores = pipetrace_tests::needs_idle_cores();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let long_arg = "x".repeat(150);
    let pipeline = script(
        dir.path(),
        "pipeline.sh",
        &format!(
            "for i in $(seq 12); do /bin/true; done\nsleep 0.3\nsh -c 'sleep 0.2; true' {long_arg}\nsh -c 'sleep 0.05; kill -9 $$'\nexit 0\n"
        ),
    );
    let out = command()
        .arg("run")
        .arg("--parquet")
        .arg(&data)
        .arg("--")
        .arg(&pipeline)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // slowest: ten rows unless asked, durations with units, numbers right-aligned, the long
    // command cut to the terminal's 100 columns.
    let slowest = on_terminal(100, &data, &["slowest"]);
    assert!(slowest.contains("(10 rows"), "{slowest}");
    let lines: Vec<&str> = slowest.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines.iter().all(|l| width(l) <= 100), "{slowest}");
    assert!(
        lines[1].contains("duration") && !lines[1].contains("duration_s"),
        "{slowest}"
    );
    let sleep_row = lines.iter().find(|l| l.contains("sleep 0.3")).unwrap();
    let cells: Vec<&str> = sleep_row.split('┆').collect();
    let duration = cells[1];
    assert!(duration.ends_with(" ms "), "{sleep_row}");
    assert!(
        duration.starts_with("│  ") || duration.starts_with("  "),
        "right-aligned: {sleep_row}"
    );
    // Among the ten slowest for its 0.2 s, whatever the machine's speed.
    let long_row = lines
        .iter()
        .find(|l| l.contains("sleep 0.2; true"))
        .unwrap();
    assert!(long_row.contains('…'), "cut: {long_row}");
    // --wide: all of it.
    let wide = on_terminal(100, &data, &["slowest", "--wide"]);
    assert!(wide.contains(&long_arg), "{wide}");
    // Not a terminal: no timeline, text cut at a fixed width, whole with --wide, in CSV and
    // in JSON.
    let piped = |args: &[&str]| query_stdout(&data, &[&["slowest"], args].concat());
    let cut = piped(&[]);
    assert!(!cut.contains(&long_arg) && cut.contains("xxx…"), "{cut}");
    assert!(!cut.contains('█'), "{cut}");
    assert!(piped(&["--wide"]).contains(&long_arg));
    assert!(piped(&["--format", "csv"]).contains(&long_arg));
    assert!(piped(&["--format", "json"]).contains(&long_arg));

    // tree: start offsets and a timeline bar per process; the twelve /bin/true fold.
    let tree = on_terminal(120, &data, &["tree", "--min-duration", "20ms"]);
    assert!(tree.contains("timeline"), "{tree}");
    let folded: usize = tree
        .lines()
        .filter_map(|l| l.split("(+").nth(1))
        .map(|rest| rest.split(' ').next().unwrap().parse::<usize>().unwrap())
        .sum();
    let all = query_json(&data, &["tree"]);
    let kept = tree.lines().filter(|l| l.contains('█')).count();
    assert_eq!(
        kept + folded,
        all.len(),
        "every process shown or counted:\n{tree}"
    );
    assert!(folded >= 12, "the twelve /bin/true at least:\n{tree}");
    assert!(tree.contains("SIGKILL"), "signals by name: {tree}");
    // JSON leaves the folded rows out and keeps depth and parent pid.
    let json = query_json(&data, &["tree", "--min-duration", "20ms"]);
    assert_eq!(json.len(), kept, "{json:#?}");
    assert!(
        json.iter()
            .all(|r| r["duration_s"].as_f64().unwrap() >= 0.02 || r["depth"] == 0)
    );
    // A bad duration names the flag.
    let bad = command()
        .args(["query", "tree", "--min-duration", "fast", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    pipetrace_tests::assert_one_line_error(&bad, "--min-duration");
}

/// `otel-pipetrace run --summary line --parquet DATA -- PIPELINE` with extra environment.
fn run_into(
    data: &Path,
    env: &[(&str, &std::ffi::OsStr)],
    pipeline: &Path,
) -> std::process::Output {
    command()
        .envs(env.iter().copied())
        .args(["run", "--summary", "line", "--parquet"])
        .arg(data)
        .arg("--")
        .arg(pipeline)
        .output()
        .unwrap()
}

/// `otel-pipetrace ARGS --data DATA --output FILE` (`report`, `export`), which must succeed.
fn document(data: &Path, args: &[&str], output: &Path) {
    let out = command()
        .args(args)
        .arg("--data")
        .arg(data)
        .arg("--output")
        .arg(output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const NPM_DIR: &str = "/var/cache/otel-pipetrace/npm";

fn tool(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools")
        .join(name)
}

/// The tasks of a mermaid gantt chart as the real mermaid library reads them:
/// (name, start ms, end ms, crit).
fn mermaid_tasks(chart: &str) -> Vec<(String, i64, i64, bool)> {
    use std::io::Write;
    let mut child = std::process::Command::new("node")
        .arg(tool("mermaid_tasks.mjs"))
        .arg(NPM_DIR)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node (scripts/setup installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(chart.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mermaid rejected the chart: {}\n{chart}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tasks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    tasks
        .iter()
        .map(|t| {
            (
                t[0].as_str().unwrap().to_owned(),
                t[1].as_i64().unwrap(),
                t[2].as_i64().unwrap(),
                t[3].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_markdown_report_is_the_job_summary_and_its_gantt_chart_parses_in_mermaid() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pipeline = failing_pipeline(dir.path());
    let summary_file = dir.path().join("step_summary.md");
    std::fs::write(&summary_file, "earlier step\n").unwrap();
    let out = run_into(
        &data,
        &[("GITHUB_STEP_SUMMARY", summary_file.as_os_str())],
        &pipeline,
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The job summary is appended, and is the report `report` makes from the Parquet files.
    let written = std::fs::read_to_string(&summary_file).unwrap();
    let report = command()
        .args(["report", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let report = String::from_utf8(report.stdout).unwrap();
    assert_eq!(written, format!("earlier step\n{report}\n"));
    assert!(report.contains("❌ status 3"), "{report}");
    assert!(report.contains("### Failure\n"), "{report}");
    assert!(
        report.contains("- status 3 `sh -c 'sleep 0.1; exit 3'`"),
        "{report}"
    );
    assert!(report.contains("### Most memory"), "{report}");

    // The Gantt chart, read by mermaid itself: one task per step of the script, at the
    // offsets and for the durations the processes had, the failed one marked critical.
    let chart = report
        .split("```mermaid\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a mermaid block");
    let tasks = mermaid_tasks(chart);
    let tree = query_json(&data, &["tree"]);
    let steps: Vec<&serde_json::Value> = tree.iter().filter(|r| r["depth"] == 1).collect();
    assert_eq!(tasks.len(), steps.len(), "{tasks:?}\n{steps:#?}");
    for ((name, from, to, crit), step) in tasks.iter().zip(&steps) {
        let start_ms = (step["start_s"].as_f64().unwrap() * 1000.0) as i64;
        let end_ms = ((step["start_s"].as_f64().unwrap() + step["duration_s"].as_f64().unwrap())
            * 1000.0) as i64;
        assert!((from - start_ms).abs() <= 1, "{name}: {from} vs {start_ms}");
        assert!((to - end_ms).abs() <= 1, "{name}: {to} vs {end_ms}");
        assert_eq!(*crit, step["status"] == "failed", "{name}");
        let command = step["command"].as_str().unwrap().replace(';', " ");
        let command: String = command.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            command.starts_with(name.trim_end_matches('…')),
            "{name} vs {command}"
        );
    }
    assert!(tasks.iter().any(|t| t.0 == "sleep 1.5" && !t.3));
}

/// A pipeline whose one step takes `DELAY` seconds and whose last step exits `FAIL`, with
/// the same command lines in every run: the steps match across runs.
fn tunable_pipeline(dir: &Path) -> std::path::PathBuf {
    let python = real_python();
    script(
        dir,
        "pipeline.sh",
        &format!(
            "{python} -c 'import os, time; time.sleep(float(os.environ[\"DELAY\"]))'\nsleep 0.05\nsh -c 'exit ${{FAIL:-0}}'\nexit 0\n"
        ),
    )
}

fn traced_pipeline(data: &Path, pipeline: &Path, delay: &str, fail: &str) {
    let out = run_into(
        data,
        &[("DELAY", delay.as_ref()), ("FAIL", fail.as_ref())],
        pipeline,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn compare(data: &Path, args: &[&str]) -> std::process::Output {
    command()
        .arg("compare")
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

#[test]
fn compare_flags_the_slower_step_and_the_new_failure() {
    require_root!();
    let _cores = pipetrace_tests::needs_idle_cores();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pipeline = tunable_pipeline(dir.path());
    traced_pipeline(&data, &pipeline, "0.1", "0");
    traced_pipeline(&data, &pipeline, "0.15", "0");
    traced_pipeline(&data, &pipeline, "0.6", "1");

    let out = compare(&data, &["--baseline", "latest~1", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = |needle: &str| {
        rows.iter()
            .find(|r| r["step"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no step {needle}: {rows:#?}"))
    };
    let slow = row("time.sleep");
    assert_eq!(slow["change"], "slower", "{slow}");
    // Each run slept its delay; the rest of the step (Python's start) varies with the load,
    // so the durations are checked from below and the delta against the two it compares.
    let delta = slow["delta_s"].as_f64().unwrap();
    let (before, after) = (
        slow["before_s"].as_f64().unwrap(),
        slow["after_s"].as_f64().unwrap(),
    );
    assert!(before >= 0.15 && after >= 0.6, "{slow}");
    assert!((after - before - delta).abs() < 0.001, "{slow}");
    assert_eq!(row("exit ${FAIL:-0}")["change"], "new failure");
    assert_eq!(row("sleep 0.05")["change"], "", "unchanged");
    // Storage and network bytes before and after, as measured (python reads its modules).
    let python_step = row("time.sleep");
    for column in [
        "storage_before_bytes",
        "storage_after_bytes",
        "network_before_bytes",
        "network_after_bytes",
    ] {
        assert!(python_step[column].is_i64(), "{column}: {python_step}");
    }
    assert!(
        rows.iter()
            .all(|r| r["change"] != "new" && r["change"] != "missing"),
        "{rows:#?}"
    );
    // New failures first, then slower steps.
    assert_eq!(rows[0]["change"], "new failure");

    // A CI gate: a distinct status on regression, none without.
    assert_eq!(
        compare(&data, &["--baseline", "latest~1", "--fail-on-regression"])
            .status
            .code(),
        Some(4)
    );
    let reversed = compare(
        &data,
        &[
            "--run",
            "latest~1",
            "--baseline",
            "latest",
            "--fail-on-regression",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        reversed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&reversed.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&reversed.stdout).unwrap();
    assert!(rows.iter().any(|r| r["change"] == "faster"), "{rows:#?}");
    assert!(rows.iter().any(|r| r["change"] == "fixed"), "{rows:#?}");

    // The median of the two earlier runs, and Markdown for a pull-request comment.
    let md = compare(&data, &["--baseline-runs", "2", "--format", "markdown"]);
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(
        md.contains("❌ regressed") && md.contains("the median of 2 runs"),
        "{md}"
    );
    assert!(
        md.contains("🐢 slower") && md.contains("❌ new failure"),
        "{md}"
    );

    // Comparing a run with itself, or with runs that are not there, is one line.
    pipetrace_tests::assert_one_line_error(
        &compare(&data, &["--baseline", "latest"]),
        "--baseline",
    );
    pipetrace_tests::assert_one_line_error(
        &compare(&data, &["--baseline", "latest~5"]),
        "--baseline latest~5",
    );
    pipetrace_tests::assert_one_line_error(
        &compare(&data, &["--run", "latest~2", "--baseline-runs", "3"]),
        "--baseline-runs 3",
    );

    // A baseline of another command is named, not silently matched step by step.
    let out = run_into(&data, &[], Path::new("/bin/true"));
    assert!(out.status.success());
    let out = compare(&data, &["--baseline", "latest~1"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the baseline ran another command"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_chrome_trace_opens_in_speedscope_with_a_track_per_process() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pipeline = failing_pipeline(dir.path());
    let out = run_into(&data, &[], &pipeline);
    assert_eq!(out.status.code(), Some(3));
    let trace = dir.path().join("trace.json");
    document(&data, &["export", "--format", "chrome-trace"], &trace);

    // Our reading: one complete event per process, at its offset, with its details.
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&trace).unwrap()).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    let processes = query_json(&data, &["processes"]);
    let complete: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(complete.len(), processes.len());
    let failed = complete
        .iter()
        .find(|e| e["name"] == "sh -c 'sleep 0.1; exit 3'")
        .unwrap();
    assert_eq!(failed["args"]["exit_code"], 3);
    assert_eq!(failed["args"]["argv"][2], "sleep 0.1; exit 3");
    assert!(
        (failed["dur"].as_f64().unwrap() - 100_000.0).abs() < 50_000.0,
        "{failed}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "C" && e["name"] == "memory"),
        "RSS counters"
    );

    // An independent reader: speedscope's importer in a real browser shows one profile per
    // process track.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("speedscope.png");
    let out = std::process::Command::new("/var/cache/otel-pipetrace/venv/bin/python")
        .arg(tool("speedscope_open.py"))
        .arg(format!(
            "{NPM_DIR}/node_modules/speedscope/dist/release/index.html"
        ))
        .arg(&trace)
        .arg(&shot)
        .output()
        .expect("the test tools venv (scripts/setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["title"], "trace.json - speedscope", "{page}");
    let body = page["body"].as_str().unwrap();
    assert!(
        body.contains(&format!("(1/{})", processes.len())),
        "one profile per process: {body}"
    );
    assert_eq!(page["console_errors"], serde_json::json!([]), "{page}");
    assert!(shot.exists());
}

/// The HTML report as a person uses it, in Debian's headless Chromium driven by Selenium
/// (`tests/tools/report_open.py`): what it shows, clicks, collapsing and zoom.
fn open_report(report: &Path, screenshot: &Path, click: &str) -> serde_json::Value {
    let out = std::process::Command::new("/var/cache/otel-pipetrace/venv/bin/python")
        .arg(tool("report_open.py"))
        .arg(report)
        .arg(screenshot)
        .arg(click)
        .output()
        .expect("the test tools venv (scripts/setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_html_report_shows_every_process_and_its_details_in_a_real_browser() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let python = real_python();
    // A step whose arguments are markup: the page must show them as text.
    let markup = "<img src=x onerror=alert(1)><b>bold?</b>";
    let pipeline = script(
        dir.path(),
        "pipeline.sh",
        &format!(
            "sleep 0.4\n{python} -c 'x = bytearray(96 << 20); import time; time.sleep(0.3)'\n\
             /bin/echo '{markup}' > /dev/null\n(sleep 0.05; true) &\nwait\nsh -c 'sleep 0.1; exit 3'\n"
        ),
    );
    let out = run_into(&data, &[], &pipeline);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = dir.path().join("report.html");
    document(&data, &["report", "--format", "html"], &report);
    // Self-contained: nothing loaded from anywhere, and the page's policy forbids it.
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        !html.contains("<link") && !html.contains(" src=\""),
        "external resources"
    );
    assert!(html.contains("default-src 'none'"));

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report.png");
    let page = open_report(&report, &shot, "onerror");
    assert_eq!(page["console_errors"], serde_json::json!([]), "{page}");
    assert!(shot.exists());

    // One bar per process, each with its command and status.
    let processes = query_json(&data, &["processes"]);
    let bars = page["bars"].as_array().unwrap();
    assert_eq!(page["processes"], processes.len());
    assert_eq!(bars.len(), processes.len(), "{page}");
    let pids_and_commands = |rows: &[serde_json::Value]| {
        let mut out: Vec<(u64, String)> = rows
            .iter()
            .map(|r| (r["pid"].as_u64().unwrap(), r["command"].to_string()))
            .collect();
        out.sort();
        out
    };
    assert_eq!(pids_and_commands(bars), pids_and_commands(&processes));
    let bar = |command: &str| {
        bars.iter()
            .find(|b| b["command"] == command)
            .unwrap_or_else(|| panic!("no bar for {command}: {page}"))
    };
    let has = |b: &serde_json::Value, class: &str| {
        b["classes"].as_array().unwrap().iter().any(|c| c == class)
    };
    assert!(has(bar("sh -c 'sleep 0.1; exit 3'"), "failed"));
    assert!(has(bar("sleep 0.4"), "ok"));

    // The critical path drawn is the one `query critical-path` gives.
    let mut on_path: Vec<u64> = query_json(&data, &["critical-path"])
        .iter()
        .map(|s| s["pid"].as_u64().unwrap())
        .collect();
    on_path.sort();
    on_path.dedup();
    let mut drawn: Vec<u64> = bars
        .iter()
        .filter(|b| has(b, "crit"))
        .map(|b| b["pid"].as_u64().unwrap())
        .collect();
    drawn.sort();
    assert_eq!(drawn, on_path);
    assert!(
        has(bar("sleep 0.4"), "crit"),
        "a sequential step is on the path"
    );

    // The failure chain links into the timeline and selects the failed process.
    let chain = page["failure_chain"].as_array().unwrap();
    assert_eq!(chain.last().unwrap(), "sh -c 'sleep 0.1; exit 3'", "{page}");
    let link = &page["chain_link"];
    assert_eq!(link["selected"], serde_json::json!([link["proc"]]));
    assert!(
        link["details"].as_str().unwrap().contains("status 3"),
        "{link}"
    );

    // A click shows the arguments as text, markup and all.
    let clicked = &page["clicked"];
    assert_eq!(
        clicked["argv"],
        serde_json::json!(["/bin/echo", markup]),
        "{clicked}"
    );
    let details = clicked["details"].as_str().unwrap();
    assert!(details.contains("cwd"), "{details}");
    // What the kernel measured of its I/O (its binary may come from disk) and network use
    // (echo to /dev/null: none).
    assert!(
        details.contains("storage\nread ")
            && details.contains(", written 0 B")
            && details.contains("network\nsent 0 B, received 0 B"),
        "{details}"
    );
    let found = &page["find"];
    assert_eq!(found["count"], "1 of 1", "{found}");
    assert_eq!(
        found["selected"][0],
        format!("/bin/echo '{markup}'"),
        "{found}"
    );

    // Memory over time, from the samples: the Python step's 96 MiB.
    let memory = page["charts"][1].as_str().unwrap();
    let peak = memory.rsplit("max ").next().unwrap();
    assert!(mebibytes(peak) >= 90.0, "{memory}");

    // Collapsing the root hides the rest; expanding brings it back; zoom widens the time axis.
    let in_page = page["bars_in_page"].as_u64().unwrap();
    assert_eq!(page["bars_collapsed"], 1);
    assert!(
        page["collapsed_label"]
            .as_str()
            .unwrap()
            .ends_with(&format!("+{}", processes.len() - 1)),
        "{page}"
    );
    assert_eq!(page["bars_expanded"], in_page);
    let zoom = &page["zoom"];
    assert_eq!(zoom["label"], "×4.0");
    let ratio =
        zoom["root_bar_after"].as_f64().unwrap() / zoom["root_bar_before"].as_f64().unwrap();
    assert!((ratio - 4.0).abs() < 0.01, "{zoom}");
}

/// A step behind a version-manager shim (pyenv's, asdf's, rbenv's shape): a script that forks
/// helpers and probes (whose non-zero exits it ignores), then executes the real program. The
/// step is the program, and the ignored probes are no failures of the job.
#[test]
fn a_step_behind_a_version_manager_shim_is_the_program_it_runs() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let python = real_python();
    let shims = dir.path().join("shims");
    std::fs::create_dir(&shims).unwrap();
    let shim = script(
        &shims,
        "python3",
        &format!(
            "for i in 1 2 3 4 5; do readlink /nonexistent/$i || true; done\nversion=$(sh -c 'echo 3.11')\nsh -c 'sleep 0.05'\nexec {python} \"$@\""
        ),
    );
    let out = command()
        .args(["run", "--"])
        .arg(&shim)
        .args(["-c", "import time; time.sleep(0.3)"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("0 failed, 5 non-zero exits absorbed by their parents,"),
        "{stderr}"
    );
    let slowest: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("  slowest"))
        .take_while(|l| l.starts_with("  slowest") || l.starts_with("           "))
        .collect();
    assert_eq!(slowest.len(), 1, "the program is the one step: {stderr}");
    assert!(
        slowest[0].ends_with("-c 'import time; time.sleep(0.3)'"),
        "{stderr}"
    );
    assert!(
        seconds(slowest[0][11..].split("  ").next().unwrap()) >= 0.3,
        "{stderr}"
    );
    assert!(!stderr.contains("  failure"), "a green run: {stderr}");

    // A job with the shim as one of its steps: the HTML timeline opens on the job's steps,
    // the shim's 40 helpers folded inside the Python step, not on them.
    let data = dir.path().join("data");
    let job = script(
        dir.path(),
        "job.sh",
        &format!(
            "sh -c 'sleep 0.5; true'\n{} -c 'import time; time.sleep(0.3)'\nsh -c 'exit 0'",
            shim.display()
        ),
    );
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nfor i in $(seq 40); do sh -c 'true'; done\nreadlink /nonexistent || true\nexec {python} \"$@\"\n"
        ),
    )
    .unwrap();
    let out = run_into(&data, &[], &job);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = dir.path().join("report.html");
    document(&data, &["report", "--format", "html"], &report);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report-shim.png");
    let page = open_report(&report, &shot, "time.sleep");
    let opened: Vec<(&str, &str)> = page["opened"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["command"].as_str().unwrap(), r["label"].as_str().unwrap()))
        .collect();
    let commands: Vec<&str> = opened.iter().map(|(c, _)| *c).collect();
    assert_eq!(opened.len(), 4, "the job and its three steps: {opened:#?}");
    assert!(commands[0].ends_with("job.sh"), "{opened:#?}");
    assert_eq!(commands[1], "sh -c 'sleep 0.5; true'");
    assert!(
        commands[2].ends_with("-c 'import time; time.sleep(0.3)'"),
        "{opened:#?}"
    );
    let folded: usize = opened[2].1.rsplit('+').next().unwrap().parse().unwrap();
    assert!(
        folded >= 41,
        "the shim's 40 helpers and probe folded: {opened:#?}"
    );
    assert_eq!(commands[3], "sh -c 'exit 0'");
}

/// Tables at 60, 80, 120 and 200 columns of a real terminal: no line wider than the terminal,
/// headers on one line, the command readable (its script's name kept, directories shortened
/// from the left) while less telling columns go, and the closing line says which went. Out
/// of a terminal, a command line of 18 KB does not widen every row.
#[test]
fn tables_fit_every_terminal_width_and_stay_narrow_in_a_pipe() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let steps = dir
        .path()
        .join("ci/workspace/projects/data-platform/pipelines/nightly/steps");
    std::fs::create_dir_all(&steps).unwrap();
    let step = script(&steps, "extract_orders.sh", "sleep 0.2");
    let huge = "y".repeat(18_000);
    let pipeline = script(
        dir.path(),
        "pipeline.sh",
        &format!(
            "{step} --since 2026-01-01 --region eu-west-1\n{step} --since 2026-01-02 --region eu-west-1\nsh -c 'exit 4' || true\n/bin/true {huge}\nexit 0\n",
            step = step.display()
        ),
    );
    // The 18 KB argument whole in the data.
    let argv_max = std::ffi::OsStr::new("32768");
    let out = run_into(
        &data,
        &[("PIPETRACE_CAPTURE__ARGV_MAX_BYTES", argv_max)],
        &pipeline,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for columns in [60u16, 80, 120, 200] {
        for query in [
            "durations",
            "tree",
            "critical-path",
            "failures",
            "slowest",
            "io",
        ] {
            let table = on_terminal(columns, &data, &[query]);
            let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
            for line in &lines {
                assert!(
                    width(line) <= columns as usize,
                    "{query} at {columns}: {} wide:\n{table}",
                    width(line)
                );
            }
            // Top border, one header line, then the header's rule.
            assert!(
                lines[2].starts_with('╞'),
                "{query} at {columns}: header on one line:\n{table}"
            );
            if query != "failures" {
                assert!(
                    table.contains("extract_orders.sh"),
                    "{query} at {columns}: the script's name:\n{table}"
                );
            }
            if columns >= 200 && query != "io" {
                assert!(
                    !table.contains("Left out"),
                    "{query} at {columns}:\n{table}"
                );
            }
        }
    }
    // `io` says what its byte columns count: the disk's bytes and those through read and
    // write calls (not a number of calls).
    let io = on_terminal(200, &data, &["io"]);
    for header in [
        "storage read",
        "storage write",
        "syscall read",
        "syscall write",
    ] {
        assert!(io.contains(header), "{header}: {io}");
    }
    assert!(!io.contains("read call"), "{io}");
    // At 80 columns `durations` keeps the step readable and says what it left out.
    let durations = on_terminal(80, &data, &["durations"]);
    let row = durations
        .lines()
        .find(|l| l.contains("extract_orders.sh"))
        .unwrap();
    let step_cell = row
        .split('┆')
        .next()
        .unwrap()
        .trim_start_matches('│')
        .trim();
    assert!(step_cell.chars().count() >= 28, "{durations}");
    assert!(
        step_cell.starts_with('…'),
        "shortened from the left: {durations}"
    );
    assert!(
        durations.contains("Left out to fit 80 columns: "),
        "{durations}"
    );
    // The tree keeps its shape when its process column goes: the commands are indented.
    let tree = on_terminal(60, &data, &["tree"]);
    assert!(
        tree.lines()
            .any(|l| l.contains("┆   ") && l.contains("extract_orders.sh")),
        "{tree}"
    );

    // A pipe: rows of `runs` stay short; --wide and CSV keep all of it.
    let runs = |args: &[&str]| query_stdout(&data, &[&["processes"], args].concat());
    let piped = runs(&[]);
    assert!(
        piped.lines().all(|l| width(l) < 1_000),
        "a pipe gets no 18 KB rows: {}",
        piped.lines().map(width).max().unwrap_or(0)
    );
    assert!(runs(&["--wide"]).contains(&huge));
    assert!(runs(&["--format", "csv"]).contains(&huge));
}
