//! Faults the agent must survive without breaking the pipeline or losing data silently: the
//! OTLP receiver crashing and coming back, shutdown with a receiver that is gone, a restart of
//! the agent, and a spawn storm beyond what a small ring buffer holds.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use pipetrace_tests::{
    Daemon, command,
    prometheus::get,
    query_sql, require_root,
    rotel::{Rotel, free_port},
    spawn_daemon,
};

/// One at a time: the storm would starve the others' timing.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn spawner(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        "#!/bin/sh\ni=0\nwhile [ $i -lt \"$1\" ]; do /bin/true; i=$((i+1)); done\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// A daemon tracing the descendants of `root`; returns it with the rest of its stderr.
fn daemon(dir: &Path, root: &str, extra: &str) -> (Daemon, BufReader<std::process::ChildStderr>) {
    let config = dir.join(format!("{root}.toml"));
    std::fs::write(
        &config,
        format!(
            "[scope]\nmode = \"descendants\"\nroot_names = [\"{root}\"]\n[output]\nparquet_dir = \"{}\"\nflush_interval = \"500ms\"\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let mut cmd = command();
    cmd.arg("--config")
        .arg(&config)
        .env_remove("PIPETRACE_OUTPUT__PARQUET_DIR");
    let (child, stderr) = spawn_daemon(cmd);
    (Daemon(child), stderr)
}

/// Stops the daemon with `signal`; its closing lines and how long it took.
fn stop(
    mut d: Daemon,
    stderr: BufReader<std::process::ChildStderr>,
    signal: i32,
) -> (String, Duration) {
    let started = Instant::now();
    unsafe { libc::kill(d.id() as i32, signal) };
    let status = d.wait().unwrap();
    let took = started.elapsed();
    let rest: Vec<String> = stderr.lines().map_while(Result::ok).collect();
    assert_eq!(status.code(), Some(0), "{rest:?}");
    (rest.join("\n"), took)
}

fn count(data: &Path, sql: &str) -> u64 {
    query_sql(data, "csv", sql)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

fn wait_until(what: &str, limit: Duration, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `spans: N exported, M dropped` of a summary line.
fn span_counts(summary: &str) -> (u64, u64) {
    let after = summary
        .split("spans: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{summary}"));
    let mut words = after.split_whitespace();
    let exported = words.next().unwrap().parse().unwrap();
    words.next();
    let dropped = words.next().unwrap().parse().unwrap();
    (exported, dropped)
}

#[test]
fn a_receiver_that_crashes_and_comes_back() {
    require_root!();
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = format!("ptf{}a.sh", std::process::id() % 100_000);
    let script = spawner(dir.path(), &root);
    let (grpc, http) = (free_port(), free_port());
    let mut rotel = Rotel::start_on("traces", grpc, http);
    let metrics_port = free_port();
    let (daemon, stderr) = daemon(
        dir.path(),
        &root,
        &format!(
            "[otlp]\nendpoint = \"http://127.0.0.1:{grpc}\"\nmetrics = false\ntimeout = \"1s\"\nbatch_delay = \"100ms\"\nmax_queue_spans = 64\nshutdown_timeout = \"3s\"\n[metrics]\nprometheus_listen = \"127.0.0.1:{metrics_port}\"\n"
        ),
    );
    let pid = daemon.id();
    let data = dir.path().join("data");

    // 1. Receiver up: everything arrives.
    assert!(Command::new(&script).arg("20").status().unwrap().success());
    rotel.wait_for(|s| s.len() >= 21);

    // 2. Receiver killed mid-run: tracing goes on, Parquet stays complete, spans beyond the
    //    queue are dropped and counted, memory stays bounded.
    rotel.kill();
    let mut peak_kib = 0;
    for _ in 0..4 {
        assert!(Command::new(&script).arg("100").status().unwrap().success());
        peak_kib = peak_kib.max(rss_kib(pid));
    }
    wait_until(
        "Parquet rows of the outage",
        Duration::from_secs(20),
        || count(&data, "select count(*) from processes") == 21 + 404,
    );
    let metrics = get(metrics_port, "/metrics").expect("the metrics endpoint answers");
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("pipetrace_spans_dropped_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no span counters: {metrics}"));
    assert!(dropped > 0, "spans dropped while the receiver was down");
    assert!(
        peak_kib < 120 * 1024,
        "agent RSS {peak_kib} KiB with the receiver down"
    );

    // 3. Receiver back on the same address: new spans arrive.
    let rotel = Rotel::start_on("traces", grpc, http);
    assert!(Command::new(&script).arg("20").status().unwrap().success());
    let spans = rotel.wait_for(|s| s.iter().filter(|s| s.name == "true").count() >= 20);
    assert!(spans.len() >= 21);

    let (closing, _) = stop(daemon, stderr, libc::SIGTERM);
    let summary = closing
        .lines()
        .find(|l| l.contains("stopped;"))
        .unwrap_or_else(|| panic!("{closing}"));
    assert!(summary.contains(" 0 events lost"), "{summary}");
    // Every span is accounted for: exported or counted as dropped.
    let (exported, dropped) = span_counts(summary);
    assert_eq!(exported + dropped, 21 + 404 + 21, "{summary}");
    assert!(dropped > 0 && exported >= 42, "{summary}");
    assert_eq!(
        count(&data, "select count(*) from processes"),
        21 + 404 + 21
    );
    eprintln!(
        "figures: receiver outage: {exported} spans exported, {dropped} dropped and counted, peak RSS {} MiB, all 446 processes in Parquet",
        peak_kib / 1024
    );
}

#[test]
fn shutdown_is_bounded_and_a_restart_continues_in_new_files() {
    require_root!();
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = format!("ptf{}b.sh", std::process::id() % 100_000);
    let script = spawner(dir.path(), &root);
    let data = dir.path().join("data");
    // A receiver that is gone, a long flush interval: everything waits for the shutdown.
    let gone = format!(
        "[otlp]\nendpoint = \"http://127.0.0.1:{}\"\nmetrics = false\ntimeout = \"1s\"\nshutdown_timeout = \"2s\"\n",
        free_port()
    );
    let config_extra = gone;
    let (first, stderr) = daemon(dir.path(), &root, &config_extra);
    assert!(Command::new(&script).arg("50").status().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    let (_, took) = stop(first, stderr, libc::SIGINT);
    assert!(
        took < Duration::from_secs(6),
        "SIGINT took {took:?} with the receiver gone (shutdown_timeout 2s)"
    );
    assert_eq!(count(&data, "select count(*) from processes"), 51);
    let files = |d: &str| -> Vec<(PathBuf, u64)> {
        let mut v: Vec<(PathBuf, u64)> = std::fs::read_dir(data.join(d))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path(), e.metadata().unwrap().len())
            })
            .collect();
        v.sort();
        v
    };
    let before = files("processes");

    // A second agent on the same directory: new files next to the old ones, which stay as
    // they were; both runs read back.
    let (second, stderr) = daemon(dir.path(), &root, &config_extra);
    assert!(Command::new(&script).arg("30").status().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    let (_, took) = stop(second, stderr, libc::SIGTERM);
    assert!(took < Duration::from_secs(6), "SIGTERM took {took:?}");
    let after = files("processes");
    assert!(
        before.iter().all(|f| after.contains(f)),
        "old files unchanged"
    );
    assert!(after.len() > before.len());
    assert_eq!(count(&data, "select count(*) from processes"), 51 + 31);
    assert_eq!(
        count(&data, "select count(distinct run_id) from processes"),
        2
    );
    eprintln!(
        "figures: shutdown with the receiver gone: SIGTERM in {took:?}; 82 of 82 processes in two runs' files"
    );
}

#[test]
fn a_spawn_storm_is_counted_marked_and_survived() {
    require_root!();
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = format!("ptf{}c.sh", std::process::id() % 100_000);
    // Eight spawners at once under one root.
    let storm = dir.path().join(&root);
    std::fs::write(
        &storm,
        "#!/bin/sh\nfor s in 1 2 3 4 5 6 7 8; do\n  (i=0; while [ $i -lt 400 ]; do /bin/true; i=$((i+1)); done) &\ndone\nwait\n",
    )
    .unwrap();
    std::fs::set_permissions(&storm, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let metrics_port = free_port();
    // The smallest ring (one page) and a small queue: the storm cannot fit.
    let (daemon, stderr) = daemon(
        dir.path(),
        &root,
        &format!(
            "[capture]\nring_buffer_bytes = 4096\nqueue_capacity = 64\n[tracker]\nsweep_interval = \"1s\"\n[metrics]\nprometheus_listen = \"127.0.0.1:{metrics_port}\"\n"
        ),
    );
    assert!(Command::new(&storm).status().unwrap().success());
    // The self-metrics (refreshed every second) count what was lost; lost exits are found by
    // two sweeps.
    let lost_now = || {
        get(metrics_port, "/metrics")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("pipetrace_events_lost_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    wait_until(
        "losses in the self-metrics",
        Duration::from_secs(10),
        || lost_now() > 0,
    );
    std::thread::sleep(Duration::from_secs(3));
    let lost = lost_now();

    // The storm is over: a new run of a root's tree, at an ordinary pace, is traced whole.
    let calm = dir.path().join("calm");
    std::fs::create_dir_all(&calm).unwrap();
    let again = calm.join(&root);
    std::fs::write(
        &again,
        "#!/bin/sh\ni=0\nwhile [ $i -lt \"$1\" ]; do /bin/true; /bin/sleep 0.02; i=$((i+1)); done\n",
    )
    .unwrap();
    std::fs::set_permissions(&again, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let calm_from = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(Command::new(&again).arg("20").status().unwrap().success());
    std::thread::sleep(Duration::from_secs(1));

    let (closing, _) = stop(daemon, stderr, libc::SIGTERM);
    let summary = closing
        .lines()
        .find(|l| l.contains("stopped;"))
        .unwrap_or_else(|| panic!("{closing}"));
    let reported: u64 = summary
        .split(" events lost")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(reported >= lost, "summary {summary} vs metrics {lost}");

    let data = dir.path().join("data");
    // Where records were lost, the tree says so.
    let incomplete = count(
        &data,
        "select count(*) from processes where incomplete or status = 'exit_lost'",
    );
    assert!(
        incomplete > 0,
        "no process marked incomplete after {lost} losses"
    );
    // After the storm: the calm run is whole (its root and 40 children, nothing missing).
    let calm_rows = count(
        &data,
        &format!(
            "select count(*) from processes where start >= to_timestamp({calm_from}) and status = 'ok' and not coalesce(incomplete, false)"
        ),
    );
    assert_eq!(calm_rows, 41, "complete processes after the storm");
    let total = count(&data, "select count(*) from processes");
    eprintln!(
        "figures: storm: {reported} events lost and counted ({summary}); {total} processes recorded, {incomplete} marked incomplete or exit_lost; 41 of 41 complete after"
    );
}
