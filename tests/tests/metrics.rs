//! Metrics into a real Prometheus (Debian `prometheus`, started here on loopback): it scrapes
//! the agent's endpoint, and its HTTP API must return the series and values.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use pipetrace_tests::{
    Daemon, command, config_daemon, prometheus::Prometheus, real_python, require_root,
    rotel::Rotel, spawn_retrying, status_of, wait_until,
};

fn descendants_daemon(dir: &Path, name: &str) -> Daemon {
    let config = dir.join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[scope]\nmode = \"descendants\"\nroot_names = [\"{name}\"]\n[output]\nparquet_dir = \"{}\"\n[metrics]\nprometheus_listen = \"127.0.0.1:0\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    config_daemon(&config)
}

/// A Python program that burns `cpu_s` of CPU, touches `mib` MiB, writes what it measured
/// itself to `report` (`getrusage` user + system seconds, `VmHWM` and `VmRSS` bytes), then
/// holds its memory, idle, for `hold_s`.
fn self_measuring_program(dir: &Path, cpu_s: f64, mib: u32, hold_s: f64, report: &Path) -> PathBuf {
    let path = dir.join("measure.py");
    std::fs::write(
        &path,
        format!(
            "import resource, time\n\
             while time.process_time() < {cpu_s}: sum(range(20000))\n\
             x = bytearray({mib} << 20)\n\
             for i in range(0, len(x), 4096): x[i] = 1\n\
             r = resource.getrusage(resource.RUSAGE_SELF)\n\
             status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n\
             kib = lambda k: int(status[k].split()[0]) * 1024\n\
             open('{}', 'w').write(f'{{r.ru_utime + r.ru_stime}} {{kib(\"VmHWM\")}} {{kib(\"VmRSS\")}}')\n\
             time.sleep({hold_s})\n",
            report.display()
        ),
    )
    .unwrap();
    path
}

/// What the program reported: (CPU seconds, peak RSS bytes, RSS bytes).
fn measured(report: &Path) -> (f64, f64, f64) {
    let text = std::fs::read_to_string(report).expect("the program wrote its measurements");
    let v: Vec<f64> = text.split(' ').map(|x| x.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

fn within(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= want * tolerance
}

#[test]
fn prometheus_scrapes_cpu_memory_and_failures_per_executable() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("ptm{}.sh", std::process::id() % 100_000);
    let report = dir.path().join("measured");
    let program = self_measuring_program(dir.path(), 0.6, 64, 0.0, &report);
    let python = real_python();
    let script = pipetrace_tests::script(
        dir.path(),
        &name,
        &format!("{python} {}\n/bin/false\n/bin/true", program.display()),
    );
    let mut daemon = descendants_daemon(dir.path(), &name);
    let prometheus = Prometheus::start(daemon.metrics_port());
    assert!(status_of(&mut Command::new(&script)).success());
    let (cpu_self, peak_self, _) = measured(&report);

    // The first scrape after the exit has every total; a total never changes after that.
    prometheus.wait_for(r#"pipetrace_processes_started_total"#, |v| v == 4.0);
    prometheus.wait_for(r#"sum(pipetrace_process_duration_seconds_count)"#, |v| {
        v == 4.0
    });
    let cpu = prometheus.wait_for(
        r#"sum(process_cpu_time_seconds_total{process_executable_name=~"python.*"})"#,
        |v| v >= cpu_self,
    );
    assert!(
        within(cpu, cpu_self, 0.10),
        "python CPU {cpu} s; it measured {cpu_self} s itself"
    );
    let peak = prometheus.wait_for(
        r#"max(pipetrace_process_memory_peak_bytes{process_executable_name=~"python.*"})"#,
        |v| v > 0.0,
    );
    assert!(
        within(peak, peak_self, 0.10),
        "peak {peak}; VmHWM {peak_self}"
    );
    prometheus.wait_for(
        r#"pipetrace_processes_total{process_executable_name="false",status="failed"}"#,
        |v| v == 1.0,
    );
    prometheus.wait_for(
        r#"pipetrace_processes_total{process_executable_name="true",status="ok"}"#,
        |v| v == 1.0,
    );
    prometheus.wait_for(r#"sum(pipetrace_events_lost_total)"#, |v| v == 0.0);
    // At least the records every process certainly had: the script's exec and exit, and a
    // fork, an exec and an exit of each of its three children.
    prometheus.wait_for(r#"pipetrace_events_read_total"#, |v| v >= 2.0 + 3.0 * 3.0);

    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
}

#[test]
fn prometheus_shows_live_processes_per_pid_when_configured() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("ptl{}.sh", std::process::id() % 100_000);
    let (report, stop_file) = (dir.path().join("report"), dir.path().join("stop"));
    let python = real_python();
    // 96 MiB resident; it reports its pid and RSS, then stays busy until told to stop.
    let program = dir.path().join("live.py");
    std::fs::write(
        &program,
        format!(
            "import os, time\n\
             x = bytearray(96 << 20)\n\
             for i in range(0, len(x), 4096): x[i] = 1\n\
             rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]\n\
             open('{0}.tmp', 'w').write(f'{{os.getpid()}} {{int(rss) * 1024}}')\n\
             os.rename('{0}.tmp', '{0}')\n\
             t = time.time()\n\
             while not os.path.exists('{1}') and time.time() - t < 60: sum(range(20000))\n",
            report.display(),
            stop_file.display()
        ),
    )
    .unwrap();
    let script = pipetrace_tests::script(
        dir.path(),
        &name,
        &format!("exec {python} {}", program.display()),
    );
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[capture]\nsample_interval = \"200ms\"\n[scope]\nmode = \"descendants\"\nroot_names = [\"{name}\"]\n[output]\nparquet_dir = \"{}\"\n[metrics]\nprometheus_listen = \"127.0.0.1:0\"\nper_process = true\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut daemon = config_daemon(&config);
    let prometheus = Prometheus::start(daemon.metrics_port());
    let mut job = spawn_retrying(&mut Command::new(&script));
    wait_until("the job's report", Duration::from_secs(30), || {
        report.exists()
    });
    let text = std::fs::read_to_string(&report).unwrap();
    let (pid, rss_self) = text.split_once(' ').unwrap();
    let rss_self: f64 = rss_self.parse().unwrap();

    let memory = format!(r#"process_memory_usage_bytes{{process_pid="{pid}"}}"#);
    let rss = prometheus.wait_for(&memory, |v| v > 0.9 * rss_self);
    assert!(
        within(rss, rss_self, 0.10),
        "live RSS {rss}; the program's VmRSS {rss_self}"
    );
    let live_cpu = format!(r#"sum(process_cpu_time_seconds_total{{process_pid="{pid}"}})"#);
    let first = prometheus.wait_for(&live_cpu, |v| v > 0.2);
    let later = prometheus.wait_for(&live_cpu, |v| v > first + 1.0);

    std::fs::write(&stop_file, "").unwrap();
    assert!(job.wait().unwrap().success());
    // Ended: its series go (a Prometheus that does not answer fails the query, so an empty
    // answer is a real one), its time stays in the executable's total.
    wait_until("the per-pid series to go", Duration::from_secs(30), || {
        prometheus.query(&memory).is_empty()
    });
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
    if pipetrace_tests::privileged() {
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
    // Python's CPU time is checked within 10 % of its own count: beside tests that load every
    // core, the exit it does not count costs more (0.387 s against 0.347 s once).
    let _cores = pipetrace_tests::needs_idle_cores();
    let rotel = Rotel::start_metrics();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("measured");
    let program = self_measuring_program(dir.path(), 0.3, 32, 0.6, &report);
    let python = real_python();
    let out = command()
        .args([
            "--otlp-endpoint",
            &rotel.grpc_endpoint(),
            "run",
            "--",
            "/bin/sh",
            "-c",
        ])
        .arg(format!(
            "{python} {} && sleep 0.1; /bin/false; /bin/true",
            program.display()
        ))
        .env("PIPETRACE_OTLP__METRICS_INTERVAL", "200ms")
        .env("PIPETRACE_CAPTURE__SAMPLE_INTERVAL", "100ms")
        .env_remove("TRACEPARENT")
        .env_remove("OTEL_METRICS_EXPORTER")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cpu_self, peak_self, rss_self) = measured(&report);
    // The agent has exited: its final export (every total) was acknowledged.
    let points = rotel.wait_for_metrics(|points| {
        points
            .iter()
            .any(|p| p.metric == "pipetrace.processes.started" && p.value == Some(5.0))
    });
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
    let user = last(
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
    assert!(
        within(user + sys, cpu_self, 0.10),
        "python CPU {user} + {sys}; it measured {cpu_self} itself"
    );
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
    let peak = last(
        "pipetrace.process.memory.peak",
        &[("process.executable.name", "python*")],
    )
    .unwrap();
    assert!(
        within(peak, peak_self, 0.10),
        "peak {peak}; VmHWM {peak_self}"
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
    // At least the records every process certainly had: the root's exec and exit, and a fork,
    // an exec and an exit of each of its four children.
    assert!(last("pipetrace.events", &[("result", "read")]).unwrap() >= 2.0 + 4.0 * 3.0);
    // sh, python, sleep, false, true.
    assert_eq!(last("pipetrace.processes.started", &[]), Some(5.0));
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
    // Sampled every 100 ms, exported every 200 ms: python held its 32 MiB, idle, for 0.6 s.
    assert!(
        memory.iter().any(|&b| within(b, rss_self, 0.10)),
        "python's sampled RSS {memory:?}; its own VmRSS {rss_self}"
    );
    assert_eq!(memory.last(), Some(&0.0), "{memory:?}");
}

/// `otlp.metrics = false` and `OTEL_METRICS_EXPORTER=none` keep metrics at home while spans
/// still go: the receiver gets the metrics of a third run only (the control), whose points
/// arrive after where the first two runs' would have.
#[test]
fn otlp_metrics_can_be_turned_off() {
    require_root!();
    let rotel = Rotel::start_metrics();
    let run = |program: &str, env: &[(&str, &str)]| {
        let out = command()
            .args([
                "--otlp-endpoint",
                &rotel.grpc_endpoint(),
                "run",
                "--",
                program,
            ])
            .env("PIPETRACE_OTLP__METRICS_INTERVAL", "200ms")
            .env_remove("TRACEPARENT")
            .env_remove("OTEL_METRICS_EXPORTER")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        // The spans still went to the endpoint.
        assert!(stderr.contains("spans: 2 exported, 0 dropped"), "{stderr}");
    };
    run("/bin/echo", &[("PIPETRACE_OTLP__METRICS", "false")]);
    run("/bin/uname", &[("OTEL_METRICS_EXPORTER", "none")]);
    run("/bin/true", &[]);
    let points = rotel.wait_for_metrics(|points| {
        points.iter().any(|p| {
            p.attributes
                .get("process.executable.name")
                .map(String::as_str)
                == Some("true")
        })
    });
    let names: std::collections::BTreeSet<&str> = points
        .iter()
        .filter_map(|p| p.attributes.get("process.executable.name"))
        .map(String::as_str)
        .collect();
    assert!(
        !names.contains("echo"),
        "otlp.metrics = false sent: {names:?}"
    );
    assert!(
        !names.contains("uname"),
        "OTEL_METRICS_EXPORTER=none sent: {names:?}"
    );
}
