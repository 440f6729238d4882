//! cgroup v2 ids (what the kernel reports) to paths (what `process.linux.cgroup` shows).

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Directories visited per rescan, so a huge hierarchy cannot stall the tracker.
const MAX_SCAN: usize = 50_000;
/// Ids resolved at most this often by a rescan; unknown ids in between stay unnamed.
const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
/// hybrid systems).
pub fn v2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        (after.split_whitespace().next()? == "cgroup2")
            .then(|| before.split_whitespace().nth(4).map(PathBuf::from))?
    })
}

#[derive(Debug, Default)]
pub struct CgroupNames {
    root: Option<PathBuf>,
    paths: HashMap<u64, String>,
    last_scan: Option<Instant>,
}

impl CgroupNames {
    pub fn new() -> Self {
        Self {
            root: v2_mount(),
            ..Default::default()
        }
    }

    /// `0::/system.slice/x.service` for a cgroup id, as `/proc/PID/cgroup` shows it.
    pub fn name(&mut self, id: u64) -> Option<&str> {
        if id == 0 {
            return None;
        }
        if !self.paths.contains_key(&id)
            && self.last_scan.is_none_or(|t| t.elapsed() >= RESCAN_EVERY)
        {
            self.rescan();
        }
        self.paths.get(&id).map(String::as_str)
    }

    fn rescan(&mut self) {
        self.last_scan = Some(Instant::now());
        let Some(root) = self.root.clone() else {
            return;
        };
        self.paths.clear();
        let mut stack = vec![root.clone()];
        let mut visited = 0;
        while let Some(dir) = stack.pop() {
            visited += 1;
            if visited > MAX_SCAN {
                break;
            }
            if let Ok(meta) = std::fs::metadata(&dir) {
                self.paths.insert(meta.ino(), display(&root, &dir));
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }
}

fn display(root: &Path, dir: &Path) -> String {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    format!("0::/{}", rel.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_this_process_cgroup() {
        let root = v2_mount();
        pipetrace_tests::require!(root.is_some(), "no cgroup v2 hierarchy mounted");
        let root = root.unwrap();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let line = own.lines().find(|l| l.starts_with("0::"));
        pipetrace_tests::require!(line.is_some(), "this process is in no cgroup v2 group");
        let line = line.unwrap();
        let rel = line.trim_start_matches("0::/");
        let id = std::fs::metadata(root.join(rel)).unwrap().ino();
        let mut names = CgroupNames::new();
        assert_eq!(names.name(id), Some(line));
        assert_eq!(names.name(0), None);
    }
}
