//! The Markdown report of one run, for a GitHub job summary or a GitLab note: the summary, a
//! mermaid `gantt` of the steps, the slowest steps, failures with their chain, and the
//! processes that used the most CPU and memory.

use std::fmt::Write;

use crate::{
    analysis::{
        run::{Proc, RunView, Status},
        summary::{Summary, steps},
    },
    present::{
        summary::{cut, ending},
        units,
    },
};

/// Steps drawn in the Gantt chart at most (the longest, in start order).
const GANTT_STEPS: usize = 40;
/// Rows per table.
const TOP: usize = 10;
/// Characters of a command in a table cell.
const COMMAND_WIDTH: usize = 80;

/// A command in a table cell: cut, `|` escaped, in code.
/// Steps that took longer than their own history says is usual.
fn slower(out: &mut String, run: &RunView) {
    if run.slower.is_empty() {
        return;
    }
    let _ = writeln!(out, "### 🐢 Slower than usual\n");
    let _ = writeln!(
        out,
        "| step | this run | usual (median) | spread | change | since |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|---|");
    for s in &run.slower {
        let b = &s.baseline;
        let since = if s.since_run == run.run_id {
            "this run".to_owned()
        } else {
            format!("`{}` ({} runs)", s.since_run, s.runs_since)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} over {} runs | ± {} | +{} (+{:.0} %) | {since} |",
            code(&s.step),
            units::duration(s.duration_s),
            units::duration(b.p50_s),
            b.runs,
            units::duration(b.spread_s),
            units::duration(s.duration_s - b.p50_s),
            if b.p50_s > 0.0 {
                (s.duration_s - b.p50_s) / b.p50_s * 100.0
            } else {
                0.0
            },
        );
    }
    out.push('\n');
}

fn code(text: &str) -> String {
    // One line: a newline (a `python -c` program) would end the table row.
    let text: String = cut(text, COMMAND_WIDTH)
        .replace('|', "\\|")
        .replace('`', "'")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("`{text}`")
}

/// Plain text in a table cell: one line, `|` escaped, Markdown and HTML characters shown as
/// they are.
fn cell(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('*', "\\*")
        .replace('_', "\\_")
        .replace('`', "'")
}

/// A task name mermaid accepts: no `:` (the separator), `;` or `#` (comments, entities).
fn gantt_name(p: &Proc) -> String {
    let name: String = cut(&p.command, 48)
        .chars()
        .map(|c| match c {
            ':' | ';' | '#' | '%' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        p.binary.clone()
    } else {
        name
    }
}

fn status_word(p: &Proc) -> String {
    match p.status {
        Status::Ok => "ok".into(),
        _ => ending(p),
    }
}

/// The report; `title` names the run (its root command and id).
/// The report with a warning under its title for each file output that did not write
/// everything (known to `run` only: the data read back cannot say what is missing from it).
pub fn with_output_warnings(report: String, outputs: &[crate::health::OutputSnapshot]) -> String {
    let warnings: Vec<String> = outputs
        .iter()
        .filter_map(crate::health::OutputSnapshot::describe)
        .map(|w| format!("> ⚠️ Incomplete record: {w}\n"))
        .collect();
    if warnings.is_empty() {
        return report;
    }
    match report.split_once("\n\n") {
        Some((title, rest)) => format!("{title}\n\n{}\n{rest}", warnings.concat()),
        None => format!("{}\n{report}", warnings.concat()),
    }
}

pub fn report(run: &RunView) -> String {
    let summary = Summary::of(run, TOP);
    let mut out = String::new();
    let root = run.roots().first().map(|&r| &run.procs[r]);
    let start = run.start_ns();
    let wall_ns = run.end_ns() - start;
    let _ = writeln!(
        out,
        "## otel-pipetrace: {} {}\n",
        root.map(|r| code(&r.command)).unwrap_or_default(),
        match root.map(|r| r.status) {
            Some(Status::Ok) => "✅ succeeded".to_owned(),
            Some(_) => format!("❌ {}", root.map(ending).unwrap_or_default()),
            None => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "| run | wall | CPU | peak memory | processes | failed | still running | exits lost |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|");
    let _ = writeln!(
        out,
        "| `{}` | {} | {} | {} | {} | {} | {} | {} |\n",
        run.run_id,
        units::duration_ns(wall_ns),
        units::duration(summary.cpu_user_s + summary.cpu_system_s),
        summary
            .peak
            .map(|p| format!("{} ({})", units::bytes(p.bytes), run.procs[p.proc].binary))
            .unwrap_or_else(|| "-".into()),
        summary.processes,
        summary.failed,
        summary.still_running,
        summary.exits_lost,
    );

    if !summary.failure_chain.is_empty() {
        let _ = writeln!(out, "### Failure\n");
        for (depth, &i) in summary.failure_chain.iter().enumerate() {
            let p = &run.procs[i];
            let _ = writeln!(
                out,
                "{}- {} {} (pid {}, after {})",
                "  ".repeat(depth),
                ending(p),
                code(&p.command),
                p.pid,
                units::duration_ns(p.duration_ns())
            );
        }
        out.push('\n');
    }

    findings(&mut out, run);

    slower(&mut out, run);

    if !run.flaky.is_empty() {
        let _ = writeln!(out, "### 🎲 Flaky: failed here, passes elsewhere\n");
        for f in &run.flaky {
            let _ = writeln!(
                out,
                "- {}: {}",
                code(&f.step),
                crate::present::summary::flaky_words(f)
            );
        }
        out.push('\n');
    }

    gantt(&mut out, run, start);

    let _ = writeln!(out, "### Slowest steps\n");
    let _ = writeln!(out, "| duration | start | status | command |");
    let _ = writeln!(out, "|--:|--:|---|---|");
    for &i in &summary.slowest {
        let p = &run.procs[i];
        let _ = writeln!(
            out,
            "| {} | +{} | {} | {} |",
            units::duration_ns(p.duration_ns()),
            units::duration_ns(p.start_ns - start),
            status_word(p),
            code(&p.command)
        );
    }
    out.push('\n');

    let failures: Vec<&Proc> = run.failures().into_iter().map(|i| &run.procs[i]).collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "### Failures ({})\n", failures.len());
        let _ = writeln!(out, "| ended | pid | chain | command |");
        let _ = writeln!(out, "|---|--:|---|---|");
        for p in failures.iter().take(TOP) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                ending(p),
                p.pid,
                chain(run, p).replace('|', "\\|"),
                code(&p.command)
            );
        }
        if failures.len() > TOP {
            let _ = writeln!(
                out,
                "\n{} more: `otel-pipetrace query failures --run {}`",
                failures.len() - TOP,
                run.run_id
            );
        }
        out.push('\n');
    }
    if summary.absorbed > 0 {
        let _ = writeln!(
            out,
            "{} non-zero exit{} absorbed by {} parent (not failures of the run): `otel-pipetrace query failures --run {}`\n",
            summary.absorbed,
            if summary.absorbed == 1 { "" } else { "s" },
            if summary.absorbed == 1 {
                "its"
            } else {
                "their"
            },
            run.run_id
        );
    }

    top_table(&mut out, run, "Most CPU", "CPU", |p| {
        p.cpu_s()
            .filter(|c| *c > 0.0)
            .map(|c| (c, units::duration(c)))
    });
    top_table(&mut out, run, "Most memory", "peak RSS", |p| {
        p.peak_rss_bytes.map(|b| (b as f64, units::bytes(b)))
    });
    let read_write = |a: Option<i64>, b: Option<i64>, first: &str, second: &str| {
        format!(
            "{first} {} / {second} {}",
            units::bytes(a.unwrap_or(0)),
            units::bytes(b.unwrap_or(0))
        )
    };
    top_table(&mut out, run, "Most storage I/O", "bytes", |p| {
        let t = p.traffic;
        t.storage().filter(|b| *b > 0).map(|b| {
            (
                b as f64,
                read_write(t.read_bytes, t.write_bytes, "read", "written"),
            )
        })
    });
    top_table(&mut out, run, "Most network traffic", "bytes", |p| {
        let t = p.traffic;
        t.network().filter(|b| *b > 0).map(|b| {
            (
                b as f64,
                read_write(t.sent_bytes, t.received_bytes, "sent", "received"),
            )
        })
    });
    files(&mut out, run);
    out
}

/// Outputs listed per step at most (all: `otel-pipetrace query outputs`).
const OUTPUTS_PER_STEP: usize = 5;

/// What each step left behind, and which steps read the most.
fn files(out: &mut String, run: &RunView) {
    let f = &run.files;
    if f.is_empty() {
        return;
    }
    if !f.outputs.is_empty() {
        let _ = writeln!(
            out,
            "### Outputs ({})
",
            f.outputs.len()
        );
        let _ = writeln!(out, "| step | files | bytes | paths |");
        let _ = writeln!(out, "|---|--:|--:|---|");
        let mut by_step: Vec<(&str, Vec<&crate::analysis::files::Output>)> = Vec::new();
        for o in &f.outputs {
            match by_step.last_mut() {
                Some((step, list)) if *step == o.step => list.push(o),
                _ => by_step.push((&o.step, vec![o])),
            }
        }
        by_step.sort_by_key(|(_, list)| std::cmp::Reverse(list.len()));
        for (step, list) in by_step.iter().take(TOP) {
            let bytes: u64 = list.iter().filter_map(|o| o.bytes).sum();
            let mut paths: Vec<String> = list
                .iter()
                .take(OUTPUTS_PER_STEP)
                .map(|o| code(&o.path))
                .collect();
            if list.len() > OUTPUTS_PER_STEP {
                paths.push(format!("{} more", list.len() - OUTPUTS_PER_STEP));
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                code(step),
                list.len(),
                units::bytes(bytes as i64),
                paths.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "
Every output with its writer: `otel-pipetrace query outputs --run {}`
",
            run.run_id
        );
    }
    if !f.readers.is_empty() {
        let _ = writeln!(
            out,
            "### Heaviest readers
"
        );
        let _ = writeln!(out, "| read | files | step |");
        let _ = writeln!(out, "|--:|--:|---|");
        for r in f.readers.iter().take(5) {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                units::bytes(r.bytes as i64),
                r.files,
                code(&r.step)
            );
        }
        let _ = writeln!(
            out,
            "
{} files read, {} written, {} deleted: `otel-pipetrace query files --run {}`
",
            f.files_read, f.files_written, f.files_deleted, run.run_id
        );
    }
}

/// `dash > make > cc`: the binaries above `p`, root first.
fn chain(run: &RunView, p: &Proc) -> String {
    let mut names = vec![p.binary.clone()];
    let mut at = p.parent;
    while let Some(i) = at {
        names.push(run.procs[i].binary.clone());
        at = run.procs[i].parent;
        if names.len() > 64 {
            break;
        }
    }
    names.reverse();
    names.join(" > ")
}

fn top_table(
    out: &mut String,
    run: &RunView,
    title: &str,
    column: &str,
    value: impl Fn(&Proc) -> Option<(f64, String)>,
) {
    let mut rows: Vec<(f64, String, &Proc)> = run
        .procs
        .iter()
        .filter_map(|p| value(p).map(|(v, text)| (v, text, p)))
        .collect();
    if rows.is_empty() {
        return;
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let _ = writeln!(out, "### {title}\n");
    let _ = writeln!(out, "| {column} | pid | command |");
    let _ = writeln!(out, "|--:|--:|---|");
    for (_, text, p) in rows.iter().take(5) {
        let _ = writeln!(out, "| {text} | {} | {} |", p.pid, code(&p.command));
    }
    out.push('\n');
}

/// A mermaid `gantt` of the steps: offsets in milliseconds from the run's start.
fn gantt(out: &mut String, run: &RunView, start: i64) {
    let mut shown = steps(run);
    if shown.is_empty() {
        return;
    }
    let total = shown.len();
    shown.sort_by_key(|&i| std::cmp::Reverse(run.procs[i].duration_ns()));
    shown.truncate(GANTT_STEPS);
    shown.sort_by_key(|&i| (run.procs[i].start_ns, i));
    let _ = writeln!(out, "### Timeline\n");
    let _ = writeln!(
        out,
        "```mermaid\ngantt\n    dateFormat x\n    axisFormat %M:%S.%L\n    section steps"
    );
    for (n, &i) in shown.iter().enumerate() {
        let p = &run.procs[i];
        let from = (p.start_ns - start) / 1_000_000;
        // Mermaid draws nothing for an empty task: at least a millisecond.
        let to = ((p.end_ns - start) / 1_000_000).max(from + 1);
        let tag = match p.status {
            Status::Ok => "done, ",
            Status::Failed | Status::Killed | Status::OomKilled => "crit, ",
            Status::StillRunning => "active, ",
            Status::ExitLost => "",
        };
        let _ = writeln!(out, "    {} :{tag}s{n}, {from}, {to}", gantt_name(p));
    }
    out.push_str("```\n");
    if total > shown.len() {
        let _ = writeln!(out, "\nThe {} longest of {total} steps.", shown.len());
    }
    out.push('\n');
}

/// The findings, most severe first: a table with the process, the number and what is wrong.
fn findings(out: &mut String, run: &RunView) {
    if run.findings.is_empty() {
        return;
    }
    let _ = writeln!(out, "### Findings\n");
    let _ = writeln!(out, "| severity | finding | process | value | what |");
    let _ = writeln!(out, "|---|---|---|--:|---|");
    for f in &run.findings {
        let icon = match f.severity {
            crate::event::Severity::Critical => "🛑 critical",
            crate::event::Severity::Warning => "⚠️ warning",
            crate::event::Severity::Info => "ℹ️ info",
        };
        let value = f
            .value
            .map(|v| format!("{v} {}", f.unit))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "| {icon} | {} | {} | {value} | {} |",
            super::summary::kind_words(&f.kind),
            code(&super::summary::finding_subject(run, f)),
            cell(&f.summary),
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::OutputHealth;

    #[test]
    fn an_incomplete_output_is_warned_under_the_title() {
        let report = "## otel-pipetrace: `make` ✅ succeeded\n\n| run | wall |\n".to_owned();
        let ok = OutputHealth::new("jsonl", "/x", "lines");
        assert_eq!(
            with_output_warnings(report.clone(), &[ok.snapshot()]),
            report
        );
        let full = OutputHealth::new("parquet", "/d", "processes");
        full.received(3);
        full.dropped(3, 9);
        full.failed(
            &std::io::Error::from_raw_os_error(libc::ENOSPC),
            "/d/processes",
        );
        let warned = with_output_warnings(report, &[full.snapshot()]);
        assert_eq!(
            warned,
            "## otel-pipetrace: `make` ✅ succeeded\n\n> ⚠️ Incomplete record: parquet: 0 of 3 processes written, 3 dropped, 1 write failed (disk full: /d/processes)\n\n| run | wall |\n"
        );
    }
}
