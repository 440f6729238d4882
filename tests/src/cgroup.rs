//! Cgroups of a test's own, removed when dropped: a cgroup v1 one with one limit set (cgroup v2
//! here has no memory controller), and one to put processes in, in whichever hierarchy the
//! machine has.

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

/// A cgroup to put a test's processes in (systemd's v1 hierarchy where there is one, as on a
/// hybrid set-up, else v2's), named as `/proc/PID/cgroup` shows it.
pub struct OwnCgroup {
    dir: PathBuf,
    pub name: String,
}

impl OwnCgroup {
    pub fn new(name: &str) -> Self {
        let name = format!("/{name}-{}", std::process::id());
        let root = if V1Cgroup::available("systemd") {
            Path::new("/sys/fs/cgroup/systemd")
        } else {
            Path::new("/sys/fs/cgroup")
        };
        let dir = root.join(name.trim_start_matches('/'));
        std::fs::create_dir(&dir).unwrap();
        Self { dir, name }
    }

    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        // Its processes are killed by then; the kernel lets go of them a moment later.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
