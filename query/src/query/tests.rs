//! The query side without a kernel: runs recorded by the real Parquet sink from scripted
//! events, asked through the same `run` and `script` as `otel-pipetrace query`. No root needed.

use std::{path::Path, time::Duration};

use arrow::array::{Array, RecordBatch, StringArray};

use super::{DataScope, Format, QueryError, Request, run, script};
use crate::event::{Body, Common, Event, Exec, Exit};
use pipetrace::{
    capture::clock::Clock,
    process::tracker::{Tracker, TrackerOptions},
    sinks::{
        Report, Sink,
        parquet::{ParquetSettings, ParquetSink},
    },
};

/// One run: a shell (pid `base`) that runs `make` and `cc` (exit `cc_status`), all starting
/// `start_s` seconds after boot.
fn record_run(dir: &Path, run_id: &str, base: u32, start_s: u64, cc_status: u32) {
    let settings = ParquetSettings {
        dir: dir.to_path_buf(),
        host: "builder".into(),
        revision: None,
        flush_rows: 1_000,
        flush_bytes: usize::MAX,
        flush_interval: Duration::from_secs(3600),
        unwritten_bytes: 64 << 20,
    };
    let mut sink = ParquetSink::create(settings, Clock::new(), run_id).unwrap();
    let mut tracker = Tracker::new(TrackerOptions::default());
    let start = start_s * 1_000_000_000;
    let procs = [
        (base, 1, "sh", "/bin/sh", 0),
        (base + 1, base, "make", "/usr/bin/make", 0),
        (base + 2, base + 1, "cc", "/usr/bin/cc", cc_status),
    ];
    let mut at = start;
    let mut events = Vec::new();
    for (i, (pid, ppid, comm, exe, _)) in procs.iter().enumerate() {
        let common = Common {
            ktime_ns: at,
            start_ns: start + i as u64,
            ppid: *ppid,
            tree_ppid: *ppid,
            ..Common::sample(*pid, start + i as u64, at, comm)
        };
        events.push(Event {
            common: common.clone(),
            body: Body::Fork,
        });
        events.push(Event {
            common: Common {
                ktime_ns: at + 1_000,
                ..common
            },
            body: Body::Exec(Box::new(Exec {
                exe: Some((*exe).into()),
                cwd: Some("/src".into()),
                filename: (*exe).into(),
                argv: vec![(*comm).into()],
                argv_truncated: false,
                argv_total_bytes: comm.len() as u32 + 1,
                hidden: false,
            })),
        });
        at += 10_000_000;
    }
    // Children end first; `cc` runs 300 ms, `make` 500 ms, the shell 800 ms.
    for (i, (pid, ppid, comm, _, status)) in procs.iter().enumerate().rev() {
        let common = Common {
            ppid: *ppid,
            tree_ppid: *ppid,
            ..Common::sample(
                *pid,
                start + i as u64,
                start + 800_000_000 - i as u64 * 250_000_000,
                comm,
            )
        };
        events.push(Event {
            common,
            body: Body::Exit(Exit::from_status(*status)),
        });
    }
    for event in events {
        sink.report(&Report::Event(&event)).unwrap();
        if let Some(process) = tracker.apply(event) {
            sink.report(&Report::Ended(&process)).unwrap();
        }
    }
    sink.close().unwrap();
}

/// Three runs: `a1b2…` (oldest, cc fails), `a1c3…`, `d4e5…` (latest).
fn three_runs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    record_run(dir.path(), "a1b2000000000001", 100, 10, 1 << 8);
    record_run(dir.path(), "a1c3000000000002", 200, 20, 0);
    record_run(dir.path(), "d4e5000000000003", 300, 30, 0);
    dir
}

fn request(data: &Path, name: &str, run: Option<&str>) -> Request {
    Request {
        name: name.into(),
        sql: None,
        data: data.to_path_buf(),
        run: run.map(str::to_owned),
        format: Format::Json,
        limit: None,
        min_duration_s: None,
        scope: DataScope::default(),
        history: Default::default(),
        files: Default::default(),
    }
}

fn sql(data: &Path, run: Option<&str>, statement: &str) -> Result<Vec<RecordBatch>, QueryError> {
    run_request(Request {
        sql: Some(statement.into()),
        ..request(data, "sql", run)
    })
}

fn run_request(request: Request) -> Result<Vec<RecordBatch>, QueryError> {
    run(&request)
}

/// The strings of the first column, in order.
fn strings(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let column = b.column(0);
        let text = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).unwrap();
        let text = text.as_any().downcast_ref::<StringArray>().unwrap();
        out.extend((0..text.len()).map(|i| text.value(i).to_owned()));
    }
    out
}

fn run_of(data: &Path, selector: Option<&str>) -> Result<Vec<String>, QueryError> {
    sql(data, selector, "SELECT DISTINCT run_id FROM run_processes").map(|b| strings(&b))
}

fn input_error(result: Result<Vec<String>, QueryError>) -> String {
    match result {
        Err(QueryError::Input(text)) => text,
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn a_run_is_selected_by_recency_by_id_or_by_the_start_of_one_id() {
    let data = three_runs();
    let d = data.path();
    assert_eq!(run_of(d, None).unwrap(), ["d4e5000000000003"]);
    assert_eq!(run_of(d, Some("latest")).unwrap(), ["d4e5000000000003"]);
    assert_eq!(run_of(d, Some("latest~1")).unwrap(), ["a1c3000000000002"]);
    assert_eq!(run_of(d, Some("latest~2")).unwrap(), ["a1b2000000000001"]);
    assert_eq!(run_of(d, Some("a1b")).unwrap(), ["a1b2000000000001"]);
    assert_eq!(
        run_of(d, Some("a1c3000000000002")).unwrap(),
        ["a1c3000000000002"]
    );
    let mut all = run_of(d, Some("all")).unwrap();
    all.sort();
    assert_eq!(all.len(), 3);

    let ambiguous = input_error(run_of(d, Some("a1")));
    assert!(
        ambiguous.contains("the start of several runs (a1b2000000000001, a1c3000000000002)"),
        "{ambiguous}"
    );
    let unknown = input_error(run_of(d, Some("ffff")));
    assert!(
        unknown.starts_with("--run ffff: no such run in "),
        "{unknown}"
    );
    let too_far = input_error(run_of(d, Some("latest~3")));
    assert!(too_far.contains("there are not 4 runs"), "{too_far}");
}

#[test]
fn a_run_selector_that_is_not_an_id_is_refused_before_any_sql() {
    let data = three_runs();
    for bad in ["x' OR '1'='1", "a1;DROP", "", "latest~x"] {
        let text = input_error(run_of(data.path(), Some(bad)));
        assert!(text.starts_with(&format!("--run {bad:?}: ")), "{text}");
    }
}

#[test]
fn named_queries_answer_from_the_recorded_rows() {
    let data = three_runs();
    let d = data.path();
    // The oldest run: its failure, with the chain of parents that lead to it.
    let failures = run(&request(d, "failures", Some("a1b"))).unwrap();
    let rows: usize = failures.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 1, "{failures:?}");
    let latest_failures = run(&request(d, "failures", None)).unwrap();
    assert_eq!(
        latest_failures
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>(),
        0
    );
    // Durations of the latest run: one row per executable.
    let durations = run(&request(d, "durations", None)).unwrap();
    let mut names = strings(&durations);
    names.sort();
    assert_eq!(names, ["cc", "make", "sh"]);
    // The slowest process of the latest run is the shell (800 ms).
    let slowest = sql(
        d,
        None,
        "SELECT executable_name FROM run_processes ORDER BY duration_s DESC LIMIT 1",
    )
    .unwrap();
    assert_eq!(strings(&slowest), ["sh"]);
}

#[test]
fn the_printed_script_names_the_run_and_holds_no_parameter() {
    let data = three_runs();
    let text = script(&request(data.path(), "durations", Some("a1c"))).unwrap();
    assert!(text.contains("WHERE run_id = 'a1c3000000000002'"), "{text}");
    assert!(!text.contains('?'), "{text}");
    assert!(text.trim_end().ends_with(';'), "{text}");
}

#[test]
fn data_that_is_missing_not_parquet_or_not_ours_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let text = input_error(run_of(&missing, None));
    assert!(
        text.contains("nowhere: no such file or directory"),
        "{text}"
    );

    let empty = tempfile::tempdir().unwrap();
    let text = input_error(run_of(empty.path(), None));
    assert!(text.contains(": no Parquet data (expected "), "{text}");

    let processes = dir.path().join("data/processes");
    std::fs::create_dir_all(&processes).unwrap();
    std::fs::write(processes.join("x.parquet"), "not parquet at all").unwrap();
    let text = input_error(run_of(&dir.path().join("data"), None));
    assert!(
        text.contains(
            "x.parquet: not a Parquet file (it does not start with the Parquet magic bytes)"
        ),
        "{text}"
    );

    // Parquet, but another program's: its columns are named.
    let foreign = dir.path().join("foreign.parquet");
    let batch = RecordBatch::try_from_iter([(
        "unrelated",
        std::sync::Arc::new(StringArray::from(vec!["v"])) as std::sync::Arc<dyn Array>,
    )])
    .unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&foreign).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let text = input_error(run_of(&foreign, None));
    assert!(
        text.contains("not an otel-pipetrace events or processes file (its columns: unrelated)"),
        "{text}"
    );
}

#[test]
fn a_single_processes_file_is_recognised_by_its_columns() {
    let data = three_runs();
    let file = std::fs::read_dir(data.path().join("processes"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    let runs = run_of(&file, Some("all")).unwrap();
    assert_eq!(runs.len(), 1);
}

#[test]
fn the_data_scope_keeps_one_hosts_rows() {
    let data = three_runs();
    let scoped = |host: &str| {
        run_request(Request {
            sql: Some("SELECT count(*) FROM processes".into()),
            scope: DataScope {
                host: Some(host.into()),
                ..DataScope::default()
            },
            ..request(data.path(), "sql", Some("all"))
        })
        .map(|b| strings(&b))
    };
    assert_eq!(scoped("builder").unwrap(), ["9"]);
    assert_eq!(scoped("someone-else").unwrap(), ["0"]);
}
