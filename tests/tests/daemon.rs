//! Daemon mode and its kernel scopes: everything, descendants of named roots (including roots
//! that were already running), and a cgroup v2 subtree (root).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use pipetrace_tests::{
    KillOnDrop, Traced, command, require, require_root, script, spawn_daemon, spawn_retrying,
    status_of, traced, wait_until,
};

struct Daemon {
    child: KillOnDrop,
    jsonl: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the daemon with `config` and waits until tracing is live.
    fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("pipetrace.toml");
        std::fs::write(&config_path, config).unwrap();
        let jsonl = dir.path().join("events.jsonl");
        let mut cmd = command();
        cmd.arg("--config")
            .arg(&config_path)
            .arg("--jsonl")
            .arg(&jsonl);
        let (child, mut stderr) = spawn_daemon(cmd);
        // Keep draining stderr so the daemon never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        });
        Self {
            child: KillOnDrop(child),
            jsonl,
            _dir: dir,
        }
    }

    /// SIGTERM, then the daemon must flush and exit 0.
    fn stop(self) -> Traced {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let out = self.child.into_inner().wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "daemon exit status");
        traced(out, &self.jsonl)
    }
}

fn marker(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    )
}

fn spawn(program: &Path, args: &[&str]) -> KillOnDrop {
    spawn_retrying(Command::new(program).args(args))
}

fn run(cmd: &[&str]) {
    let status = status_of(Command::new(cmd[0]).args(&cmd[1..]));
    assert!(status.code().is_some(), "{cmd:?} ran");
}

fn with_argv<'a>(t: &'a Traced, arg: &str) -> Vec<&'a serde_json::Value> {
    t.events
        .iter()
        .filter(|e| {
            e["kind"] == "exec"
                && e["argv"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == arg))
        })
        .collect()
}

#[test]
fn all_scope_sees_new_processes_and_flushes_on_sigterm() {
    require_root!();
    let daemon = Daemon::start("[scope]\nmode = \"all\"\n");
    let agent_pid = daemon.child.id() as u64;
    let m = marker("all");
    run(&["sh", "-c", &format!("/bin/true {m}; exit 5")]);
    let t = daemon.stop();
    let execs = with_argv(&t, &m);
    assert_eq!(execs.len(), 1, "{:?}", t.events.len());
    let pid = execs[0]["pid"].as_u64().unwrap();
    let parent = execs[0]["tree_ppid"].as_u64().unwrap();
    assert!(
        t.events
            .iter()
            .any(|e| e["kind"] == "exit" && e["pid"] == pid && e["exit_code"] == 0)
    );
    assert!(
        t.events
            .iter()
            .any(|e| e["kind"] == "exit" && e["pid"] == parent && e["exit_code"] == 5)
    );
    // The agent never reports itself (other tests' agents, running in parallel, it may see).
    assert!(t.events.iter().all(|e| e["pid"] != agent_pid));
}

#[test]
fn descendants_scope_traces_only_matching_subtrees() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    // comm is the script's file name: at most 15 bytes.
    let root_name = format!("ptr{}", std::process::id() % 1_000_000);
    let (inside, outside, early) = (marker("inside"), marker("outside"), marker("early"));
    let go = dir.path().join("go");
    let root = script(dir.path(), &root_name, &format!("/bin/true {inside}"));
    let waiting = script(
        dir.path(),
        &root_name.replace("ptr", "ptw"),
        &format!(
            "while [ ! -e {} ]; do sleep 0.02; done; /bin/true {early}",
            go.display()
        ),
    );
    // A root that is already running when the daemon starts.
    let waiting_name = waiting.file_name().unwrap().to_str().unwrap().to_owned();
    let mut early_root = spawn(&waiting, &[]);

    let daemon = Daemon::start(&format!(
        "[scope]\nmode = \"descendants\"\nroot_names = [\"{root_name}\", \"{waiting_name}\"]\n"
    ));
    run(&[root.to_str().unwrap()]);
    run(&["/bin/true", &outside]);
    std::fs::write(&go, "").unwrap();
    early_root.wait().unwrap();
    let t = daemon.stop();

    let inside_execs = with_argv(&t, &inside);
    assert_eq!(inside_execs.len(), 1, "child of a matching root is traced");
    let root_exec = t
        .events
        .iter()
        .find(|e| e["kind"] == "exec" && e["comm"] == root_name.as_str())
        .expect("the root's own exec");
    assert_eq!(root_exec["root"], true);
    assert_eq!(inside_execs[0]["tree_ppid"], root_exec["pid"]);
    assert!(
        with_argv(&t, &outside).is_empty(),
        "processes outside the scope are not traced"
    );
    let early_execs = with_argv(&t, &early);
    assert_eq!(
        early_execs.len(),
        1,
        "descendant of a root that predates the daemon"
    );
    assert_eq!(
        early_execs[0]["tree_ppid"].as_u64(),
        Some(early_root.id() as u64)
    );
}

/// A root already running when the daemon starts is read from `/proc` (start time to a clock
/// tick); every record of it — samples and exit — must carry the kernel's one identity, its
/// real parent and its cgroup.
#[test]
fn a_process_from_before_the_daemon_has_one_identity_in_every_record() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("pts{}", std::process::id() % 1_000_000);
    let go = dir.path().join("go");
    let root = script(
        dir.path(),
        &name,
        &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
    );
    let mut early = spawn(&root, &[]);
    let daemon = Daemon::start(&format!(
        "[scope]\nmode = \"descendants\"\nroot_names = [\"{name}\"]\n\
         [capture]\nsample_interval = \"200ms\"\n"
    ));
    // Sampled while it waits: the JSONL (written as records arrive) shows a sample of it.
    let pid = early.id();
    wait_until(
        "a sample of the early root",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&daemon.jsonl).is_ok_and(|text| {
                text.lines().any(|l| {
                    l.contains("\"kind\":\"sample\"") && l.contains(&format!("\"pid\":{pid},"))
                })
            })
        },
    );
    std::fs::write(&go, "").unwrap();
    early.wait().unwrap();
    let t = daemon.stop();
    let records: Vec<&serde_json::Value> = t
        .events
        .iter()
        .filter(|e| e["pid"].as_u64() == Some(u64::from(early.id())))
        .collect();
    let kinds: Vec<&str> = records.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"sample"),
        "sampled while running: {kinds:?}"
    );
    assert!(kinds.contains(&"exit"), "its exit: {kinds:?}");
    let one = |field: &str| -> std::collections::BTreeSet<String> {
        records.iter().map(|e| e[field].to_string()).collect()
    };
    assert_eq!(one("start_time_unix_nano").len(), 1, "{records:#?}");
    assert_eq!(
        one("ppid"),
        [std::process::id().to_string()].into(),
        "the real parent (this test) in every record"
    );
    let cgroups = one("cgroup_id");
    assert_eq!(cgroups.len(), 1, "{records:#?}");
    assert_ne!(cgroups.first().unwrap(), "0");
}

fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap()))
    })
}

#[test]
fn cgroup_scope_traces_only_that_cgroup() {
    require_root!();
    let mount = cgroup2_mount();
    require!(mount.is_some(), "no cgroup v2 hierarchy mounted");
    let cgroup = Cgroup::create(
        &mount
            .unwrap()
            .join(format!("pipetrace-test-{}", std::process::id())),
    );
    let cgroup = &cgroup.0;
    let (inside, outside) = (marker("cg-in"), marker("cg-out"));
    let daemon = Daemon::start(&format!(
        "[scope]\nmode = \"cgroup\"\ncgroup = \"{}\"\n",
        cgroup.display()
    ));
    let procs = cgroup.join("cgroup.procs");
    run(&[
        "sh",
        "-c",
        &format!("echo $$ > {}; /bin/true {inside}; exit 0", procs.display()),
    ]);
    run(&["/bin/true", &outside]);
    let t = daemon.stop();
    let inside_execs = with_argv(&t, &inside);
    assert_eq!(inside_execs.len(), 1);
    assert!(with_argv(&t, &outside).is_empty());
}

/// A cgroup made for one test, removed when the test ends (its processes moved out first),
/// failed assertions included.
struct Cgroup(PathBuf);

impl Cgroup {
    fn create(path: &Path) -> Self {
        std::fs::create_dir_all(path).unwrap();
        Self(path.to_owned())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let parent = self.0.parent().unwrap().join("cgroup.procs");
        if let Ok(pids) = std::fs::read_to_string(self.0.join("cgroup.procs")) {
            for pid in pids.lines() {
                let _ = std::fs::write(&parent, pid);
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}
