//! One run's processes as the analyses read them, whether loaded from the Parquet files or
//! recorded in memory by `run`: a flat list with each process's parent resolved to an index.

use std::collections::HashMap;

/// How a process ended, as the `status` column spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    Failed,
    Killed,
    /// Killed by the OOM killer.
    OomKilled,
    StillRunning,
    ExitLost,
}

impl Status {
    pub fn parse(s: &str) -> Self {
        match s {
            "ok" => Self::Ok,
            "failed" => Self::Failed,
            "killed" => Self::Killed,
            "oom_killed" => Self::OomKilled,
            "still_running" => Self::StillRunning,
            _ => Self::ExitLost,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Killed => "killed",
            Self::OomKilled => "oom_killed",
            Self::StillRunning => "still_running",
            Self::ExitLost => "exit_lost",
        }
    }

    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::Killed | Self::OomKilled)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Proc {
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
    /// Index of the tree parent in [`RunView::procs`], resolved by [`RunView::new`].
    pub parent: Option<usize>,
    pub pid: u32,
    pub ppid: u32,
    /// Nanoseconds on any clock shared by the run's processes.
    pub start_ns: i64,
    pub end_ns: i64,
    pub binary: String,
    pub command: String,
    pub step_key: String,
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub cpu_user_s: Option<f64>,
    pub cpu_system_s: Option<f64>,
    pub peak_rss_bytes: Option<i64>,
    /// When it executed its last image (same clock as `start_ns`); `None` when it ran its
    /// parent's image.
    pub exec_ns: Option<i64>,
    /// Bytes read from and written to storage, sent and received over the network (None: not
    /// measured).
    pub traffic: Traffic,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Traffic {
    pub read_bytes: Option<i64>,
    pub write_bytes: Option<i64>,
    pub sent_bytes: Option<i64>,
    pub received_bytes: Option<i64>,
}

impl Traffic {
    /// Storage bytes, read + written.
    pub fn storage(&self) -> Option<i64> {
        sum(self.read_bytes, self.write_bytes)
    }

    /// Network bytes, sent + received.
    pub fn network(&self) -> Option<i64> {
        sum(self.sent_bytes, self.received_bytes)
    }
}

fn sum(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

impl Proc {
    /// For tests: `command` (its own step) as span `span`, from `start_s` to `end_s`, exit 0,
    /// its whole lifetime on the CPU in user mode, 1 MiB peak.
    #[cfg(any(test, feature = "examples"))]
    pub fn sample(span: u64, command: &str, start_s: f64, end_s: f64) -> Self {
        Self {
            span_id: span,
            parent_span_id: None,
            parent: None,
            pid: span as u32,
            ppid: 1,
            start_ns: (start_s * 1e9) as i64,
            end_ns: (end_s * 1e9) as i64,
            binary: command.into(),
            command: command.into(),
            step_key: command.into(),
            argv: vec![command.into()],
            cwd: None,
            status: Status::Ok,
            exit_code: Some(0),
            signal: None,
            cpu_user_s: Some(end_s - start_s),
            cpu_system_s: None,
            peak_rss_bytes: Some(1 << 20),
            exec_ns: None,
            traffic: Traffic::default(),
        }
    }

    pub fn duration_ns(&self) -> i64 {
        (self.end_ns - self.start_ns).max(0)
    }

    pub fn cpu_s(&self) -> Option<f64> {
        match (self.cpu_user_s, self.cpu_system_s) {
            (None, None) => None,
            (u, s) => Some(u.unwrap_or(0.0) + s.unwrap_or(0.0)),
        }
    }
}

/// A run: its processes, parents before or after children, in any order.
#[derive(Debug, Clone, Default)]
pub struct RunView {
    pub run_id: String,
    pub procs: Vec<Proc>,
    /// What the diagnosis found, most severe first (see [`RunView::with_findings`]).
    pub findings: Vec<super::findings::Noted>,
    /// Steps slower than their own history (see [`RunView::with_slower`]).
    pub slower: Vec<super::history::SlowerStep>,
    /// Steps that failed in this run and are flaky by their history.
    pub flaky: Vec<super::history::FlakyStep>,
    /// What the steps read, wrote and left behind (see [`RunView::with_files`]).
    pub files: super::files::FilesSummary,
    children: Vec<Vec<usize>>,
    roots: Vec<usize>,
}

impl RunView {
    /// Resolves parents by span id; a parent outside the run makes a root.
    pub fn new(run_id: String, mut procs: Vec<Proc>) -> Self {
        procs.sort_by_key(|p| (p.start_ns, p.span_id));
        let index: HashMap<u64, usize> = procs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.span_id, i))
            .collect();
        let mut children = vec![Vec::new(); procs.len()];
        let mut roots = Vec::new();
        for (i, proc) in procs.iter_mut().enumerate() {
            let parent = proc
                .parent_span_id
                .and_then(|s| index.get(&s).copied())
                .filter(|&p| p != i);
            proc.parent = parent;
            match parent {
                Some(p) => children[p].push(i),
                None => roots.push(i),
            }
        }
        Self {
            run_id,
            procs,
            findings: Vec::new(),
            slower: Vec::new(),
            flaky: Vec::new(),
            files: Default::default(),
            children,
            roots,
        }
    }

    /// With the run's findings, sorted most severe first.
    pub fn with_findings(mut self, mut findings: Vec<super::findings::Noted>) -> Self {
        super::findings::sort(&mut findings);
        self.findings = findings;
        self
    }

    /// With the run's files in short.
    pub fn with_files(mut self, files: super::files::FilesSummary) -> Self {
        self.files = files;
        self
    }

    /// With the steps slower than usual, the largest change first.
    pub fn with_slower(mut self, mut slower: Vec<super::history::SlowerStep>) -> Self {
        slower.sort_by(|a, b| {
            let change = |s: &super::history::SlowerStep| s.duration_s - s.baseline.p50_s;
            change(b).total_cmp(&change(a)).then(a.step.cmp(&b.step))
        });
        self.slower = slower;
        self
    }

    /// With the steps that failed here and are flaky by their history.
    pub fn with_flaky(mut self, flaky: Vec<super::history::FlakyStep>) -> Self {
        self.flaky = flaky;
        self
    }

    /// The process a finding is about: its pid, started when the finding says (pids are
    /// reused), else the pid's only process.
    pub fn finding_proc(&self, f: &super::findings::Noted) -> Option<usize> {
        let pid = f.pid?;
        self.procs
            .iter()
            .position(|p| p.pid == pid && Some(p.start_ns) == f.start_ns)
            .or_else(|| self.procs.iter().position(|p| p.pid == pid))
    }

    /// Whether the failure of `i` was absorbed: the nearest ancestor that did not fail with
    /// it exited 0 (`probe || true`, a shim's probe). A failure that reaches a root, or an
    /// ancestor still running or whose exit was lost, was not absorbed.
    pub fn absorbed(&self, i: usize) -> bool {
        let mut node = i;
        for _ in 0..self.procs.len() {
            let Some(parent) = self.procs[node].parent else {
                return false;
            };
            match self.procs[parent].status {
                Status::Ok => return true,
                s if s.is_failure() => node = parent,
                _ => return false,
            }
        }
        false
    }

    /// Failures that made the run fail (not absorbed by an ancestor), in start order.
    pub fn failures(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| self.procs[i].status.is_failure() && !self.absorbed(i))
            .collect()
    }

    /// Non-zero exits and fatal signals an ancestor absorbed, in start order.
    pub fn absorbed_failures(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| self.procs[i].status.is_failure() && self.absorbed(i))
            .collect()
    }

    /// Children of `i` that count when choosing steps: those it started after its last exec.
    /// A version-manager shim (pyenv, asdf, rbenv) forks helpers, then executes the real
    /// program: the helpers belong to the shim, the process is the program's step.
    pub fn work_children(&self, i: usize) -> Vec<usize> {
        let exec = self.procs[i].exec_ns;
        self.children[i]
            .iter()
            .copied()
            .filter(|&c| exec.is_none_or(|at| self.procs[c].start_ns >= at))
            .collect()
    }

    /// Processes without a parent in the run, in start order.
    pub fn roots(&self) -> &[usize] {
        &self.roots
    }

    /// Children of `i`, in start order.
    pub fn children(&self, i: usize) -> &[usize] {
        &self.children[i]
    }

    pub fn start_ns(&self) -> i64 {
        self.procs.iter().map(|p| p.start_ns).min().unwrap_or(0)
    }

    pub fn end_ns(&self) -> i64 {
        self.procs.iter().map(|p| p.end_ns).max().unwrap_or(0)
    }

    /// Depth of every process (roots are 0).
    pub fn depths(&self) -> Vec<usize> {
        let mut depth = vec![0; self.procs.len()];
        // Tree order visits a parent before its children.
        for i in self.tree_order() {
            if let Some(p) = self.procs[i].parent {
                depth[i] = depth[p] + 1;
            }
        }
        depth
    }

    /// Every process in tree order (a parent, then each child's subtree in start order).
    pub fn tree_order(&self) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.procs.len());
        let mut stack: Vec<usize> = self.roots.iter().rev().copied().collect();
        while let Some(i) = stack.pop() {
            order.push(i);
            stack.extend(self.children[i].iter().rev());
        }
        order
    }

    /// The critical path's nodes for [`crate::analysis::critical_path::critical_path`].
    pub fn nodes(&self) -> Vec<super::critical_path::Node> {
        self.procs
            .iter()
            .map(|p| super::critical_path::Node {
                start_ns: p.start_ns,
                end_ns: p.end_ns.max(p.start_ns),
                parent: p.parent,
            })
            .collect()
    }
}

impl From<&crate::model::Process> for Proc {
    /// A process the tracker has ended, on the monotonic clock.
    fn from(p: &crate::model::Process) -> Self {
        let end_ns = p.end_ns.unwrap_or(p.key.start_ns).max(p.key.start_ns);
        let exec = p.exec.as_deref();
        let exit = p.exit();
        let usage = exit.map(|x| x.usage);
        let command = p.command_line();
        Proc {
            span_id: p.span.span_id,
            parent_span_id: p.parent_span,
            parent: None,
            pid: p.key.tgid,
            ppid: p.parent.map_or(p.ppid, |k| k.tgid),
            start_ns: p.key.start_ns as i64,
            end_ns: end_ns as i64,
            binary: p.executable_name().to_owned(),
            step_key: super::step_key::step_key(&command),
            command,
            argv: exec.map(|e| e.argv.clone()).unwrap_or_default(),
            cwd: exec.and_then(|e| e.cwd.clone()),
            status: Status::parse(p.status()),
            exit_code: exit.and_then(|x| x.code()),
            signal: exit.and_then(|x| x.signal()),
            cpu_user_s: usage.map(|u| u.cpu_user_ns as f64 / 1e9),
            cpu_system_s: usage.map(|u| u.cpu_system_ns as f64 / 1e9),
            peak_rss_bytes: usage.map(|u| u.peak_rss_bytes as i64),
            exec_ns: p.exec_ns.filter(|_| !p.exec_inherited).map(|n| n as i64),
            traffic: exit.map_or_else(Traffic::default, |x| {
                let a = x.activity;
                let n = |v: Option<u64>| v.map(|v| v as i64);
                Traffic {
                    read_bytes: n(a.read_bytes),
                    write_bytes: n(a.write_bytes),
                    sent_bytes: n(a.network_sent_bytes),
                    received_bytes: n(a.network_received_bytes),
                }
            }),
        }
    }
}
