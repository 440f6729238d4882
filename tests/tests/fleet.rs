//! Fleet scale: agents upload their Parquet data to a real S3-compatible server (SeaweedFS on
//! loopback), and `query --data s3://…` answers over the bucket through DuckDB's httpfs.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use pipetrace_tests::{
    require_root,
    s3::{BUCKET, Weed, agent_config, agent_with, duckdb_s3},
    script,
};
use serde_json::Value;

fn write_config(
    dir: &Path,
    name: &str,
    data: &Path,
    host: &str,
    prefix: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, agent_config(data, host, prefix, extra)).unwrap();
    path
}

/// A fresh server and one agent's configuration: (server, its directory, data dir, config).
fn one_agent(host: &str, prefix: &str, extra: &str) -> (Weed, tempfile::TempDir, PathBuf, PathBuf) {
    let weed = Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), "agent.toml", &data, host, prefix, extra);
    (weed, dir, data, config)
}

fn run(config: &Path, command: &[&str]) -> Output {
    agent_with(config)
        .args(["run", "--summary", "line", "--"])
        .args(command)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `query ARGS --format json` with `config`: its rows (it must succeed).
fn query(config: &Path, args: &[&str]) -> Vec<Value> {
    let out = agent_with(config)
        .arg("query")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "query {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Rows as comparable strings: the columns named, in a stable order.
fn keyed(rows: &[Value], columns: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r[*c].to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    keys.sort();
    keys
}

const PROCESS_COLUMNS: &[&str] = &[
    "run_id",
    "pid",
    "start",
    "end",
    "command_line",
    "status",
    "exit_code",
    "host",
];

fn all_processes(config: &Path, data: &str) -> Vec<Value> {
    query(
        config,
        &[
            "sql",
            "SELECT * FROM processes",
            "--run",
            "all",
            "--data",
            data,
        ],
    )
}

fn uploaded(summary: &str) -> u64 {
    summary
        .split("uploaded ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no upload count in {summary:?}"))
}

#[test]
fn two_hosts_upload_and_fleet_queries_equal_the_union_of_their_local_data() {
    require_root!();
    let weed = Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = script(
        dir.path(),
        "pipeline.sh",
        "ls / > /dev/null\nsleep 0.3\nsh -c 'exit 3' || true\necho done",
    );
    let pipeline = pipeline.to_str().unwrap();
    let mut configs = Vec::new();
    for host in ["runner-a", "runner-b"] {
        let data = dir.path().join(host);
        let config = write_config(dir.path(), &format!("{host}.toml"), &data, host, "ci", "");
        for _ in 0..2 {
            let out = run(&config, &[pipeline]);
            assert!(out.status.success(), "{}", stderr(&out));
            let summary = stderr(&out);
            // One object per dataset with rows (events, processes, files) per run, not one per
            // flush.
            assert_eq!(uploaded(&summary), 3, "{summary}");
            assert!(!summary.contains("waiting"), "{summary}");
        }
        configs.push((host, data, config));
    }

    // The layout: DATASET/host=H/date=YYYY-MM-DD/NAME.parquet, 2 hosts × 2 runs × 3 datasets.
    let objects = weed.objects("ci");
    assert_eq!(objects.len(), 12, "{objects:?}");
    let today = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    let today = String::from_utf8_lossy(&today.stdout).trim().to_owned();
    for (key, size) in &objects {
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 5, "{key}");
        assert_eq!(parts[0], "ci");
        assert!(
            ["events", "processes", "files"].contains(&parts[1]),
            "{key}"
        );
        assert!(
            ["host=runner-a", "host=runner-b"].contains(&parts[2]),
            "{key}"
        );
        assert_eq!(parts[3], format!("date={today}"), "{key}");
        assert!(parts[4].ends_with(".parquet") && *size > 0, "{key}");
    }

    // Local files stay (retention) and still answer locally; the bucket answers for both.
    let config = &configs[0].2;
    let mut union = Vec::new();
    for (_, data, config) in &configs {
        assert!(data.join("processes/uploaded").is_dir());
        let local = all_processes(config, data.to_str().unwrap());
        // The script, ls, sleep and sh -c 'exit 3' (echo is built in).
        assert_eq!(local.len(), 2 * 4, "4 processes per run");
        union.extend(local);
    }
    let fleet = all_processes(config, &format!("s3://{BUCKET}/ci"));
    assert_eq!(
        keyed(&fleet, PROCESS_COLUMNS),
        keyed(&union, PROCESS_COLUMNS)
    );

    // The official DuckDB CLI with httpfs reads the same bucket, partitions as columns.
    let cli = duckdb_s3(&format!(
        "SELECT host, count(*) AS n, count(DISTINCT run_id) AS runs FROM read_parquet('s3://{BUCKET}/ci/processes/*/*/*.parquet', hive_partitioning = true) GROUP BY host ORDER BY host"
    ))
    .unwrap();
    let cli: Vec<Value> = serde_json::from_str(&cli).unwrap();
    assert_eq!(cli.len(), 2, "{cli:?}");
    for row in &cli {
        assert_eq!(
            (row["n"].as_i64(), row["runs"].as_i64()),
            (Some(8), Some(2)),
            "{row}"
        );
    }

    // query hosts; --host reads one host's objects only; --since prunes by day and time.
    let hosts = query(config, &["hosts", "--data", &format!("s3://{BUCKET}/ci")]);
    let names: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names, ["runner-a", "runner-b"]);
    assert!(
        hosts
            .iter()
            .all(|h| h["runs"] == 2 && h["processes"] == 8 && h["failed"] == 2),
        "{hosts:?}"
    );
    let b = query(
        config,
        &[
            "sql",
            "SELECT DISTINCT host FROM processes",
            "--run",
            "all",
            "--host",
            "runner-b",
            "--data",
            &format!("s3://{BUCKET}/ci"),
        ],
    );
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["host"], "runner-b");
    let recent = query(
        config,
        &[
            "durations",
            "--run",
            "all",
            "--since",
            "1h",
            "--data",
            &format!("s3://{BUCKET}/ci"),
        ],
    );
    let sleep = recent
        .iter()
        .find(|r| r["step"] == "sleep 0.3")
        .expect("sleep step");
    assert_eq!(sleep["runs"], 4, "{sleep}");
    assert_eq!(sleep["processes"], 4, "{sleep}");
    let future = query(
        config,
        &[
            "sql",
            "SELECT count(*) AS n FROM processes",
            "--run",
            "all",
            "--since",
            "2100-01-01",
            "--data",
            &format!("s3://{BUCKET}/ci"),
        ],
    );
    assert_eq!(future[0]["n"], 0);

    // Reports and comparisons work on the fleet's data too.
    let runs = query(
        config,
        &[
            "runs",
            "--host",
            "runner-a",
            "--data",
            &format!("s3://{BUCKET}/ci"),
        ],
    );
    assert_eq!(runs.len(), 2);
    let out = agent_with(config)
        .args(["report", "--data", &format!("s3://{BUCKET}/ci"), "--run"])
        .arg(runs[0]["run_id"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sleep 0.3"));
    let out = agent_with(config)
        .args([
            "compare",
            "--format",
            "json",
            "--data",
            &format!("s3://{BUCKET}/ci"),
            "--host",
            "runner-a",
            "--baseline",
            "latest~1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // Nothing to upload: nothing new appears.
    let out = agent_with(config)
        .args(["run", "--summary", "line", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        weed.objects("ci").len(),
        15,
        "one more run: three more objects"
    );
}

/// A newcomer's configuration: an IP-address endpoint and no `path_style`. Such an endpoint
/// can only be reached path-style (`fleet.127.0.0.1` is no host name): uploads and queries
/// use it by default, and `--print-sql` says which style and why.
#[test]
fn an_ip_address_endpoint_works_without_path_style() {
    require_root!();
    let weed = Weed::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("agent.toml");
    let text = agent_config(&data, "runner-ip", "ip", "").replace("path_style = true\n", "");
    assert!(!text.contains("path_style"), "{text}");
    std::fs::write(&config, text).unwrap();
    let out = run(&config, &["/bin/sh", "-c", "ls / > /dev/null"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(uploaded(&stderr(&out)), 3, "{}", stderr(&out));
    assert_eq!(weed.objects("ip").len(), 3, "{:?}", weed.objects("ip"));
    let bucket = format!("s3://{BUCKET}/ip");
    let rows = all_processes(&config, &bucket);
    assert_eq!(rows.len(), 2, "sh and ls: {rows:?}");

    let sql = agent_with(&config)
        .args(["query", "runs", "--data", &bucket, "--print-sql"])
        .output()
        .unwrap();
    assert!(sql.status.success(), "{}", stderr(&sql));
    let sql = String::from_utf8_lossy(&sql.stdout);
    assert!(
        sql.contains("-- URL style: path-style (the endpoint is an IP address or localhost)"),
        "{sql}"
    );
    assert!(sql.contains("URL_STYLE 'path'"), "{sql}");
}

#[test]
fn wrong_credentials_keep_the_data_then_the_next_start_uploads_it_once() {
    require_root!();
    let (weed, _dir, data, config) = one_agent("runner-c", "creds", "local_retention = \"0s\"");

    let out = agent_with(&config)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-key")
        .args([
            "run",
            "--summary",
            "line",
            "--",
            "sh",
            "-c",
            "sleep 0.1; true",
        ])
        .output()
        .unwrap();
    let text = stderr(&out);
    // Tracing is not affected: the command's status, the processes counted.
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 processes"), "{text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(
        warnings.len(),
        1,
        "one line for the failure, not one per retry: {text}"
    );
    assert!(warnings[0].contains("access denied"), "{text}");
    assert!(
        text.contains("uploaded 0 objects") && text.contains("3 waiting"),
        "{text}"
    );
    assert!(weed.objects("creds").is_empty());
    let waiting: Vec<_> = walk(&data)
        .into_iter()
        .filter(|p| p.contains("/outbox/"))
        .collect();
    assert_eq!(waiting.len(), 3, "{waiting:?}");
    let local = all_processes(&config, data.to_str().unwrap());
    assert_eq!(local.len(), 2);

    // With the right key the next start ships what waited, then the new run: every row once.
    let out = run(&config, &["true"]);
    assert!(out.status.success());
    assert_eq!(uploaded(&stderr(&out)), 6, "{}", stderr(&out));
    assert_eq!(weed.objects("creds").len(), 6);
    assert!(
        walk(&data).iter().all(|p| !p.ends_with(".parquet")),
        "retention 0s: {:?}",
        walk(&data)
    );
    let fleet = all_processes(&config, &format!("s3://{BUCKET}/creds"));
    assert_eq!(fleet.len(), 3, "{fleet:?}");
    let keys = keyed(&fleet, PROCESS_COLUMNS);
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(keys, unique, "no row twice");
}

#[test]
fn a_server_outage_during_a_daemon_is_survived_with_nothing_lost_or_duplicated() {
    require_root!();
    let mut weed = Weed::start();
    weed.stop();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let marker = format!("outage-{}", std::process::id());
    let config = dir.path().join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[scope]\nmode = \"descendants\"\nroot_names = [\"{marker}\"]\n\n[metrics]\nprometheus_listen = \"127.0.0.1:0\"\n",
            agent_config(&data, "runner-d", "outage", "roll_interval = \"1s\"")
        ),
    )
    .unwrap();
    let mut cmd = agent_with(&config);
    cmd.env_remove("PIPETRACE_OUTPUT__PARQUET_DIR");
    let started = pipetrace_tests::start_daemon(cmd);
    let mut daemon = pipetrace_tests::Daemon {
        child: started.child,
        metrics_port: started.metrics_port,
    };
    let stderr_lines = started.stderr;
    let log = std::thread::spawn(move || std::io::read_to_string(stderr_lines).unwrap_or_default());
    let port = daemon.metrics_port();
    let pipeline = script(dir.path(), &marker, "sleep 0.2\n/bin/true\n/bin/true");
    let metric = |name: &str| -> f64 {
        pipetrace_tests::prometheus::get(port, "/metrics")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    for _ in 0..3 {
        assert!(Command::new(&pipeline).status().unwrap().success());
    }
    // The server is down: the rows wait in the spool, failures are counted, tracing goes on.
    pipetrace_tests::wait_until("data waiting for upload", Duration::from_secs(60), || {
        metric("pipetrace_upload_waiting_bytes") > 0.0
            && metric("pipetrace_upload_failures_total") >= 1.0
    });
    weed.resume();
    pipetrace_tests::wait_until("the spool drained", Duration::from_secs(120), || {
        metric("pipetrace_upload_waiting_bytes") == 0.0
            && metric("pipetrace_upload_bytes_total{result=\"uploaded\"}") > 0.0
    });
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert!(daemon.wait().unwrap().success());
    let said = log.join().unwrap();
    assert!(said.contains("uploaded "), "{said}");

    let fleet = all_processes(&config, &format!("s3://{BUCKET}/outage"));
    let local = all_processes(&config, data.to_str().unwrap());
    // 3 runs × (script + sleep + 2 × /bin/true).
    assert_eq!(local.len(), 12, "{local:?}");
    assert_eq!(
        keyed(&fleet, PROCESS_COLUMNS),
        keyed(&local, PROCESS_COLUMNS)
    );
}

#[test]
fn sigkill_during_uploads_leaves_no_partial_and_no_duplicate_object() {
    require_root!();
    // Objects of 5 MiB and more go up in parts.
    let (weed, _dir, data, config) = one_agent("runner-k", "kill", "multipart_bytes = 5242880");
    let out = run(&config, &["sh", "-c", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A large events file, as if a busy host had flushed it: 300,000 rows of incompressible
    // commands (≈ 25 MiB), made by the DuckDB CLI from a real one.
    let small = walk(&data)
        .into_iter()
        .find(|p| p.contains("/events/"))
        .unwrap();
    let big = data
        .join("events")
        .join(format!("{:020}-big-000001.parquet", now_ns()));
    let duck = Command::new(Path::new(pipetrace_tests::rotel::TOOLS_VENV).join("bin/duckdb"))
        .arg("-c")
        .arg(format!(
            "COPY (SELECT e.* REPLACE (md5(random()::VARCHAR) || md5(random()::VARCHAR) || md5(i::VARCHAR) AS comm) FROM read_parquet('{small}') e, range(300000) r(i)) TO '{}' (FORMAT parquet)",
            big.display()
        ))
        .output()
        .unwrap();
    assert!(
        duck.status.success(),
        "{}",
        String::from_utf8_lossy(&duck.stderr)
    );
    let rows_before = all_processes(&config, data.to_str().unwrap()).len();

    // Kill the agent at several moments of its start-up upload (later ones for a loaded
    // machine, where the agent takes longer to reach its first roll).
    let mut killed_while_waiting = 0;
    for delay_ms in [50u64, 150, 300, 600, 1000, 1600, 2400] {
        let mut child = agent_with(&config)
            .args(["run", "--summary", "line", "--", "sleep", "3"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        if walk(&data).iter().any(|p| p.contains("/outbox/")) {
            killed_while_waiting += 1;
        }
        assert_objects_complete(&weed, &data);
    }
    assert!(
        killed_while_waiting > 0,
        "no kill came before the upload ended"
    );
    // A clean run ships the rest: every local file once, byte for byte.
    let out = run(&config, &["true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("waiting"), "{}", stderr(&out));
    assert_objects_complete(&weed, &data);
    assert!(walk(&data).iter().all(|p| !p.contains("/outbox/")));
    let events = duckdb_s3(&format!(
        "SELECT count(*) AS n FROM read_parquet('s3://{BUCKET}/kill/events/*/*/*.parquet')"
    ))
    .unwrap();
    let events: Vec<Value> = serde_json::from_str(&events).unwrap();
    assert!(events[0]["n"].as_i64().unwrap() >= 300_000, "{events:?}");
    let fleet = all_processes(&config, &format!("s3://{BUCKET}/kill"));
    let local = all_processes(&config, data.to_str().unwrap());
    assert!(local.len() >= rows_before);
    assert_eq!(
        keyed(&fleet, PROCESS_COLUMNS),
        keyed(&local, PROCESS_COLUMNS)
    );
}

/// Every object in the bucket is the complete copy of one local file (waiting or uploaded):
/// same name, same size; no name twice.
fn assert_objects_complete(weed: &Weed, data: &Path) {
    let local: std::collections::HashMap<String, u64> = walk(data)
        .into_iter()
        .filter(|p| p.ends_with(".parquet") && (p.contains("/outbox/") || p.contains("/uploaded/")))
        .map(|p| {
            let size = std::fs::metadata(&p).unwrap().len();
            let name = p.rsplit('/').next().unwrap().to_owned();
            let dataset = ["events", "processes", "connections", "findings", "files"]
                .into_iter()
                .find(|d| p.contains(&format!("/{d}/")))
                .unwrap_or("processes");
            (format!("{dataset}/{name}"), size)
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for (key, size) in weed.objects("kill") {
        let parts: Vec<&str> = key.split('/').collect();
        let name = format!("{}/{}", parts[1], parts[parts.len() - 1]);
        assert!(seen.insert(name.clone()), "{key} twice");
        assert_eq!(
            local.get(&name),
            Some(&size),
            "{key}: {size} bytes, local {local:?}"
        );
    }
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Every file below `dir`, as paths.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Unmounts a test's tmpfs, whatever the test's outcome.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_roll_refused_by_a_read_only_disk_keeps_the_files_says_so_and_ships_them_next_start() {
    require_root!();
    let (weed, dir, data, config) = one_agent("runner-ro", "ro", "local_retention = \"0s\"");
    std::fs::create_dir_all(&data).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _mount = Mounted(data.clone());
    // Files every 10 rows reach the disk while it is writable; then it turns read-only, so
    // the last rows and the roll at the end are refused.
    let pipeline = script(
        dir.path(),
        "pipeline.sh",
        &format!(
            "for i in $(seq 30); do /bin/true; done\nsleep 1.5\nmount -o remount,ro {}\n",
            data.display()
        ),
    );
    let out = agent_with(&config)
        .env("PIPETRACE_OUTPUT__FLUSH_ROWS", "10")
        .args(["run", "--summary", "line", "--"])
        .arg(&pipeline)
        .output()
        .unwrap();
    let text = stderr(&out);
    assert!(out.status.success(), "{text}");
    let summary = text
        .lines()
        .find(|l| l.contains(" processes, "))
        .unwrap_or_else(|| panic!("{text}"));
    // Said once, with the reason: nothing was rolled, the files stay for the next start.
    assert!(summary.contains("uploaded 0 objects"), "{summary}");
    assert!(
        summary.contains("roll failed") || summary.contains("rolls failed"),
        "{summary}"
    );
    assert!(summary.contains("not rolled, kept in"), "{summary}");
    assert!(summary.contains("(read-only file system: "), "{summary}");
    let roll_warnings = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("cannot roll"))
        .count();
    assert_eq!(roll_warnings, 1, "one line, not one per attempt: {text}");
    assert!(weed.objects("ro").is_empty());
    // The rows the sink wrote before the disk turned read-only.
    let kept = all_processes(&config, data.to_str().unwrap()).len();
    assert!(kept >= 20, "{kept} rows kept: {summary}");

    // Writable again: the next start rolls and ships them, once, with its own run.
    let remounted = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(remounted.success());
    let out = run(&config, &["true"]);
    let text = stderr(&out);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("roll failed"), "{text}");
    let fleet = all_processes(&config, &format!("s3://{BUCKET}/ro"));
    assert_eq!(fleet.len(), kept + 1, "{text}");
    let keys = keyed(&fleet, PROCESS_COLUMNS);
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(keys, unique, "no row twice");
}
