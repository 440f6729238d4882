//! Example rows for the datasets' tests, here and in the Parquet sink's (feature `examples`):
//! every value distinct, so a column filled from the wrong field, or two columns swapped, shows.

use std::sync::Arc;

use crate::{
    clock::Clock,
    datasets::RowContext,
    event::{Activity, Body, Common, Connection, Event, Exec, Exit, Memory, Sample, Usage},
    model::{Ending, Process, ProcessKey, SpanRef},
};

/// Activity counts 101 … 118, in [`Activity::FIELDS`] order.
pub fn distinct_activity() -> Activity {
    Activity {
        read_chars: Some(101),
        write_chars: Some(102),
        read_calls: Some(103),
        write_calls: Some(104),
        read_bytes: Some(105),
        write_bytes: Some(106),
        cancelled_write_bytes: Some(107),
        minor_faults: Some(108),
        major_faults: Some(109),
        voluntary_switches: Some(110),
        involuntary_switches: Some(111),
        network_sent_bytes: Some(112),
        network_received_bytes: Some(113),
        network_send_calls: Some(114),
        network_receive_calls: Some(115),
        network_connections: Some(116),
        network_accepted: Some(117),
        network_unlisted: Some(118),
    }
}

/// An event of a process whose every id differs from the others (pid 1001, tid 1002, ppid
/// 1003, tree_ppid 1004, uid 1005, cgroup 1006), at `ktime_ns`.
pub fn distinct_event(ktime_ns: u64, body: Body) -> Event {
    Event {
        common: Common {
            flags: 0,
            ktime_ns,
            start_ns: 5_000_000_000,
            parent_start_ns: 1_000,
            cgroup_id: 1006,
            tgid: 1001,
            tid: 1002,
            ppid: 1003,
            tree_ppid: 1004,
            uid: 1005,
            comm: "distinct".into(),
        },
        body,
    }
}

pub fn distinct_exec() -> Body {
    Body::Exec(Box::new(Exec {
        exe: Some("/usr/bin/distinct".into()),
        cwd: Some("/work/dir".into()),
        filename: "/usr/bin/distinct".into(),
        argv: vec!["distinct".into(), "--flag".into(), "value".into()],
        argv_truncated: false,
        argv_total_bytes: 24,
        hidden: false,
    }))
}

/// Exit code 7; CPU 2.5 s user and 1.25 s system; peak RSS 3,000,000 bytes.
pub fn distinct_exit() -> Body {
    Body::Exit(Exit {
        status: 7 << 8,
        usage: Usage {
            cpu_user_ns: 2_500_000_000,
            cpu_system_ns: 1_250_000_000,
            peak_rss_bytes: 3_000_000,
        },
        activity: distinct_activity(),
        oom_killed: false,
        files_unsent: 0,
    })
}

pub fn distinct_connection() -> Body {
    Body::Connection(Connection {
        outbound: true,
        protocol: 6,
        peer: "192.0.2.7".parse().unwrap(),
        peer_port: 4431,
        local: "127.0.0.1".parse().unwrap(),
        local_port: Some(5551),
        established: false,
    })
}

/// One event of every kind, in the order a process would have them.
pub fn every_event() -> Vec<Event> {
    let sample = Body::Sample(Sample {
        cpu_user_ns: 1,
        cpu_system_ns: 2,
        rss_bytes: 3,
        threads: 1,
        run_delay_ns: 0,
        activity: distinct_activity(),
    });
    let memory = Body::Memory(Memory {
        rss_bytes: 4096,
        previous_bytes: 0,
    });
    [
        Body::Fork,
        distinct_exec(),
        memory,
        sample,
        distinct_connection(),
        Body::SampleEnd(1),
        distinct_exit(),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, body)| distinct_event(6_000_000_000 + i as u64 * 1_000, body))
    .collect()
}

/// The process those events make, every field of its own value (span ids included).
pub fn distinct_process() -> Process {
    let exec = match distinct_exec() {
        Body::Exec(exec) => Arc::new(*exec),
        _ => unreachable!("distinct_exec is an exec"),
    };
    let (exit, connection) = match (distinct_exit(), distinct_connection()) {
        (Body::Exit(exit), Body::Connection(c)) => (exit, c),
        _ => unreachable!("an exit and a connection"),
    };
    Process {
        key: ProcessKey {
            tgid: 1001,
            start_ns: 5_000_000_000,
        },
        parent: Some(ProcessKey {
            tgid: 1004,
            start_ns: 1_000,
        }),
        ppid: 1003,
        comm: "distinct".into(),
        uid: 1005,
        cgroup_id: 1006,
        exec: Some(exec),
        exec_inherited: false,
        exec_ns: Some(6_000_001_000),
        exec_count: 1,
        previous_execs: Vec::new(),
        root: false,
        seeded: false,
        spanned: true,
        span: SpanRef {
            trace_id: 0x1111_2222_3333_4444_5555_6666_7777_8888,
            span_id: 0x0123_4567_89ab_cdef,
        },
        parent_span: Some(0x0fed_cba9_8765_4321),
        ending: Some(Ending::Exited(exit)),
        end_ns: Some(6_000_006_000),
        last_sample: None,
        connections: vec![(6_000_004_000, connection)],
        files: Some(Box::new(distinct_files())),
        findings: Vec::new(),
        incomplete: false,
        failed_below: 0,
    }
}

/// One written file with a value in every field, and distinct counts.
pub fn distinct_files() -> crate::file_log::FileLog {
    use crate::event::{FileAccess, FileOp};
    let mut log = crate::file_log::FileLog::default();
    log.add(
        6_000_005_000,
        FileAccess {
            op: FileOp::Rename,
            path: "/work/dir/out.tmp".into(),
            target: Some("/work/dir/out.bin".into()),
            flags: 0,
            errno: None,
            size: Some(4321),
            ino: 77,
            truncated: false,
        },
        &crate::file_log::FilePolicy::default(),
    );
    log.entries_mut()[0].sha256 = Some("sha-distinct".into());
    log.probes = 12;
    log.unrecorded = 13;
    log
}

pub fn context() -> RowContext {
    RowContext {
        clock: Clock::new(),
        run_id: "run-distinct".into(),
        host: "host-distinct".into(),
        revision: Some("rev-distinct".into()),
    }
}
