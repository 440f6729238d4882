//! `otel-pipetrace run` on real workloads, traced by the real kernel programs (root).

use std::collections::HashSet;

use pipetrace_tests::{require_root, trace};

#[test]
fn nested_sh_tree_has_correct_parent_links() {
    require_root!();
    let t = trace(
        &[],
        &[
            "sh",
            "-c",
            "sh -c 'sh -c \"/bin/true a\"; /bin/true b'; /bin/true c",
        ],
    );
    assert_eq!(t.status, 0, "{}", t.stderr);
    let procs = t.processes();
    let root = t.root();
    assert_eq!(root.argv()[0], "sh");
    let pid_of = |argv_last: &str| -> u64 {
        let p: Vec<_> = procs
            .iter()
            .filter(|p| p.argv().last().map(String::as_str) == Some(argv_last))
            .collect();
        assert_eq!(
            p.len(),
            1,
            "one process with argv ending {argv_last:?}: {procs:#?}"
        );
        p[0].pid
    };
    let parent_of = |pid: u64| procs.iter().find(|p| p.pid == pid).unwrap().tree_ppid;
    let level1 = pid_of("sh -c \"/bin/true a\"; /bin/true b");
    let level2 = pid_of("/bin/true a");
    let a = procs
        .iter()
        .find(|p| p.argv() == ["/bin/true", "a"])
        .unwrap()
        .pid;
    let b = procs
        .iter()
        .find(|p| p.argv() == ["/bin/true", "b"])
        .unwrap()
        .pid;
    let c = procs
        .iter()
        .find(|p| p.argv() == ["/bin/true", "c"])
        .unwrap()
        .pid;
    assert_eq!(parent_of(level1), root.pid);
    assert_eq!(parent_of(level2), level1);
    assert_eq!(parent_of(a), level2);
    assert_eq!(parent_of(b), level1);
    assert_eq!(parent_of(c), root.pid);
    // Real parents agree with the tree when nothing is hidden.
    for p in &procs {
        if p.pid != root.pid {
            assert_eq!(p.ppid, p.tree_ppid, "{p:#?}");
        }
        assert!(p.exit.is_some(), "every process exited: {p:#?}");
        assert_eq!(p.exit_code(), Some(0));
    }
    // Executable paths are absolute and resolved.
    let true_exec = &procs.iter().find(|p| p.pid == c).unwrap().execs[0];
    assert!(
        true_exec["exe"].as_str().unwrap().ends_with("/true"),
        "{true_exec}"
    );
    assert!(true_exec["exe"].as_str().unwrap().starts_with('/'));
    assert!(
        t.summary()
            .contains("6 processes, 0 failed, 0 still running, 0 events lost"),
        "{}",
        t.summary()
    );
}

#[test]
fn exit_codes_and_signals_are_reported_and_returned() {
    require_root!();
    let t = trace(&[], &["sh", "-c", "sh -c 'exit 7'; exit 3"]);
    assert_eq!(t.status, 3);
    let inner = t
        .processes()
        .into_iter()
        .find(|p| p.argv() == ["sh", "-c", "exit 7"])
        .unwrap();
    assert_eq!(inner.exit_code(), Some(7));
    assert_eq!(inner.signal(), None);
    assert!(
        t.summary().contains("2 processes, 2 failed"),
        "{}",
        t.summary()
    );

    let t = trace(&[], &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(t.status, 128 + 15);
    let root = t.root();
    assert_eq!(root.signal(), Some(15));
    assert_eq!(root.exit_code(), None);
    assert_eq!(root.exit.as_ref().unwrap()["signal_name"], "SIGTERM");

    let python = pipetrace_tests::real_python();
    let t = trace(&[], &[&python, "-c", "import os; os.kill(os.getpid(), 9)"]);
    assert_eq!(t.status, 137);
    assert_eq!(t.root().signal(), Some(9));
}

#[test]
fn argv_with_spaces_unicode_and_empty_strings_is_exact() {
    require_root!();
    let args = ["/bin/echo", "two words", "ünïcödé ✓ 日本", "", "--flag=x y"];
    let t = trace(&[], &args);
    assert_eq!(t.status, 0);
    let root = t.root();
    assert_eq!(root.argv(), args);
    let exec = &root.execs[0];
    assert_eq!(exec["argv_truncated"], false);
    assert_eq!(exec["filename"], "/bin/echo");
}

#[test]
fn long_argument_is_truncated_and_flagged() {
    require_root!();
    let long = "x".repeat(6 * 1024);
    let t = trace(&[], &["/bin/true", &long]);
    assert_eq!(t.status, 0);
    let exec = &t.root().execs[0];
    assert_eq!(exec["argv_truncated"], true);
    assert_eq!(
        exec["argv_bytes"].as_u64(),
        Some(("/bin/true".len() + 1 + long.len() + 1) as u64)
    );
    let argv = t.root().argv();
    assert_eq!(argv[0], "/bin/true");
    let captured: usize = argv.iter().map(|a| a.len() + 1).sum();
    assert!(
        (4095..=4097).contains(&captured),
        "captured {captured} bytes of argv"
    );

    // The cap is configurable.
    let t = trace(&["--argv-max", "16384"], &["/bin/true", &long]);
    assert_eq!(t.root().execs[0]["argv_truncated"], false);
    assert_eq!(t.root().argv()[1], long);
}

#[test]
fn multithreaded_program_is_one_process() {
    require_root!();
    let script = "import threading,time\n\
                  ts=[threading.Thread(target=time.sleep,args=(0.2,)) for _ in range(8)]\n\
                  [t.start() for t in ts]\n[t.join() for t in ts]\n";
    let python = pipetrace_tests::real_python();
    let t = trace(&[], &[&python, "-c", script]);
    assert_eq!(t.status, 0, "{}", t.stderr);
    let procs = t.processes();
    assert_eq!(procs.len(), 1, "threads are not processes: {procs:#?}");
    assert_eq!(procs[0].exit_code(), Some(0));
    assert_eq!(t.events.iter().filter(|e| e["kind"] == "exit").count(), 1);
}

#[test]
fn orphan_that_outlives_its_parent_belongs_to_the_run() {
    require_root!();
    let t = trace(
        &["--grace", "5s"],
        // `exit 0` last keeps dash from exec'ing /bin/true in the subshell itself.
        &[
            "sh",
            "-c",
            "(sleep 0.4; /bin/true late-orphan; exit 0) & exit 0",
        ],
    );
    assert_eq!(t.status, 0);
    let root = t.root();
    let late = t
        .processes()
        .into_iter()
        .find(|p| p.argv() == ["/bin/true", "late-orphan"])
        .unwrap();
    assert!(late.exit.is_some(), "orphan's child finished and was seen");
    // The subshell was reparented (real parent changed) but stays under the root in the tree.
    let subshell = t
        .processes()
        .into_iter()
        .find(|p| p.pid == late.tree_ppid)
        .unwrap();
    assert_ne!(subshell.pid, root.pid);
    assert_eq!(subshell.tree_ppid, root.pid);
    assert_ne!(
        subshell.exit.as_ref().unwrap()["ppid"].as_u64(),
        Some(root.pid)
    );
    assert!(t.summary().contains("0 still running"), "{}", t.summary());
}

#[test]
fn descendants_still_running_after_the_grace_period_are_reported() {
    require_root!();
    // Built before the clock starts: the first test to need the agent builds it.
    pipetrace_tests::bin();
    let started = std::time::Instant::now();
    let t = trace(
        &["--grace", "300ms"],
        &["sh", "-c", "sleep 30 >/dev/null 2>&1 & exit 0"],
    );
    assert_eq!(t.status, 0);
    // Well before the sleeper ends, with room for a slow start-up on a loaded runner.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "did not wait past the grace"
    );
    let sleeper = t
        .processes()
        .into_iter()
        .find(|p| p.argv() == ["sleep", "30"])
        .unwrap();
    assert!(sleeper.still_running, "{sleeper:#?}");
    assert!(sleeper.exit.is_none());
    // running_ns: from the kernel's start time of the sleeper (its /proc/PID/stat, read now
    // while it still sleeps) to the record's time, to a clock tick.
    let record = t
        .events
        .iter()
        .find(|e| e["kind"] == "still_running" && e["pid"] == sleeper.pid)
        .unwrap();
    let started_at = pipetrace_tests::proc_start_unix_ns(pipetrace_tests::stat_start_ticks(
        &std::fs::read_to_string(format!("/proc/{}/stat", sleeper.pid)).unwrap(),
    ));
    let expected = record["time_unix_nano"].as_u64().unwrap() - started_at;
    let tick = 1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let running = record["running_ns"].as_u64().unwrap();
    assert!(
        running.abs_diff(expected) <= 2 * tick,
        "running_ns {running}; by /proc {expected}"
    );
    assert!(t.summary().contains("1 still running"), "{}", t.summary());
    assert!(
        t.stderr.contains(&format!("pid {} sleep 30", sleeper.pid)),
        "{}",
        t.stderr
    );
    unsafe { libc::kill(sleeper.pid as i32, libc::SIGKILL) };
}

#[test]
fn two_thousand_short_processes_two_at_a_time_lose_nothing() {
    require_root!();
    let _cores = pipetrace_tests::needs_idle_cores();
    let t = trace(
        &[],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 1000 ]; do /bin/true & /bin/true; wait; i=$((i+1)); done",
        ],
    );
    assert_eq!(t.status, 0, "{}", t.stderr);
    let procs = t.processes();
    let trues: Vec<_> = procs.iter().filter(|p| p.argv() == ["/bin/true"]).collect();
    assert_eq!(trues.len(), 2000, "{}", t.summary());
    assert!(trues.iter().all(|p| p.exit_code() == Some(0)));
    let pids: HashSet<u64> = procs.iter().map(|p| p.pid).collect();
    let root = t.root();
    for p in &procs {
        assert!(
            p.pid == root.pid || pids.contains(&p.tree_ppid),
            "unknown parent: {p:#?}"
        );
    }
    assert!(t.summary().contains("0 events lost"), "{}", t.summary());
}

#[test]
fn hidden_shells_keep_their_children_in_the_tree() {
    require_root!();
    let t = trace(
        &["--hide", "sh", "--hide", "dash", "--hide", "bash"],
        &[
            "sh",
            "-c",
            "sh -c '/bin/true inner; sh -c \"/bin/true deeper\"'; /bin/true outer",
        ],
    );
    assert_eq!(t.status, 0, "{}", t.stderr);
    let root = t.root();
    let visible: Vec<_> = t
        .processes()
        .into_iter()
        .filter(|p| !p.execs.iter().any(|e| e["hidden"] == true))
        .collect();
    // Only the root (never hidden) and the three /bin/true remain.
    let argvs: HashSet<Vec<String>> = visible.iter().map(|p| p.argv()).collect();
    assert_eq!(visible.len(), 4, "{visible:#?}");
    for which in ["inner", "deeper", "outer"] {
        let p = visible
            .iter()
            .find(|p| p.argv() == ["/bin/true", which])
            .unwrap();
        assert_eq!(
            p.tree_ppid, root.pid,
            "{which} hangs off the nearest visible ancestor"
        );
    }
    assert!(argvs.contains(&root.argv()));
    assert!(t.summary().contains("4 processes"), "{}", t.summary());
}

#[test]
fn command_that_cannot_start_exits_127_with_one_line() {
    require_root!();
    let out = pipetrace_tests::agent(&["run", "--", "/nonexistent/command"]);
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/command"), "{stderr}");
}
