//! Start-up failures and bad input: one line on stderr naming the cause, exit status 2.

use std::process::Command;

use pipetrace_tests::{
    agent, as_nobody, assert_one_line_error, bin, command, config_with, require_root,
};

#[test]
fn unprivileged_user_is_told_to_use_root() {
    require_root!();
    let out = as_nobody(&[])
        .args(["run", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_one_line_error(&out, "not privileged");
    assert_one_line_error(&out, "sudo");
}

#[test]
fn missing_or_corrupt_btf_is_named() {
    require_root!();
    assert_one_line_error(
        &agent(&["--btf", "/nonexistent/vmlinux", "run", "--", "/bin/true"]),
        "no kernel BTF at /nonexistent/vmlinux",
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("vmlinux");
    std::fs::write(&junk, b"definitely not BTF").unwrap();
    assert_one_line_error(
        &agent(&["--btf", junk.to_str().unwrap(), "run", "--", "/bin/true"]),
        "malformed BTF",
    );
}

#[test]
fn tracefs_is_not_needed() {
    require_root!();
    // In a private mount namespace, so the host's tracefs stays as it is. Raw tracepoints
    // attach without tracefs (an unprivileged agent often cannot read it).
    let script = format!(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; \
         test ! -d /sys/kernel/tracing/events || exit 99; \
         {} run -- /bin/true && test ! -d /sys/kernel/tracing/events",
        bin().display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(99),
        "tracefs could not be unmounted"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// One bad input: the agent's arguments (`{cfg}` is a file holding `toml`, `{dir}` a scratch
/// directory), extra environment, and what the one-line error must name.
struct Case {
    what: &'static str,
    toml: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    needle: &'static str,
    /// Fails only once the agent starts (root), not at `config`.
    root: bool,
}

const fn case(what: &'static str, toml: &'static str, needle: &'static str) -> Case {
    Case {
        what,
        toml,
        args: &["--config", "{cfg}", "config"],
        env: &[],
        needle,
        root: false,
    }
}

const fn at_start(what: &'static str, toml: &'static str, needle: &'static str) -> Case {
    Case {
        what,
        toml,
        args: &["--config", "{cfg}", "run", "--", "/bin/true"],
        env: &[],
        needle,
        root: true,
    }
}

const fn cli(what: &'static str, args: &'static [&'static str], needle: &'static str) -> Case {
    Case {
        what,
        toml: "",
        args,
        env: &[],
        needle,
        root: false,
    }
}

const fn env(
    what: &'static str,
    var: &'static (&'static str, &'static str),
    needle: &'static str,
) -> Case {
    Case {
        what,
        toml: "",
        args: &["config"],
        env: std::slice::from_ref(var),
        needle,
        root: false,
    }
}

const CASES: &[Case] = &[
    case("malformed TOML", "[capture\nargv_max_bytes = 1\n", "p.toml"),
    case(
        "unknown key",
        "[capture]\nargv_maximum = 1\n",
        "argv_maximum",
    ),
    case(
        "unknown section",
        "[captrue]\nargv_max_bytes = 1\n",
        "captrue",
    ),
    case(
        "wrong type",
        "[capture]\nargv_max_bytes = \"big\"\n",
        "capture.argv_max_bytes",
    ),
    case(
        "negative size",
        "[capture]\nring_buffer_bytes = -4096\n",
        "ring_buffer_bytes",
    ),
    case(
        "size not a power of two",
        "[capture]\nring_buffer_bytes = 1000\n",
        "power of two",
    ),
    case(
        "argv cap out of range",
        "[capture]\nargv_max_bytes = 0\n",
        "capture.argv_max_bytes",
    ),
    case(
        "zero flush interval",
        "[output]\nflush_interval = \"0s\"\n",
        "output.flush_interval",
    ),
    case(
        "zero OTLP timeout",
        "[otlp]\ntimeout = \"0s\"\n",
        "otlp.timeout",
    ),
    case(
        "too short metrics interval",
        "[otlp]\nmetrics_interval = \"0s\"\n",
        "otlp.metrics_interval",
    ),
    case(
        "too short sample interval",
        "[capture]\nsample_interval = \"10ms\"\n",
        "capture.sample_interval",
    ),
    case(
        "unparsable duration",
        "[run]\ngrace_period = \"soon\"\n",
        "run.grace_period",
    ),
    case(
        "zero queue",
        "[capture]\nqueue_capacity = 0\n",
        "capture.queue_capacity",
    ),
    case(
        "scope mode",
        "[scope]\nmode = \"everything\"\n",
        "scope.mode",
    ),
    case(
        "cgroup scope without a cgroup",
        "[scope]\nmode = \"cgroup\"\n",
        "scope.cgroup",
    ),
    case(
        "comm longer than the kernel's",
        "[scope]\nhide = [\"a-very-long-process-name\"]\n",
        "scope.hide",
    ),
    case(
        "bad redaction pattern",
        "[redact]\npatterns = [\"(\"]\n",
        "redact.patterns",
    ),
    case(
        "bad redaction flag",
        "[redact]\nflags = [\"password\"]\n",
        "redact.flags",
    ),
    case(
        "OTLP protocol",
        "[otlp]\nprotocol = \"carrier-pigeon\"\n",
        "otlp.protocol",
    ),
    case(
        "OTLP endpoint",
        "[otlp]\nendpoint = \"not a url\"\n",
        "otlp.endpoint",
    ),
    case(
        "metrics address",
        "[metrics]\nprometheus_listen = \"localhost\"\n",
        "metrics.prometheus_listen",
    ),
    Case {
        what: "missing config file",
        toml: "",
        args: &["--config", "/nonexistent/p.toml", "config"],
        env: &[],
        needle: "/nonexistent/p.toml",
        root: false,
    },
    at_start(
        "Parquet directory under a file",
        "[output]\nparquet_dir = \"/proc/version/data\"\n",
        "/proc/version/data",
    ),
    at_start(
        "JSONL in a missing directory",
        "[output]\njsonl = \"/nonexistent/dir/e.jsonl\"\n",
        "/nonexistent/dir/e.jsonl",
    ),
    at_start(
        "missing CA file",
        "[otlp]\nendpoint = \"https://127.0.0.1:1\"\n[otlp.tls]\nca_file = \"/nonexistent/ca.pem\"\n",
        "/nonexistent/ca.pem",
    ),
    Case {
        what: "daemon: missing scope cgroup",
        toml: "[scope]\nmode = \"cgroup\"\ncgroup = \"/sys/fs/cgroup/nonexistent-pt\"\n",
        args: &["--config", "{cfg}"],
        env: &[],
        needle: "nonexistent-pt",
        root: true,
    },
    at_start(
        "kernel without BTF",
        "[capture]\nbtf_path = \"/nonexistent/vmlinux\"\n",
        "no kernel BTF",
    ),
    cli("unknown flag", &["--no-such-flag"], "--no-such-flag"),
    cli("run without a command", &["run"], "CMD"),
    cli(
        "flag value of the wrong type",
        &["--argv-max", "lots", "config"],
        "lots",
    ),
    cli(
        "flag value out of range",
        &["--argv-max", "0", "config"],
        "capture.argv_max_bytes",
    ),
    cli(
        "unknown OTLP protocol flag",
        &["--otlp-protocol", "smoke", "config"],
        "smoke",
    ),
    cli(
        "unknown query",
        &["query", "everything", "--data", "{dir}"],
        "everything",
    ),
    cli(
        "query output format",
        &["query", "durations", "--format", "xml", "--data", "{dir}"],
        "xml",
    ),
    cli(
        "negative query limit",
        &["query", "durations", "--limit", "-1", "--data", "{dir}"],
        "-1",
    ),
    cli(
        "missing data directory",
        &["query", "durations", "--data", "/nonexistent/data"],
        "/nonexistent/data",
    ),
    cli(
        "corrupt Parquet",
        &["query", "durations", "--data", "{dir}/corrupt.parquet"],
        "corrupt.parquet",
    ),
    env(
        "environment: wrong type",
        &("PIPETRACE_CAPTURE__ARGV_MAX_BYTES", "many"),
        "argv_max_bytes",
    ),
    env(
        "environment: unknown key",
        &("PIPETRACE_CAPTURE__ARGV_MAXIMUM", "1"),
        "argv_maximum",
    ),
    env(
        "environment: bad duration",
        &("PIPETRACE_RUN__GRACE_PERIOD", "forever"),
        "run.grace_period",
    ),
    env(
        "standard OTLP variable",
        &("OTEL_EXPORTER_OTLP_PROTOCOL", "smoke-signals"),
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ),
];

#[test]
fn bad_input_table() {
    let root = pipetrace_tests::privileged();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("corrupt.parquet"),
        b"PAR1 definitely not parquet",
    )
    .unwrap();
    let mut failures = Vec::new();
    let mut tried = 0;
    for (i, c) in CASES.iter().enumerate() {
        if c.root && !root {
            continue;
        }
        tried += 1;
        let cfg = dir.path().join(format!("{i}")).join("p.toml");
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        std::fs::write(&cfg, c.toml).unwrap();
        let args: Vec<String> = c
            .args
            .iter()
            .map(|a| {
                a.replace("{cfg}", cfg.to_str().unwrap())
                    .replace("{dir}", dir.path().to_str().unwrap())
            })
            .collect();
        // The file's settings, not the test harness's data directory.
        let mut child = command()
            .args(&args)
            .envs(c.env.iter().copied())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("PIPETRACE_OUTPUT__PARQUET_DIR")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A case that does not fail would run (a daemon): it gets 15 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let one_line = stderr.trim_end().lines().count() == 1;
        if out.status.code() != Some(2)
            || !one_line
            || !stderr.contains(c.needle)
            || stderr.contains("panicked")
        {
            failures.push(format!(
                "{}: exit {:?}, stderr {stderr:?} (wanted one line naming {:?})",
                c.what,
                out.status.code(),
                c.needle
            ));
        }
    }
    if root {
        // Unreadable Parquet: a file its reader may not open.
        use std::os::unix::fs::PermissionsExt;
        let data = dir.path().join("unreadable");
        std::fs::create_dir_all(data.join("events")).unwrap();
        let file = data.join("events/locked.parquet");
        std::fs::write(&file, b"PAR1").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
        for p in [dir.path(), data.as_path(), &data.join("events")] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin())
            .args(["query", "durations", "--data"])
            .arg(&data)
            .output()
            .unwrap();
        tried += 1;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2)
            || stderr.trim_end().lines().count() != 1
            || !stderr.contains("locked.parquet")
        {
            failures.push(format!(
                "unreadable Parquet: exit {:?}, stderr {stderr:?}",
                out.status.code()
            ));
        }
        // As root, a configuration anyone can change is refused.
        let open_cfg = dir.path().join("open.toml");
        std::fs::write(&open_cfg, "").unwrap();
        std::fs::set_permissions(&open_cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
        let out = command()
            .args(["--config", open_cfg.to_str().unwrap(), "config"])
            .output()
            .unwrap();
        tried += 1;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) || !stderr.contains("writable by everyone") {
            failures.push(format!("world-writable config: {stderr:?}"));
        }
    }
    // Every case ran: all of them as root, else those that need no privilege.
    let expected = if root {
        CASES.len() + 2
    } else {
        CASES.iter().filter(|c| !c.root).count()
    };
    assert_eq!(tried, expected);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Variables without a SECTION__KEY shape are not configuration.
    let out = config_with("PIPETRACE_SOMETHING_ELSE", "1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_layers_merge_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[capture]\nargv_max_bytes = 1000\nqueue_capacity = 77\n[run]\ngrace_period = \"9s\"\n",
    )
    .unwrap();
    let out = command()
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--argv-max",
            "3000",
            "config",
        ])
        .env("PIPETRACE_CAPTURE__QUEUE_CAPACITY", "88")
        .env("PIPETRACE_CAPTURE__ARGV_MAX_BYTES", "2000")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("argv_max_bytes = 3000"),
        "flag beats env and file: {text}"
    );
    assert!(
        text.contains("queue_capacity = 88"),
        "env beats file: {text}"
    );
    assert!(
        text.contains("grace_period = \"9s\""),
        "file beats defaults: {text}"
    );
}

#[test]
fn otlp_settings_are_checked_and_secrets_masked() {
    assert_one_line_error(
        &agent(&["--otlp-endpoint", "collector:4317", "config"]),
        "otlp.endpoint",
    );
    assert_one_line_error(
        &agent(&["--otlp-protocol", "http/json", "config"]),
        "http/json",
    );
    for (var, value) in [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
    ] {
        let out = config_with(var, value);
        assert_one_line_error(&out, var);
    }

    // Standard variables < file < PIPETRACE_* < flags; header values never printed.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[otlp]\nservice_name = \"from-file\"\n").unwrap();
    let out = command()
        .args(["--config", cfg.to_str().unwrap(), "config"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20s3cret",
        )
        .env("OTEL_SERVICE_NAME", "from-env")
        .env("PIPETRACE_OTLP__TIMEOUT", "3s")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("endpoint = \"http://env:4318\""), "{text}");
    assert!(text.contains("protocol = \"http/protobuf\""), "{text}");
    assert!(text.contains("service_name = \"from-file\""), "{text}");
    assert!(text.contains("timeout = \"3s\""), "{text}");
    assert!(text.contains("authorization"), "{text}");
    assert!(!text.contains("s3cret"), "header value printed: {text}");
}

/// The agent maps no DuckDB (start-up time and resident memory): `query` and the other answering
/// commands run `otel-pipetrace-query` beside it; without that binary they fail in one line.
#[test]
fn agent_maps_no_duckdb_and_hands_queries_over() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    let mut daemon = command()
        .args(["--parquet", data.path().to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let maps = format!("/proc/{}/maps", daemon.id());
    let mut loaded = String::new();
    // Up to 30 s: a loaded runner may take seconds to load the programs.
    for _ in 0..600 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        loaded = std::fs::read_to_string(&maps).unwrap_or_default();
        if loaded.contains("anon_inode:bpf-map") {
            break;
        }
    }
    unsafe { libc::kill(daemon.id() as i32, libc::SIGINT) };
    daemon.wait().unwrap();
    assert!(
        loaded.contains("anon_inode:bpf-map"),
        "the daemon never traced"
    );
    assert!(
        !loaded.contains("duckdb"),
        "the agent maps DuckDB:\n{loaded}"
    );

    // Through the agent's binary: the answer comes from the query engine.
    let dir = data.path().to_str().unwrap();
    assert!(
        agent(&["--parquet", dir, "run", "--", "/bin/true"])
            .status
            .success()
    );
    let out = agent(&["query", "runs", "--format", "csv", "--data", dir]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("run_id,"));

    // A copy of the agent alone: one line naming the missing binary.
    let lonely = tempfile::tempdir().unwrap();
    let copy = lonely.path().join("otel-pipetrace");
    std::fs::copy(bin(), &copy).unwrap();
    // (Just written: another test thread's fork may still hold it open for a moment.)
    let out = pipetrace_tests::output_retrying(Command::new(&copy).args(["query", "runs"]));
    assert_one_line_error(&out, "otel-pipetrace-query");
    // The agent's own commands do not need it.
    let out = pipetrace_tests::output_retrying(Command::new(&copy).arg("config"));
    assert!(out.status.success());
}
