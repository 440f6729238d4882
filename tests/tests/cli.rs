//! What a new user meets on the command line: messages that name the input and say what would
//! be right, flags that mean what they say, output a script can parse.

use std::process::Stdio;

use pipetrace_tests::{
    agent, as_nobody, assert_one_line_error, command, config_with, require_root,
};

/// An error message a user can act on: no source location, no colour codes.
fn assert_plain(stderr: &str) {
    assert!(!stderr.contains(".rs:"), "a source path: {stderr}");
    assert!(!stderr.contains("src/"), "a source path: {stderr}");
    assert!(!stderr.contains('\x1b'), "colour codes: {stderr:?}");
}

#[test]
fn a_bad_duration_names_the_flag_or_variable_and_shows_a_good_one() {
    let out = agent(&["run", "--grace", "2", "--", "true"]);
    assert_one_line_error(&out, "--grace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("5s") && stderr.contains("500ms"),
        "{stderr}"
    );
    // A negative duration is a bad duration, not an unknown flag `-5`.
    for (args, flag) in [
        (&["run", "--grace", "-5s", "--", "true"][..], "--grace"),
        (
            &["query", "tree", "--min-duration", "-1s"][..],
            "--min-duration",
        ),
    ] {
        let out = agent(args);
        assert_one_line_error(&out, flag);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("-")
                && stderr.contains("duration")
                && !stderr.contains("unexpected argument"),
            "{stderr}"
        );
    }
    assert_plain(&stderr);

    let out = config_with("PIPETRACE_RUN__GRACE_PERIOD", "2");
    assert_one_line_error(&out, "PIPETRACE_RUN__GRACE_PERIOD");
    assert_plain(&String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_unknown_key_suggests_the_one_meant() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("pipetrace.toml");
    std::fs::write(&cfg, "[run]\ngrace = \"1s\"\n").unwrap();
    let out = agent(&["--config", cfg.to_str().unwrap(), "config"]);
    assert_one_line_error(&out, "did you mean `run.grace_period`?");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(cfg.to_str().unwrap()), "{stderr}");
    // Not every key of the section.
    assert!(!stderr.contains("argv_max_bytes"), "{stderr}");

    let out = config_with("PIPETRACE_CAPTURE__ARGV_MAX", "100");
    assert_one_line_error(&out, "PIPETRACE_CAPTURE__ARGV_MAX");
    assert_one_line_error(&out, "did you mean `capture.argv_max_bytes`?");
}

#[test]
fn an_unknown_flag_is_a_usage_error_not_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("ran");
    // Were `--bogus` taken as the command, the shell after it would never run either; the
    // point is that nothing runs and the flag is named.
    let out = agent(&[
        "run",
        "--bogus",
        "--",
        "sh",
        "-c",
        &format!("touch {}", witness.display()),
    ]);
    assert_one_line_error(&out, "--bogus");
    assert!(!witness.exists(), "nothing was run");
}

#[test]
fn query_help_lists_only_what_applies_to_queries() {
    let out = agent(&["query", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--jsonl",
        "--hide",
        "--btf",
        "--otlp-endpoint",
        "--argv-max",
    ] {
        assert!(!help.contains(flag), "{flag} in query --help:\n{help}");
    }
    for view in ["run_events", "run_processes"] {
        assert!(help.contains(view), "{view} not in query --help:\n{help}");
    }
    // The tracing flags are still there for run and the daemon.
    let run_help = String::from_utf8_lossy(&agent(&["run", "--help"]).stdout).into_owned();
    assert!(run_help.contains("--jsonl") && run_help.contains("--otlp-endpoint"));
}

#[test]
fn a_file_that_is_not_parquet_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        (
            "notes.txt",
            b"just some text, not parquet at all".as_slice(),
        ),
        ("cut.parquet", b"PAR1 then nothing like a footer".as_slice()),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let out = agent(&["query", "durations", "--data", file.to_str().unwrap()]);
        assert_one_line_error(&out, file.to_str().unwrap());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not a Parquet file"), "{stderr}");
        assert!(!stderr.contains("SELECT"), "DuckDB's SQL leaked: {stderr}");
    }
}

#[test]
fn query_without_permission_says_so_and_what_gives_access() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = command()
        .arg("--parquet")
        .arg(&data)
        .args(["run", "--", "/bin/true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The temporary directory is root's 0700: open it, as /var/lib would be.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_nobody(&[])
        .args(["query", "durations", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert_one_line_error(&out, "permission denied");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("group"), "{stderr}");
    assert!(!stderr.contains("no Parquet data"), "{stderr}");
}

#[test]
fn jsonl_on_stdout_stays_parseable_and_the_commands_output_goes_to_stderr() {
    require_root!();
    let out = command()
        .args(["run", "--jsonl", "-", "--"])
        .args(["sh", "-c", "echo pt-said-this; echo '{not json'"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut kinds = Vec::new();
    for line in stdout.lines() {
        let record = serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON on stdout: {line:?}: {e}"));
        kinds.push(record["kind"].as_str().unwrap_or_default().to_owned());
    }
    // One process (echo is a shell builtin): its exec and its exit, nothing else.
    assert_eq!(kinds, ["exec", "exit"], "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pt-said-this"), "{stderr}");
}

#[test]
fn waiting_for_survivors_says_what_it_waits_for() {
    require_root!();
    let out = command()
        .args(["run", "--grace", "3s", "--"])
        .args(["sh", "-c", "sleep 1 & exit 0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let notice = stderr
        .lines()
        .find(|l| l.contains("waiting up to 3s"))
        .unwrap_or_else(|| panic!("no waiting notice: {stderr}"));
    assert!(notice.contains("1 process still running"), "{notice}");
    assert!(notice.contains("sleep"), "{notice}");
    // It then ended before the grace period: nothing left running.
    assert!(stderr.contains("0 still running"), "{stderr}");
}

#[test]
fn log_lines_are_plain_text_when_stderr_is_not_a_terminal() {
    require_root!();
    let out = command()
        .args(["--log", "debug", "run", "--", "/bin/true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("DEBUG"), "debug lines expected: {stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "colour codes in a pipe: {stderr:?}"
    );
}

#[test]
fn a_user_with_exactly_the_documented_capabilities_can_trace() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let jsonl = dir.path().join("events.jsonl");
    // CAP_BPF and CAP_PERFMON, as README, the preflight message and the systemd unit say.
    let out = as_nobody(&["bpf", "perfmon"])
        .arg("--parquet")
        .arg(dir.path().join("data"))
        .args(["run", "--jsonl"])
        .arg(&jsonl)
        .args(["--", "/bin/sh", "-c", "/bin/true pt-caps"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let text = std::fs::read_to_string(&jsonl).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("\"exec\"") && l.contains("pt-caps")),
        "{text}"
    );
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(readme.contains("**`CAP_BPF` and `CAP_PERFMON`**"));
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/systemd/otel-pipetrace.service"
    ))
    .unwrap();
    assert!(unit.contains("CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_SYS_PTRACE"));
}

#[test]
fn an_out_of_range_value_names_where_it_came_from() {
    assert_one_line_error(
        &agent(&["run", "--argv-max", "40000", "--", "true"]),
        "flag --argv-max: key `capture.argv_max_bytes`: 40000 is out of range",
    );
    let out = config_with("PIPETRACE_CAPTURE__ARGV_MAX_BYTES", "0");
    assert_one_line_error(
        &out,
        "environment variable PIPETRACE_CAPTURE__ARGV_MAX_BYTES",
    );
}
