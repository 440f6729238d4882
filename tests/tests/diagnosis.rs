//! Verdicts on real workloads traced by the real kernel programs, each with a negative control
//! in the same run: a steady leak (against a step that allocates once and holds, and one that
//! grows then frees), a spinning shell loop (against a busy step doing I/O), a flock deadlock
//! and a pipe deadlock killed by `timeout`, a read from a peer that never answers (against a
//! long `sleep` and a parent waiting for its working child). Each finding is checked in the
//! end-of-run summary, the `findings` Parquet dataset read by the DuckDB CLI, `query findings`,
//! and the span events a real collector (rotel) received.

use std::{path::Path, process::Command};

use pipetrace_tests::{
    cgroup::{OwnCgroup, V1Cgroup},
    command, needs_idle_cores, real_python, require_root,
    rotel::{ReceivedSpan, Rotel, TOOLS_VENV},
};

/// One traced run with the diagnosis's thresholds shortened for a test.
struct Diagnosed {
    stderr: String,
    status: Option<i32>,
    data: std::path::PathBuf,
    rotel: Rotel,
    _dir: tempfile::TempDir,
}

/// Runs `script` under `sh` in a fresh directory (its working directory), sampling every
/// 250 ms, hangs looked for after 2 s, runaways after 2 s, leaks over 3 s.
fn diagnose(script: &str, env: &[(&str, &str)]) -> Diagnosed {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rotel = Rotel::start();
    let mut cmd = command();
    cmd.current_dir(dir.path())
        .env_remove("TRACEPARENT")
        .env("PIPETRACE_CAPTURE__SAMPLE_INTERVAL", "250ms")
        .env("PIPETRACE_DIAGNOSIS__HANG_AFTER", "2s")
        .env("PIPETRACE_DIAGNOSIS__RUNAWAY_AFTER", "2s")
        .env("PIPETRACE_DIAGNOSIS__LEAK_MIN_DURATION", "3s")
        .env("PIPETRACE_DIAGNOSIS__LEAK_MIN_GROWTH_BYTES", "16777216")
        // About the machine, which the tests running beside this one share: each test of
        // them turns them on.
        .env("PIPETRACE_DIAGNOSIS__NOISY_NEIGHBOUR", "false")
        .env("PIPETRACE_DIAGNOSIS__RUNNER_SIZE", "false");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .args(["--otlp-endpoint", &rotel.grpc_endpoint(), "--parquet"])
        .arg(&data)
        .args(["run", "--summary", "full", "--", "/bin/sh", "-c", script])
        .output()
        .unwrap();
    Diagnosed {
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status.code(),
        data,
        rotel,
        _dir: dir,
    }
}

impl Diagnosed {
    /// The findings dataset as an independent reader (the DuckDB CLI) sees it, with each
    /// finding's process from the processes dataset.
    fn findings(&self) -> Vec<serde_json::Value> {
        findings_in(&self.data, &self.stderr)
    }

    /// The spans the collector received, once the run span is there.
    fn spans(&self) -> Vec<ReceivedSpan> {
        self.rotel
            .wait_for(|s| s.iter().any(|s| s.name.starts_with("run ")))
    }

    /// The one `findings` line of the summary (there must be exactly one).
    fn the_summary_line(&self) -> &str {
        let lines = self.summary_findings();
        assert_eq!(lines.len(), 1, "{}", self.stderr);
        lines[0]
    }

    /// The `findings` lines of the summary.
    fn summary_findings(&self) -> Vec<&str> {
        let mut lines = Vec::new();
        let mut inside = false;
        for line in self.stderr.lines() {
            if line.starts_with("  findings ") {
                inside = true;
            } else if !line.starts_with("           ") {
                inside = false;
            }
            if inside {
                lines.push(line);
            }
        }
        lines
    }
}

/// The `pipetrace.finding` events of a span, by kind.
fn finding_events<'a>(
    span: &'a ReceivedSpan,
    kind: &str,
) -> Vec<&'a std::collections::HashMap<String, String>> {
    span.events
        .iter()
        .zip(&span.event_attributes)
        .filter(|(name, a)| {
            name.as_str() == "pipetrace.finding"
                && a.get("pipetrace.finding.kind").map(String::as_str) == Some(kind)
        })
        .map(|(_, a)| a)
        .collect()
}

/// The span of the process a finding (a row of [`Diagnosed::findings`]) is about.
fn span_of<'a>(spans: &'a [ReceivedSpan], finding: &serde_json::Value) -> &'a ReceivedSpan {
    let pid = finding["pid"].to_string();
    spans
        .iter()
        .find(|s| s.attr("process.pid") == Some(pid.as_str()))
        .unwrap_or_else(|| panic!("no span of pid {pid}"))
}

/// The findings dataset in `data` as an independent reader (the DuckDB CLI) sees it, with each
/// finding's process from the processes dataset; `said` (the agent's stderr) explains a failure.
fn findings_in(data: &Path, said: &str) -> Vec<serde_json::Value> {
    let written = std::fs::read_dir(data.join("findings"))
        .map(|d| d.count())
        .unwrap_or(0);
    if written == 0 {
        return Vec::new();
    }
    let sql = format!(
        "SELECT f.kind, f.severity, f.pid, f.summary, f.value, f.unit, f.evidence, f.involved, \
         p.command_line FROM read_parquet('{d}/findings/*.parquet') f \
         LEFT JOIN read_parquet('{d}/processes/*.parquet') p \
         ON p.pid = f.pid AND p.start = f.start_time ORDER BY f.time",
        d = data.display()
    );
    let out = Command::new(Path::new(TOOLS_VENV).join("bin/duckdb"))
        .args(["-json", "-c", &sql])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{said}",
        String::from_utf8_lossy(&out.stderr)
    );
    if text.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&text).unwrap()
}

/// A copy of `dash` named `name` in `dir` (made once): a program with a name of the test's own.
fn dash_named(dir: &Path, name: &str) -> std::path::PathBuf {
    let exe = dir.join(name);
    if !exe.exists() {
        std::fs::copy("/bin/dash", &exe).unwrap();
    }
    exe
}

/// Spawns `cmd`; a test thread forking meanwhile may hold a fresh copy of its program open for
/// a moment (ETXTBSY): retried.
fn spawn_retrying(cmd: &mut Command) -> std::process::Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

/// The findings section of an HTML report.
fn findings_section(html: &str) -> &str {
    let section = html
        .split("id=\"findings\"")
        .nth(1)
        .expect("a findings section");
    &section[..section.find("</section>").unwrap()]
}

fn evidence(finding: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(finding["evidence"].as_str().unwrap()).unwrap()
}

#[test]
fn a_steady_leak_is_found_and_holding_or_freeing_memory_is_not() {
    require_root!();
    let python = real_python();
    // The leaker adds 5 MiB every 200 ms for 6 s; the holder takes 200 MiB at once and
    // keeps it; the freer grows by 100 MiB, then lets it go and idles.
    let script = format!(
        r#"
{python} -c 'import time
x = []
for i in range(30):
    x.append(b"l" * (5 << 20)); time.sleep(0.2)' leaker &
{python} -c 'import time
x = b"h" * (200 << 20)
time.sleep(6)' holder &
{python} -c 'import time
x = []
for i in range(10):
    x.append(b"f" * (10 << 20)); time.sleep(0.2)
x = None
time.sleep(4)' freer &
wait"#
    );
    let run = diagnose(&script, &[]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);

    let findings = run.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}\n{}", run.stderr);
    let leak = &findings[0];
    assert_eq!(leak["kind"], "memory_leak");
    assert_eq!(leak["severity"], "warning");
    assert!(
        leak["command_line"].as_str().unwrap().ends_with("leaker"),
        "{leak}"
    );
    // 25 MiB/s in the program; the fit sees about that (the interpreter's own pages aside).
    let slope = leak["value"].as_f64().unwrap();
    assert!((15.0..=35.0).contains(&slope), "{leak}");
    assert_eq!(leak["unit"], "MiB/s");
    let ev = evidence(leak);
    assert!(ev["fit_r2"].as_f64().unwrap() >= 0.9, "{ev}");
    assert!(ev["rss_last_bytes"].as_u64().unwrap() > 60 << 20, "{ev}");

    // The summary says it, naming the process and the rate.
    let line = run.the_summary_line();
    assert!(line.contains("memory leak"), "{}", line);
    assert!(line.contains(&format!("pid {}", leak["pid"])), "{}", line);
    assert!(line.contains("MiB/s"), "{}", line);
    assert!(
        run.stderr.contains("1 finding (1 memory leak)"),
        "{}",
        run.stderr
    );

    // `query findings` answers the same.
    let rows = pipetrace_tests::query_json(&run.data, &["findings"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["kind"], "memory_leak");
    assert_eq!(rows[0]["pid"], leak["pid"]);

    // The Markdown report has it in its findings table; the HTML report in its findings
    // section, linked to the leaker's bar.
    let markdown = pipetrace_tests::report_stdout(&run.data, "markdown");
    let table = markdown
        .split("### Findings")
        .nth(1)
        .expect("a findings section");
    assert!(table.contains("| memory leak |"), "{markdown}");
    assert!(
        table.contains(&format!("pid {}", leak["pid"])),
        "{markdown}"
    );
    let html = pipetrace_tests::report_stdout(&run.data, "html");
    let section = findings_section(&html);
    assert!(
        section.contains("memory leak") && section.contains("data-proc="),
        "{section}"
    );

    // On the leaker's span, and on the run span; on no other span.
    let spans = run.spans();
    let with: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| !finding_events(s, "memory_leak").is_empty())
        .collect();
    assert_eq!(
        with.len(),
        2,
        "{:#?}",
        spans
            .iter()
            .map(|s| (&s.name, &s.events))
            .collect::<Vec<_>>()
    );
    let process = with
        .iter()
        .find(|s| !s.name.starts_with("run "))
        .expect("the leaker's span");
    assert_eq!(
        process.attr("process.pid"),
        Some(leak["pid"].to_string().as_str())
    );
    let event = finding_events(process, "memory_leak")[0];
    assert_eq!(event["pipetrace.finding.severity"], "warning");
    assert!(event["pipetrace.finding.fit_r2"].parse::<f64>().unwrap() >= 0.9);
}

#[test]
fn a_spinning_loop_is_a_runaway_and_a_busy_step_doing_io_is_not() {
    require_root!();
    // The verdict is about a whole core: no core-loading test may run meanwhile.
    let _cores = needs_idle_cores();
    let script = "timeout 5 sh -c 'while :; do :; done' & \
                  timeout 5 dd if=/dev/zero of=/dev/null bs=512 & wait";
    let run = diagnose(
        script,
        &[("PIPETRACE_DIAGNOSIS__RUNAWAY_CPU_PERCENT", "50")],
    );
    let findings = run.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}\n{}", run.stderr);
    let runaway = &findings[0];
    assert_eq!(runaway["kind"], "runaway");
    assert!(
        runaway["command_line"]
            .as_str()
            .unwrap()
            .contains("while :"),
        "{runaway}"
    );
    assert!(runaway["value"].as_f64().unwrap() >= 2.0, "{runaway}");
    let ev = evidence(runaway);
    assert!(ev["cpu_percent"].as_f64().unwrap() >= 50.0, "{ev}");
    let line = run.the_summary_line();
    assert!(
        line.contains("runaway") && line.contains("no I/O"),
        "{}",
        line
    );
    let spans = run.spans();
    assert_eq!(finding_events(span_of(&spans, runaway), "runaway").len(), 1);
}

#[test]
fn a_flock_deadlock_is_found_before_timeout_kills_it() {
    require_root!();
    // Each side holds one lock and, a moment later, asks for the other's.
    let script = "touch a b; \
                  timeout 8 flock a -c 'sleep 0.5; flock b true' & \
                  timeout 8 flock b -c 'sleep 0.5; flock a true' & wait";
    let run = diagnose(script, &[]);
    let findings = run.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}\n{}", run.stderr);
    let deadlock = &findings[0];
    assert_eq!(deadlock["kind"], "deadlock");
    assert_eq!(deadlock["severity"], "critical");
    let summary = deadlock["summary"].as_str().unwrap();
    // Both locks and the two processes waiting for them are named.
    assert!(
        summary.contains("a lock on ") && summary.contains("/a held by flock"),
        "{summary}"
    );
    assert!(summary.contains("/b held by flock"), "{summary}");
    let ev = evidence(deadlock);
    let waits: Vec<&str> = ev["waits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(waits, ["lock", "lock"], "{ev}");
    let involved: Vec<serde_json::Value> =
        serde_json::from_str(deadlock["involved"].as_str().unwrap()).unwrap();
    assert!(
        involved.len() >= 3,
        "the other lock waiter and both holders: {involved:?}"
    );
    // Found while they were stuck, before `timeout` killed them.
    assert!(ev["stalled_s"].as_f64().unwrap() < 8.0, "{ev}");
    let line = run.the_summary_line();
    assert!(
        line.contains("critical") && line.contains("deadlock"),
        "{}",
        line
    );

    // On the span of every process of the cycle.
    let spans = run.spans();
    let on: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| !s.name.starts_with("run ") && !finding_events(s, "deadlock").is_empty())
        .collect();
    assert_eq!(
        on.len(),
        1 + involved.len(),
        "{:#?}",
        on.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // flock runs its command with $SHELL, which differs between machines (sh, dash, bash).
    assert!(
        on.iter()
            .all(|s| matches!(s.name.as_str(), "flock" | "sh" | "dash" | "bash")),
        "{:?}",
        on.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
}

#[test]
fn a_pipe_deadlock_is_found() {
    require_root!();
    let python = real_python();
    // The classic: feed a child all of its input before reading any of its output. `cat`
    // fills its output pipe and stops reading; the writer then fills cat's input pipe.
    let script = format!(
        r#"timeout 8 {python} -c 'import subprocess
p = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
p.stdin.write(b"x" * (4 << 20))
p.stdin.close()
print(len(p.stdout.read()))' feeder"#
    );
    let run = diagnose(&script, &[]);
    let findings = run.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}\n{}", run.stderr);
    let deadlock = &findings[0];
    assert_eq!(deadlock["kind"], "deadlock");
    let ev = evidence(deadlock);
    let waits: Vec<&str> = ev["waits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(waits, ["pipe", "pipe"], "{ev}");
    let summary = deadlock["summary"].as_str().unwrap();
    assert!(
        summary.contains("a write to pipe") && summary.contains("read by cat"),
        "{summary}"
    );
    assert!(summary.contains("cat ("), "{summary}");
    let spans = run.spans();
    let on: Vec<&str> = spans
        .iter()
        .filter(|s| !s.name.starts_with("run ") && !finding_events(s, "deadlock").is_empty())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(on.len(), 2, "{on:?}");
    assert!(on.contains(&"cat"), "{on:?}");
}

#[test]
fn a_read_from_a_silent_peer_hangs_and_sleeping_or_waiting_for_a_working_child_does_not() {
    require_root!();
    // The working child keeps a core busy.
    let _cores = pipetrace_tests::loads_every_core();
    let python = real_python();
    // A server on loopback that accepts and never answers; a client that waits for its
    // reply. Beside them, a long sleep and a shell waiting for its busy child.
    let script = format!(
        r#"{python} -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
open("port.tmp", "w").write(str(s.getsockname()[1])); __import__("os").rename("port.tmp", "port")
c, _ = s.accept(); time.sleep(7)' server &
while [ ! -e port ]; do sleep 0.05; done
timeout 6 {python} -c 'import socket
c = socket.create_connection(("127.0.0.1", int(open("port").read())))
c.recv(1)' client &
sleep 5 &
sh -c 'timeout 5 dd if=/dev/zero of=/dev/null bs=512' &
wait"#
    );
    let run = diagnose(&script, &[]);
    let findings = run.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}\n{}", run.stderr);
    let hang = &findings[0];
    assert_eq!(hang["kind"], "hang");
    assert!(
        hang["command_line"].as_str().unwrap().ends_with("client"),
        "{hang}"
    );
    let ev = evidence(hang);
    assert_eq!(ev["wait"], "socket", "{ev}");
    let port = std::fs::read_to_string(run._dir.path().join("port")).unwrap();
    assert!(
        ev["waits_on"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{port}")),
        "the peer by address and port: {ev}"
    );
    assert!(ev["stalled_s"].as_f64().unwrap() >= 2.0, "{ev}");
    let line = run.the_summary_line();
    assert!(
        line.contains("hang") && line.contains("no CPU progress"),
        "{}",
        line
    );
    let spans = run.spans();
    let span = span_of(&spans, hang);
    let events = finding_events(span, "hang");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["pipetrace.finding.wait"], "socket");
}

#[test]
fn each_finding_can_be_turned_off_and_bad_thresholds_are_named() {
    require_root!();
    let script = "touch a b; \
                  timeout 6 flock a -c 'sleep 0.5; flock b true' & \
                  timeout 6 flock b -c 'sleep 0.5; flock a true' & wait";
    let run = diagnose(
        script,
        &[
            ("PIPETRACE_DIAGNOSIS__DEADLOCK", "false"),
            ("PIPETRACE_DIAGNOSIS__HANG", "false"),
        ],
    );
    assert!(run.findings().is_empty(), "{}", run.stderr);
    assert!(run.summary_findings().is_empty(), "{}", run.stderr);

    let out = command()
        .env("PIPETRACE_DIAGNOSIS__LEAK_MIN_FIT", "1.5")
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    pipetrace_tests::assert_one_line_error(&out, "diagnosis.leak_min_fit");
}

#[test]
fn a_step_near_its_memory_limit_is_an_oom_risk_and_one_well_below_is_not() {
    require_root!();
    pipetrace_tests::require!(
        V1Cgroup::available("memory"),
        "a cgroup v1 memory hierarchy at /sys/fs/cgroup/memory"
    );
    let near = V1Cgroup::new("memory", "pt-risk-near", "memory.limit_in_bytes", 128 << 20);
    let below = V1Cgroup::new(
        "memory",
        "pt-risk-below",
        "memory.limit_in_bytes",
        128 << 20,
    );
    let python = real_python();
    // Each shell joins its cgroup, then becomes Python, which holds its bytes for 2 s: about
    // 118 MiB of 128 MiB for one, about 50 MiB for the other.
    let script = format!(
        r#"sh -c 'echo $$ > {near}/cgroup.procs && exec {python} -c "import time; x = b\"n\" * (108 << 20); time.sleep(2)" near' &
sh -c 'echo $$ > {below}/cgroup.procs && exec {python} -c "import time; x = b\"b\" * (40 << 20); time.sleep(2)" below' &
wait"#,
        near = near.0.display(),
        below = below.0.display(),
    );
    let run = diagnose(&script, &[("PIPETRACE_DIAGNOSIS__OOM_RISK_PERCENT", "85")]);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    let findings = run.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}\n{}", run.stderr);
    let risk = &findings[0];
    assert_eq!(risk["kind"], "oom_risk");
    assert!(
        risk["command_line"].as_str().unwrap().ends_with("near"),
        "{risk}"
    );
    let ev = evidence(risk);
    assert_eq!(ev["limit_bytes"], 128u64 << 20, "{ev}");
    let cgroup = near.0.file_name().unwrap().to_string_lossy().into_owned();
    assert!(ev["cgroup"].as_str().unwrap().ends_with(&cgroup), "{ev}");
    let percent = risk["value"].as_f64().unwrap();
    assert!((85.0..100.0).contains(&percent), "{risk}");
    let line = run.the_summary_line();
    assert!(
        line.contains("oom risk") && line.contains("128 MiB"),
        "{}",
        line
    );
    let spans = run.spans();
    assert_eq!(finding_events(span_of(&spans, risk), "oom_risk").len(), 1);
}

#[test]
fn a_recursion_stopped_by_a_process_limit_is_a_fork_explosion_and_a_wide_burst_is_not() {
    require_root!();
    pipetrace_tests::require!(
        V1Cgroup::available("pids"),
        "a cgroup v1 pids hierarchy at /sys/fs/cgroup/pids"
    );
    let limit = V1Cgroup::new("pids", "pt-fork", "pids.max", 120);
    // A shell function that runs itself in a subshell, forever: each level waits for the next,
    // until the cgroup's process limit refuses a fork and the chain unwinds. Beside it, 200
    // processes at once (wide, one level) and `sh -c` four levels deep.
    let script = format!(
        r#"sh -c 'echo $$ > {pids}/cgroup.procs; r() {{ ( r ); }}; r' recurse
for i in $(seq 200); do /bin/true & done; wait
sh -c 'sh -c "sh -c \"sh -c true\""'"#,
        pids = limit.0.display()
    );
    let run = diagnose(&script, &[]);
    let findings = run.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}\n{}", run.stderr);
    let bomb = &findings[0];
    assert_eq!(bomb["kind"], "fork_explosion");
    assert_eq!(bomb["severity"], "critical");
    assert_eq!(bomb["value"], 50.0, "{bomb}");
    assert!(
        bomb["command_line"].as_str().unwrap().ends_with("recurse"),
        "{bomb}"
    );
    let ev = evidence(bomb);
    assert_eq!(ev["depth"], 50, "{ev}");
    let line = run.the_summary_line();
    assert!(
        line.contains("fork explosion") && line.contains("50 levels deep"),
        "{}",
        line
    );
    let spans = run.spans();
    assert_eq!(
        finding_events(span_of(&spans, bomb), "fork_explosion").len(),
        1
    );
}

/// Spinning `sh` loops for `seconds`, one per core the machine has (`n` = 0) or `n`.
fn spinners(n: usize, seconds: u32) -> String {
    let n = if n == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        n
    };
    let one = format!("timeout {seconds} sh -c 'while :; do :; done' & ");
    format!("{}wait", one.repeat(n))
}

/// The findings of one kind.
fn of_kind<'a>(findings: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    findings.iter().filter(|f| f["kind"] == kind).collect()
}

#[test]
fn a_cpu_hog_outside_the_run_is_a_noisy_neighbour_and_an_idle_one_is_not() {
    require_root!();
    // No other test loads the cores meanwhile: the neighbours are this test's own.
    let _cores = needs_idle_cores();
    let dir = tempfile::tempdir().unwrap();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let start = |name: &str, script: &str, cgroup: &OwnCgroup| {
        let child = spawn_retrying(
            Command::new(dash_named(dir.path(), name))
                .args(["-c", script])
                .stdin(std::process::Stdio::piped()),
        );
        cgroup.add(child.id());
        child
    };
    let env = [
        ("PIPETRACE_DIAGNOSIS__NOISY_NEIGHBOUR", "true"),
        ("PIPETRACE_DIAGNOSIS__NEIGHBOUR_MIN_WAIT", "2s"),
    ];

    // A hog on every core, in a cgroup of its own, started before the run: the run's two
    // spinning steps get about half the machine.
    let hogs = OwnCgroup::new("pipetrace-hogs");
    let mut hog: Vec<_> = (0..cores)
        .map(|_| start("neighbour-hog", "while :; do :; done", &hogs))
        .collect();
    let run = diagnose(&spinners(0, 6), &env);
    let hogs_cgroup = hogs.name.clone();
    for h in &mut hog {
        h.kill().unwrap();
        h.wait().unwrap();
    }
    drop(hogs);
    let findings = run.findings();
    let noisy = of_kind(&findings, "noisy_neighbour");
    assert_eq!(noisy.len(), 1, "{findings:#?}\n{}", run.stderr);
    let noisy = noisy[0];
    assert_eq!(noisy["severity"], "warning");
    // About the run, not one process.
    assert!(noisy["pid"].is_null(), "{noisy}");
    let ev = evidence(noisy);
    assert!(ev["wait_s"].as_f64().unwrap() >= 2.0, "{ev}");
    let share = ev["others_share_percent"].as_f64().unwrap();
    assert!(share >= 25.0, "{ev}");
    assert_eq!(noisy["value"].as_f64().unwrap(), share);
    let first = &ev["neighbours"][0];
    assert_eq!(first["executable"], "neighbour-hog", "{ev}");
    assert_eq!(first["cgroup"].as_str().unwrap(), hogs_cgroup, "{ev}");
    assert_eq!(first["processes"].as_u64().unwrap(), cores as u64, "{ev}");
    // Each hog had about half a core for the 6 s.
    assert!(
        first["contended_cpu_s"].as_f64().unwrap() >= cores as f64,
        "{ev}"
    );
    assert!(first["share_percent"].as_f64().unwrap() >= 20.0, "{ev}");
    assert!(first["peak_rss_bytes"].as_u64().unwrap() > 0, "{ev}");
    let summary = noisy["summary"].as_str().unwrap();
    assert!(
        summary.contains("processes outside the run used")
            && summary.contains(&format!("neighbour-hog in {hogs_cgroup}")),
        "{summary}"
    );
    let lines = run.summary_findings();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("noisy neighbour") && l.contains("the run:")),
        "{}",
        run.stderr
    );
    // The curve of the run's cores beside the neighbours': in the evidence, one point per
    // interval of at least a second, and drawn in the HTML report's findings section.
    let curve = ev["curve"].as_array().unwrap();
    assert!(curve.len() >= 3, "{ev}");
    let outside_peak = curve
        .iter()
        .map(|p| p[2].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!(outside_peak >= 0.25 * cores as f64, "{ev}");
    let html = pipetrace_tests::report_stdout(&run.data, "html");
    let section = findings_section(&html);
    assert!(section.contains("noisy neighbour"), "{section}");
    assert!(
        section.contains("class=\"finding-curve\"") && section.matches("<polyline").count() == 2,
        "{section}"
    );

    // On the run span.
    let spans = run.spans();
    let run_span = spans.iter().find(|s| s.name.starts_with("run ")).unwrap();
    let events = finding_events(run_span, "noisy_neighbour");
    assert_eq!(events.len(), 1, "{:?}", run_span.events);
    assert_eq!(
        events[0]
            .get("pipetrace.finding.severity")
            .map(String::as_str),
        Some("warning")
    );

    // The control: the same neighbour, idle, and a run using one core of the machine.
    let idle = OwnCgroup::new("pipetrace-idle");
    let mut quiet = start("neighbour-idle", "read x", &idle);
    let run = diagnose(&spinners(1, 6), &env);
    quiet.kill().unwrap();
    quiet.wait().unwrap();
    drop(idle);
    let findings = run.findings();
    assert!(
        of_kind(&findings, "noisy_neighbour").is_empty(),
        "{findings:#?}\n{}",
        run.stderr
    );
}

#[test]
fn a_run_keeping_every_core_busy_is_on_an_undersized_runner_and_a_waiting_one_on_an_oversized_one()
{
    require_root!();
    let _cores = needs_idle_cores();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let env = [
        ("PIPETRACE_DIAGNOSIS__RUNNER_SIZE", "true"),
        ("PIPETRACE_DIAGNOSIS__RUNNER_MIN_DURATION", "3s"),
        // This machine's cores count as a large runner.
        ("PIPETRACE_DIAGNOSIS__OVERSIZED_MIN_CORES", "1"),
        // The spinning steps are runaways too; not what this test is about.
        ("PIPETRACE_DIAGNOSIS__RUNAWAY", "false"),
    ];
    let run = diagnose(&spinners(0, 6), &env);
    let findings = run.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}\n{}", run.stderr);
    let under = &findings[0];
    assert_eq!(under["kind"], "undersized_runner");
    assert_eq!(under["severity"], "warning");
    assert!(under["pid"].is_null(), "{under}");
    let ev = evidence(under);
    assert_eq!(ev["cores"].as_f64().unwrap(), cores as f64, "{ev}");
    assert!(
        ev["all_cores_busy_percent"].as_f64().unwrap() >= 50.0,
        "{ev}"
    );
    assert!(
        ev["suggested_cores"].as_u64().unwrap() > cores as u64,
        "{ev}"
    );
    // The run's CPU: every core for most of its 6 s.
    assert!(
        ev["run_cpu_s"].as_f64().unwrap() >= 4.0 * cores as f64 * 0.8,
        "{ev}"
    );
    let summary = under["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("every core of {cores} busy")),
        "{summary}"
    );
    assert!(
        run.summary_findings()
            .iter()
            .any(|l| l.contains("undersized runner")),
        "{}",
        run.stderr
    );

    // The control, and the other way round: a run that waits uses none of the cores.
    let run = diagnose("sleep 5", &env);
    let findings = run.findings();
    assert_eq!(findings.len(), 1, "{findings:#?}\n{}", run.stderr);
    let over = &findings[0];
    assert_eq!(over["kind"], "oversized_runner");
    assert_eq!(over["severity"], "info");
    let ev = evidence(over);
    assert!(ev["peak_cores"].as_f64().unwrap() < 0.1, "{ev}");
    assert_eq!(ev["suggested_cores"], 1, "{ev}");
    let summary = over["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("of {cores} cores")) && summary.contains("a runner with 1 core"),
        "{summary}"
    );
    let spans = run.spans();
    let run_span = spans.iter().find(|s| s.name.starts_with("run ")).unwrap();
    assert_eq!(finding_events(run_span, "oversized_runner").len(), 1);
}

#[test]
fn a_daemon_session_is_judged_as_a_whole_when_it_stops() {
    require_root!();
    // A CI job traced by the daemon (as the GitHub Action and the GitLab template run it): the
    // findings about the session come when it stops.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let job = dash_named(dir.path(), "pt-ci-job");
    let config = dir.path().join("daemon.toml");
    std::fs::write(
        &config,
        format!(
            "[scope]\nmode = \"descendants\"\nroot_names = [\"pt-ci-job\"]\n\
             [capture]\nsample_interval = \"250ms\"\n\
             [output]\nparquet_dir = \"{}\"\nflush_interval = \"500ms\"\n\
             [diagnosis]\nnoisy_neighbour = false\nrunner_min_duration = \"3s\"\n\
             oversized_min_cores = 1\n",
            data.display()
        ),
    )
    .unwrap();
    let mut cmd = command();
    cmd.arg("--config")
        .arg(&config)
        .env_remove("PIPETRACE_OUTPUT__PARQUET_DIR");
    let daemon = pipetrace_tests::start_daemon(cmd);
    let status = spawn_retrying(Command::new(&job).args(["-c", "sleep 4; true"]))
        .wait()
        .unwrap();
    assert!(status.success());
    let mut child = daemon.child;
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let said = std::io::read_to_string(daemon.stderr).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{said}");

    let findings = findings_in(&data, &said);
    assert_eq!(findings.len(), 1, "{findings:#?}\n{said}");
    let over = &findings[0];
    assert_eq!(over["kind"], "oversized_runner", "{over}");
    assert!(over["pid"].is_null(), "{over}");
    let ev = evidence(over);
    assert!(ev["observed_s"].as_f64().unwrap() >= 3.0, "{ev}");
    assert!(
        ev["peak_cores"].as_f64().unwrap() < 0.25 * ev["cores"].as_f64().unwrap(),
        "{ev}"
    );
}
