//! Secrets in command lines never reach an output: traced commands carry passwords, tokens,
//! keys and credentials in their arguments and environment, and every sink — spans at a real
//! OTLP receiver, the Prometheus endpoint, Parquet read back by DuckDB, JSONL — is searched for
//! them. Output files are private to root and its group.

use std::{os::unix::fs::PermissionsExt, process::Command, time::Duration};

use pipetrace_tests::{
    command, config_daemon, prometheus::get, query_sql, real_python, require_root, rotel::Rotel,
    status_of, wait_until,
};

/// Each value appears in a traced command line or environment and must appear nowhere.
const SECRETS: [&str; 9] = [
    "hunter2-pw",
    "ghp-tok3n-value",
    "k3y-api-value",
    "AKIAZZZZ7777EXAMPLE1",
    "url-pa55word",
    "eyJbearer.t0ken.sig",
    "db-s3cret-env",
    "inline-sh-pw",
    "env-only-s3cret",
];

#[test]
fn secrets_reach_no_sink_and_files_are_private() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("pts{}.sh", std::process::id() % 100_000);
    let script = dir.path().join(&name);
    let python = real_python();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             {python} -c 'import time; time.sleep(0.3)' --password=hunter2-pw --token ghp-tok3n-value \
             --api-key=k3y-api-value AKIAZZZZ7777EXAMPLE1 https://ci:url-pa55word@git.example.com/r.git \
             'Authorization: Bearer eyJbearer.t0ken.sig' DB_SECRET=db-s3cret-env\n\
             /bin/sh -c 'true --password inline-sh-pw'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rotel = Rotel::start();
    let data = dir.path().join("data");
    let jsonl = dir.path().join("out/events.jsonl");
    std::fs::create_dir_all(jsonl.parent().unwrap()).unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[scope]\nmode = \"descendants\"\nroot_names = [\"{name}\"]\n[output]\nparquet_dir = \"{}\"\njsonl = \"{}\"\n[otlp]\nendpoint = \"{}\"\nmetrics = false\n[metrics]\nprometheus_listen = \"127.0.0.1:0\"\nper_process = true\n",
            data.display(),
            jsonl.display(),
            rotel.grpc_endpoint()
        ),
    )
    .unwrap();
    let mut daemon = config_daemon(&config);
    let metrics_port = daemon.metrics_port();
    let status = status_of(Command::new(&script).env("AWS_SECRET_ACCESS_KEY", "env-only-s3cret"));
    assert!(status.success());
    // The script, python and sh: three spans, and three ended processes in the metrics.
    let spans = rotel.wait_for(|s| s.len() >= 3);
    assert_eq!(spans.len(), 3);
    let ended = |text: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with("pipetrace_processes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    wait_until(
        "three ended processes in the metrics",
        Duration::from_secs(30),
        || ended(&get(metrics_port, "/metrics").expect("the metrics endpoint answers")) == 3,
    );
    let metrics = get(metrics_port, "/metrics").unwrap();
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert_eq!(daemon.wait().unwrap().code(), Some(0));

    let query = |sql: &str| query_sql(&data, "json", sql);
    let outputs = [
        ("spans (OTLP receiver)", rotel.log()),
        ("Prometheus endpoint", metrics),
        ("Parquet events", query("select * from events")),
        ("Parquet processes", query("select * from processes")),
        ("JSONL", std::fs::read_to_string(&jsonl).unwrap()),
    ];
    for (sink, text) in &outputs {
        assert!(text.len() > 100, "{sink} is empty: {text}");
        for secret in SECRETS {
            assert!(!text.contains(secret), "{sink} leaks {secret}");
        }
    }
    // What is not secret is still there, with the secrets masked.
    let python_span = spans
        .iter()
        .find(|s| {
            s.attr("process.command_line")
                .is_some_and(|c| c.contains("--token"))
        })
        .expect("the python span");
    let line = python_span.attr("process.command_line").unwrap();
    // The line is shell-quoted: read it back into words as a shell would.
    let words = shlex::split(line).unwrap_or_else(|| panic!("not shell words: {line}"));
    for masked in [
        "--password=***",
        "--api-key=***",
        "https://ci:***@git.example.com/r.git",
        "Authorization: Bearer ***",
        "DB_SECRET=***",
    ] {
        assert!(
            words.iter().any(|w| w == masked),
            "{masked} not in {words:?}"
        );
    }
    assert!(
        words.windows(2).any(|w| w[0] == "--token" && w[1] == "***"),
        "--token *** not in {words:?}"
    );
    for (sink, text) in &outputs[2..] {
        assert!(text.contains("--password=***"), "{sink}");
    }
    assert!(outputs[4].1.contains("true --password ***"));

    // The search would find them: with redaction off, they are there.
    let out = command()
        .env("PIPETRACE_REDACT__ENABLED", "false")
        .args(["run", "--jsonl"])
        .arg(dir.path().join("off.jsonl"))
        .args(["--", "/bin/true", "--password=hunter2-pw"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let off = std::fs::read_to_string(dir.path().join("off.jsonl")).unwrap();
    assert!(off.contains("--password=hunter2-pw"));

    // Private files: owner and group only.
    for (path, want) in [
        (jsonl.clone(), 0o640),
        (data.clone(), 0o750),
        (data.join("events"), 0o750),
        (data.join("processes"), 0o750),
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, want, "{} is mode {mode:o}", path.display());
    }
    for dataset in ["events", "processes"] {
        for f in std::fs::read_dir(data.join(dataset)).unwrap() {
            let mode = f.unwrap().metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "{dataset} file mode {mode:o}");
        }
    }
}
