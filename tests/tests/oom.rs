//! A process killed by the OOM killer under a memory-limited cgroup (the v1 memory hierarchy:
//! cgroup v2 here has no memory controller) is reported as such everywhere: the exit record,
//! the Parquet status, `query failures` and the end-of-run summary (root, real processes).

use std::path::Path;

use pipetrace_tests::{cgroup::V1Cgroup, command, real_python, require, require_root};

#[test]
fn an_oom_kill_is_reported_as_such() {
    require_root!();
    require!(
        Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
        "a cgroup v1 memory hierarchy at /sys/fs/cgroup/memory"
    );
    let cgroup = V1Cgroup::new("memory", "pt-oom", "memory.limit_in_bytes", 64 << 20);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let jsonl = dir.path().join("events.jsonl");
    let python = real_python();
    // The shell joins the cgroup, then becomes Python, which touches 256 MiB.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {python} -c 'x = bytearray(256 << 20); [x.__setitem__(i, 1) for i in range(0, len(x), 4096)]'",
        cgroup.0.display()
    );
    let out = command()
        .args(["run", "--summary", "full", "--parquet"])
        .arg(&data)
        .arg("--jsonl")
        .arg(&jsonl)
        .args(["--", "/bin/sh", "-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "killed by SIGKILL: {stderr}");

    let text = std::fs::read_to_string(&jsonl).unwrap();
    let exit: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["kind"] == "exit")
        .expect("an exit record");
    assert_eq!(exit["oom_killed"], true, "{exit}");
    assert_eq!(exit["signal_name"], "SIGKILL");
    // It was killed at (or just over) the limit.
    let peak = exit["peak_rss_bytes"].as_u64().unwrap();
    assert!((32 << 20..=96 << 20).contains(&peak), "{peak}");

    let rows = pipetrace_tests::query_json(&data, &["failures"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "oom_killed");
    assert_eq!(rows[0]["signal"], "SIGKILL (the OOM killer)");
    // The summary names the failure for a person.
    assert!(stderr.contains("killed by the OOM killer"), "{stderr}");
    // An ordinary SIGKILL stays `killed`.
    let plain = command()
        .args([
            "run",
            "--summary",
            "line",
            "--jsonl",
            "-",
            "--",
            "/bin/sh",
            "-c",
            "kill -9 $$",
        ])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&plain.stdout);
    assert!(line.contains("\"oom_killed\":false"), "{line}");
}
