//! CPU time and peak memory measured by the kernel at exit, checked against what the traced
//! programs measure themselves (root, real processes).

use pipetrace_tests::{Proc, real_python, require_root, trace};

fn usage(p: &Proc) -> (f64, f64, f64) {
    let exit = p.exit.as_ref().expect("exit record");
    let ns = |k: &str| exit[k].as_u64().unwrap_or_else(|| panic!("{k} in {exit}")) as f64;
    (
        ns("cpu_user_ns") / 1e9,
        ns("cpu_system_ns") / 1e9,
        ns("peak_rss_bytes"),
    )
}

fn only_python(cmd: &[&str]) -> (Proc, String) {
    let python = real_python();
    let argv: Vec<&str> = std::iter::once(python.as_str())
        .chain(cmd.iter().copied())
        .collect();
    let t = trace(&[], &argv);
    assert_eq!(t.status, 0, "{}", t.stderr);
    let procs = t.processes();
    assert_eq!(procs.len(), 1, "one process: {procs:#?}");
    (procs.into_iter().next().unwrap(), t.stderr)
}

fn within(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= want * tolerance
}

#[test]
fn cpu_burn_is_reported_within_ten_percent() {
    require_root!();
    let (p, _) = only_python(&[
        "-c",
        // Mostly arithmetic between the clock reads (each read is a system call).
        "import time\nwhile time.process_time() < 1.5: sum(range(20000))\n",
    ]);
    let (user, system, _) = usage(&p);
    assert!(
        within(user + system, 1.5, 0.10),
        "user {user} + system {system} vs 1.5 s"
    );
    assert!(
        user > system,
        "a busy loop is user time: {user} vs {system}"
    );
}

#[test]
fn eight_threads_add_up() {
    require_root!();
    // Each thread burns 0.2 s of its own CPU time and reports it; the process total is the sum.
    let script = "import threading, time\n\
        spent = []\n\
        def burn():\n    while time.thread_time() < 0.2: pass\n    spent.append(time.thread_time())\n\
        ts = [threading.Thread(target=burn) for _ in range(8)]\n\
        [t.start() for t in ts]\n[t.join() for t in ts]\n\
        print(sum(spent) + time.thread_time())\n";
    let python = real_python();
    let t = pipetrace_tests::trace(&[], &[python.as_str(), "-c", script]);
    assert_eq!(t.status, 0, "{}", t.stderr);
    let procs = t.processes();
    assert_eq!(procs.len(), 1, "threads are not processes");
    let (user, system, _) = usage(&procs[0]);
    let total = user + system;
    assert!(
        within(total, 1.6, 0.15),
        "8 × 0.2 s of thread CPU, reported {total}"
    );
}

#[test]
fn peak_rss_of_a_300_mb_step_within_ten_percent() {
    require_root!();
    let (p, _) = only_python(&[
        "-c",
        "x = bytearray(300 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ndel x\n",
    ]);
    let (_, _, peak) = usage(&p);
    let mib = peak / 1048576.0;
    // 300 MiB touched plus the interpreter itself (≈ 10 MiB).
    assert!(within(mib, 310.0, 0.10), "peak RSS {mib:.1} MiB");
}

#[test]
fn allocation_and_release_arrive_as_stepped_memory_events() {
    require_root!();
    let python = real_python();
    let t = trace(
        &[],
        &[
            python.as_str(),
            "-c",
            "x = bytearray(300 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ndel x\n",
        ],
    );
    assert_eq!(t.status, 0, "{}", t.stderr);
    let memory: Vec<&serde_json::Value> = t
        .events
        .iter()
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("memory_")))
        .collect();
    let mib = |e: &serde_json::Value| e["rss_bytes"].as_u64().unwrap() as f64 / 1048576.0;
    let allocs: Vec<f64> = memory
        .iter()
        .filter(|e| e["kind"] == "memory_alloc")
        .map(|e| mib(e))
        .collect();
    let releases: Vec<f64> = memory
        .iter()
        .filter(|e| e["kind"] == "memory_release")
        .map(|e| mib(e))
        .collect();
    assert!(!allocs.is_empty() && !releases.is_empty(), "{memory:#?}");
    let top = allocs.iter().cloned().fold(0.0, f64::max);
    assert!(top > 270.0, "RSS reported up to {top} MiB");
    assert!(
        releases.iter().cloned().fold(f64::MAX, f64::min) < 100.0,
        "released: {releases:?}"
    );
    // Aggregated in the kernel: steps of at least 8 MiB, not one event per page fault.
    assert!(memory.len() < 100, "{} memory events", memory.len());
    for e in &memory {
        let (now, before) = (
            e["rss_bytes"].as_u64().unwrap(),
            e["previous_bytes"].as_u64().unwrap(),
        );
        assert!(now.abs_diff(before) >= 8 << 20, "a step below 8 MiB: {e}");
    }
}

#[test]
fn a_five_millisecond_process_has_exact_totals() {
    require_root!();
    let t = trace(&[], &["/bin/sleep", "0.005"]);
    assert_eq!(t.status, 0, "{}", t.stderr);
    let p = &t.processes()[0];
    let (user, system, peak) = usage(p);
    let exit = p.exit.as_ref().unwrap();
    let duration = exit["duration_ns"].as_u64().unwrap() as f64 / 1e9;
    assert!(user + system > 0.0, "the scheduler's runtime is never zero");
    assert!(
        user + system < duration,
        "{user} + {system} within {duration}"
    );
    assert!(
        peak > 100.0 * 1024.0,
        "a running process has resident pages: {peak}"
    );

    // A process that never leaves the CPU: its last slice is accounted at its final switch.
    let t = trace(&[], &["/bin/true"]);
    let p = &t.processes()[0];
    let (user, system, _) = usage(p);
    let duration = p.exit.as_ref().unwrap()["duration_ns"].as_u64().unwrap() as f64 / 1e9;
    assert!(user + system > 0.0, "/bin/true used some CPU");
    assert!(
        user + system <= duration,
        "{user} + {system} within {duration}"
    );
}

#[test]
fn a_forked_command_is_not_charged_its_parents_memory() {
    require_root!();
    // The agent itself is tens of MiB; the command it forks must report its own image only.
    let t = trace(&[], &["/bin/true"]);
    let (_, _, peak) = usage(&t.processes()[0]);
    assert!(peak < 8.0 * 1048576.0, "/bin/true peak RSS {peak}");
}
