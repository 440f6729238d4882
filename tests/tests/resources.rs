//! CPU time and memory measured by the kernel (totals at exit, periodic samples of live
//! processes), checked against what the traced programs measure themselves (root, real
//! processes).

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

/// Traces `cmd` with `capture.sample_interval = interval`; also returns the command's stdout.
fn trace_sampled(interval: &str, cmd: &[&str]) -> (pipetrace_tests::Traced, String) {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("events.jsonl");
    let out = pipetrace_tests::command()
        .env("PIPETRACE_CAPTURE__SAMPLE_INTERVAL", interval)
        .arg("run")
        .arg("--jsonl")
        .arg(&jsonl)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (pipetrace_tests::traced(out, &jsonl), stdout)
}

#[test]
fn live_processes_are_sampled_from_the_kernel() {
    require_root!();
    // 200 MiB resident; two threads burn 0.4 s of CPU each, then all three threads idle for
    // 1.5 s while the program reports when the idle time began and its CPU time then.
    let script = "import threading, time\n\
        x = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\n\
        burned = threading.Barrier(3)\ndone = threading.Event()\n\
        def burn():\n    while time.thread_time() < 0.4: sum(range(1000))\n    burned.wait()\n    done.wait()\n\
        ts = [threading.Thread(target=burn) for _ in range(2)]\n[t.start() for t in ts]\n\
        burned.wait()\nprint(time.time_ns(), time.process_time(), flush=True)\n\
        time.sleep(1.5)\ndone.set()\n[t.join() for t in ts]\n";
    let python = real_python();
    let (t, stdout) = trace_sampled("300ms", &[python.as_str(), "-c", script]);
    assert_eq!(t.status, 0, "{}", t.stderr);
    let (idle_from, cpu_then) = stdout
        .split_whitespace()
        .collect::<Vec<_>>()
        .chunks(2)
        .next()
        .map(|w| (w[0].parse::<u64>().unwrap(), w[1].parse::<f64>().unwrap()))
        .unwrap_or_else(|| panic!("program output {stdout:?}"));
    let p = &t.processes()[0];
    let samples = &p.samples;
    assert!(samples.len() >= 5, "{} samples in ~2.5 s", samples.len());
    let cpu = |e: &serde_json::Value| {
        (e["cpu_user_ns"].as_u64().unwrap() + e["cpu_system_ns"].as_u64().unwrap()) as f64 / 1e9
    };
    // Counters: never down, neither in total nor per mode, and the exit continues them.
    for pair in samples.windows(2) {
        for key in ["cpu_user_ns", "cpu_system_ns"] {
            assert!(pair[1][key].as_u64() >= pair[0][key].as_u64(), "{pair:#?}");
        }
    }
    let (user, system, _) = usage(p);
    let last = samples.last().unwrap();
    assert!(
        cpu(last) <= user + system,
        "{last} vs exit {user} + {system}"
    );
    // While idle, with all three threads alive: the CPU the program measured itself, and the
    // 200 MiB buffer plus the interpreter.
    let idle: Vec<&serde_json::Value> = samples
        .iter()
        .filter(|e| e["time_unix_nano"].as_u64().unwrap() > idle_from + 50_000_000)
        .filter(|e| e["threads"] == 3)
        .collect();
    assert!(idle.len() >= 2, "idle samples: {samples:#?}");
    for e in &idle {
        assert!(
            within(cpu(e), cpu_then, 0.10),
            "sampled CPU {} vs {cpu_then} measured by the program",
            cpu(e)
        );
        let mib = e["rss_bytes"].as_u64().unwrap() as f64 / 1048576.0;
        assert!(within(mib, 210.0, 0.10), "sampled RSS {mib:.1} MiB");
    }
}

#[test]
fn sampling_can_be_turned_off() {
    require_root!();
    let (t, _) = trace_sampled("0s", &["/bin/sleep", "0.7"]);
    assert_eq!(t.status, 0, "{}", t.stderr);
    assert!(!t.events.iter().any(|e| e["kind"] == "sample"));
    let (t, _) = trace_sampled("200ms", &["/bin/sleep", "0.7"]);
    let samples = t.events.iter().filter(|e| e["kind"] == "sample").count();
    assert!(
        (2..=4).contains(&samples),
        "{samples} samples of a 0.7 s sleep"
    );
}
