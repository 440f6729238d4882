//! Traces to a real OTLP receiver (rotel): one pipeline run = one nested trace, over gRPC and
//! HTTP, from `run` and from the daemon; a receiver that is down or stalls costs counted
//! spans, never a hang.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use pipetrace_tests::{
    command, require_root,
    rotel::{ReceivedSpan, Rotel, free_port},
    spawn_daemon,
};

/// A pipeline with a known tree:
/// root sh ─┬─ sh -c '/bin/true; exit 4'   (fails with 4) ── /bin/true
///          ├─ sh -c 'kill -9 $$'     (killed by SIGKILL)
///          ├─ env true               (exec chain: one process, named "true")
///          └─ sleep 0.05 &           (background, waited for)
const PIPELINE: &str = r#"printf '%s' "$TRACEPARENT" > "$1"
sh -c '/bin/true; exit 4'
sh -c 'kill -9 $$'
env true
sleep 0.05 &
wait
"#;

struct Pipeline {
    dir: tempfile::TempDir,
    script: PathBuf,
    traceparent_file: PathBuf,
}

impl Pipeline {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("pipeline.sh");
        std::fs::write(&script, PIPELINE).unwrap();
        let traceparent_file = dir.path().join("traceparent");
        Self {
            dir,
            script,
            traceparent_file,
        }
    }

    fn command(&self) -> Vec<String> {
        vec![
            "/bin/sh".into(),
            self.script.display().to_string(),
            self.traceparent_file.display().to_string(),
        ]
    }
}

/// `otel-pipetrace <flags> run -- <pipeline>` with extra environment.
fn run_traced(flags: &[&str], env: &[(&str, &str)], pipeline: &Pipeline) -> Output {
    let mut cmd = command();
    cmd.args(flags)
        .arg("run")
        .arg("--")
        .args(pipeline.command());
    // Keep the standard variables of the calling environment out of the test's way.
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") || k == "TRACEPARENT" || k.starts_with("PIPETRACE_OTLP") {
            cmd.env_remove(k);
        }
    }
    for var in ["GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("spawn otel-pipetrace")
}

/// The daemon with a config file, once it says tracing is live.
struct Daemon {
    child: std::process::Child,
    stderr: BufReader<std::process::ChildStderr>,
}

impl Daemon {
    /// Writes a config with this `[scope]` body, exporting to `rotel`, and starts the daemon.
    fn start(dir: &Path, scope: &str, rotel: &Rotel) -> Self {
        let config = dir.join("pipetrace.toml");
        std::fs::write(
            &config,
            format!(
                "[scope]\n{scope}\n[otlp]\nendpoint = \"{}\"\nbatch_delay = \"50ms\"\n",
                rotel.grpc_endpoint()
            ),
        )
        .unwrap();
        let mut cmd = command();
        cmd.arg("--config").arg(&config);
        let (child, stderr) = spawn_daemon(cmd);
        Self { child, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM: the daemon must flush and exit 0. Returns the rest of its stderr.
    fn stop(mut self) -> String {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stderr, &mut rest).unwrap();
        assert_eq!(self.child.wait().unwrap().code(), Some(0), "{rest}");
        rest
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn by_pid(spans: &[ReceivedSpan]) -> HashMap<String, &ReceivedSpan> {
    spans
        .iter()
        .filter_map(|s| s.attr("process.pid").map(|p| (p.to_owned(), s)))
        .collect()
}

/// Checks the trace of one run of [`PIPELINE`]; returns the run span.
fn check_pipeline_trace(spans: &[ReceivedSpan], pipeline: &Pipeline) -> ReceivedSpan {
    let run: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "run sh").collect();
    assert_eq!(run.len(), 1, "one run span: {spans:#?}");
    let run = run[0];
    let trace: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == run.trace_id)
        .collect();
    assert_eq!(
        trace.len(),
        7,
        "run + 6 processes in one trace: {:#?}",
        trace
            .iter()
            .map(|s| (&s.name, s.attr("process.command_line")))
            .collect::<Vec<_>>()
    );
    let pids = by_pid(spans);
    let ids: Vec<&str> = trace.iter().map(|s| s.id.as_str()).collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "span ids are unique");

    // Every process span's parent is the span of its parent process; the root's is the run.
    let root: Vec<&&ReceivedSpan> = trace
        .iter()
        .filter(|s| {
            s.attr("process.command_line")
                .is_some_and(|c| c.contains("pipeline.sh"))
                && s.name == "dash"
        })
        .collect();
    assert_eq!(root.len(), 1, "one root process span");
    let root = root[0];
    assert_eq!(root.parent_id, run.id);
    for s in trace.iter().filter(|s| s.id != run.id && s.id != root.id) {
        let ppid = s.attr("process.parent_pid").unwrap();
        let parent = pids
            .get(ppid)
            .unwrap_or_else(|| panic!("parent pid {ppid} of {} has a span", s.name));
        assert_eq!(s.parent_id, parent.id, "{} parent", s.name);
    }

    let by_cmd = |cmd: &str| -> &ReceivedSpan {
        trace
            .iter()
            .find(|s| s.attr("process.command_line") == Some(cmd))
            .unwrap_or_else(|| panic!("no span for {cmd:?}"))
    };
    let failing = by_cmd("sh -c '/bin/true; exit 4'");
    assert!(failing.is_error());
    assert_eq!(failing.attr("process.exit.code"), Some("4"));
    assert_eq!(failing.attr("error.type"), Some("4"));
    assert_eq!(failing.parent_id, root.id);
    let grandchild = by_cmd("/bin/true");
    assert_eq!(grandchild.parent_id, failing.id);
    assert_eq!(grandchild.name, "true");
    assert_eq!(
        grandchild.attr("process.executable.path"),
        Some("/usr/bin/true")
    );
    assert!(!grandchild.is_error());
    let killed = by_cmd("sh -c 'kill -9 $$'");
    assert!(killed.is_error());
    assert_eq!(
        killed.attr("pipetrace.process.signal_name"),
        Some("SIGKILL")
    );
    assert_eq!(killed.attr("error.type"), Some("SIGKILL"));
    // `env true` execs true: one span named after the last image, the env image an event.
    let chain: Vec<&&ReceivedSpan> = trace
        .iter()
        .filter(|s| s.events.iter().any(|e| e == "process.exec"))
        .collect();
    assert_eq!(chain.len(), 1);
    assert_eq!(chain[0].name, "true");
    assert_eq!(chain[0].attr("pipetrace.process.exec_count"), Some("2"));
    assert_eq!(chain[0].parent_id, root.id);
    assert_eq!(by_cmd("sleep 0.05").parent_id, root.id);
    assert!(!root.is_error(), "the root exited 0");
    assert_eq!(root.attr("process.exit.code"), Some("0"));
    // The root's attributes, against what the test knows of the process it started.
    let script = pipeline.script.display().to_string();
    let traceparent_file = pipeline.traceparent_file.display().to_string();
    let cwd = std::env::current_dir().unwrap();
    for (key, want) in [
        ("process.executable.name", "dash".to_owned()),
        ("process.executable.path", "/usr/bin/dash".to_owned()),
        (
            "process.command_line",
            format!("/bin/sh {script} {traceparent_file}"),
        ),
        ("process.args_count", "3".to_owned()),
        ("process.working_directory", cwd.display().to_string()),
        ("process.user.id", unsafe { libc::geteuid() }.to_string()),
    ] {
        assert_eq!(root.attr(key), Some(want.as_str()), "root span's {key}");
    }
    // Times and usage: numbers consistent with the span itself.
    for key in ["pipetrace.process.cpu.user", "pipetrace.process.cpu.system"] {
        let v: f64 = root.attr(key).unwrap().parse().unwrap();
        assert!(
            v >= 0.0 && v <= (root.end_ns - root.start_ns) as f64 / 1e9,
            "{key} {v}"
        );
    }
    let peak: u64 = root
        .attr("pipetrace.process.memory.peak")
        .unwrap()
        .parse()
        .unwrap();
    assert!(peak > 0, "a shell that ran has resident pages");
    let creation = root.attr("process.creation.time").unwrap();
    let exit_time = root.attr("process.exit.time").unwrap();
    assert!(
        creation.starts_with("20") && creation < exit_time,
        "{creation} {exit_time}"
    );
    // The script goes on after both and exits 0: their failures were absorbed, not the run's.
    assert_eq!(run.attr("pipetrace.run.failed"), Some("0"));
    assert_eq!(run.attr("pipetrace.run.absorbed_failures"), Some("2"));
    assert_eq!(run.attr("pipetrace.run.processes"), Some("6"));

    // The command saw TRACEPARENT pointing at the run span.
    let handed = std::fs::read_to_string(&pipeline.traceparent_file).unwrap();
    assert_eq!(handed, format!("00-{}-{}-01", run.trace_id, run.id));
    let _ = &pipeline.dir;
    run.clone()
}

#[test]
fn run_over_grpc_nests_the_tree_under_the_ci_trace() {
    require_root!();
    let rotel = Rotel::start();
    let pipeline = Pipeline::new();
    let parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let out = run_traced(
        &["--otlp-endpoint", &rotel.grpc_endpoint()],
        &[
            (
                "TRACEPARENT",
                &format!("00-{parent_trace}-{parent_span}-01"),
            ),
            ("OTEL_SERVICE_NAME", "ci-builds"),
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_PATH", "acme/app"),
            ("CI_PIPELINE_ID", "4242"),
            ("CI_JOB_NAME", "unit-tests"),
            ("CI_JOB_ID", "99"),
        ],
        &pipeline,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("spans: 7 exported, 0 dropped"),
        "{}",
        stderr(&out)
    );
    let spans = rotel.wait_for(|s| s.len() >= 7);
    let run = check_pipeline_trace(&spans, &pipeline);
    assert_eq!(run.trace_id, parent_trace);
    assert_eq!(run.parent_id, parent_span);
    assert!(!run.is_error());
    let r = &run.resource;
    assert_eq!(r["service.name"], "ci-builds");
    assert_eq!(r["cicd.pipeline.name"], "acme/app");
    assert_eq!(r["cicd.pipeline.run.id"], "4242");
    assert_eq!(r["cicd.pipeline.task.name"], "unit-tests");
    assert_eq!(r["cicd.pipeline.task.run.id"], "99");
    // The run is the job's task run (OpenTelemetry `cicd` conventions) on its span too.
    assert_eq!(run.attr("cicd.pipeline.task.name"), Some("unit-tests"));
    assert_eq!(run.attr("cicd.pipeline.task.run.id"), Some("99"));
    assert_eq!(run.attr("cicd.pipeline.task.run.result"), Some("success"));
}

/// Inside a GitHub Actions job, the run span's `cicd.pipeline.task.run.result` says how the
/// task ended: success, failure, cancellation (the job cancelled: SIGTERM to `run`, passed on),
/// timeout (`timeout(1)`'s status); outside CI the span has no `cicd` attributes.
#[test]
fn the_run_span_says_how_the_ci_task_ended() {
    require_root!();
    let rotel = Rotel::start();
    let cases = [
        ("exit 0", "success", Some(0)),
        ("exit 3", "failure", Some(3)),
        ("kill -TERM $PPID; exec sleep 5", "cancellation", None),
        ("timeout 0.1 sleep 5", "timeout", Some(124)),
    ];
    for (script, _, status) in cases {
        let out = command()
            .args(["--otlp-endpoint", &rotel.grpc_endpoint(), "run", "--"])
            .args(["sh", "-c", script])
            .env_remove("TRACEPARENT")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_JOB", "build")
            .env("GITHUB_RUN_ID", "777")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code().filter(|_| status.is_some()),
            status,
            "{script}: {}",
            stderr(&out)
        );
    }
    let out = command()
        .args(["--otlp-endpoint", &rotel.grpc_endpoint(), "run", "--"])
        .args(["sh", "-c", "true"])
        .env_remove("TRACEPARENT")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .env_remove("JENKINS_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let spans = rotel.wait_for(|s| s.iter().filter(|s| s.name == "run sh").count() >= 5);
    let runs: Vec<_> = spans.iter().filter(|s| s.name == "run sh").collect();
    for (script, result, _) in cases {
        let run = runs
            .iter()
            .find(|r| {
                r.attr("process.command_line")
                    .is_some_and(|c| c.contains(script))
            })
            .unwrap_or_else(|| panic!("no run span for {script}"));
        assert_eq!(
            run.attr("cicd.pipeline.task.run.result"),
            Some(result),
            "{script}"
        );
        assert_eq!(
            run.attr("cicd.pipeline.task.name"),
            Some("build"),
            "{script}"
        );
        assert_eq!(run.resource["cicd.pipeline.run.id"], "777");
    }
    let outside = runs
        .iter()
        .find(|r| r.attr("cicd.pipeline.task.run.result").is_none())
        .expect("the run outside CI");
    assert!(
        !outside.resource.contains_key("cicd.system"),
        "{:?}",
        outside.resource
    );
}

#[test]
fn run_over_http_from_the_standard_environment() {
    require_root!();
    let rotel = Rotel::start();
    let pipeline = Pipeline::new();
    let out = run_traced(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &rotel.http_endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci"),
        ],
        &pipeline,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let spans = rotel.wait_for(|s| s.len() >= 7);
    let run = check_pipeline_trace(&spans, &pipeline);
    assert_eq!(
        run.parent_id, "",
        "no TRACEPARENT: the run starts the trace"
    );
    assert_eq!(run.resource["service.name"], "otel-pipetrace");
    assert_eq!(run.resource["deployment.environment"], "ci");
}

#[test]
fn a_failing_command_marks_the_run_span() {
    require_root!();
    let rotel = Rotel::start();
    let out = command()
        .args(["--otlp-endpoint", &rotel.grpc_endpoint(), "run", "--"])
        .args(["sh", "-c", "exit 3"])
        .env_remove("TRACEPARENT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let spans = rotel.wait_for(|s| s.len() >= 2);
    let run = spans.iter().find(|s| s.name == "run sh").unwrap();
    assert!(run.is_error());
    assert_eq!(run.attr("process.exit.code"), Some("3"));
    let process = spans.iter().find(|s| s.name == "dash").unwrap();
    assert!(process.is_error());
    assert_eq!(process.parent_id, run.id);
}

/// Spans of a run whose summary says how many were dropped: all of them, never a hang.
fn assert_all_dropped(out: &Output, started: Instant, limit: Duration) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        started.elapsed() < limit,
        "took {:?}: {err}",
        started.elapsed()
    );
    let summary = err.lines().find(|l| l.contains(" processes, ")).unwrap();
    let processes: u64 = summary
        .split("otel-pipetrace: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(processes >= 30, "{summary}");
    assert!(
        summary.contains(&format!("spans: 0 exported, {} dropped", processes + 1)),
        "every span (processes + run) counted as dropped: {summary}"
    );
}

#[test]
fn a_receiver_that_is_down_costs_counted_spans() {
    require_root!();
    let port = free_port();
    let started = Instant::now();
    let out = command()
        .args(["--otlp-endpoint", &format!("http://127.0.0.1:{port}"), "run", "--"])
        .args(["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do /bin/true; done"])
        .env("PIPETRACE_OTLP__MAX_QUEUE_SPANS", "8")
        .env("PIPETRACE_OTLP__MAX_BATCH_SPANS", "4")
        .env("PIPETRACE_OTLP__BATCH_DELAY", "10ms")
        .env("PIPETRACE_OTLP__SHUTDOWN_TIMEOUT", "2s")
        .env_remove("TRACEPARENT")
        .output()
        .unwrap();
    assert_all_dropped(&out, started, Duration::from_secs(20));
    assert!(stderr(&out).contains("queue full"), "{}", stderr(&out));
}

#[test]
fn a_receiver_that_never_answers_does_not_stall_the_agent() {
    require_root!();
    // Accepts connections and never replies.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let started = Instant::now();
    let out = command()
        .args(["--otlp-endpoint", &format!("http://127.0.0.1:{port}")])
        .args(["--otlp-protocol", "http/protobuf", "run", "--"])
        .args(["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do /bin/true; done"])
        .env("PIPETRACE_OTLP__TIMEOUT", "300ms")
        .env("PIPETRACE_OTLP__SHUTDOWN_TIMEOUT", "1s")
        .env_remove("TRACEPARENT")
        .output()
        .unwrap();
    assert_all_dropped(&out, started, Duration::from_secs(15));
}

#[test]
fn daemon_exports_trees_of_matching_roots_including_one_already_running() {
    require_root!();
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("pto{}.sh", std::process::id() % 100_000);
    let script = dir.path().join(&name);
    let fifo = dir.path().join("go");
    std::fs::write(
        &script,
        "#!/bin/sh\nread x < \"$1\"\nsh -c 'exit 3'\n/bin/true\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // The root starts before the daemon and waits for the go signal.
    let mut root = pipetrace_tests::spawn_retrying(Command::new(&script).arg(&fifo));
    let daemon = Daemon::start(
        dir.path(),
        &format!("mode = \"descendants\"\nroot_names = [\"{name}\"]"),
        &rotel,
    );
    std::fs::write(&fifo, "go\n").unwrap();
    assert_eq!(root.wait().unwrap().code(), Some(0));
    let spans = rotel.wait_for(|s| s.len() >= 3);
    // SIGTERM: flush and exit 0.
    let rest = daemon.stop();
    assert!(rest.contains("spans: 3 exported, 0 dropped"), "{rest}");

    let root_span = spans
        .iter()
        .find(|s| s.attr("process.pid") == Some(&root.id().to_string()))
        .expect("span of the root that was already running");
    assert_eq!(root_span.attr("pipetrace.process.seeded"), Some("true"));
    assert_eq!(root_span.parent_id, "", "a daemon root starts a trace");
    let failing = spans
        .iter()
        .find(|s| s.attr("process.command_line") == Some("sh -c 'exit 3'"))
        .unwrap_or_else(|| {
            let lines: Vec<_> = spans
                .iter()
                .map(|s| s.attr("process.command_line"))
                .collect();
            panic!("no span of sh -c 'exit 3': {lines:?}")
        });
    assert!(failing.is_error());
    let t = spans.iter().find(|s| s.name == "true").unwrap();
    for child in [failing, t] {
        assert_eq!(child.parent_id, root_span.id);
        assert_eq!(child.trace_id, root_span.trace_id);
    }
}

/// A private CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is needed by this test");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=pipetrace-test-ca",
    ]);
    // A key and a certificate signed by the CA, with the given extensions.
    let issue = |name: &str, subject: &str, extensions: &str| {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.cnf"),
        );
        openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ]);
        std::fs::write(dir.join(&ext), extensions).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
            "-extfile",
            &ext,
        ]);
    };
    issue(
        "server",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    );
    // A client certificate from the same CA, for mutual TLS.
    issue(
        "client",
        "/CN=otel-pipetrace",
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
    );
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// TLS in front of a plaintext port (tests/fixtures/tls_proxy.py, Python's ssl module).
struct TlsProxy(std::process::Child);

impl TlsProxy {
    fn start(
        target: u16,
        cert: &std::path::Path,
        key: &std::path::Path,
        alpn: &str,
        client_ca: Option<&std::path::Path>,
    ) -> (Self, u16) {
        Self::start_recording(target, cert, key, alpn, client_ca, None)
    }

    /// The same, appending what clients send (decrypted) to `record`.
    fn start_recording(
        target: u16,
        cert: &std::path::Path,
        key: &std::path::Path,
        alpn: &str,
        client_ca: Option<&std::path::Path>,
        record: Option<&std::path::Path>,
    ) -> (Self, u16) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls_proxy.py");
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3".to_owned()
        } else {
            pipetrace_tests::real_python()
        };
        let mut cmd = Command::new(python);
        if let Some(record) = record {
            cmd.env("RECORD", record);
        }
        let mut child = cmd
            .arg(script)
            .args(["0".to_owned(), target.to_string()])
            .arg(cert)
            .arg(key)
            .arg(alpn)
            .args(client_ca)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("tls proxy did not start: {line:?}"));
        (Self(child), port)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_true(flags: &[&str], env: &[(&str, &str)]) -> String {
    let out = command()
        .args(flags)
        .args(["run", "--", "/bin/true"])
        .env_remove("TRACEPARENT")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stderr(&out)
}

#[test]
fn tls_with_a_private_ca_over_grpc_and_http() {
    require_root!();
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let (_grpc_proxy, grpc_tls) = TlsProxy::start(rotel.grpc_port, &cert, &key, "h2", None);
    let (_http_proxy, http_tls) = TlsProxy::start(rotel.http_port, &cert, &key, "http/1.1", None);
    let ca = ca.to_str().unwrap();

    let grpc = format!("https://127.0.0.1:{grpc_tls}");
    let err = run_true(
        &["--otlp-endpoint", &grpc],
        &[("PIPETRACE_OTLP__TLS__CA_FILE", ca)],
    );
    assert!(
        err.contains("spans: 2 exported, 0 dropped"),
        "gRPC over TLS: {err}"
    );

    let http = format!("https://127.0.0.1:{http_tls}");
    let err = run_true(
        &["--otlp-endpoint", &http, "--otlp-protocol", "http/protobuf"],
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", ca)],
    );
    assert!(
        err.contains("spans: 2 exported, 0 dropped"),
        "HTTP over TLS: {err}"
    );
    let spans = rotel.wait_for(|s| s.len() >= 4);
    assert_eq!(spans.iter().filter(|s| s.name == "run true").count(), 2);

    // Without the CA the server is not trusted: nothing is sent, and the loss is counted.
    let err = run_true(
        &["--otlp-endpoint", &grpc],
        &[
            ("PIPETRACE_OTLP__TIMEOUT", "1s"),
            ("PIPETRACE_OTLP__SHUTDOWN_TIMEOUT", "3s"),
        ],
    );
    assert!(
        err.contains("spans: 0 exported, 2 dropped"),
        "untrusted server: {err}"
    );
    // A trusted run after it (the control): its two spans are the only new ones.
    run_true(
        &["--otlp-endpoint", &grpc],
        &[("PIPETRACE_OTLP__TLS__CA_FILE", ca)],
    );
    let after = rotel.wait_for(|s| s.len() >= spans.len() + 2);
    assert_eq!(after.len(), spans.len() + 2);
}

#[test]
fn mutual_tls_presents_the_client_certificate() {
    require_root!();
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let (client_cert, client_key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    let (_proxy, port) = TlsProxy::start(rotel.grpc_port, &cert, &key, "h2", Some(&ca));
    let endpoint = format!("https://127.0.0.1:{port}");
    let config = dir.path().join("mtls.toml");
    std::fs::write(
        &config,
        format!(
            "[otlp]\nendpoint = \"{endpoint}\"\n[otlp.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            ca.display(),
            client_cert.display(),
            client_key.display()
        ),
    )
    .unwrap();
    let err = run_true(&["--config", config.to_str().unwrap()], &[]);
    assert!(err.contains("spans: 2 exported, 0 dropped"), "mTLS: {err}");
    // Without the client certificate the server refuses the connection.
    let err = run_true(
        &["--otlp-endpoint", &endpoint],
        &[
            ("PIPETRACE_OTLP__TLS__CA_FILE", ca.to_str().unwrap()),
            ("PIPETRACE_OTLP__TIMEOUT", "1s"),
            ("PIPETRACE_OTLP__SHUTDOWN_TIMEOUT", "3s"),
        ],
    );
    assert!(
        err.contains("spans: 0 exported, 2 dropped"),
        "no client cert: {err}"
    );
    let spans = rotel.wait_for(|s| s.len() >= 2);
    assert_eq!(spans.len(), 2);
}

#[test]
fn a_survivor_is_exported_as_still_running() {
    require_root!();
    let rotel = Rotel::start();
    let out = command()
        .args([
            "--otlp-endpoint",
            &rotel.grpc_endpoint(),
            "run",
            "--grace",
            "300ms",
            "--",
        ])
        .args(["sh", "-c", "sleep 7 & exit 0"])
        .env_remove("TRACEPARENT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 still running"), "{}", stderr(&out));
    let spans = rotel.wait_for(|s| s.len() >= 3);
    let sleep = spans.iter().find(|s| s.name == "sleep").unwrap();
    let pid: i32 = sleep.attr("process.pid").unwrap().parse().unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(sleep.attr("pipetrace.process.still_running"), Some("true"));
    assert!(!sleep.is_error());
    assert!(sleep.attr("process.exit.code").is_none());
    let shell = spans.iter().find(|s| s.name == "dash").unwrap();
    assert_eq!(sleep.parent_id, shell.id);
    let run = spans.iter().find(|s| s.name == "run sh").unwrap();
    assert_eq!(run.attr("pipetrace.run.still_running"), Some("1"));
}

#[test]
fn daemon_all_scope_starts_a_trace_under_a_process_that_predates_it() {
    require_root!();
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "mode = \"all\"", &rotel);
    // This test process predates the daemon: the shell it starts is the root of a new trace.
    let marker = format!("all-{}", std::process::id());
    let status = Command::new("sh")
        .args(["-c", &format!("/bin/echo {marker} > /dev/null; exit 6")])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(6));
    let echo_line = format!("/bin/echo {marker}");
    let spans = rotel.wait_for(|s| {
        s.iter()
            .any(|s| s.attr("process.command_line") == Some(echo_line.as_str()))
            && s.iter().any(|s| {
                s.attr("process.command_line")
                    .is_some_and(|c| c.starts_with("sh -c") && c.contains(&marker))
            })
    });
    let daemon_pid = daemon.pid();
    daemon.stop();
    let echo = spans
        .iter()
        .find(|s| s.attr("process.command_line") == Some(echo_line.as_str()))
        .unwrap();
    let shell = spans
        .iter()
        .find(|s| {
            s.attr("process.command_line")
                .is_some_and(|c| c.starts_with("sh -c") && c.contains(&marker))
        })
        .unwrap();
    assert_eq!(shell.parent_id, "", "the shell's parent predates the agent");
    assert!(shell.is_error());
    assert_eq!(shell.attr("process.exit.code"), Some("6"));
    assert_eq!(echo.parent_id, shell.id);
    assert_eq!(echo.trace_id, shell.trace_id);
    assert!(
        spans
            .iter()
            .all(|s| s.attr("process.pid") != Some(&daemon_pid.to_string())),
        "the agent never traces itself"
    );
}

/// One run exported three ways at once: the spans (rotel), Parquet and JSONL agree with each
/// other and with what the processes saw themselves — kind INTERNAL, start at the kernel's
/// task start time (`/proc/PID/stat`), end at the exit, the run id the command was given,
/// the cgroup it ran in, and the parent an orphan was handed to.
#[test]
fn spans_parquet_and_jsonl_describe_the_same_processes() {
    require_root!();
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let (data, jsonl) = (dir.path().join("data"), dir.path().join("events.jsonl"));
    let (run_id_file, stat_file, adopted_file) = (
        dir.path().join("run-id"),
        dir.path().join("stat"),
        dir.path().join("adopted"),
    );
    // The root records its own /proc/PID/stat; an orphan records the parent the kernel gave it
    // (/proc/self/stat field 4) once its own parent has exited.
    let script = format!(
        "printf '%s' \"$PIPETRACE_RUN_ID\" > {run_id}\n\
         cat /proc/$$/stat > {stat}\n\
         sh -c '(sleep 0.2; cut -d\" \" -f4 /proc/self/stat > {adopted}) & exit 0'\n\
         while [ ! -s {adopted} ]; do sleep 0.02; done\n",
        run_id = run_id_file.display(),
        stat = stat_file.display(),
        adopted = adopted_file.display(),
    );
    let out = command()
        .args(["--otlp-endpoint", &rotel.grpc_endpoint(), "--parquet"])
        .arg(&data)
        .arg("--jsonl")
        .arg(&jsonl)
        .args(["run", "--", "/bin/sh", "-c", &script])
        .env_remove("TRACEPARENT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let t = pipetrace_tests::traced(out, &jsonl);
    let procs = t.processes();
    let spans = rotel.wait_for(|s| s.len() > procs.len());
    assert_eq!(
        spans.len(),
        procs.len() + 1,
        "a span per process and the run span"
    );

    // Kind INTERNAL, and the run id the command was given names the run everywhere.
    assert!(
        spans.iter().all(|s| s.kind == "SPAN_KIND_INTERNAL"),
        "{spans:#?}"
    );
    let run = spans.iter().find(|s| s.name.starts_with("run ")).unwrap();
    let run_id = std::fs::read_to_string(&run_id_file).unwrap();
    assert_eq!(run_id, run.id, "PIPETRACE_RUN_ID is the run span's id");
    assert_eq!(run.attr("pipetrace.run.id"), Some(run_id.as_str()));
    let rows = pipetrace_tests::query_sql(
        &data,
        "json",
        "SELECT pid, run_id, trace_id, span_id, parent_span_id FROM processes",
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&rows).unwrap();
    assert_eq!(rows.len(), procs.len());

    // The cgroup every process ran in: this test's own (children inherit it).
    let own_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own_cgroup = own_cgroup
        .lines()
        .find(|l| l.starts_with("0::"))
        .expect("a cgroup v2 line");

    for p in &procs {
        let span = spans
            .iter()
            .find(|s| s.attr("process.pid") == Some(&p.pid.to_string()))
            .unwrap_or_else(|| panic!("no span for {p:#?}"));
        // Start and end: the JSONL's kernel timestamps, to the nanosecond.
        let start = p.execs.first().or(p.exit.as_ref()).unwrap()["start_time_unix_nano"]
            .as_u64()
            .unwrap();
        let exit = p.exit.as_ref().unwrap();
        assert_eq!(span.start_ns, start, "{}", span.name);
        assert_eq!(
            span.end_ns,
            exit["time_unix_nano"].as_u64().unwrap(),
            "{}",
            span.name
        );
        assert_eq!(
            span.end_ns - span.start_ns,
            exit["duration_ns"].as_u64().unwrap()
        );
        assert_eq!(
            span.attr("process.linux.cgroup"),
            Some(own_cgroup),
            "{}",
            span.name
        );
        // The Parquet row carries the span's ids and the run id.
        let row = rows
            .iter()
            .find(|r| r["pid"] == p.pid)
            .unwrap_or_else(|| panic!("no Parquet row for {}", p.pid));
        assert_eq!(row["run_id"], run_id.as_str());
        assert_eq!(row["trace_id"], span.trace_id.as_str());
        assert_eq!(row["span_id"], span.id.as_str());
        assert_eq!(row["parent_span_id"].as_str().unwrap_or(""), span.parent_id);
    }

    // The root's start is the kernel's task start time, as /proc showed it to the root.
    let root = t.root();
    let root_span = spans
        .iter()
        .find(|s| s.attr("process.pid") == Some(&root.pid.to_string()))
        .unwrap();
    let proc_start = pipetrace_tests::proc_start_unix_ns(pipetrace_tests::stat_start_ticks(
        &std::fs::read_to_string(&stat_file).unwrap(),
    ));
    let tick = 1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        root_span.start_ns.abs_diff(proc_start) <= 2 * tick,
        "span start {} vs /proc start {proc_start}",
        root_span.start_ns
    );

    // The orphan: its span stays under the shell that started it and names its new parent.
    let adopted: u64 = std::fs::read_to_string(&adopted_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let orphan = spans
        .iter()
        .find(|s| s.attr("pipetrace.process.reparented_to").is_some())
        .unwrap_or_else(|| panic!("no reparented span: {spans:#?}"));
    assert_eq!(
        orphan.attr("pipetrace.process.reparented_to"),
        Some(adopted.to_string().as_str())
    );
    let starter = spans.iter().find(|s| s.id == orphan.parent_id).unwrap();
    assert_eq!(
        starter
            .attr("process.command_line")
            .map(|c| c.starts_with("sh -c '(sleep")),
        Some(true)
    );
}

/// `OTEL_EXPORTER_OTLP_HEADERS` go on the wire: what the agent sent through a recording TLS
/// terminator holds them, and the receiver behind it got the spans.
#[test]
fn otlp_headers_are_sent_on_the_wire() {
    require_root!();
    let rotel = Rotel::start();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let record = dir.path().join("wire");
    let (_proxy, port) = TlsProxy::start_recording(
        rotel.http_port,
        &cert,
        &key,
        "http/1.1",
        None,
        Some(&record),
    );
    let err = run_true(
        &[
            "--otlp-endpoint",
            &format!("https://127.0.0.1:{port}"),
            "--otlp-protocol",
            "http/protobuf",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap()),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20wire-t0ken,x-tenant=acme",
            ),
        ],
    );
    assert!(err.contains("spans: 2 exported, 0 dropped"), "{err}");
    rotel.wait_for(|s| s.len() >= 2);
    let wire = String::from_utf8_lossy(&std::fs::read(&record).unwrap()).to_lowercase();
    assert!(
        wire.starts_with("post /v1/traces "),
        "{}",
        &wire[..wire.len().min(200)]
    );
    assert!(
        wire.contains("\r\nauthorization: bearer wire-t0ken\r\n"),
        "{wire:.400}"
    );
    assert!(wire.contains("\r\nx-tenant: acme\r\n"), "{wire:.400}");
}
