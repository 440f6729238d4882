//! One run read from the Parquet files into an [`RunView`] for the reports, the comparison and
//! the trace export, with its memory and CPU over time.

use std::collections::HashMap;

use duckdb::Connection;

use super::{Data, QueryError, Request, open, sql_error, views};
use crate::{
    analysis::{
        findings::Noted,
        run::{Proc, RunView, Status},
    },
    event::Severity,
};

pub use crate::analysis::usage::Sample;

#[derive(Debug, Clone, Default)]
pub struct LoadedRun {
    pub view: RunView,
    pub samples: Vec<Sample>,
    /// Each step's duration in the earlier runs of the pipeline and this one, oldest first
    /// (`(run id, seconds)`; empty until the history is read: [`super::history`]).
    pub step_history: std::collections::BTreeMap<String, Vec<(String, f64)>>,
    /// How the history was judged (`[history]`).
    pub judge: crate::analysis::history::Judge,
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s, 16).ok()
}

/// The run `run` names (`None`: the latest) in `data`. `all` is not one run.
pub fn load_run(data: &Data, run: Option<&str>, flag: &str) -> Result<LoadedRun, QueryError> {
    if run == Some("all") {
        return Err(QueryError::Input(format!(
            "{flag} all: name one run (an id or its start, latest, latest~N)"
        )));
    }
    let conn = open()?;
    let request = Request {
        name: "runs".into(),
        sql: None,
        data: data.location.clone(),
        run: run.map(str::to_owned),
        format: super::Format::Json,
        limit: None,
        min_duration_s: None,
        scope: data.scope.clone(),
        history: Default::default(),
        files: Default::default(),
    };
    let uses = concat!(
        include_str!("sql/run-processes.sql"),
        include_str!("sql/run-samples.sql"),
        include_str!("sql/run-findings.sql"),
        include_str!("sql/run-files.sql")
    );
    views(&conn, &request, uses).map_err(|e| match e {
        QueryError::Input(m) => QueryError::Input(m.replacen("--run", flag, 1)),
        other => other,
    })?;
    load_views(&conn)
}

/// Reads `run_processes` and `run_events` (already defined on `conn`).
pub fn load_views(conn: &Connection) -> Result<LoadedRun, QueryError> {
    let mut stmt = conn
        .prepare(include_str!("sql/run-processes.sql"))
        .map_err(sql_error)?;
    let mut run_id = String::new();
    let procs: Vec<Proc> = stmt
        .query_map([], |r| {
            let span: String = r.get(1)?;
            let parent: Option<String> = r.get(2)?;
            let argv: Option<String> = r.get(10)?;
            Ok((
                r.get::<_, String>(0)?,
                Proc {
                    span_id: hex(&span).unwrap_or_default(),
                    parent_span_id: parent.as_deref().and_then(hex),
                    parent: None,
                    pid: r.get(3)?,
                    ppid: r.get(4)?,
                    start_ns: r.get(5)?,
                    end_ns: r.get(6)?,
                    binary: r.get(7)?,
                    command: r.get(8)?,
                    step_key: r.get(9)?,
                    argv: argv
                        .and_then(|a| serde_json::from_str(&a).ok())
                        .unwrap_or_default(),
                    cwd: r.get(11)?,
                    status: Status::parse(&r.get::<_, String>(12)?),
                    exit_code: r.get(13)?,
                    signal: r.get(14)?,
                    cpu_user_s: r.get(15)?,
                    cpu_system_s: r.get(16)?,
                    peak_rss_bytes: r.get(17)?,
                    exec_ns: r.get(22)?,
                    traffic: crate::analysis::run::Traffic {
                        read_bytes: r.get(18)?,
                        write_bytes: r.get(19)?,
                        sent_bytes: r.get(20)?,
                        received_bytes: r.get(21)?,
                    },
                },
            ))
        })
        .map_err(sql_error)?
        .map(|row| {
            row.map(|(id, proc)| {
                run_id = id;
                proc
            })
        })
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    let view = RunView::new(run_id, procs)
        .with_findings(load_findings(conn)?)
        .with_files(load_files(conn)?);
    let samples = load_samples(conn, &view)?;
    Ok(LoadedRun {
        view,
        samples,
        step_history: Default::default(),
        judge: Default::default(),
    })
}

/// The run's files in short (nothing when the views have no `run_files`).
fn load_files(conn: &Connection) -> Result<crate::analysis::files::FilesSummary, QueryError> {
    use crate::analysis::files::{FileFact, FilesSummary};
    let Ok(mut stmt) = conn.prepare(include_str!("sql/run-files.sql")) else {
        return Ok(FilesSummary::default());
    };
    let facts: Vec<FileFact> = stmt
        .query_map([], |r| {
            Ok(FileFact {
                step: r.get(0)?,
                operation: r.get(1)?,
                path: r.get(2)?,
                target: r.get(3)?,
                bytes: r.get::<_, Option<i64>>(4)?.map(|b| b.max(0) as u64),
                count: r.get::<_, i64>(5)?.max(0) as u64,
                time_ns: r.get(6)?,
            })
        })
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    Ok(FilesSummary::of(&facts))
}

/// The run's findings (none when the views have no `run_findings`: data from before them).
fn load_findings(conn: &Connection) -> Result<Vec<Noted>, QueryError> {
    let Ok(mut stmt) = conn.prepare(include_str!("sql/run-findings.sql")) else {
        return Ok(Vec::new());
    };
    let rows = stmt
        .query_map([], |r| {
            Ok(Noted {
                time_ns: r.get(0)?,
                pid: r.get(1)?,
                start_ns: r.get(2)?,
                comm: r.get(3)?,
                kind: r.get(4)?,
                severity: Severity::parse(&r.get::<_, String>(5)?),
                summary: r.get(6)?,
                value: r.get(7)?,
                unit: r.get(8)?,
                evidence: r.get(9)?,
            })
        })
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    Ok(rows)
}

fn load_samples(conn: &Connection, view: &RunView) -> Result<Vec<Sample>, QueryError> {
    let events = conn.prepare("SELECT 1 FROM run_events LIMIT 0");
    if events.is_err() {
        // No events dataset: processes only.
        return Ok(Vec::new());
    }
    let by_key: HashMap<(u32, i64), usize> = view
        .procs
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.pid, p.start_ns), i))
        .collect();
    let mut stmt = conn
        .prepare(include_str!("sql/run-samples.sql"))
        .map_err(sql_error)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<f64>>(4)?,
            ))
        })
        .map_err(sql_error)?;
    let mut samples = Vec::new();
    for row in rows {
        let (pid, start_ns, time_ns, rss_bytes, cpu_s) = row.map_err(sql_error)?;
        if let Some(&proc) = by_key.get(&(pid, start_ns)) {
            samples.push(Sample {
                proc,
                time_ns,
                rss_bytes,
                cpu_s,
            });
        }
    }
    Ok(samples)
}

/// Every run in `data`, newest first, with the step key of its root command.
pub fn runs_by_root(data: &Data) -> Result<Vec<(String, String)>, QueryError> {
    let conn = open()?;
    let request = Request {
        name: "runs".into(),
        sql: None,
        data: data.location.clone(),
        run: Some("all".into()),
        format: super::Format::Json,
        limit: None,
        min_duration_s: None,
        scope: data.scope.clone(),
        history: Default::default(),
        files: Default::default(),
    };
    views(&conn, &request, include_str!("sql/runs.sql"))?;
    // The `runs` query, newest first, has each run's root step key.
    let runs = super::statement(&request)?;
    let mut stmt = conn
        .prepare(&format!("SELECT run_id, step_key FROM ({runs})"))
        .map_err(sql_error)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql_error)?
        .collect::<Result<_, _>>()
        .map_err(sql_error)?;
    Ok(rows)
}
