//! A process as the tracker knows it: identity, place in the tree, the image it runs, how it
//! ended and its span. What every sink reads.

use std::sync::Arc;

use crate::event::{Connection, Exec, Exit, Finding, Sample};

/// Where a process sits in the distributed trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRef {
    pub trace_id: u128,
    pub span_id: u64,
}

/// A pid is reused; a pid with its start time is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessKey {
    pub tgid: u32,
    pub start_ns: u64,
}

/// Why a process left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// One per process and Copy throughout the tracker: the exit's measurements (≈ 200 bytes)
// inline are cheaper than a box per process.
#[allow(clippy::large_enum_variant)]
pub enum Ending {
    Exited(Exit),
    /// The exit record never arrived (lost), but `/proc` says the process is gone.
    Lost,
    /// Still running when tracing stopped.
    StillRunning,
}

/// argv as one line, quoted as a shell needs it: `sh -c 'sleep 1; exit 3'` reads as three
/// words, not five.
pub fn command_line(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}

/// Images a process ran before its current one, beyond which only a count is kept.
pub const MAX_PREVIOUS_EXECS: usize = 8;

#[derive(Debug, Clone)]
pub struct Process {
    pub key: ProcessKey,
    /// Nearest visible ancestor when first seen (hidden processes skipped); `None` for a root.
    pub parent: Option<ProcessKey>,
    /// tgid of the real parent at the latest event (changes when reparented).
    pub ppid: u32,
    pub comm: String,
    pub uid: u32,
    pub cgroup_id: u64,
    /// The image it runs now: its last exec, or, before any, the image it was forked from
    /// (what `/proc/PID/exe` and `cmdline` show for a forked child).
    pub exec: Option<Arc<Exec>>,
    /// `exec` was inherited from the parent at fork, not executed by this process.
    pub exec_inherited: bool,
    /// CLOCK_MONOTONIC ns of the last exec.
    pub exec_ns: Option<u64>,
    pub exec_count: u32,
    /// Earlier images `(exec time, image)`, oldest first, at most [`MAX_PREVIOUS_EXECS`].
    pub previous_execs: Vec<(u64, Arc<Exec>)>,
    /// A scope root (the `run` command or a matched root).
    pub root: bool,
    /// Known from `/proc` at start-up: the start time is accurate to a clock tick only.
    pub seeded: bool,
    /// Has its own span (false for processes that predate the agent and were not seeded).
    pub spanned: bool,
    pub span: SpanRef,
    /// Span of the tree parent, or of the run; `None` starts a trace.
    pub parent_span: Option<u64>,
    pub ending: Option<Ending>,
    /// CLOCK_MONOTONIC ns of the exit (or of the moment it was found gone / tracing stopped).
    pub end_ns: Option<u64>,
    /// The latest periodic sample of the live process.
    pub last_sample: Option<Sample>,
    /// Its TCP connections, one per distinct peer it listed (`capture.network_peers`), with
    /// the CLOCK_MONOTONIC ns of each.
    pub connections: Vec<(u64, Connection)>,
    /// The files it read, wrote, created, renamed and deleted (`None`: none recorded).
    pub files: Option<Box<crate::file_log::FileLog>>,
    /// What the diagnosis found about it, with the CLOCK_MONOTONIC ns of each (span events).
    pub findings: Vec<(u64, Arc<Finding>)>,
    /// Some of its records were lost (its fork; its exit when it ended as lost): what is known
    /// of it is partial.
    pub incomplete: bool,
    /// Failures below it (its failed children, with the failures they passed on) whose fate
    /// its own ending decides: passed on when it fails too, absorbed when it exits 0.
    pub failed_below: u64,
}

impl Process {
    pub fn exit(&self) -> Option<Exit> {
        match self.ending {
            Some(Ending::Exited(exit)) => Some(exit),
            _ => None,
        }
    }

    /// `ok`, `failed` (non-zero exit), `killed` (signal), `still_running`, `exit_lost`.
    pub fn status(&self) -> &'static str {
        match self.ending {
            Some(Ending::Exited(exit)) if exit.oom_killed => "oom_killed",
            Some(Ending::Exited(exit)) if exit.signal().is_some() => "killed",
            Some(Ending::Exited(exit)) if exit.failed() => "failed",
            Some(Ending::Exited(_)) => "ok",
            Some(Ending::Lost) => "exit_lost",
            Some(Ending::StillRunning) | None => "still_running",
        }
    }

    /// This process as it stands at `now_ns`, still running (for sinks at shutdown).
    pub fn still_running_at(&self, now_ns: u64) -> Process {
        let mut p = self.clone();
        p.ending = Some(Ending::StillRunning);
        p.end_ns = Some(now_ns);
        p
    }

    /// argv of the current image, or the comm when it never executed while traced.
    pub fn command_line(&self) -> String {
        match &self.exec {
            Some(exec) if !exec.argv.is_empty() => command_line(&exec.argv),
            _ => self.comm.clone(),
        }
    }

    /// Base name of the executable file (`process.executable.name`), else the comm. A file
    /// that no longer has a name (`/memfd:runc (deleted)`, an unlinked binary) is named
    /// without the suffix.
    pub fn executable_name(&self) -> &str {
        self.exec
            .as_ref()
            .and_then(|e| e.exe.as_deref())
            .and_then(|path| path.rsplit('/').next())
            .map(|name| name.strip_suffix(" (deleted)").unwrap_or(name))
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.comm)
    }
}
