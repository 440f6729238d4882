//! The summary `run` prints on stderr when the command is done: what a CI log reader needs
//! without opening anything else.

use std::fmt::Write;

use super::units;
use crate::analysis::{
    findings::Noted,
    run::{Proc, RunView},
    summary::Summary,
};

/// How the run as a whole went, known to `run` rather than read from the processes.
pub struct RunFacts<'a> {
    pub run_id: &'a str,
    pub wall_s: f64,
    /// The run was written to Parquet, where `report` and `query` read it.
    pub parquet: bool,
}

/// How one process ended, for a person: `status 3`, `SIGKILL`, `killed by the OOM killer`,
/// `still running`.
pub fn ending(p: &Proc) -> String {
    if p.status == crate::analysis::run::Status::OomKilled {
        return "killed by the OOM killer".into();
    }
    match (p.exit_code, p.signal) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(sig)) => {
            crate::event::signal_name(sig).map_or_else(|| format!("signal {sig}"), str::to_owned)
        }
        _ => p.status.as_str().replace('_', " "),
    }
}

/// `text` cut to `width` characters, with an ellipsis.
pub fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Lines after the one-line total: where to look, wall and CPU time, peak memory, the slowest
/// steps, the failure chain and the findings. `width` is where lines are cut.
pub fn details(run: &RunView, s: &Summary, facts: &RunFacts, width: usize) -> String {
    let mut out = String::new();
    let label = |out: &mut String, name: &str| {
        let _ = write!(out, "  {name:<9}");
    };
    label(&mut out, "run");
    let _ = write!(out, "{}", facts.run_id);
    if facts.parquet {
        let short = &facts.run_id[..facts.run_id.len().min(8)];
        let _ = write!(out, "  (otel-pipetrace report --run {short})");
    }
    out.push('\n');
    label(&mut out, "wall");
    let _ = writeln!(out, "{}", units::duration(facts.wall_s));
    label(&mut out, "CPU");
    let _ = writeln!(
        out,
        "{} (user {}, system {})",
        units::duration(s.cpu_user_s + s.cpu_system_s),
        units::duration(s.cpu_user_s),
        units::duration(s.cpu_system_s)
    );
    if let Some(peak) = s.peak {
        let p = &run.procs[peak.proc];
        label(&mut out, "memory");
        let _ = writeln!(
            out,
            "{} peak RSS, largest process ({} pid {})",
            units::bytes(peak.bytes),
            p.binary,
            p.pid
        );
    }
    let f = &run.files;
    if !f.is_empty() {
        label(&mut out, "files");
        let out_bytes: u64 = f.outputs.iter().filter_map(|o| o.bytes).sum();
        let read_bytes: u64 = f.readers.iter().map(|r| r.bytes).sum();
        let line = format!(
            "{} output{} ({}), {} written, {} read ({}), {} deleted",
            f.outputs.len(),
            if f.outputs.len() == 1 { "" } else { "s" },
            units::bytes(out_bytes as i64),
            f.files_written,
            f.files_read,
            units::bytes(read_bytes as i64),
            f.files_deleted
        );
        let _ = writeln!(out, "{}", cut(&line, width.saturating_sub(11)));
    }
    let durations: Vec<String> = s
        .slowest
        .iter()
        .map(|&i| units::duration_ns(run.procs[i].duration_ns()))
        .collect();
    let pad = durations
        .iter()
        .map(|d| d.chars().count())
        .max()
        .unwrap_or(0);
    for (n, (&i, d)) in s.slowest.iter().zip(&durations).enumerate() {
        label(&mut out, if n == 0 { "slowest" } else { "" });
        let line = format!("{d:>pad$}  {}", run.procs[i].command);
        let _ = writeln!(out, "{}", cut(&line, width.saturating_sub(11)));
    }
    let widest = run
        .slower
        .iter()
        .map(|s| units::duration(s.duration_s).chars().count())
        .max()
        .unwrap_or(0);
    for (n, slower) in run.slower.iter().enumerate() {
        label(&mut out, if n == 0 { "slower" } else { "" });
        let line = format!(
            "{:>widest$}  {}  {}",
            units::duration(slower.duration_s),
            slower_than_usual(slower, &run.run_id),
            slower.step
        );
        let _ = writeln!(out, "{}", cut(&line, width.saturating_sub(11)));
    }
    for (n, f) in run.flaky.iter().enumerate() {
        label(&mut out, if n == 0 { "flaky" } else { "" });
        let line = format!("{}  {}", flaky_words(f), f.step);
        let _ = writeln!(out, "{}", cut(&line, width.saturating_sub(11)));
    }
    for (n, &i) in s.failure_chain.iter().enumerate() {
        let p = &run.procs[i];
        label(&mut out, if n == 0 { "failure" } else { "" });
        let arrow = if n == 0 {
            String::new()
        } else {
            format!("{}└ ", "  ".repeat(n - 1))
        };
        let line = format!("{arrow}{}  {} (pid {})", ending(p), p.command, p.pid);
        let _ = writeln!(out, "{}", cut(&line, width.saturating_sub(11)));
    }
    findings(&mut out, run, width);
    out
}

/// `usual 402 ms ± 9 ms over 20 runs, +52 %, since this run`: a step slower than its history.
pub fn slower_than_usual(s: &crate::analysis::history::SlowerStep, this_run: &str) -> String {
    let b = &s.baseline;
    let since = if s.since_run == this_run {
        "since this run".to_owned()
    } else {
        format!(
            "since run {} ({} runs)",
            &s.since_run[..s.since_run.len().min(8)],
            s.runs_since
        )
    };
    format!(
        "usual {} ± {} over {} runs, +{:.0} %, {since}",
        units::duration(b.p50_s),
        units::duration(b.spread_s),
        b.runs,
        if b.p50_s > 0.0 {
            (s.duration_s - b.p50_s) / b.p50_s * 100.0
        } else {
            0.0
        },
    )
}

/// `failed 7 of 28 runs, passed and failed on one commit`: why a failed step is flaky.
pub fn flaky_words(f: &crate::analysis::history::FlakyStep) -> String {
    format!(
        "failed {} of {} runs, {}",
        f.failures,
        f.runs,
        if f.same_commit {
            "passed and failed on one commit"
        } else {
            "its outcome flips from run to run"
        }
    )
}

/// `memory_leak` → `memory leak`.
pub fn kind_words(kind: &str) -> String {
    kind.replace('_', " ")
}

/// Who a finding is about: `leak.py (pid 4242)`, or `the run` for one about the run or host.
pub fn finding_subject(run: &RunView, f: &Noted) -> String {
    match (run.finding_proc(f), f.pid) {
        (Some(i), _) => format!("{} (pid {})", run.procs[i].binary, run.procs[i].pid),
        (None, Some(pid)) => format!("{} (pid {pid})", f.comm),
        (None, None) => "the run".into(),
    }
}

/// The `findings` block: most severe first, one line each — severity, kind, the process and
/// what is wrong with its number.
fn findings(out: &mut String, run: &RunView, width: usize) {
    let kinds: Vec<String> = run.findings.iter().map(|f| kind_words(&f.kind)).collect();
    let pad = kinds.iter().map(|k| k.chars().count()).max().unwrap_or(0);
    for (n, (f, kind)) in run.findings.iter().zip(&kinds).enumerate() {
        let _ = write!(out, "  {:<9}", if n == 0 { "findings" } else { "" });
        let line = format!(
            "{:<8}  {kind:<pad$}  {}: {}",
            f.severity.as_str(),
            finding_subject(run, f),
            f.summary
        );
        let _ = writeln!(out, "{}", cut(&line, width.saturating_sub(11)));
    }
}
