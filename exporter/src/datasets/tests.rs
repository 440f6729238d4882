//! Every column of every dataset is filled with a value of its own type, and a required
//! column never with NULL, for a row of each kind. `sinks::parquet`'s tests write these rows
//! and read every column back by name with DuckDB.

use super::{Kind, Table, Value, column::Column};
use crate::{
    capture::clock::Clock,
    datasets::{RowContext, connections, events, processes},
    event::{Activity, Body, Common, Connection, Event, Exec, Exit, Memory, Sample, Usage},
    process::{
        model::Process,
        tracker::{Tracker, TrackerOptions},
    },
};

/// Activity counts 101 … 118, in [`Activity::FIELDS`] order.
pub(crate) fn distinct_activity() -> Activity {
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
pub(crate) fn distinct_event(ktime_ns: u64, body: Body) -> Event {
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

pub(crate) fn distinct_exec() -> Body {
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
pub(crate) fn distinct_exit() -> Body {
    Body::Exit(Exit {
        status: 7 << 8,
        usage: Usage {
            cpu_user_ns: 2_500_000_000,
            cpu_system_ns: 1_250_000_000,
            peak_rss_bytes: 3_000_000,
        },
        activity: distinct_activity(),
        oom_killed: false,
    })
}

pub(crate) fn distinct_connection() -> Body {
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
pub(crate) fn every_event() -> Vec<Event> {
    let sample = Body::Sample(Sample {
        cpu_user_ns: 1,
        cpu_system_ns: 2,
        rss_bytes: 3,
        threads: 1,
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

/// The process those events make.
pub(crate) fn distinct_process() -> Process {
    let mut tracker = Tracker::new(TrackerOptions::default());
    every_event()
        .into_iter()
        .filter(|e| !matches!(e.body, Body::Sample(_) | Body::SampleEnd(_)))
        .find_map(|e| tracker.apply(e))
        .expect("the exit ends the process")
}

pub(crate) fn context() -> RowContext {
    RowContext {
        clock: Clock::new(),
        run_id: "run-distinct".into(),
        host: "host-distinct".into(),
    }
}

fn kind_of(value: &Value) -> Option<Kind> {
    Some(match value {
        Value::Null => return None,
        Value::Text(_) => Kind::Text,
        Value::UInt32(_) => Kind::UInt32,
        Value::UInt64(_) => Kind::UInt64,
        Value::Int32(_) => Kind::Int32,
        Value::Int64(_) => Kind::Int64,
        Value::Float64(_) => Kind::Float64,
        Value::Bool(_) => Kind::Bool,
        Value::Time(_) => Kind::Time,
        Value::TextList(_) => Kind::TextList,
    })
}

fn check<R, D>(columns: &[Column<R, D>], row: &R, derived: &D, what: &str) {
    let cx = context();
    for c in columns {
        let value = (c.fill)(row, derived, &cx);
        match kind_of(&value) {
            Some(kind) => assert_eq!(kind, c.kind, "{what}: column {} got {value:?}", c.name),
            None => assert!(c.nullable, "{what}: required column {} got NULL", c.name),
        }
    }
}

#[test]
fn every_column_gets_a_value_of_its_own_type_and_required_ones_never_null() {
    for ev in every_event() {
        let what = ev.kind_name();
        check(events().columns(), &ev, &super::events::derive(&ev), what);
        if matches!(ev.body, Body::Connection(_)) {
            check(
                connections().columns(),
                &ev,
                &super::connections::derive(&ev),
                what,
            );
        }
    }
    let p = distinct_process();
    check(
        processes().columns(),
        &p,
        &super::processes::derive(&p),
        "process",
    );
}

#[test]
fn names_are_unique_and_later_columns_are_nullable() {
    let all: [&dyn Table; 3] = [events(), processes(), connections()];
    for table in all {
        let schema = table.schema();
        let mut names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "{}: a column name twice", table.name());
        for f in schema.fields() {
            // Older files lack it: a reader fills NULL, so NULL must be a value it can have.
            assert!(
                !table.is_later(f.name()) || f.is_nullable(),
                "{}.{}",
                table.name(),
                f.name()
            );
        }
        assert_eq!(schema.fields().last().unwrap().name(), "host");
    }
    // The columns older files lack, as queries of old data rely on.
    assert!(events().is_later("exit_code") && !events().is_later("pid"));
    assert!(processes().is_later("step_key") && processes().is_later("read_bytes"));
    assert!(!processes().is_later("trace_id") && connections().is_later("host"));
}
