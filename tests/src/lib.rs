//! Harness for the privileged end-to-end tests: runs the real `otel-pipetrace` binary (which
//! loads the real kernel programs) on real processes and reads back what it reported.
//!
//! Without root the tests say why and skip; with `PIPETRACE_REQUIRE_PRIVILEGED=1` (CI) a
//! missing privilege is a failure instead, so a skip can never pass for a run.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

pub mod prometheus;
pub mod rotel;

/// The agent binary: `$PIPETRACE_BIN`, else the one built next to this test executable.
pub fn bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PIPETRACE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>/otel-pipetrace
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("otel-pipetrace"))
        .expect("test executable has a target directory");
    assert!(
        candidate.is_file(),
        "{} not found: build it first (cargo build -p exporter) or set PIPETRACE_BIN",
        candidate.display()
    );
    candidate
}

/// Where the agents started by the tests write their Parquet data (not the system default).
pub fn test_data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("otel-pipetrace-tests-{}", std::process::id()))
}

/// `otel-pipetrace` as a command, writing its Parquet data under [`test_data_dir`].
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env("PIPETRACE_OUTPUT__PARQUET_DIR", test_data_dir());
    cmd
}

/// Starts `cmd` (a daemon) with stderr piped and waits for its readiness line; returns the child
/// and the rest of its stderr.
pub fn spawn_daemon(
    mut cmd: Command,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
) {
    use std::io::BufRead;
    let mut child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the daemon");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !(line.contains("tracing ") && line.contains("stop with SIGINT")) {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "daemon exited before tracing"
        );
        assert!(std::time::Instant::now() < deadline, "daemon not ready");
    }
    (child, stderr)
}

/// The daemon with this config file (its Parquet directory as configured), stderr drained.
/// A daemon that is killed when the test ends, failed assertions included.
pub struct Daemon(pub std::process::Child);

impl std::ops::Deref for Daemon {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn config_daemon(config: &Path) -> Daemon {
    let mut cmd = command();
    cmd.arg("--config")
        .arg(config)
        .env_remove("PIPETRACE_OUTPUT__PARQUET_DIR");
    let (child, stderr) = spawn_daemon(cmd);
    // Keep draining stderr so the daemon never blocks on a full pipe.
    std::thread::spawn(move || std::io::read_to_string(stderr));
    Daemon(child)
}

/// `otel-pipetrace query --run all --format FORMAT sql SQL` over `data`: its output (the query
/// must succeed).
pub fn query_sql(data: &Path, format: &str, sql: &str) -> String {
    let out = command()
        .args(["query", "--data"])
        .arg(data)
        .args(["--run", "all", "--format", format, "sql", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bad input: one line on stderr naming the cause, exit status 2, no panic.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// True when the tests may load eBPF programs; otherwise prints why and returns false (or
/// panics when privileged tests are required).
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let why = "needs root to load eBPF programs (run the tests with sudo)";
    if std::env::var("PIPETRACE_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("privileged test cannot run: {why}");
    }
    eprintln!("skipped: {why}");
    false
}

#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::privileged() {
            return;
        }
    };
}

/// A process as reconstructed from the jsonl events of one run.
#[derive(Debug, Default, Clone)]
pub struct Proc {
    pub pid: u64,
    pub ppid: u64,
    pub tree_ppid: u64,
    pub forked: bool,
    pub execs: Vec<Value>,
    pub exit: Option<Value>,
    pub still_running: bool,
    /// Periodic samples while it ran.
    pub samples: Vec<Value>,
}

impl Proc {
    pub fn argv(&self) -> Vec<String> {
        self.execs
            .last()
            .and_then(|e| e["argv"].as_array())
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
    pub fn comm(&self) -> String {
        self.execs
            .last()
            .or(self.exit.as_ref())
            .and_then(|e| e["comm"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
    pub fn exit_code(&self) -> Option<i64> {
        self.exit.as_ref().and_then(|e| e["exit_code"].as_i64())
    }
    pub fn signal(&self) -> Option<i64> {
        self.exit.as_ref().and_then(|e| e["signal"].as_i64())
    }
}

#[derive(Debug)]
pub struct Traced {
    pub status: i32,
    pub stderr: String,
    pub events: Vec<Value>,
}

impl Traced {
    /// Processes keyed by (pid, start time) in first-seen order of pid.
    pub fn processes(&self) -> Vec<Proc> {
        let mut by_key: BTreeMap<(u64, u64), Proc> = BTreeMap::new();
        for ev in &self.events {
            let pid = ev["pid"].as_u64().unwrap();
            let start = ev["start_time_unix_nano"].as_u64().unwrap();
            let p = by_key.entry((start, pid)).or_default();
            p.pid = pid;
            p.ppid = ev["ppid"].as_u64().unwrap();
            p.tree_ppid = ev["tree_ppid"].as_u64().unwrap();
            match ev["kind"].as_str().unwrap() {
                "fork" => p.forked = true,
                "exec" => p.execs.push(ev.clone()),
                "exit" => p.exit = Some(ev.clone()),
                "still_running" => p.still_running = true,
                "memory_alloc" | "memory_release" => {}
                "sample" => p.samples.push(ev.clone()),
                other => panic!("unknown kind {other}"),
            }
        }
        by_key.into_values().collect()
    }

    /// Processes whose latest image has this comm.
    pub fn by_comm(&self, comm: &str) -> Vec<Proc> {
        self.processes()
            .into_iter()
            .filter(|p| p.comm() == comm)
            .collect()
    }

    pub fn root(&self) -> Proc {
        let roots: Vec<Proc> = self
            .processes()
            .into_iter()
            .filter(|p| p.execs.iter().chain(&p.exit).any(|e| e["root"] == true))
            .collect();
        assert_eq!(roots.len(), 1, "exactly one root expected: {roots:#?}");
        roots.into_iter().next().unwrap()
    }

    /// The summary line the agent prints on stderr.
    pub fn summary(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.contains(" processes, "))
            .unwrap_or_else(|| panic!("no summary line in stderr: {}", self.stderr))
    }
}

/// `otel-pipetrace run --jsonl FILE <flags> -- <cmd>`.
pub fn trace(flags: &[&str], cmd: &[&str]) -> Traced {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("events.jsonl");
    let out = command()
        .arg("run")
        .arg("--jsonl")
        .arg(&jsonl)
        .args(flags)
        .arg("--")
        .args(cmd)
        .output()
        .expect("spawn otel-pipetrace");
    traced(out, &jsonl)
}

pub fn traced(out: Output, jsonl: &Path) -> Traced {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = std::fs::read_to_string(jsonl).unwrap_or_default();
    let events = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad jsonl line {l:?}: {e}")))
        .collect();
    Traced {
        status: out.status.code().unwrap_or(-1),
        stderr,
        events,
    }
}

/// The agent run as user `nobody` (uid and gid 65534, no groups) with exactly these
/// capabilities (`bpf`, `perfmon`, …; none when empty).
pub fn as_nobody(capabilities: &[&str]) -> Command {
    let caps: String = std::iter::once("-all".to_owned())
        .chain(capabilities.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps={caps}"))
        .arg(format!("--ambient-caps={caps}"))
        .arg(bin());
    cmd
}

/// `otel-pipetrace config` with one environment variable set.
pub fn config_with(var: &str, value: &str) -> Output {
    command().arg("config").env(var, value).output().unwrap()
}

/// Runs the agent binary with arbitrary arguments (no tracing expected to succeed).
pub fn agent(args: &[&str]) -> Output {
    command().args(args).output().expect("spawn otel-pipetrace")
}

/// The real Python interpreter (not a pyenv shell shim, which would add processes).
pub fn real_python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed by this test");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
