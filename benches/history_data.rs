//! A long history of one pipeline, made by the real code: RUNS runs of a STEPS-step pipeline
//! (`sh pipeline.sh` starting `./step.sh step-NNN` one after the other), spread over HOSTS
//! hosts, each run written by its own real Parquet sink (as `run` writes it: its own files,
//! fork, exec and exit events and a process row per process) and rolled by the real spool at
//! its end, then — with a bucket — uploaded by the real uploader. The steps take 0.1 to 0.3 s,
//! varying by ±10 %; step 7 is 50 % slower in the last 100 runs, step 9 fails one run in four (on each
//! commit: a commit every 8 runs), step 11 fails every time. Prints one JSON object.
//!
//! cargo bench -p pipetrace --bench history_data -- RUNS STEPS HOSTS DIR [S3_URL ENDPOINT]
//! (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)

use std::{path::PathBuf, sync::Arc, time::Instant};

#[path = "upload.rs"]
mod upload;

use pipetrace::{
    capture::clock::{Clock, monotonic_ns},
    event::{Body, Common, Event, Exec, Exit, Usage},
    process::{
        model::{Ending, Process, ProcessKey},
        trace_context::SpanRef,
    },
    sinks::{
        Report, Sink,
        parquet::{ParquetSettings, ParquetSink},
    },
    upload::spool::Spool,
};

/// The run whose step 7 is the first slower one, counted back from the newest.
const SLOWER_LAST: u64 = 100;

/// A number in [0, 1) from `n`, the same every time.
fn unit(n: u64) -> f64 {
    let x = n
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(29)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn process(argv: &[String], pid: u32, span: (u64, u64), parent: Option<u64>) -> Process {
    let exec = Exec {
        exe: Some(format!("/usr/bin/{}", argv[0].trim_start_matches("./"))),
        cwd: Some("/work/pipeline".into()),
        filename: argv[0].clone(),
        argv_total_bytes: argv.iter().map(|a| a.len() as u32 + 1).sum(),
        argv: argv.to_vec(),
        argv_truncated: false,
        hidden: false,
    };
    Process {
        key: ProcessKey {
            tgid: pid,
            start_ns: 0,
        },
        parent: None,
        ppid: 1000,
        comm: argv[0].trim_start_matches("./").chars().take(15).collect(),
        uid: 0,
        cgroup_id: 4242,
        exec: Some(Arc::new(exec)),
        exec_inherited: false,
        exec_ns: None,
        exec_count: 1,
        previous_execs: Vec::new(),
        root: parent.is_none(),
        seeded: false,
        spanned: true,
        span: SpanRef {
            trace_id: u128::from(span.0),
            span_id: span.1,
        },
        parent_span: parent,
        ending: None,
        end_ns: None,
        last_sample: None,
        connections: Vec::new(),
        files: None,
        findings: Vec::new(),
        incomplete: false,
        failed_below: 0,
    }
}

/// Reports `p` as the agent does: fork, exec, exit, then its row.
fn report(sink: &mut ParquetSink, p: &mut Process, start: u64, end: u64, status: u32) {
    let exit = Exit {
        usage: Usage {
            cpu_user_ns: ((end - start) / 10).max(1),
            cpu_system_ns: (end - start) / 40,
            peak_rss_bytes: 8 << 20,
        },
        ..Exit::from_status(status)
    };
    p.key.start_ns = start;
    p.end_ns = Some(end);
    p.ending = Some(Ending::Exited(exit));
    let common = Common {
        flags: 0,
        ktime_ns: start,
        start_ns: start,
        parent_start_ns: 0,
        cgroup_id: 4242,
        tgid: p.key.tgid,
        tid: p.key.tgid,
        ppid: 1000,
        tree_ppid: 1000,
        uid: 0,
        comm: p.comm.clone(),
    };
    let exec = p.exec.as_deref().cloned().expect("exec");
    for (at, body) in [
        (start, Body::Fork),
        (start + 100_000, Body::Exec(Box::new(exec))),
        (end, Body::Exit(exit)),
    ] {
        let event = Event {
            common: Common {
                ktime_ns: at,
                ..common.clone()
            },
            body,
        };
        sink.report(&Report::Event(&event)).expect("event");
    }
    sink.report(&Report::Ended(p)).expect("process");
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let runs: u64 = arg(0, "10000").parse().expect("RUNS");
    let steps: u64 = arg(1, "200").parse().expect("STEPS");
    let hosts: u64 = arg(2, "20").parse().expect("HOSTS");
    let root = PathBuf::from(arg(3, "/tmp/pipetrace-history"));
    let url = args.get(4).cloned();
    let endpoint = arg(5, "http://127.0.0.1:8333");

    let clock = Clock::new();
    // Runs end by now, spread over what the machine's uptime allows (at most a minute apart).
    let now = monotonic_ns();
    let spacing = ((now - 1_000_000_000) / (runs + 1)).min(60_000_000_000);
    let first_start = now - spacing * (runs + 1);
    let step_argv: Vec<Vec<String>> = (0..steps)
        .map(|k| vec!["./step.sh".into(), format!("step-{k:03}")])
        .collect();
    let root_argv: Vec<String> = vec!["/bin/sh".into(), "./pipeline.sh".into()];
    // 0.1 to 0.3 s a step (runs on different hosts overlap in time, as a fleet's do).
    let base_ns = |k: u64| 1e8 * (1.0 + 2.0 * (k % 10) as f64 / 9.0);

    let started = Instant::now();
    let (mut processes, mut files) = (0u64, 0u64);
    let mut spools = Vec::new();
    for r in 0..runs {
        let host = format!("host-{:03}", r % hosts);
        let dir = root.join(&host);
        let revision = format!("{:040x}", r / 8 + 1);
        let settings = ParquetSettings {
            dir: dir.clone(),
            host: host.clone(),
            revision: Some(revision),
            flush_rows: 1_000_000,
            flush_bytes: usize::MAX,
            flush_interval: std::time::Duration::from_secs(7 * 24 * 3600),
            unwritten_bytes: 64 << 20,
        };
        let run_id = format!("{:016x}", 0x5eed_0000_0000_0000 + r);
        let mut sink = ParquetSink::create(settings, clock, &run_id).expect("parquet sink");
        let trace = 0xabc0_0000 + r;
        let run_start = first_start + r * spacing;
        let root_span = (r << 16) + 1;
        let mut at = run_start + 1_000_000;
        for k in 0..steps {
            let mut d = base_ns(k) * (0.9 + 0.2 * unit(r * steps + k));
            if k == 7 && r >= runs.saturating_sub(SLOWER_LAST) {
                d *= 1.5;
            }
            let status = match k {
                9 if r % 4 == 3 => 1 << 8,
                11 => 2 << 8,
                _ => 0,
            };
            let pid = 3000 + (k as u32);
            let mut p = process(
                &step_argv[k as usize],
                pid,
                (trace, root_span + 1 + k),
                Some(root_span),
            );
            let end = at + d as u64;
            report(&mut sink, &mut p, at, end, status);
            at = end + 200_000;
            processes += 1;
        }
        let mut root_p = process(&root_argv, 2999, (trace, root_span), None);
        report(&mut sink, &mut root_p, run_start, at + 1_000_000, 0);
        processes += 1;
        sink.close().expect("close");
        files += 2;
        let spool = Spool::new(&dir, &host);
        spool.roll().expect("roll");
        if !spools.iter().any(|(d, _)| *d == dir) {
            spools.push((dir, host));
        }
    }
    let write_s = started.elapsed().as_secs_f64();

    let (objects, bytes, upload_s) = match url {
        Some(url) => upload::upload_all(&url, &endpoint, &spools),
        None => (0, 0, 0.0),
    };
    println!(
        "{{\"runs\": {runs}, \"steps\": {steps}, \"hosts\": {hosts}, \"processes\": {processes}, \"files\": {files}, \"write_s\": {write_s:.3}, \"objects\": {objects}, \"bytes\": {bytes}, \"upload_s\": {upload_s:.3}}}"
    );
}
