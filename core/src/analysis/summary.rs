//! What a run amounts to at a glance: totals, the slowest steps and the failure that set the
//! exit status.

use super::run::{Proc, RunView, Status};

/// The largest process by peak memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    pub proc: usize,
    pub bytes: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    pub processes: usize,
    /// Failures that made the run fail (see [`RunView::absorbed`]).
    pub failed: usize,
    /// Non-zero exits an ancestor absorbed.
    pub absorbed: usize,
    pub still_running: usize,
    pub exits_lost: usize,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub peak: Option<Peak>,
    /// The slowest steps, slowest first.
    pub slowest: Vec<usize>,
    /// From the root to the process whose failure set the root's status.
    pub failure_chain: Vec<usize>,
}

impl Summary {
    pub fn of(run: &RunView, slowest: usize) -> Self {
        let mut s = Summary {
            processes: run.procs.len(),
            ..Default::default()
        };
        for (i, p) in run.procs.iter().enumerate() {
            match p.status {
                Status::Failed | Status::Killed | Status::OomKilled if run.absorbed(i) => {
                    s.absorbed += 1
                }
                Status::Failed | Status::Killed | Status::OomKilled => s.failed += 1,
                Status::StillRunning => s.still_running += 1,
                Status::ExitLost => s.exits_lost += 1,
                Status::Ok => {}
            }
            s.cpu_user_s += p.cpu_user_s.unwrap_or(0.0);
            s.cpu_system_s += p.cpu_system_s.unwrap_or(0.0);
            if let Some(bytes) = p.peak_rss_bytes
                && s.peak.is_none_or(|peak| bytes > peak.bytes)
            {
                s.peak = Some(Peak { proc: i, bytes });
            }
        }
        let mut steps = steps(run);
        steps.sort_by_key(|&i| (std::cmp::Reverse(run.procs[i].duration_ns()), i));
        steps.truncate(slowest);
        s.slowest = steps;
        s.failure_chain = failure_chain(run);
        s
    }
}

/// The steps of the run: below each root, past wrappers with a single child (`bash -c`,
/// `env`, `timeout`), the processes that the first level with several children ran. A root
/// without children is its own step. Children started before a process's last exec do not
/// count ([`RunView::work_children`]): a shim's helpers make no step of their own.
pub fn steps(run: &RunView) -> Vec<usize> {
    let mut out = Vec::new();
    for &root in run.roots() {
        let mut node = root;
        let mut children = run.work_children(node);
        while let [only] = children[..] {
            node = only;
            children = run.work_children(node);
        }
        if children.is_empty() {
            out.push(node);
        } else {
            out.extend(children);
        }
    }
    out
}

/// Whether `child`'s ending explains `parent`'s: the same exit code, or the shell's 128+N for
/// a child killed by signal N, or the same signal.
fn explains(parent: &Proc, child: &Proc) -> bool {
    match (
        parent.exit_code,
        parent.signal,
        child.exit_code,
        child.signal,
    ) {
        (Some(p), _, Some(c), _) => p == c,
        (Some(p), _, None, Some(sig)) => p == 128 + sig,
        (None, Some(p), _, Some(c)) => p == c,
        _ => false,
    }
}

/// The chain of failures from the first root down: at each level the failed child whose
/// ending explains its parent's (the latest to end before the parent did), else the latest
/// failed child to end before the parent. Empty when the root did not fail.
pub fn failure_chain(run: &RunView) -> Vec<usize> {
    let Some(&root) = run
        .roots()
        .iter()
        .find(|&&r| run.procs[r].status.is_failure())
    else {
        return Vec::new();
    };
    let mut chain = vec![root];
    let mut node = root;
    loop {
        let parent = &run.procs[node];
        let before_end = |&&c: &&usize| {
            let child = &run.procs[c];
            child.status.is_failure() && child.end_ns <= parent.end_ns
        };
        let failed: Vec<usize> = run
            .children(node)
            .iter()
            .filter(before_end)
            .copied()
            .collect();
        let last =
            |list: &mut dyn Iterator<Item = usize>| list.max_by_key(|&c| (run.procs[c].end_ns, c));
        let next = last(
            &mut failed
                .iter()
                .copied()
                .filter(|&c| explains(parent, &run.procs[c])),
        )
        .or_else(|| last(&mut failed.iter().copied()));
        match next {
            Some(c) if chain.len() <= run.procs.len() => {
                chain.push(c);
                node = c;
            }
            _ => return chain,
        }
    }
}
