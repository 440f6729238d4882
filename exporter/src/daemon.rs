//! Sidecar daemon: trace the configured scope until SIGINT or SIGTERM, then flush and exit.

use std::collections::{HashMap, HashSet};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    agent::{Agent, AgentError, describe_losses},
    config::Config,
    loader::KernelScope,
};
use exporter_common::{TrackState, track};

/// Processes already running whose comm matches a root name, and all their descendants,
/// from /proc: `(tgid, tree parent)` pairs, parents first.
pub fn existing_subtrees(root_names: &[String]) -> Vec<(u32, u32)> {
    let mut comm_of = HashMap::new();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm sits in parentheses and may contain spaces; ppid is the 2nd field after it.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0);
        comm_of.insert(pid, comm);
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(u32, u32)> = comm_of
        .iter()
        .filter(|(_, comm)| root_names.iter().any(|n| n == *comm))
        .map(|(pid, _)| (*pid, 0))
        .collect();
    while let Some((pid, parent)) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        out.push((pid, parent));
        for child in children.get(&pid).into_iter().flatten() {
            stack.push((*child, pid));
        }
    }
    out
}

pub async fn daemon(config: &Config) -> Result<(), AgentError> {
    let scope = KernelScope::from_config(config);
    let agent = Agent::start(config, &scope)?;
    if let KernelScope::RootNames(names) = &scope {
        let existing = existing_subtrees(names);
        for (pid, parent) in &existing {
            let state = TrackState {
                tree_ppid: *parent,
                flags: if *parent == 0 { track::ROOT } else { 0 },
                parent_start_ns: 0,
            };
            if let Err(e) = crate::loader::register_pid(agent.capture.tracked_fd(), *pid, &state) {
                tracing::warn!("cannot track running process {pid}: {e}");
            }
        }
        tracing::info!(
            count = existing.len(),
            "tracking already running root subtrees"
        );
    }
    // Printed once tracing is live: supervisors and tests can wait for it.
    eprintln!(
        "otel-pipetrace: tracing {}; stop with SIGINT or SIGTERM",
        scope.describe()
    );

    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Reader)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Reader)?;
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
    }
    let finished = agent.stop().await;
    let totals = finished.tracker.totals();
    eprintln!(
        "otel-pipetrace: stopped; {} processes, {} failed, {}",
        totals.processes,
        totals.failed,
        describe_losses(&finished.losses)
    );
    Ok(())
}
