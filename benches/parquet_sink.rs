//! Parquet sink write rate: synthetic fork/exec/exit streams (a pool of realistic commands,
//! fresh pids and times for every process) written by the real sink, against the JSONL sink on
//! the same stream as the baseline of the same run. Prints one JSON object.
//!
//! cargo bench -p exporter --bench parquet_sink -- EVENTS DATA_DIR

use std::{sync::Arc, time::Instant};

use pipetrace::{
    capture::{
        clock::Clock,
        decode::{Body, Common, Event, Exec, Exit},
    },
    process::{
        model::{Ending, Process, ProcessKey},
        trace_context::SpanRef,
    },
    sinks::{
        Report, Sink,
        jsonl::JsonlSink,
        parquet::{ParquetSettings, ParquetSink},
    },
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

struct Template {
    events: [Event; 3],
    process: Process,
}

fn template(i: usize) -> Template {
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
        incomplete: false,
    };
    Template { events, process }
}

/// Feeds `events` events (fork, exec, exit per process, and the process row) to `sink`.
fn feed(sink: &mut dyn Sink, events: u64, templates: &mut [Template]) -> f64 {
    let started = Instant::now();
    let processes = events / 3;
    let mut t_ns: u64 = 1_000_000_000;
    for n in 0..processes {
        let t = &mut templates[(n as usize) % templates.len()];
        let pid = 2000 + (n % 4_000_000) as u32;
        let start = t_ns;
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
        t_ns += 50_000;
    }
    sink.close().expect("sink close");
    started.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let events: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(3_000_000);
    let dir = std::path::PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "/tmp/pipetrace-bench".into()),
    );
    let mut templates: Vec<Template> = (0..64).map(template).collect();
    let clock = Clock::new();

    let mut jsonl = JsonlSink::create("/dev/null", clock).expect("jsonl sink");
    let jsonl_s = feed(&mut jsonl, events, &mut templates);

    let _ = std::fs::remove_dir_all(&dir);
    let settings = ParquetSettings {
        dir: dir.clone(),
        host: "bench".into(),
        flush_rows: 1_000_000,
        flush_interval: std::time::Duration::from_secs(3600),
    };
    let mut parquet =
        ParquetSink::create(settings, clock, "benchrun00000001").expect("parquet sink");
    let parquet_s = feed(&mut parquet, events, &mut templates);
    let totals = parquet.totals();
    // What was fed must be what was written: three event rows and one process row per process.
    let processes = events / 3;
    assert_eq!(totals.event_rows, 3 * processes, "event rows written");
    assert_eq!(totals.process_rows, processes, "process rows written");
    println!(
        "{{\"events\": {events}, \"processes\": {}, \"parquet_s\": {parquet_s:.3}, \"jsonl_s\": {jsonl_s:.3}, \"files\": {}, \"event_rows\": {}, \"process_rows\": {}}}",
        events / 3,
        totals.files,
        totals.event_rows,
        totals.process_rows
    );
}
