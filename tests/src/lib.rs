//! Harness for the privileged end-to-end tests: runs the real `otel-pipetrace` binary (which
//! loads the real kernel programs) on real processes and reads back what it reported.
//!
//! [`can_run`] is the one rule for a test that cannot run here (no root, no cgroup v2 …): it
//! says why and skips, or with `PIPETRACE_REQUIRE_PRIVILEGED=1` or `CI=true` it fails, so a
//! skip can never pass for a run. [`bin`] builds the agent from the current sources.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod cgroup;
pub mod docker;
pub mod duckdb;
pub mod phoenix;
pub mod prometheus;
pub mod rotel;
pub mod s3;

/// The suite is one binary run with more test threads than cores (scripts/test): most tests
/// wait on processes and receivers. Tests that load every core (image builds, lintian,
/// process storms) and tests whose assertions need the CPU when they ask for it (a sample
/// every interval, a step under 20 ms, a storm traced without loss) must not overlap: the
/// second would measure the first. Writers are preferred, so a waiting calm test holds back
/// new heavy ones.
static CORES: RwLock<()> = RwLock::new(());

/// Held by a test that loads every core; such tests may overlap each other.
pub fn loads_every_core() -> RwLockReadGuard<'static, ()> {
    CORES.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held by a test that needs the cores on time: no core-loading test runs meanwhile.
pub fn needs_idle_cores() -> RwLockWriteGuard<'static, ()> {
    CORES.write().unwrap_or_else(PoisonError::into_inner)
}

/// The agent binary under test: `$PIPETRACE_BIN` as given, else the workspace's own agent,
/// built from the current sources once per test process (a no-op when up to date), so an old
/// build is never the one tested.
pub fn bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("PIPETRACE_BIN") {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "PIPETRACE_BIN={}: no such file",
                path.display()
            );
            return path;
        }
        build_current_agent()
    })
    .clone()
}

/// `cargo build -p pipetrace -p pipetrace-query` (the agent and `otel-pipetrace-query`, which it
/// runs for `query`,
/// `report`, `compare` and `export`) into the target directory and profile of this test
/// executable.
fn build_current_agent() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable has a target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => panic!("no profile directory above {}", exe.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut build = Command::new(&cargo);
    // The variables cargo sets for this test executable (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`):
    // build scripts that watch them (ring's) would see a change and rebuild half the agent's
    // dependencies, and the next `cargo build` rebuild them back.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_EXE_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        {
            build.env_remove(&*name);
        }
    }
    let out = build
        .args([
            "build",
            "--quiet",
            "-p",
            "pipetrace",
            "-p",
            "pipetrace-query",
            "--bin",
            "otel-pipetrace",
            "--bin",
            "otel-pipetrace-query",
        ])
        .args(["--profile", &profile])
        // Set by scripts/test-runner for libtest's --report-time alone: cargo would take it
        // as a change and rebuild everything.
        .env_remove("RUSTC_BOOTSTRAP")
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
        .current_dir(workspace)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", Path::new(&cargo).display()));
    assert!(
        out.status.success(),
        "building the agent failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    profile_dir.join("otel-pipetrace")
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

/// A started daemon: stderr after its readiness line, and what it said before.
pub struct Started {
    pub child: std::process::Child,
    pub stderr: std::io::BufReader<std::process::ChildStderr>,
    /// The port of its Prometheus endpoint, when it serves one (`prometheus_listen` port 0
    /// lets the agent bind a free port itself, so no test races another for a port).
    pub metrics_port: Option<u16>,
}

/// Starts `cmd` (a daemon) with stderr piped and waits for its readiness line.
pub fn start_daemon(mut cmd: Command) -> Started {
    use std::io::BufRead;
    let child = cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the daemon");
    let mut child = KillOnDrop(child);
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut said = String::new();
    let mut metrics_port = None;
    // Reading blocks: a daemon that hangs before its readiness line is killed by this thread.
    let pid = child.id() as i32;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    while !(line.contains("tracing ") && line.contains("stop with SIGINT")) {
        line.clear();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "daemon exited before tracing: {said}");
        said.push_str(&line);
        if let Some(url) = line
            .trim()
            .strip_prefix("otel-pipetrace: Prometheus metrics on ")
        {
            metrics_port = url
                .trim_end_matches("/metrics")
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok());
        }
    }
    let _ = ready_tx.send(());
    let child = child.into_inner();
    Started {
        child,
        stderr,
        metrics_port,
    }
}

/// Starts `cmd` (a daemon) and waits for its readiness line; the child and the rest of its
/// stderr.
pub fn spawn_daemon(
    cmd: Command,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
) {
    let s = start_daemon(cmd);
    (s.child, s.stderr)
}

/// A daemon that is killed when the test ends, failed assertions included.
pub struct Daemon {
    pub child: std::process::Child,
    /// Its Prometheus endpoint's port, when it serves one.
    pub metrics_port: Option<u16>,
}

impl Daemon {
    /// The port of its Prometheus endpoint (the config must set `prometheus_listen`).
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
            .expect("the daemon serves no Prometheus endpoint")
    }
}

impl std::ops::Deref for Daemon {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.child
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.child
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The daemon with this config file (its Parquet directory as configured), stderr drained.
pub fn config_daemon(config: &Path) -> Daemon {
    let mut cmd = command();
    cmd.arg("--config")
        .arg(config)
        .env_remove("PIPETRACE_OUTPUT__PARQUET_DIR");
    let started = start_daemon(cmd);
    // Keep draining stderr so the daemon never blocks on a full pipe.
    let stderr = started.stderr;
    std::thread::spawn(move || std::io::read_to_string(stderr));
    Daemon {
        child: started.child,
        metrics_port: started.metrics_port,
    }
}

/// `otel-pipetrace query ARGS --format json --data DATA`, which must succeed: its rows.
pub fn query_json(data: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let text = query_stdout(data, &[args, &["--format", "json"]].concat());
    serde_json::from_str(&text).unwrap()
}

/// `otel-pipetrace query ARGS --data DATA` with stdout a pipe (not a terminal), which must
/// succeed: its stdout.
pub fn query_stdout(data: &Path, args: &[&str]) -> String {
    let mut cmd = command();
    cmd.arg("query").args(args).arg("--data").arg(data);
    stdout_of(cmd, &format!("{args:?}"))
}

/// `otel-pipetrace report --format FORMAT --data DATA` (the latest run), which must succeed:
/// the document.
pub fn report_stdout(data: &Path, format: &str) -> String {
    let mut cmd = command();
    cmd.args(["report", "--format", format, "--data"]).arg(data);
    stdout_of(cmd, format)
}

/// The stdout of a command that must succeed (`what` names it when it does not).
pub fn stdout_of(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `otel-pipetrace query --run all --format FORMAT sql SQL` over `data`: its output (the query
/// must succeed).
pub fn query_sql(data: &Path, format: &str, sql: &str) -> String {
    let mut cmd = command();
    cmd.args(["query", "--data"])
        .arg(data)
        .args(["--run", "all", "--format", format, "sql", sql]);
    stdout_of(cmd, sql)
}

/// Bad input: one line on stderr naming the cause, exit status 2, no panic.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The one place that decides what a test does when something it needs is missing (root, a
/// cgroup v2 mount, the kernel's BTF …): with `PIPETRACE_REQUIRE_PRIVILEGED=1` or `CI=true`
/// the test fails, naming what was missing; otherwise it says why on stderr and returns false,
/// and the test returns without asserting anything.
pub fn can_run(available: bool, missing: &str) -> bool {
    if available {
        return true;
    }
    if required() {
        panic!("test cannot run here: {missing} (PIPETRACE_REQUIRE_PRIVILEGED=1 or CI=true)");
    }
    eprintln!("skipped: {missing}");
    false
}

/// True where a test that cannot run must fail instead of skipping (CI, `scripts/test`).
pub fn required() -> bool {
    std::env::var("PIPETRACE_REQUIRE_PRIVILEGED").as_deref() == Ok("1")
        || std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when the tests may load eBPF programs (see [`can_run`]).
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    can_run(
        unsafe { libc::geteuid() } == 0,
        "needs root to load eBPF programs (run the tests with sudo)",
    )
}

/// Returns from the test unless `$available` (see [`can_run`]).
#[macro_export]
macro_rules! require {
    ($available:expr, $missing:expr) => {
        if !$crate::can_run($available, $missing) {
            return;
        }
    };
}

#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::privileged() {
            return;
        }
    };
}

/// Polls `ok` until it holds; fails naming `what` after `limit` (a hang, not a speed check).
pub fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process (a script, a program under test) killed and reaped when the test ends,
/// failed assertions included.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl KillOnDrop {
    /// The child, no longer killed on drop (the caller takes over).
    pub fn into_inner(self) -> std::process::Child {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so the child is moved out exactly once.
        unsafe { std::ptr::read(&me.0) }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `cmd`, retrying while its program is "text file busy": a script written just before
/// can still be open for writing in a child that another test thread forked and has not yet
/// exec'd (the descriptor closes at that exec).
pub fn spawn_retrying(cmd: &mut Command) -> KillOnDrop {
    for _ in 0..200 {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(10));
            }
            started => {
                return KillOnDrop(started.unwrap_or_else(|e| panic!("{cmd:?}: {e}")));
            }
        }
    }
    panic!("{cmd:?}: the program stayed busy");
}

/// Runs `cmd` to the end with its output captured (see [`spawn_retrying`]): a program copied
/// or written just before can be "text file busy" for a moment.
pub fn output_retrying(cmd: &mut Command) -> std::process::Output {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    spawn_retrying(cmd).into_inner().wait_with_output().unwrap()
}

/// Runs `cmd` to the end (see [`spawn_retrying`]); its exit status.
pub fn status_of(cmd: &mut Command) -> std::process::ExitStatus {
    spawn_retrying(cmd).0.wait().unwrap()
}

/// Writes an executable `#!/bin/sh` script `name` in `dir` with this body.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
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
    /// Its listed TCP connections.
    pub connections: Vec<Value>,
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
    /// The traced command's own output.
    pub stdout: String,
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
                "connection" => p.connections.push(ev.clone()),
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

/// The `N events lost` count of an agent's summary line.
pub fn events_lost(summary: &str) -> u64 {
    summary
        .split(" events lost")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no loss count in {summary}"))
}

/// `otel-pipetrace run --jsonl FILE <flags> -- <cmd>`.
pub fn trace(flags: &[&str], cmd: &[&str]) -> Traced {
    trace_with(&[], flags, cmd)
}

/// `otel-pipetrace run --jsonl FILE <flags> -- <cmd>` with extra environment (settings such as
/// `PIPETRACE_CAPTURE__SAMPLE_INTERVAL`).
pub fn trace_with(env: &[(&str, &str)], flags: &[&str], cmd: &[&str]) -> Traced {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("events.jsonl");
    let out = command()
        .envs(env.iter().copied())
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
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = std::fs::read_to_string(jsonl).unwrap_or_default();
    let events = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad jsonl line {l:?}: {e}")))
        .collect();
    Traced {
        status: out.status.code().unwrap_or(-1),
        stderr,
        stdout,
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

/// A process start time as `/proc/PID/stat` gives it (clock ticks since boot), in ns since the
/// Unix epoch: an oracle for the kernel's task start time that shares no code with the agent
/// (accurate to a clock tick).
pub fn proc_start_unix_ns(start_ticks: u64) -> u64 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec for clock_gettime to fill.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    };
    let offset = now(libc::CLOCK_REALTIME) - now(libc::CLOCK_BOOTTIME);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as i128;
    (start_ticks as i128 * 1_000_000_000 / hz + offset) as u64
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks since boot), from its text.
pub fn stat_start_ticks(stat: &str) -> u64 {
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after = &stat[stat.rfind(')').expect("a /proc/PID/stat line") + 2..];
    after
        .split(' ')
        .nth(22 - 3)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("no start time in {stat:?}"))
}

/// The repository's root (scripts, CI files, the README).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// stdout and stderr of `out`, for messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The artifacts of one `scripts/release` run per test process (archive, Debian package),
/// shared by the tests that install or deploy them, in the target directory (replaced on each
/// run).
pub fn release_artifacts() -> &'static (PathBuf, PathBuf) {
    static BUILT: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let target = std::env::var("CARGO_TARGET_DIR")
            .unwrap_or_else(|_| "/var/cache/otel-pipetrace/target".to_owned());
        let binary = std::env::current_exe().unwrap();
        let binary = binary.file_stem().unwrap().to_string_lossy();
        let out = Path::new(&target).join(format!("release-artifacts-{binary}"));
        let _ = std::fs::remove_dir_all(&out);
        let run = Command::new(workspace().join("scripts/release"))
            .env_remove("RUSTC_BOOTSTRAP")
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "scripts/release: {}",
            output_text(&run)
        );
        let find = |suffix: &str| {
            std::fs::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with(suffix))
                .unwrap_or_else(|| panic!("no *{suffix} in {}", out.display()))
        };
        (find("-x86_64-linux.tar.gz"), find("_amd64.deb"))
    })
}
