//! Parquet sink write rate: synthetic fork/exec/exit streams (a pool of realistic commands,
//! fresh pids and times for every process) written by the real sink, against the JSONL sink on
//! the same stream as the baseline of the same run. Prints one JSON object.
//!
//! cargo bench -p pipetrace --bench parquet_sink -- EVENTS DATA_DIR

use std::time::Instant;

use pipetrace::{
    capture::clock::Clock,
    sinks::{
        Sink,
        jsonl::JsonlSink,
        parquet::{ParquetSettings, ParquetSink},
    },
};

#[path = "synthetic.rs"]
mod synthetic;
use synthetic::{Stream, Template, template};

/// Feeds `events` events (fork, exec, exit per process, and the process row) to `sink` and
/// closes it: seconds taken.
fn feed(sink: &mut dyn Sink, events: u64, templates: &mut [Template]) -> f64 {
    let started = Instant::now();
    let stream = Stream {
        start_ns: 1_000_000_000,
        step_ns: 50_000,
        first: 0,
    };
    synthetic::feed(sink, events / 3, templates, stream);
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

    let mut jsonl = JsonlSink::create("/dev/null", clock, 64 << 20).expect("jsonl sink");
    let jsonl_s = feed(&mut jsonl, events, &mut templates);

    let _ = std::fs::remove_dir_all(&dir);
    let settings = ParquetSettings {
        dir: dir.clone(),
        host: "bench".into(),
        revision: None,
        flush_rows: 1_000_000,
        flush_bytes: usize::MAX,
        flush_interval: std::time::Duration::from_secs(3600),
        unwritten_bytes: 64 << 20,
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
