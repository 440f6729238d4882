//! Start-up failures and bad input: one line on stderr naming the cause, exit status 2.

use std::process::Command;

use pipetrace_tests::{agent, assert_one_line_error, bin, command, require_root};

/// `otel-pipetrace config` with one environment variable set.
fn config_with(var: &str, value: &str) -> std::process::Output {
    command().arg("config").env(var, value).output().unwrap()
}

#[test]
fn unprivileged_user_is_told_to_use_root() {
    require_root!();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(bin())
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
fn unmounted_tracefs_is_mounted() {
    require_root!();
    // In a private mount namespace, so the host's tracefs stays as it is.
    let script = format!(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; \
         test ! -d /sys/kernel/tracing/events || exit 99; \
         {} run -- /bin/true && test -d /sys/kernel/tracing/events",
        bin().display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(99) {
        eprintln!("skipped: tracefs could not be unmounted here");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn bad_flags_and_config_are_one_line() {
    // No privileges needed: these fail before anything is loaded.
    assert_one_line_error(&agent(&["--no-such-flag"]), "--no-such-flag");
    assert_one_line_error(&agent(&["run"]), "CMD");
    assert_one_line_error(&agent(&["--argv-max", "lots", "config"]), "lots");
    assert_one_line_error(
        &agent(&["--argv-max", "0", "config"]),
        "capture.argv_max_bytes",
    );
    assert_one_line_error(
        &agent(&["--config", "/nonexistent.toml", "config"]),
        "/nonexistent.toml",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[capture]\nargv_max_bytes = \"big\"\n").unwrap();
    let out = agent(&["--config", cfg.to_str().unwrap(), "config"]);
    assert_one_line_error(&out, "capture.argv_max_bytes");
    assert_one_line_error(&out, "bad.toml");
    std::fs::write(&cfg, "[capture]\nring_buffer_bytes = 1000\n").unwrap();
    assert_one_line_error(
        &agent(&["--config", cfg.to_str().unwrap(), "config"]),
        "power of two",
    );
    // Environment layer.
    let out = config_with("PIPETRACE_RUN__GRACE_PERIOD", "forever");
    assert_one_line_error(&out, "run.grace_period");
    let out = config_with("PIPETRACE_CAPTURE__ARGV_MAXIMUM", "1");
    assert_one_line_error(&out, "argv_maximum");
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
