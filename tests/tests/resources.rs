//! CPU time and memory measured by the kernel (totals at exit, periodic samples of live
//! processes), checked against what the traced programs measure themselves (root, real
//! processes).

use pipetrace_tests::{Proc, real_python, require_root, trace_with};

fn usage(p: &Proc) -> (f64, f64, f64) {
    let exit = p.exit.as_ref().expect("exit record");
    let ns = |k: &str| exit[k].as_u64().unwrap_or_else(|| panic!("{k} in {exit}")) as f64;
    (
        ns("cpu_user_ns") / 1e9,
        ns("cpu_system_ns") / 1e9,
        ns("peak_rss_bytes"),
    )
}

/// Python that prints what the program measured itself as its last line: CPU seconds
/// (`getrusage` user + system, every thread), then `VmHWM` and `VmRSS` in bytes.
const REPORT: &str = "\nimport resource\nr = resource.getrusage(resource.RUSAGE_SELF)\n\
    status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n\
    kib = lambda k: int(status[k].split()[0]) * 1024\n\
    print(r.ru_utime + r.ru_stime, kib('VmHWM'), kib('VmRSS'))\n";

/// Traces `python -c body + REPORT`: the process and its own (CPU s, peak bytes, RSS bytes).
fn self_measured(body: &str) -> (Proc, (f64, f64, f64)) {
    let python = real_python();
    let t = trace_with(
        &[],
        &[],
        &[python.as_str(), "-c", &format!("{body}{REPORT}")],
    );
    let stdout = &t.stdout;
    assert_eq!(t.status, 0, "{}", t.stderr);
    let procs = t.processes();
    assert_eq!(
        procs.len(),
        1,
        "one process (threads are not processes): {procs:#?}"
    );
    let v: Vec<f64> = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no report in {stdout:?}"))
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    (procs.into_iter().next().unwrap(), (v[0], v[1], v[2]))
}

fn within(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= want * tolerance
}

#[test]
fn cpu_burn_is_reported_within_ten_percent() {
    require_root!();
    // Mostly arithmetic between the clock reads (each read is a system call).
    let (p, (cpu_self, _, _)) =
        self_measured("import time\nwhile time.process_time() < 1.5: sum(range(20000))\n");
    let (user, system, _) = usage(&p);
    assert!(
        within(user + system, cpu_self, 0.10),
        "user {user} + system {system}; the program measured {cpu_self} s"
    );
    assert!(
        user > system,
        "a busy loop is user time: {user} vs {system}"
    );
}

#[test]
fn eight_threads_add_up() {
    require_root!();
    // Each thread burns 0.2 s of its own CPU time; the process total is the sum.
    let (p, (cpu_self, _, _)) = self_measured(
        "import threading, time\n\
         def burn():\n    while time.thread_time() < 0.2: pass\n\
         ts = [threading.Thread(target=burn) for _ in range(8)]\n\
         [t.start() for t in ts]\n[t.join() for t in ts]\n",
    );
    assert!(cpu_self > 8.0 * 0.2, "the threads burned {cpu_self} s");
    let (user, system, _) = usage(&p);
    assert!(
        within(user + system, cpu_self, 0.10),
        "8 threads: reported {}, the program measured {cpu_self} s",
        user + system
    );
}

#[test]
fn peak_rss_of_a_300_mb_step_within_ten_percent() {
    require_root!();
    let (p, (_, hwm, _)) = self_measured(
        "x = bytearray(300 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ndel x\n",
    );
    assert!(hwm > 300.0 * 1048576.0, "VmHWM {hwm}");
    let (_, _, peak) = usage(&p);
    assert!(
        within(peak, hwm, 0.10),
        "peak RSS {peak}; the program's VmHWM {hwm}"
    );
}

#[test]
fn allocation_and_release_arrive_as_stepped_memory_events() {
    require_root!();
    let step: f64 = (8 << 20) as f64; // capture.memory_step_bytes
    let python = real_python();
    // It reports its peak, and its RSS once the buffer is freed.
    let t = trace_with(
        &[],
        &[],
        &[
            python.as_str(),
            "-c",
            "x = bytearray(300 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ndel x\n\
             status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n\
             print(*(int(status[k].split()[0]) * 1024 for k in ('VmHWM', 'VmRSS')))\n",
        ],
    );
    let stdout = &t.stdout;
    assert_eq!(t.status, 0, "{}", t.stderr);
    let (hwm, after): (f64, f64) = stdout
        .split_once(' ')
        .map(|(a, b)| (a.parse().unwrap(), b.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("{stdout:?}"));
    let memory: Vec<&serde_json::Value> = t
        .events
        .iter()
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("memory_")))
        .collect();
    let bytes = |e: &serde_json::Value| e["rss_bytes"].as_u64().unwrap() as f64;
    let of = |kind: &str| -> Vec<f64> {
        memory
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| bytes(e))
            .collect()
    };
    let (allocs, releases) = (of("memory_alloc"), of("memory_release"));
    assert!(!allocs.is_empty() && !releases.is_empty(), "{memory:#?}");
    // A report leaves at every move of 8 MiB and 10 %: the highest is within one step of the
    // peak the program saw; on the way down (a bulk unmap, counted in batches) the lowest
    // report follows the release to within a tenth of the drop.
    let top = allocs.iter().cloned().fold(0.0, f64::max);
    assert!(
        top <= hwm && hwm - top < step.max(0.1 * top),
        "reported up to {top}; VmHWM {hwm}"
    );
    let bottom = releases.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        bottom - after < 0.1 * (hwm - after),
        "released down to {bottom}; VmRSS {after} after the release from {hwm}"
    );
    // Aggregated in the kernel: every report a step of at least 8 MiB, so at most one per
    // 8 MiB up and one per 8 MiB down, not one per page fault.
    for e in &memory {
        let (now, before) = (
            e["rss_bytes"].as_u64().unwrap(),
            e["previous_bytes"].as_u64().unwrap(),
        );
        assert!(now.abs_diff(before) >= 8 << 20, "a step below 8 MiB: {e}");
    }
    assert!(
        memory.len() as f64 <= 2.0 * (hwm / step).ceil(),
        "{} memory events for a {hwm}-byte peak",
        memory.len()
    );
}

/// Traces a Python parent holding `parent_mib` MiB that forks and execs `child`, and prints the
/// child's usage as the kernel accounted it to the parent (`wait4`): CPU seconds and
/// `ru_maxrss` bytes; then the parent's own `VmRSS` bytes.
fn child_usage(parent_mib: u32, child: &[&str]) -> (pipetrace_tests::Traced, f64, f64, f64) {
    let python = real_python();
    let argv = child
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let script = format!(
        "import os\n\
         x = bytearray({parent_mib} << 20)\n\
         for i in range(0, len(x), 4096): x[i] = 1\n\
         pid = os.fork()\n\
         if pid == 0: os.execv({:?}, [{argv}])\n\
         _, _, r = os.wait4(pid, 0)\n\
         status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n\
         print(r.ru_utime + r.ru_stime, r.ru_maxrss * 1024, int(status['VmRSS'].split()[0]) * 1024)\n",
        child[0]
    );
    let t = trace_with(&[], &[], &[python.as_str(), "-c", &script]);
    assert_eq!(t.status, 0, "{}", t.stderr);
    let v: Vec<f64> = t
        .stdout
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (t, v[0], v[1], v[2])
}

#[test]
fn a_five_millisecond_process_has_exact_totals() {
    require_root!();
    // The kernel's own accounting of the child (wait4's rusage) is the oracle: the exit
    // record must carry the same CPU time, read at the last thread's final switch.
    for cmd in [&["/bin/sleep", "0.005"][..], &["/bin/true"][..]] {
        let (t, cpu_kernel, _, _) = child_usage(0, cmd);
        let name = cmd[0].rsplit('/').next().unwrap();
        let p = t
            .by_comm(name)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{name}: {:#?}", t.processes()));
        let (user, system, _) = usage(&p);
        let duration = p.exit.as_ref().unwrap()["duration_ns"].as_u64().unwrap() as f64 / 1e9;
        assert!(
            (user + system - cpu_kernel).abs() <= 0.2 * cpu_kernel + 200e-6,
            "{name}: {user} + {system} s; wait4 says {cpu_kernel} s"
        );
        assert!(
            user + system <= duration,
            "{name}: {user} + {system} within {duration}"
        );
    }
}

#[test]
fn a_forked_command_is_not_charged_its_parents_memory() {
    require_root!();
    // getrusage's maxrss charges a forked child its parent's pages (the parent here holds
    // 64 MiB); the exit record has the peak of the image the command ran.
    let (t, _, maxrss, parent_rss) = child_usage(64, &["/bin/true"]);
    let p = t.by_comm("true").into_iter().next().unwrap();
    let (_, _, peak) = usage(&p);
    assert!(peak > 0.0, "a process that ran has resident pages");
    assert!(
        peak < parent_rss / 2.0 && peak < maxrss / 2.0,
        "/bin/true peak {peak}; its parent's RSS {parent_rss}, wait4 maxrss {maxrss}"
    );
}

/// Traces `cmd` with `capture.sample_interval = interval`; also returns the command's stdout.
fn trace_sampled(interval: &str, cmd: &[&str]) -> (pipetrace_tests::Traced, String) {
    let t = trace_with(
        &[("PIPETRACE_CAPTURE__SAMPLE_INTERVAL", interval)],
        &[],
        cmd,
    );
    let stdout = t.stdout.clone();
    (t, stdout)
}

#[test]
fn live_processes_are_sampled_from_the_kernel() {
    require_root!();
    let _cores = pipetrace_tests::needs_idle_cores();
    // 200 MiB resident; two threads burn 0.4 s of CPU each, then all three threads idle for
    // 1.5 s while the program reports when the idle time began and its CPU time then.
    let script = "import threading, time\n\
        x = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\n\
        burned = threading.Barrier(3)\ndone = threading.Event()\n\
        def burn():\n    while time.thread_time() < 0.4: sum(range(1000))\n    burned.wait()\n    done.wait()\n\
        ts = [threading.Thread(target=burn) for _ in range(2)]\n[t.start() for t in ts]\n\
        burned.wait()\nrss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]\n\
        print(time.time_ns(), time.process_time(), int(rss) * 1024, flush=True)\n\
        time.sleep(1.5)\ndone.set()\n[t.join() for t in ts]\n";
    let python = real_python();
    let (t, stdout) = trace_sampled("300ms", &[python.as_str(), "-c", script]);
    assert_eq!(t.status, 0, "{}", t.stderr);
    let (idle_from, cpu_then, rss_then) = stdout
        .split_whitespace()
        .collect::<Vec<_>>()
        .chunks(3)
        .next()
        .map(|w| {
            (
                w[0].parse::<u64>().unwrap(),
                w[1].parse::<f64>().unwrap(),
                w[2].parse::<f64>().unwrap(),
            )
        })
        .unwrap_or_else(|| panic!("program output {stdout:?}"));
    let p = &t.processes()[0];
    let samples = &p.samples;
    // One every 300 ms of its life, the first one after at most an interval.
    let lived = p.exit.as_ref().unwrap()["duration_ns"].as_u64().unwrap();
    let due = lived / 300_000_000;
    assert!(
        samples.len() as u64 + 1 >= due,
        "{} samples in {lived} ns at 300 ms",
        samples.len()
    );
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
    // While idle, with all three threads alive: the CPU time and resident memory the program
    // measured itself when its idle time began.
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
        let rss = e["rss_bytes"].as_u64().unwrap() as f64;
        assert!(
            within(rss, rss_then, 0.10),
            "sampled RSS {rss}; the program's VmRSS {rss_then}"
        );
    }
}

#[test]
fn sampling_can_be_turned_off() {
    require_root!();
    let _cores = pipetrace_tests::needs_idle_cores();
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

#[test]
fn memory_step_percent_sets_the_relative_step() {
    require_root!();
    // 300 MiB touched page by page: with a 50 % step, each report is half again (or half
    // down) from the one before, so there are few.
    let python = real_python();
    let program =
        "x = bytearray(300 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ndel x\n";
    let run = |percent: &str| {
        let t = trace_with(
            &[("PIPETRACE_CAPTURE__MEMORY_STEP_PERCENT", percent)],
            &[],
            &[python.as_str(), "-c", program],
        );
        assert_eq!(t.status, 0, "{}", t.stderr);
        t.events
            .into_iter()
            .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("memory_")))
            .map(|e| {
                (
                    e["rss_bytes"].as_u64().unwrap(),
                    e["previous_bytes"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let coarse = run("50");
    assert!(!coarse.is_empty());
    for (now, before) in &coarse {
        // The kernel counts the step in whole pages, rounded down.
        let half = before / 4096 * 50 / 100 * 4096;
        assert!(
            now.abs_diff(*before) >= (8 << 20).max(half),
            "{now} after {before}: less than 50 % and 8 MiB"
        );
    }
    // The control: at the default 10 % the same program is reported in more steps.
    let fine = run("10");
    assert!(
        fine.len() > coarse.len(),
        "10 %: {} reports, 50 %: {}",
        fine.len(),
        coarse.len()
    );
    assert!(
        fine.iter()
            .any(|(now, before)| now.abs_diff(*before) < before / 2),
        "at 10 % some step is below 50 %: {fine:?}"
    );
}

/// The kernel reuses a freed `mm_struct` at once, often for the next process on that CPU: a
/// traced process must not inherit what the memory hook remembered of an untraced one (or of a
/// traced one that exec'd) at the same address. Untraced processes churn on every CPU while
/// 60 traced ones each touch 64 MiB: every one of them reports it.
#[test]
fn every_process_reports_its_memory_while_untraced_ones_churn() {
    require_root!();
    let _cores = pipetrace_tests::loads_every_core();
    let python = real_python();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn: Vec<_> = ["/bin/true", "/bin/ls"]
        .into_iter()
        .map(|program| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::process::Command::new(program)
                        .arg("/")
                        .stdout(std::process::Stdio::null())
                        .status();
                }
            })
        })
        .collect();
    let script = format!(
        "for i in $(seq 60); do {python} -c 'x = bytearray(64 << 20); y = \"toucher\"'; /bin/true; done"
    );
    let t = trace_with(&[], &[], &["sh", "-c", &script]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in churn {
        thread.join().unwrap();
    }
    assert_eq!(t.status, 0, "{}", t.stderr);
    let touchers: Vec<u64> = t
        .events
        .iter()
        .filter(|e| e["kind"] == "exec" && e["argv"][0] == python.as_str())
        .map(|e| e["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(touchers.len(), 60, "{}", t.stderr);
    let silent: Vec<u64> = touchers
        .iter()
        .copied()
        .filter(|pid| {
            !t.events.iter().any(|e| {
                e["kind"] == "memory_alloc"
                    && e["pid"] == *pid
                    && e["rss_bytes"].as_u64().unwrap() >= 64 << 20
            })
        })
        .collect();
    assert!(
        silent.is_empty(),
        "{} of 60 processes never reported their 64 MiB: {silent:?}",
        silent.len()
    );
}
