//! A cgroup v1 cgroup of a test's own (cgroup v2 here has no memory controller): made in one
//! controller's hierarchy with one limit set, removed when dropped.

use std::path::{Path, PathBuf};

pub struct V1Cgroup(pub PathBuf);

impl V1Cgroup {
    /// `/sys/fs/cgroup/CONTROLLER/NAME-PID` with `file` set to `value` (`memory`,
    /// `memory.limit_in_bytes`; `pids`, `pids.max`).
    pub fn new(controller: &str, name: &str, file: &str, value: u64) -> Self {
        let dir = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(file), value.to_string()).unwrap();
        Self(dir)
    }

    /// Whether this machine has the controller's v1 hierarchy.
    pub fn available(controller: &str) -> bool {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join("cgroup.procs")
            .exists()
    }
}

impl Drop for V1Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
