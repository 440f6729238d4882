//! I/O, page faults and context switches measured by the kernel at exit, checked against
//! independent measurements: what `dd` was told to write (with O_DIRECT, and buffered with
//! fsync), a file read back after the page cache was dropped, and `/usr/bin/time -v`'s
//! getrusage for faults and switches (root, real processes).

use pipetrace_tests::{Proc, real_python, require_root, trace_with};

const MIB: f64 = 1024.0 * 1024.0;

/// A counter of the process's exit record (it must be there: this kernel has the field).
fn counter(p: &Proc, key: &str) -> f64 {
    let exit = p.exit.as_ref().expect("exit record");
    exit[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {exit}")) as f64
}

fn within(measured: f64, expected: f64, share: f64, what: &str) {
    assert!(
        (measured - expected).abs() <= expected * share,
        "{what}: {measured} vs {expected} (more than {} % apart)",
        share * 100.0
    );
}

#[test]
fn bytes_written_and_read_at_the_storage_layer_are_the_files() {
    require_root!();
    let _cores = pipetrace_tests::loads_every_core();
    // On disk (the target directory), not tmpfs: O_DIRECT and writeback need a block device.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let direct = dir.path().join("direct");
    let synced = dir.path().join("synced");
    let script = format!(
        "dd if=/dev/zero of={d} bs=1M count=64 oflag=direct status=none\n\
         dd if=/dev/zero of={s} bs=1M count=32 conv=fsync status=none\n\
         sync; echo 3 > /proc/sys/vm/drop_caches\n\
         cat {d} > /dev/null\n",
        d = direct.display(),
        s = synced.display()
    );
    let t = trace_with(&[], &[], &["/bin/sh", "-c", &script]);
    assert_eq!(t.status, 0, "{}", t.stderr);
    let dd = t.by_comm("dd");
    assert_eq!(dd.len(), 2);
    let (direct_dd, synced_dd) = if dd[0].argv().iter().any(|a| a.contains("direct")) {
        (&dd[0], &dd[1])
    } else {
        (&dd[1], &dd[0])
    };
    within(
        counter(direct_dd, "write_bytes"),
        64.0 * MIB,
        0.05,
        "dd oflag=direct write_bytes",
    );
    within(
        counter(synced_dd, "write_bytes"),
        32.0 * MIB,
        0.05,
        "dd conv=fsync write_bytes",
    );
    assert!(counter(direct_dd, "write_chars") >= 64.0 * MIB);
    // 64 writes of 1 MiB (plus dd's own few).
    assert!((64.0..80.0).contains(&counter(direct_dd, "write_calls")));
    let cat = &t.by_comm("cat")[0];
    within(
        counter(cat, "read_bytes"),
        64.0 * MIB,
        0.05,
        "cat after drop_caches read_bytes",
    );
    // The shell's own: not its children's (the kernel's per-process total would include every
    // child it reaped).
    let sh = t.root();
    assert!(counter(&sh, "write_bytes") < 4.0 * MIB, "{:?}", sh.exit);
    assert!(counter(&sh, "read_bytes") < 8.0 * MIB, "{:?}", sh.exit);
}

/// `Minor (reclaiming a frame) page faults: 123` → 123.
fn time_v(report: &str, label: &str) -> f64 {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.trim_start_matches(':').trim().parse().ok())
        .unwrap_or_else(|| panic!("{label} in {report}"))
}

/// `cmd` traced under `/usr/bin/time -v`, whose report (the getrusage of `cmd`) is written to
/// `report`: the trace and the report's text.
fn traced_under_time(report: &std::path::Path, cmd: &[&str]) -> (pipetrace_tests::Traced, String) {
    let mut argv = vec!["/usr/bin/time", "-v", "-o", report.to_str().unwrap()];
    argv.extend_from_slice(cmd);
    let t = trace_with(&[], &[], &argv);
    let text = std::fs::read_to_string(report).unwrap();
    (t, text)
}

#[test]
fn faults_and_switches_agree_with_getrusage_and_count_every_thread() {
    require_root!();
    let _cores = pipetrace_tests::loads_every_core();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let report = dir.path().join("time.txt");
    let out = dir.path().join("thread.out");
    let python = real_python();
    // 64 MiB touched page by page (minor faults), 40 sleeps (voluntary switches), and 8 MiB
    // written by a second thread that exits before the process does.
    let body = format!(
        "import threading, time, os\n\
         x = bytearray(64 << 20)\n\
         for i in range(0, len(x), 4096): x[i] = 1\n\
         for _ in range(40): time.sleep(0.002)\n\
         def write():\n    f = open('{}', 'wb'); f.write(b'y' * (8 << 20)); f.flush(); os.fsync(f.fileno()); f.close()\n\
         t = threading.Thread(target=write); t.start(); t.join()\n",
        out.display()
    );
    let (t, report) = traced_under_time(&report, &[python.as_str(), "-c", &body]);
    assert_eq!(t.status, 0, "{}", t.stderr);
    let procs = t.processes();
    let py = procs
        .iter()
        .find(|p| p.comm().starts_with("python"))
        .unwrap_or_else(|| panic!("python in {procs:#?}"));
    let close = |ours: f64, theirs: f64, what: &str| {
        assert!(
            (ours - theirs).abs() <= (theirs * 0.10).max(3.0),
            "{what}: ours {ours}, /usr/bin/time {theirs}"
        );
    };
    for (key, label) in [
        ("minor_faults", "Minor (reclaiming a frame) page faults"),
        ("major_faults", "Major (requiring I/O) page faults"),
        ("voluntary_switches", "Voluntary context switches"),
        ("involuntary_switches", "Involuntary context switches"),
    ] {
        close(counter(py, key), time_v(&report, label), key);
    }
    assert!(counter(py, "minor_faults") >= 16384.0, "64 MiB touched");
    assert!(counter(py, "voluntary_switches") >= 40.0);
    // The thread's writes are the process's.
    assert!(counter(py, "write_chars") >= 8.0 * MIB);
    within(
        counter(py, "write_bytes"),
        8.0 * MIB,
        0.05,
        "thread's fsynced write_bytes",
    );
}

#[test]
fn live_samples_carry_io_so_far_including_exited_threads() {
    require_root!();
    let _cores = pipetrace_tests::needs_idle_cores();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = dir.path().join("live.out");
    let python = real_python();
    // A thread writes 16 MiB (fsynced) and exits; the process then idles for 1.5 s, sampled
    // every 200 ms meanwhile.
    let body = format!(
        "import threading, time, os\n\
         def write():\n    f = open('{}', 'wb'); f.write(b'z' * (16 << 20)); f.flush(); os.fsync(f.fileno()); f.close()\n\
         t = threading.Thread(target=write); t.start(); t.join()\n\
         print('written', flush=True)\n\
         time.sleep(1.5)\n",
        out.display()
    );
    let t = trace_with(
        &[("PIPETRACE_CAPTURE__SAMPLE_INTERVAL", "200ms")],
        &[],
        &[python.as_str(), "-c", &body],
    );
    assert_eq!(t.status, 0, "{}", t.stderr);
    let samples: Vec<&serde_json::Value> =
        t.events.iter().filter(|e| e["kind"] == "sample").collect();
    assert!(samples.len() >= 3, "{samples:#?}");
    // The last samples come after the writing thread exited: its I/O stays the process's.
    let last = samples.last().unwrap();
    let written = last["write_bytes"].as_u64().unwrap() as f64;
    within(
        written,
        16.0 * MIB,
        0.05,
        "write_bytes in the last live sample",
    );
    assert!(last["write_chars"].as_u64().unwrap() >= 16 << 20);
    assert!(last["minor_faults"].as_u64().unwrap() > 0);
    // Counters only grow from sample to sample, and the exit's totals are not below them.
    for pair in samples.windows(2) {
        for key in ["write_chars", "minor_faults", "voluntary_switches"] {
            assert!(
                pair[1][key].as_u64() >= pair[0][key].as_u64(),
                "{key}: {} then {}",
                pair[0][key],
                pair[1][key]
            );
        }
    }
    let exit = t.processes()[0].exit.clone().unwrap();
    assert!(exit["write_chars"].as_u64() >= last["write_chars"].as_u64());
}

/// Threads that end in an order other than "leader last": the leader leaves first (with
/// `pthread_exit`) and a worker ends the process with `exit` (a group exit) or with its own
/// thread `exit`; or eight threads are killed at once by the leader's `exit` while they run.
const THREADS_C: &str = r#"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

static char mode;
static atomic_int ready;

static void touch(size_t mib) {
    volatile char *p = malloc(mib << 20);
    for (size_t i = 0; i < mib << 20; i += 4096) p[i] = 1;
}

static void *last_worker(void *arg) {
    (void)arg;
    usleep(100000); /* the leader is gone by now */
    touch(32);
    for (int i = 0; i < 20; i++) usleep(1000);
    if (mode == 'g') exit(3);
    syscall(SYS_exit, 7); /* this thread's exit only, yet the last: 7 since Linux 5.19, 0 before */
    return 0;
}

static void *busy_worker(void *arg) {
    (void)arg;
    touch(4);
    atomic_fetch_add(&ready, 1);
    for (;;) for (volatile int i = 0; i < 1000; i++) {}
    return 0;
}

int main(int argc, char **argv) {
    pthread_t t;
    mode = argv[1][0];
    if (mode == 'a') {
        for (int i = 0; i < 8; i++) pthread_create(&t, 0, busy_worker, 0);
        while (atomic_load(&ready) < 8) usleep(1000);
        exit(0);
    }
    pthread_create(&t, 0, last_worker, 0);
    pthread_exit(0);
}
"#;

#[test]
fn threads_that_outlive_the_leader_or_die_together_are_counted_once() {
    require_root!();
    let _cores = pipetrace_tests::loads_every_core();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("threads.c");
    std::fs::write(&source, THREADS_C).unwrap();
    let program = dir.path().join("threads");
    let cc = std::process::Command::new("cc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&program)
        .arg(&source)
        .output()
        .expect("cc (build-essential) is needed by this test");
    assert!(cc.status.success(), "cc: {cc:?}");
    for mode in ["group", "thread", "all"] {
        for _ in 0..3 {
            let (t, report) = traced_under_time(
                &dir.path().join("time.txt"),
                &[program.to_str().unwrap(), mode],
            );
            let p = &t.by_comm("threads")[0];
            // The status the parent was given.
            let status = time_v(&report, "Exit status") as i64;
            assert_eq!(p.exit_code(), Some(status), "{mode}: {:?}", p.exit);
            if mode == "group" {
                assert_eq!(status, 3);
            }
            // Faults are exact; each thread's last switch, after the kernel summed its
            // counters, is the only switch getrusage may see and a record may not.
            for (key, label, slack) in [
                (
                    "minor_faults",
                    "Minor (reclaiming a frame) page faults",
                    0.0,
                ),
                ("major_faults", "Major (requiring I/O) page faults", 0.0),
                ("voluntary_switches", "Voluntary context switches", 10.0),
                ("involuntary_switches", "Involuntary context switches", 10.0),
            ] {
                let (ours, theirs) = (counter(p, key), time_v(&report, label));
                assert!(
                    (ours - theirs).abs() <= slack,
                    "{mode} {key}: ours {ours}, /usr/bin/time {theirs}\n{report}"
                );
            }
            // 8 × 4 MiB or 32 MiB touched page by page.
            assert!(counter(p, "minor_faults") >= 8192.0, "{mode}");
        }
    }
}
