//! Metrics into a real Prometheus (Debian `prometheus`, started here on loopback): it scrapes
//! the agent's endpoint, and its HTTP API must return the series and values.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use pipetrace_tests::{
    Daemon, command, config_daemon,
    prometheus::Prometheus,
    real_python, require_root,
    rotel::{Rotel, free_port},
};

fn descendants_daemon(dir: &Path, name: &str, metrics_port: u16) -> Daemon {
    let config = dir.join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[scope]\nmode = \"descendants\"\nroot_names = [\"{name}\"]\n[output]\nparquet_dir = \"{}\"\n[metrics]\nprometheus_listen = \"127.0.0.1:{metrics_port}\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    config_daemon(&config)
}

#[test]
fn prometheus_scrapes_cpu_memory_and_failures_per_executable() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let name = format!("ptm{}.sh", std::process::id() % 100_000);
    let script = dir.path().join(&name);
    let python = real_python();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{python} -c 'import time\nwhile time.process_time() < 0.6: sum(range(20000))\nx = bytearray(64 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1'\n/bin/false\n/bin/true\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut daemon = descendants_daemon(dir.path(), &name, metrics_port);
    let prometheus = Prometheus::start(metrics_port);
    assert!(Command::new(&script).status().unwrap().success());

    let cpu = prometheus.wait_for(
        r#"sum(process_cpu_time_seconds_total{process_executable_name=~"python.*"})"#,
        |v| v > 0.0,
    );
    assert!(
        (cpu - 0.6).abs() < 0.15,
        "python CPU {cpu} s (burned 0.6 s plus start-up)"
    );
    let peak = prometheus.wait_for(
        r#"max(pipetrace_process_memory_peak_bytes{process_executable_name=~"python.*"})"#,
        |v| v > 0.0,
    );
    assert!(
        peak > 64.0 * 1048576.0 && peak < 100.0 * 1048576.0,
        "peak {peak}"
    );
    prometheus.wait_for(
        r#"pipetrace_processes_total{process_executable_name="false",status="failed"}"#,
        |v| v == 1.0,
    );
    prometheus.wait_for(
        r#"pipetrace_processes_total{process_executable_name="true",status="ok"}"#,
        |v| v == 1.0,
    );
    let count = prometheus.wait_for(r#"sum(pipetrace_process_duration_seconds_count)"#, |v| {
        v >= 4.0
    });
    assert_eq!(count, 4.0, "the script, python, false and true");
    prometheus.wait_for(r#"pipetrace_processes_started_total"#, |v| v == 4.0);
    prometheus.wait_for(r#"sum(pipetrace_events_lost_total)"#, |v| v == 0.0);
    prometheus.wait_for(r#"pipetrace_events_read_total"#, |v| v >= 8.0);

    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
}

#[test]
fn prometheus_shows_live_processes_per_pid_when_configured() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let name = format!("ptl{}.sh", std::process::id() % 100_000);
    let script = dir.path().join(&name);
    let (pid_file, stop_file) = (dir.path().join("pid"), dir.path().join("stop"));
    let python = real_python();
    // 96 MiB resident, then busy until told to stop.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {python} -c 'import os, time\nx = bytearray(96 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\nopen(\"{}\", \"w\").write(str(os.getpid()))\nt = time.time()\nwhile not os.path.exists(\"{}\") and time.time() - t < 60: sum(range(20000))'\n",
            pid_file.display(),
            stop_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[capture]\nsample_interval = \"200ms\"\n[scope]\nmode = \"descendants\"\nroot_names = [\"{name}\"]\n[output]\nparquet_dir = \"{}\"\n[metrics]\nprometheus_listen = \"127.0.0.1:{metrics_port}\"\nper_process = true\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut daemon = config_daemon(&config);
    let prometheus = Prometheus::start(metrics_port);
    let mut job = Command::new(&script).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|s| !s.is_empty())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(100));
    };

    let memory = format!(r#"process_memory_usage_bytes{{process_pid="{pid}"}}"#);
    let rss = prometheus.wait_for(&memory, |v| v > 90.0 * 1048576.0) / 1048576.0;
    assert!((rss - 106.0).abs() < 10.6, "live RSS {rss:.1} MiB");
    let live_cpu = format!(r#"sum(process_cpu_time_seconds_total{{process_pid="{pid}"}})"#);
    let first = prometheus.wait_for(&live_cpu, |v| v > 0.2);
    let later = prometheus.wait_for(&live_cpu, |v| v > first + 1.0);

    std::fs::write(&stop_file, "").unwrap();
    assert!(job.wait().unwrap().success());
    // Ended: its series go, its time stays in the executable's total.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !prometheus.query(&memory).is_empty() {
        assert!(Instant::now() < deadline, "per-pid series still there");
        std::thread::sleep(Duration::from_millis(300));
    }
    prometheus.wait_for(
        r#"sum(process_cpu_time_seconds_total{process_executable_name=~"python.*",process_pid=""})"#,
        |v| v >= later,
    );

    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
}

#[test]
fn a_busy_metrics_address_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = command()
        .args([
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
            "run",
            "--",
            "/bin/true",
        ])
        .output()
        .unwrap();
    if unsafe { libc::geteuid() } == 0 {
        pipetrace_tests::assert_one_line_error(&out, "metrics.prometheus_listen");
    }
    let out = command()
        .args(["--metrics-listen", "localhost", "config"])
        .output()
        .unwrap();
    pipetrace_tests::assert_one_line_error(&out, "metrics.prometheus_listen");
}

#[test]
fn otlp_metrics_reach_a_real_collector() {
    require_root!();
    let rotel = Rotel::start_metrics();
    let python = real_python();
    let out = command()
        .args(["--otlp-endpoint", &rotel.grpc_endpoint(), "run", "--", "/bin/sh", "-c"])
        .arg(format!(
            "{python} -c 'import time\nwhile time.process_time() < 0.3: sum(range(20000))'; /bin/false; /bin/true"
        ))
        .env("PIPETRACE_OTLP__METRICS_INTERVAL", "200ms")
        .env("PIPETRACE_CAPTURE__SAMPLE_INTERVAL", "100ms")
        .env_remove("TRACEPARENT")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let points = loop {
        let points = rotel.metrics();
        if points
            .iter()
            .any(|p| p.metric == "pipetrace.process.duration")
        {
            std::thread::sleep(Duration::from_millis(300));
            break rotel.metrics();
        }
        assert!(Instant::now() < deadline, "no metrics arrived: {points:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Cumulative counters: the last point of each series is the total.
    let last = |metric: &str, attrs: &[(&str, &str)]| -> Option<f64> {
        points
            .iter()
            .rev()
            .find(|p| {
                p.metric == metric
                    && attrs.iter().all(|(k, v)| {
                        p.attributes.get(*k).is_some_and(|x| {
                            x == v || (v.ends_with('*') && x.starts_with(&v[..v.len() - 1]))
                        })
                    })
            })
            .and_then(|p| p.value.or(p.count))
    };
    let cpu = last(
        "process.cpu.time",
        &[("process.executable.name", "python*"), ("cpu.mode", "user")],
    )
    .expect("python user CPU");
    let sys = last(
        "process.cpu.time",
        &[
            ("process.executable.name", "python*"),
            ("cpu.mode", "system"),
        ],
    )
    .unwrap_or(0.0);
    assert!((cpu + sys - 0.3).abs() < 0.1, "python CPU {cpu} + {sys}");
    assert_eq!(
        last(
            "pipetrace.processes",
            &[("process.executable.name", "false"), ("status", "failed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        last(
            "pipetrace.processes",
            &[("process.executable.name", "true"), ("status", "ok")]
        ),
        Some(1.0)
    );
    assert!(
        last(
            "pipetrace.process.memory.peak",
            &[("process.executable.name", "python*")]
        )
        .unwrap()
            > 1e6
    );
    assert_eq!(
        last(
            "pipetrace.process.duration",
            &[("process.executable.name", "false")]
        ),
        Some(1.0)
    );
    assert_eq!(
        last(
            "pipetrace.events",
            &[("result", "lost"), ("reason", "ring_full")]
        ),
        Some(0.0)
    );
    assert!(last("pipetrace.events", &[("result", "read")]).unwrap() >= 8.0);
    // sh, python, false, true.
    assert_eq!(last("pipetrace.processes.started", &[]), Some(4.0));
    assert_eq!(
        last(
            "pipetrace.runs",
            &[("process.executable.name", "dash"), ("status", "ok")]
        ),
        Some(1.0)
    );
    // Sampled while it ran: its resident memory, then 0 once no python is alive.
    let memory: Vec<f64> = points
        .iter()
        .filter(|p| {
            p.metric == "process.memory.usage"
                && p.attributes
                    .get("process.executable.name")
                    .is_some_and(|n| n.starts_with("python"))
        })
        .filter_map(|p| p.value)
        .collect();
    assert!(
        memory.iter().any(|&b| b > 4e6),
        "python's sampled RSS: {memory:?}"
    );
    assert_eq!(memory.last(), Some(&0.0), "{memory:?}");
}
