//! A synthetic process stream for the benchmarks: a pool of realistic commands, fresh pids
//! and times for every process, fed to a sink as fork, exec and exit events and a process row.

use std::sync::Arc;

use pipetrace::{
    event::{Body, Common, Event, Exec, Exit},
    process::{
        model::{Ending, Process, ProcessKey},
        trace_context::SpanRef,
    },
    sinks::{Report, Sink},
};

const COMMANDS: &[&[&str]] = &[
    &["cc", "-O2", "-c", "src/main.c", "-o", "build/main.o"],
    &["python3", "steps/transform.py", "--input", "data/raw.csv"],
    &["sh", "-c", "make -j2 all"],
    &["git", "rev-parse", "HEAD"],
    &["cargo", "build", "--release"],
    &["sort", "-u", "listing.txt"],
    &["grep", "-c", "ERROR", "build.log"],
    &["tar", "czf", "artifact.tgz", "dist/"],
];

pub struct Template {
    events: [Event; 3],
    process: Process,
}

pub fn template(i: usize) -> Template {
    let argv: Vec<String> = COMMANDS[i % COMMANDS.len()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let exe = format!("/usr/bin/{}", argv[0]);
    let common = Common {
        flags: 0,
        ktime_ns: 0,
        start_ns: 0,
        parent_start_ns: 0,
        cgroup_id: 4242,
        tgid: 0,
        tid: 0,
        ppid: 1000,
        tree_ppid: 1000,
        uid: 0,
        comm: argv[0].clone(),
    };
    let exec = Exec {
        exe: Some(exe.clone()),
        cwd: Some("/work/pipeline".into()),
        filename: exe,
        argv_total_bytes: argv.iter().map(|a| a.len() as u32 + 1).sum(),
        argv,
        argv_truncated: false,
        hidden: false,
    };
    let status = if i.is_multiple_of(10) { 1 << 8 } else { 0 };
    let events = [
        Event {
            common: common.clone(),
            body: Body::Fork,
        },
        Event {
            common: common.clone(),
            body: Body::Exec(Box::new(exec.clone())),
        },
        Event {
            common: common.clone(),
            body: Body::Exit(Exit::from_status(status)),
        },
    ];
    let process = Process {
        key: ProcessKey {
            tgid: 0,
            start_ns: 0,
        },
        parent: Some(ProcessKey {
            tgid: 1000,
            start_ns: 1,
        }),
        ppid: 1000,
        comm: common.comm.clone(),
        uid: 0,
        cgroup_id: 4242,
        exec: Some(Arc::new(exec)),
        exec_inherited: false,
        exec_ns: None,
        exec_count: 1,
        previous_execs: Vec::new(),
        root: false,
        seeded: false,
        spanned: true,
        span: SpanRef {
            trace_id: 0xabcdef,
            span_id: 0,
        },
        parent_span: Some(7),
        ending: Some(Ending::Exited(Exit::from_status(status))),
        end_ns: None,
        last_sample: None,
        connections: Vec::new(),
        files: None,
        findings: Vec::new(),
        incomplete: false,
        failed_below: 0,
    };
    Template { events, process }
}

/// Where a stream starts and how its processes are spaced (monotonic ns).
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    pub start_ns: u64,
    pub step_ns: u64,
    /// The first process's number (its span id is this plus one): streams fed one after
    /// another continue it.
    pub first: u64,
}

/// Feeds `processes` processes (fork, exec, exit and the process row each) to `sink`, flushing
/// every 1024 processes as the agent does between bursts; does not close it.
pub fn feed(sink: &mut dyn Sink, processes: u64, templates: &mut [Template], stream: Stream) {
    for i in 0..processes {
        let n = stream.first + i;
        let t = &mut templates[(n as usize) % templates.len()];
        let pid = 2000 + (n % 4_000_000) as u32;
        let start = stream.start_ns + i * stream.step_ns;
        for (k, ev) in t.events.iter_mut().enumerate() {
            ev.common.tgid = pid;
            ev.common.tid = pid;
            ev.common.start_ns = start;
            ev.common.ktime_ns = start + k as u64 * 500_000 + (n % 7) * 100_000;
            sink.report(&Report::Event(ev)).expect("sink event");
        }
        t.process.key = ProcessKey {
            tgid: pid,
            start_ns: start,
        };
        t.process.span.span_id = n + 1;
        t.process.end_ns = Some(start + 1_000_000 + (n % 7) * 100_000);
        sink.report(&Report::Ended(&t.process))
            .expect("sink process");
        if n.is_multiple_of(1024) {
            sink.flush().expect("sink flush");
        }
    }
}
