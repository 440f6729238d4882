//! The memory limit a process runs under: the smallest limit of its memory cgroup and of the
//! cgroups above it — cgroup v1's memory hierarchy (`memory.limit_in_bytes`) or v2's
//! (`memory.max`) — read once per process, and only for one that already holds a lot.

use std::path::{Path, PathBuf};

/// A limit and the cgroup that sets it (as `/proc/PID/cgroup` names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub cgroup: String,
}

/// Limits at or above this are "no limit" (v1 shows 2^63 rounded down to a page).
const UNLIMITED: u64 = 1 << 62;

/// Where a hierarchy is mounted: v2 (`cgroup2`), or v1's with the `memory` controller.
pub(super) fn mount(v1_memory: bool) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mut after = after.split_whitespace();
        let fstype = after.next()?;
        let options = after.nth(1).unwrap_or("");
        let wanted = if v1_memory {
            fstype == "cgroup" && options.split(',').any(|o| o == "memory")
        } else {
            fstype == "cgroup2"
        };
        wanted.then(|| before.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

/// The memory cgroup of a process from its `/proc/PID/cgroup`: `(v1, path)`.
fn memory_cgroup(text: &str) -> Option<(bool, String)> {
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            return Some((true, path.to_owned()));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some((false, path.to_owned()));
        }
    }
    v2
}

/// A limit file's value: bytes, or `None` for no limit (`max`, or v1's huge number).
fn parse_limit(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    (v < UNLIMITED).then_some(v)
}

/// A cgroup and each one above it, up to the hierarchy's root: `(its path, its directory
/// under `root`)`, the cgroup itself first.
pub(super) fn up_from(root: &Path, path: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut at = path.trim_end_matches('/').to_owned();
    loop {
        let dir = root.join(at.trim_start_matches('/'));
        let name = if at.is_empty() {
            "/".into()
        } else {
            at.clone()
        };
        out.push((name, dir));
        match at.rfind('/') {
            Some(i) if !at.is_empty() => at.truncate(i),
            _ => return out,
        }
    }
}

/// The smallest limit from `path` up to the hierarchy's root.
fn smallest(root: &Path, path: &str, file: &str) -> Option<Limit> {
    let mut best: Option<Limit> = None;
    for (cgroup, dir) in up_from(root, path) {
        if let Some(bytes) = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| parse_limit(&t))
            && best.as_ref().is_none_or(|b| bytes < b.bytes)
        {
            best = Some(Limit { bytes, cgroup });
        }
    }
    best
}

/// The memory limit process `tgid` runs under; `None`: no limit (or not readable).
pub fn of(tgid: u32) -> Option<Limit> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()?;
    let (v1, path) = memory_cgroup(&text)?;
    let root = mount(v1)?;
    let file = if v1 {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    smallest(&root, &path, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_controller_wins_over_the_unified_line() {
        let v1 = "9:name=systemd:/\n4:memory:/ci/job-7\n0::/\n";
        assert_eq!(memory_cgroup(v1), Some((true, "/ci/job-7".into())));
        let v2 = "0::/system.slice/runner.service\n";
        assert_eq!(
            memory_cgroup(v2),
            Some((false, "/system.slice/runner.service".into()))
        );
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("134217728\n"), Some(134_217_728));
    }

    #[test]
    fn the_smallest_limit_on_the_way_up_counts() {
        let root = tempfile::tempdir().unwrap();
        let job = root.path().join("ci/job");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(root.path().join("ci/memory.max"), "1048576\n").unwrap();
        std::fs::write(job.join("memory.max"), "max\n").unwrap();
        assert_eq!(
            smallest(root.path(), "/ci/job", "memory.max"),
            Some(Limit {
                bytes: 1_048_576,
                cgroup: "/ci".into()
            })
        );
        assert_eq!(smallest(root.path(), "/other", "memory.max"), None);
    }
}
