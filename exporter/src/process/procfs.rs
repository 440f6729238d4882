//! What `/proc` says about processes that were running before the agent saw them: used to seed
//! the tracker at start-up and to notice processes whose exit event was lost.

use std::collections::{HashMap, HashSet};

use crate::capture::clock::clock_ns;

/// A process read from `/proc/PID/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    pub tgid: u32,
    /// Tree parent: the real parent, or 0 for a root of a traced subtree.
    pub ppid: u32,
    /// The real parent, as the kernel's records report it.
    pub real_ppid: u32,
    pub comm: String,
    /// Start time converted to CLOCK_MONOTONIC ns; `/proc` counts clock ticks, so it is only
    /// accurate to a tick (10 ms at HZ=100).
    pub start_ns: u64,
    pub uid: u32,
}

/// Fields of `/proc/PID/stat` after the parenthesised comm (which may contain spaces).
fn parse_stat(text: &str) -> Option<(String, u32, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] = state, rest[1] = ppid, rest[19] = starttime (field 22 of stat).
    let ppid = rest.get(1)?.parse().ok()?;
    let start_ticks = rest.get(19)?.parse().ok()?;
    Some((comm, ppid, start_ticks))
}

/// `/proc` start times are CLOCK_BOOTTIME ticks; the kernel records CLOCK_MONOTONIC. They differ
/// by the time spent suspended.
fn boot_to_monotonic_ns(boot_ns: u64) -> u64 {
    let suspended = clock_ns(libc::CLOCK_BOOTTIME).saturating_sub(clock_ns(libc::CLOCK_MONOTONIC));
    boot_ns.saturating_sub(suspended)
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as u64 } else { 100 }
}

/// How far a `/proc` start time may be from the kernel's exact one and still be the same process.
pub fn start_tolerance_ns() -> u64 {
    2 * 1_000_000_000 / ticks_per_second() + 1_000_000
}

pub fn read(tgid: u32) -> Option<ProcEntry> {
    let stat = std::fs::read_to_string(format!("/proc/{tgid}/stat")).ok()?;
    let (comm, ppid, ticks) = parse_stat(&stat)?;
    let status = std::fs::read_to_string(format!("/proc/{tgid}/status")).unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let boot_ns = ticks.saturating_mul(1_000_000_000) / ticks_per_second();
    Some(ProcEntry {
        tgid,
        ppid,
        real_ppid: ppid,
        comm,
        start_ns: boot_to_monotonic_ns(boot_ns),
        uid,
    })
}

/// The cgroup v2 id of a running process, as the kernel reports it (the inode number of its
/// cgroup directory); 0 when unknown.
pub fn cgroup_id(tgid: u32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    static MOUNT: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let Some(mount) = MOUNT.get_or_init(crate::process::cgroups::v2_mount) else {
        return 0;
    };
    std::fs::read_to_string(format!("/proc/{tgid}/cgroup"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("0::"))
                .map(|p| mount.join(p.trim_start_matches('/')))
        })
        .and_then(|dir| std::fs::metadata(dir).ok())
        .map_or(0, |m| m.ino())
}

/// Is the process `(tgid, start_ns)` still running? A reused pid has another start time.
pub fn is_alive(tgid: u32, start_ns: u64) -> bool {
    read(tgid).is_some_and(|p| p.start_ns.abs_diff(start_ns) <= start_tolerance_ns())
}

/// argv, executable and working directory of a running process, when readable.
pub fn image(tgid: u32) -> (Vec<String>, Option<String>, Option<String>) {
    let argv = std::fs::read(format!("/proc/{tgid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
        })
        .map(|mut v| {
            if v.last().is_some_and(String::is_empty) {
                v.pop();
            }
            v
        })
        .unwrap_or_default();
    let link = |name: &str| {
        std::fs::read_link(format!("/proc/{tgid}/{name}"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    };
    (argv, link("exe"), link("cwd"))
}

fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// Running processes whose comm is one of `root_names`, with all their descendants, parents
/// before children. A root's `ppid` is reported as 0: it starts a tree.
pub fn existing_subtrees(root_names: &[String]) -> Vec<ProcEntry> {
    let entries: Vec<ProcEntry> = all_pids().into_iter().filter_map(read).collect();
    let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        children.entry(e.ppid).or_default().push(i);
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut queue: std::collections::VecDeque<(usize, bool)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| root_names.contains(&e.comm))
        .map(|(i, _)| (i, true))
        .collect();
    while let Some((i, is_root)) = queue.pop_front() {
        let e = &entries[i];
        if !seen.insert(e.tgid) {
            continue;
        }
        let mut e = e.clone();
        if is_root && !seen.contains(&e.ppid) {
            e.ppid = 0;
        }
        for child in children.get(&e.tgid).into_iter().flatten() {
            queue.push_back((*child, false));
        }
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_and_parens_in_comm() {
        let line = "42 (a (b) c) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 1 1";
        let (comm, ppid, start) = parse_stat(line).unwrap();
        assert_eq!(comm, "a (b) c");
        assert_eq!(ppid, 7);
        assert_eq!(start, 12345);
        assert!(parse_stat("42 (x) S").is_none());
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let entry = read(me).unwrap();
        assert_eq!(entry.tgid, me);
        assert!(entry.start_ns <= crate::capture::clock::monotonic_ns());
        assert!(is_alive(me, entry.start_ns));
        assert!(!is_alive(me, entry.start_ns + 10_000_000_000));
        let (argv, exe, cwd) = image(me);
        assert!(!argv.is_empty());
        assert!(exe.is_some() && cwd.is_some());
    }
}
