//! The HTML report of one run: a single self-contained page (inline CSS, script and SVG, no
//! network) with the summary, failures and slowest steps rendered here, and the run's
//! processes as data for the page's script, which draws the timeline, the critical path, the
//! CPU and memory curves and the details of a clicked process.

use std::collections::HashMap;

use askama::Template;
use serde::Serialize;

use crate::{
    analysis::{
        critical_path::critical_path,
        run::{Proc, RunView, Status},
        summary::Summary,
        usage::{Sample, curves},
    },
    present::{
        summary::{cut, ending},
        units,
    },
    query::load::LoadedRun,
};

/// Buckets of the run-wide CPU and memory curves.
const CURVE_BUCKETS: usize = 600;
/// Characters of a process's arguments kept in the page; the Parquet files have all of them.
const ARGV_CHARS: usize = 2048;
/// Points of one process's own curve at most (evenly thinned), and of all processes together.
const SAMPLES_PER_PROCESS: usize = 240;
const SAMPLES_TOTAL: usize = 200_000;
/// Rows of the lists above the timeline.
const TOP: usize = 10;
const FAILURES_LISTED: usize = 50;
/// Characters of a command in those lists.
const COMMAND_WIDTH: usize = 140;

/// A process named in a list, linked to its bar in the timeline.
struct Link {
    proc: usize,
    command: String,
    status: &'static str,
    /// What the list says about it: its duration, share, or how it ended.
    note: String,
}

/// A finding, linked to its process's bar (whose panel draws its memory and CPU curves).
struct FindingLink {
    proc: Option<usize>,
    severity: &'static str,
    kind: String,
    subject: String,
    summary: String,
    /// About the whole run: its CPU curve beside the neighbours' (inline SVG).
    curve: Option<String>,
}

/// A step charted against its history: slower than usual, or one of the run's slowest.
struct HistoryChart {
    step: String,
    slower: bool,
    note: String,
    svg: String,
}

/// Steps charted at most.
const HISTORY_CHARTS: usize = 6;

#[derive(Template)]
#[template(path = "report.html")]
struct Page {
    title: String,
    run_id: String,
    root: Option<Link>,
    facts: Vec<(&'static str, String)>,
    chain: Vec<Link>,
    findings: Vec<FindingLink>,
    history: Vec<HistoryChart>,
    failures: Vec<Link>,
    more_failures: usize,
    slowest: Vec<Link>,
    critical: Vec<Link>,
    /// Per step: files it left behind, their bytes, the first paths.
    outputs: Vec<(String, usize, String, Vec<String>)>,
    /// Per step, most bytes first: bytes read, files.
    readers: Vec<(String, String, u64)>,
    files_note: String,
    processes: usize,
    style: &'static str,
    script: &'static str,
    /// The run as JSON, safe inside a `<script>` element.
    data: String,
}

/// The processes as columns (one array per field, a value per process): the compact form
/// that keeps a 10,000-process page small.
#[derive(Serialize, Default)]
struct Columns {
    /// Microseconds from the run's start.
    start: Vec<i64>,
    dur: Vec<i64>,
    /// Index of the parent process, -1 for a root.
    parent: Vec<i64>,
    pid: Vec<u32>,
    ppid: Vec<u32>,
    /// Indexes into `strings`.
    status: Vec<usize>,
    ended: Vec<usize>,
    binary: Vec<usize>,
    cwd: Vec<Option<usize>>,
    /// Microseconds of CPU.
    cpu_user: Vec<Option<i64>>,
    cpu_system: Vec<Option<i64>>,
    rss: Vec<Option<i64>>,
    /// Bytes read and written at the storage layer, sent and received over the network.
    read: Vec<Option<i64>>,
    written: Vec<Option<i64>>,
    sent: Vec<Option<i64>>,
    received: Vec<Option<i64>>,
    argv: Vec<Vec<String>>,
    /// The shell-quoted command where it is not the arguments joined by spaces.
    command: Vec<Option<String>>,
    depth: Vec<usize>,
}

#[derive(Serialize)]
struct Data {
    run_id: String,
    wall_us: i64,
    strings: Vec<String>,
    procs: Columns,
    /// Tree order: a parent, then each child's subtree in start order.
    order: Vec<usize>,
    /// The steps (as the run's summary chooses them): the page opens collapsed to them.
    steps: Vec<usize>,
    /// Critical path segments, flat: process, start µs, end µs.
    critical: Vec<i64>,
    curves: CurveData,
    /// Processes with their own samples, flat per process: [process, t µs…, rss…, cpu µs…].
    samples: Vec<ProcessSamples>,
}

#[derive(Serialize)]
struct CurveData {
    step_us: i64,
    cpu_cores: Vec<f64>,
    rss_bytes: Vec<i64>,
}

#[derive(Serialize)]
struct ProcessSamples {
    proc: usize,
    time: Vec<i64>,
    rss: Vec<i64>,
    cpu: Vec<Option<i64>>,
}

/// Interned strings: statuses, endings, binaries and directories repeat across processes.
#[derive(Default)]
struct Strings {
    index: HashMap<String, usize>,
    list: Vec<String>,
}

impl Strings {
    fn id(&mut self, s: &str) -> usize {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        self.list.push(s.to_owned());
        self.index.insert(s.to_owned(), self.list.len() - 1);
        self.list.len() - 1
    }
}

fn micros(ns: i64) -> i64 {
    ns.div_euclid(1000)
}

fn cpu_micros(s: Option<f64>) -> Option<i64> {
    s.filter(|v| v.is_finite())
        .map(|v| (v * 1e6).round() as i64)
}

/// The arguments, cut after [`ARGV_CHARS`] characters with a note of what was left out.
fn capped_argv(argv: &[String]) -> Vec<String> {
    let mut left = ARGV_CHARS;
    let mut out = Vec::new();
    for (n, arg) in argv.iter().enumerate() {
        let len = arg.chars().count();
        if len > left {
            out.push(cut(arg, left.max(1)));
            let rest = argv.len() - n - 1;
            if rest > 0 {
                out.push(format!("… {rest} more arguments (otel-pipetrace query)"));
            }
            break;
        }
        left -= len;
        out.push(arg.clone());
    }
    out
}

/// The command as lists show it: a program run by its absolute path by its file name
/// (`python3 steps/load.py`, not `/root/.pyenv/versions/3.11.7/bin/python3 steps/load.py`);
/// the details keep the whole of it.
fn short_command(p: &Proc) -> String {
    let Some(program) = p.argv.first().filter(|a| a.starts_with('/')) else {
        return p.command.clone();
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    match p.command.strip_prefix(program.as_str()) {
        Some(rest) if !name.is_empty() && (rest.is_empty() || rest.starts_with(' ')) => {
            format!("{name}{rest}")
        }
        _ => p.command.clone(),
    }
}

fn link(run: &RunView, i: usize, note: String) -> Link {
    let p = &run.procs[i];
    Link {
        proc: i,
        command: cut(&short_command(p), COMMAND_WIDTH),
        status: p.status.as_str(),
        note,
    }
}

fn data(loaded: &LoadedRun, segments: &[crate::analysis::critical_path::Segment]) -> Data {
    let run = &loaded.view;
    let start = run.start_ns();
    let mut strings = Strings::default();
    let mut c = Columns::default();
    let depths = run.depths();
    for p in &run.procs {
        c.start.push(micros(p.start_ns - start));
        c.dur.push(micros(p.duration_ns()));
        c.parent.push(p.parent.map_or(-1, |i| i as i64));
        c.pid.push(p.pid);
        c.ppid.push(p.ppid);
        c.status.push(strings.id(p.status.as_str()));
        c.ended.push(strings.id(&ending(p)));
        c.binary.push(strings.id(&p.binary));
        c.cwd.push(p.cwd.as_deref().map(|d| strings.id(d)));
        c.cpu_user.push(cpu_micros(p.cpu_user_s));
        c.cpu_system.push(cpu_micros(p.cpu_system_s));
        c.rss.push(p.peak_rss_bytes);
        c.read.push(p.traffic.read_bytes);
        c.written.push(p.traffic.write_bytes);
        c.sent.push(p.traffic.sent_bytes);
        c.received.push(p.traffic.received_bytes);
        let argv = capped_argv(&p.argv);
        c.command
            .push((p.command != argv.join(" ")).then(|| cut(&p.command, ARGV_CHARS)));
        c.argv.push(argv);
    }
    c.depth = depths;
    let curve = curves(run, &loaded.samples, CURVE_BUCKETS);
    Data {
        run_id: run.run_id.clone(),
        wall_us: micros(run.end_ns() - start),
        strings: strings.list,
        procs: c,
        order: run.tree_order(),
        steps: crate::analysis::summary::steps(run),
        critical: segments
            .iter()
            .flat_map(|s| {
                [
                    s.node as i64,
                    micros(s.start_ns - start),
                    micros(s.end_ns - start),
                ]
            })
            .collect(),
        curves: CurveData {
            step_us: micros(curve.step_ns).max(1),
            cpu_cores: curve
                .cpu_cores
                .iter()
                .map(|v| (v * 1000.0).round() / 1000.0)
                .collect(),
            rss_bytes: curve.rss_bytes,
        },
        samples: process_samples(run, &loaded.samples, start),
    }
}

/// Each process's own samples when it has at least two, thinned to a bounded number.
fn process_samples(run: &RunView, samples: &[Sample], start: i64) -> Vec<ProcessSamples> {
    let mut by_proc: Vec<Vec<&Sample>> = vec![Vec::new(); run.procs.len()];
    for s in samples.iter().filter(|s| s.proc < run.procs.len()) {
        by_proc[s.proc].push(s);
    }
    let mut out = Vec::new();
    let mut total = 0;
    for (proc, mut own) in by_proc.into_iter().enumerate() {
        if own.len() < 2 || total >= SAMPLES_TOTAL {
            continue;
        }
        own.sort_by_key(|s| s.time_ns);
        let stride = own.len().div_ceil(SAMPLES_PER_PROCESS);
        let kept: Vec<&Sample> = own.iter().step_by(stride).copied().collect();
        total += kept.len();
        out.push(ProcessSamples {
            proc,
            time: kept.iter().map(|s| micros(s.time_ns - start)).collect(),
            rss: kept.iter().map(|s| s.rss_bytes).collect(),
            cpu: kept.iter().map(|s| cpu_micros(s.cpu_s)).collect(),
        });
    }
    out
}

/// The steps whose own time makes up most of the critical path: processes with the same
/// step key together (a loop of 10,000 short commands is one line), each linked to its
/// process with the most time on the path.
fn critical_by_step(
    run: &RunView,
    segments: &[crate::analysis::critical_path::Segment],
    wall_ns: i64,
) -> Vec<Link> {
    let mut own: HashMap<usize, i64> = HashMap::new();
    for s in segments {
        *own.entry(s.node).or_default() += s.end_ns - s.start_ns;
    }
    // Per step key: total time, processes, and the process with the most.
    let mut steps: HashMap<&str, (i64, usize, (i64, usize))> = HashMap::new();
    for (&i, &t) in &own {
        let entry = steps
            .entry(run.procs[i].step_key.as_str())
            .or_insert((0, 0, (t, i)));
        entry.0 += t;
        entry.1 += 1;
        entry.2 = entry.2.max((t, i));
    }
    let mut steps: Vec<(i64, usize, usize)> = steps
        .into_values()
        .map(|(t, n, (_, i))| (t, n, i))
        .collect();
    steps.sort_by_key(|&(t, _, i)| (std::cmp::Reverse(t), i));
    steps
        .into_iter()
        .take(TOP)
        .map(|(t, n, i)| {
            let share = if wall_ns > 0 {
                t as f64 * 100.0 / wall_ns as f64
            } else {
                0.0
            };
            let times = if n > 1 {
                format!(", ×{n}")
            } else {
                String::new()
            };
            link(
                run,
                i,
                format!("{} ({share:.1} %){times}", units::duration_ns(t)),
            )
        })
        .collect()
}

/// JSON that cannot end the `<script>` element holding it: `<` only occurs inside strings,
/// where `\u003c` means the same.
fn script_json(value: &impl Serialize) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string(value)?.replace('<', "\\u003c"))
}

#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("writing the report's data: {0}")]
    Data(#[from] serde_json::Error),
    #[error("filling the report's page: {0}")]
    Page(#[from] askama::Error),
}

/// The page for `loaded`.
pub fn report(loaded: &LoadedRun) -> Result<String, HtmlError> {
    let run = &loaded.view;
    let summary = Summary::of(run, TOP);
    let start = run.start_ns();
    let wall_ns = run.end_ns() - start;
    let segments = critical_path(&run.nodes());

    let root = run.roots().first().map(|&r| {
        let p = &run.procs[r];
        let note = match p.status {
            Status::Ok => "succeeded".to_owned(),
            _ => ending(p),
        };
        link(run, r, note)
    });
    let started = humantime_serde::re::humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(start.max(0) as u64),
    );
    let facts = vec![
        ("started", started.to_string().replace('T', " ")),
        ("wall", units::duration_ns(wall_ns)),
        (
            "CPU",
            format!(
                "{} (user {}, system {})",
                units::duration(summary.cpu_user_s + summary.cpu_system_s),
                units::duration(summary.cpu_user_s),
                units::duration(summary.cpu_system_s)
            ),
        ),
        (
            "peak memory",
            summary
                .peak
                .map(|p| format!("{} ({})", units::bytes(p.bytes), run.procs[p.proc].binary))
                .unwrap_or_else(|| "-".into()),
        ),
        ("processes", summary.processes.to_string()),
        ("failed", summary.failed.to_string()),
        ("absorbed non-zero exits", summary.absorbed.to_string()),
        ("still running", summary.still_running.to_string()),
        ("exits lost", summary.exits_lost.to_string()),
    ];

    let chain = summary
        .failure_chain
        .iter()
        .map(|&i| link(run, i, ending(&run.procs[i])))
        .collect();
    let failed = run.failures();
    let failures = failed
        .iter()
        .take(FAILURES_LISTED)
        .map(|&i| {
            let p = &run.procs[i];
            link(
                run,
                i,
                format!(
                    "{} after {}, at +{}",
                    ending(p),
                    units::duration_ns(p.duration_ns()),
                    units::duration_ns(p.start_ns - start)
                ),
            )
        })
        .collect();
    let slowest = summary
        .slowest
        .iter()
        .map(|&i| {
            let p = &run.procs[i];
            link(
                run,
                i,
                format!(
                    "{}, from +{}",
                    units::duration_ns(p.duration_ns()),
                    units::duration_ns(p.start_ns - start)
                ),
            )
        })
        .collect();
    let critical = critical_by_step(run, &segments, wall_ns);
    let history = history_charts(loaded, &summary.slowest);
    let page = Page {
        title: root
            .as_ref()
            .map(|r| cut(&r.command, 80))
            .unwrap_or_else(|| run.run_id.clone()),
        run_id: run.run_id.clone(),
        root,
        facts,
        chain,
        findings: run
            .findings
            .iter()
            .map(|f| FindingLink {
                proc: run.finding_proc(f),
                severity: f.severity.as_str(),
                kind: crate::present::summary::kind_words(&f.kind),
                subject: crate::present::summary::finding_subject(run, f),
                summary: f.summary.clone(),
                curve: super::curve::svg(&f.evidence),
            })
            .collect(),
        history,
        more_failures: failed.len().saturating_sub(FAILURES_LISTED),
        failures,
        slowest,
        critical,
        outputs: outputs_by_step(run),
        readers: run
            .files
            .readers
            .iter()
            .take(TOP)
            .map(|r| (cut(&r.step, 80), units::bytes(r.bytes as i64), r.files))
            .collect(),
        files_note: if run.files.is_empty() {
            String::new()
        } else {
            format!(
                "{} files read, {} written, {} deleted",
                run.files.files_read, run.files.files_written, run.files.files_deleted
            )
        },
        processes: run.procs.len(),
        style: include_str!("html/report.css"),
        script: include_str!("html/report.js"),
        data: script_json(&data(loaded, &segments))?,
    };
    Ok(page.render()?)
}

/// Outputs (files the run left behind) per step, the steps with the most first.
fn outputs_by_step(run: &RunView) -> Vec<(String, usize, String, Vec<String>)> {
    let mut by_step: Vec<(String, usize, u64, Vec<String>)> = Vec::new();
    for o in &run.files.outputs {
        match by_step.last_mut() {
            Some(last) if last.0 == o.step => {
                last.1 += 1;
                last.2 += o.bytes.unwrap_or(0);
                if last.3.len() < 5 {
                    last.3.push(o.path.clone());
                }
            }
            _ => by_step.push((
                o.step.clone(),
                1,
                o.bytes.unwrap_or(0),
                vec![o.path.clone()],
            )),
        }
    }
    by_step.sort_by_key(|s| std::cmp::Reverse(s.1));
    by_step
        .into_iter()
        .take(TOP)
        .map(|(step, n, bytes, paths)| (cut(&step, 80), n, units::bytes(bytes as i64), paths))
        .collect()
}

/// The steps slower than usual, then the run's slowest steps, each with a chart of its
/// durations in the pipeline's last runs (steps without earlier runs are left out).
fn history_charts(loaded: &LoadedRun, slowest: &[usize]) -> Vec<HistoryChart> {
    let run = &loaded.view;
    let judge = loaded.judge;
    let mut steps: Vec<(String, Option<&crate::analysis::history::SlowerStep>)> = run
        .slower
        .iter()
        .map(|s| (s.step.clone(), Some(s)))
        .collect();
    for &i in slowest {
        let key = &run.procs[i].step_key;
        if !steps.iter().any(|(k, _)| k == key) {
            steps.push((key.clone(), None));
        }
    }
    steps
        .into_iter()
        .filter_map(|(step, slower)| {
            let series = loaded.step_history.get(&step)?;
            let svg = super::history_chart::svg(series, &judge)?;
            let this = series.last()?.1;
            let note = match slower {
                Some(s) => format!(
                    "{}, {}",
                    units::duration(this),
                    crate::present::summary::slower_than_usual(s, &run.run_id)
                ),
                None => {
                    let before: Vec<f64> = series[..series.len() - 1].iter().map(|r| r.1).collect();
                    format!(
                        "{} in this run, median {} over the {} runs before",
                        units::duration(this),
                        units::duration(crate::analysis::history::median(before)),
                        series.len() - 1
                    )
                }
            };
            Some(HistoryChart {
                step,
                slower: slower.is_some(),
                note,
                svg,
            })
        })
        .take(HISTORY_CHARTS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_cut_with_a_note() {
        let long = "x".repeat(ARGV_CHARS - 10);
        let argv = vec![long.clone(), "0123456789abc".into(), "tail".into()];
        let kept = capped_argv(&argv);
        assert_eq!(kept[0], long);
        assert_eq!(kept[1].chars().count(), 10);
        assert!(kept[1].ends_with('…'));
        assert_eq!(kept[2], "… 1 more arguments (otel-pipetrace query)");
        assert_eq!(capped_argv(&["a".into(), "b".into()]), ["a", "b"]);
    }

    #[test]
    fn programs_run_by_path_are_listed_by_name() {
        let mut p = crate::analysis::run::Proc {
            span_id: 1,
            parent_span_id: None,
            parent: None,
            pid: 1,
            ppid: 0,
            start_ns: 0,
            end_ns: 1,
            binary: "python3.11".into(),
            command: "/opt/py/bin/python3 steps/load.py 'a b'".into(),
            step_key: String::new(),
            argv: vec![
                "/opt/py/bin/python3".into(),
                "steps/load.py".into(),
                "a b".into(),
            ],
            cwd: None,
            status: Status::Ok,
            exit_code: Some(0),
            signal: None,
            cpu_user_s: None,
            cpu_system_s: None,
            peak_rss_bytes: None,
            exec_ns: None,
            traffic: Default::default(),
        };
        assert_eq!(short_command(&p), "python3 steps/load.py 'a b'");
        p.argv[0] = "make".into();
        p.command = "make -j2".into();
        assert_eq!(short_command(&p), "make -j2");
        // Quoted by the shell (a space in the path): left whole.
        p.argv = vec!["/opt/my tools/x".into()];
        p.command = "'/opt/my tools/x'".into();
        assert_eq!(short_command(&p), "'/opt/my tools/x'");
    }

    #[test]
    fn data_cannot_close_its_script_element() {
        let json = script_json(&vec!["</script><b>"]).unwrap();
        assert!(!json.contains('<'));
        let back: Vec<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ["</script><b>"]);
    }
}
