//! The answers where CI users look: the summary at the end of `run`, reports, run comparison
//! and trace export, each checked on real traced pipelines against the run's own events.

use std::path::Path;

use pipetrace_tests::{command, real_python, require_root, script, traced};

/// A pipeline with a known shape: the slowest step, a memory-hungry one, and a failing last
/// step whose status becomes the script's.
fn failing_pipeline(dir: &Path) -> std::path::PathBuf {
    let python = real_python();
    script(
        dir,
        "pipeline.sh",
        &format!(
            "sleep 0.4\n{python} -c 'x = bytearray(96 << 20); import time; time.sleep(0.05)'\ntrue\nsh -c 'sleep 0.1; exit 3'\n"
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

    // Wall time covers the 0.4 s and 0.1 s sleeps; CPU is user + system.
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

    // The three slowest steps, slowest first: the 0.4 s sleep leads.
    let slowest: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("  slowest"))
        .take(3)
        .collect();
    assert_eq!(slowest.len(), 3, "{stderr}");
    assert!(slowest[0].ends_with("sleep 0.4"), "{stderr}");
    assert!(
        seconds(&slowest[0][11..slowest[0].len() - "sleep 0.4".len()]) >= 0.4,
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
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let long_arg = "x".repeat(150);
    let pipeline = script(
        dir.path(),
        "pipeline.sh",
        &format!(
            "for i in $(seq 12); do /bin/true; done\nsleep 0.3\n/bin/echo {long_arg} > /dev/null\nsh -c 'sleep 0.05; kill -9 $$'\nexit 0\n"
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
    assert!(slowest.contains("(10 rows)"), "{slowest}");
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
    let echo_row = lines.iter().find(|l| l.contains("/bin/echo")).unwrap();
    assert!(echo_row.contains('…'), "cut: {echo_row}");
    // --wide: all of it.
    let wide = on_terminal(100, &data, &["slowest", "--wide"]);
    assert!(wide.contains(&long_arg), "{wide}");
    // Not a terminal: whole values, no timeline, same rows.
    let piped = command()
        .args(["query", "slowest", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&piped.stdout).contains(&long_arg));

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

fn query_json(data: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = command()
        .arg("query")
        .args(args)
        .args(["--format", "json", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
