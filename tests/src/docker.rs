//! A private Docker engine for the deployment test: Debian's `dockerd` on its own socket and
//! state directories, changing nothing on the host's network (no iptables rules, no IP
//! forwarding, no default bridge; Compose's own bridge goes with `down`), stopped when dropped.
//! Images and build cache stay in [`DATA_ROOT`], like the cargo target directory, so the next
//! run rebuilds only what changed.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const DATA_ROOT: &str = "/var/cache/otel-pipetrace/docker";
/// Debian's docker client (20.10), matching the engine (another client may be first on PATH).
pub const DOCKER: &str = "/usr/bin/docker";

pub struct Engine {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    /// The engine's cgroups (`docker` in each v1 hierarchy) that existed before it started:
    /// the others are its own, removed when it stops.
    cgroups_before: Vec<PathBuf>,
}

/// `docker` cgroups in the v1 hierarchies (the cgroupfs driver makes them and leaves them).
pub fn docker_cgroups() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path().join("docker"))
        .filter(|d| d.is_dir())
        .collect()
}

impl Engine {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("ptd").tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        std::fs::create_dir_all(DATA_ROOT).unwrap();
        let cgroups_before = docker_cgroups();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(DATA_ROOT)
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args(["--iptables=false", "--ip-forward=false", "--bridge=none"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd (Debian docker.io, installed by scripts/setup)");
        let engine = Self {
            child,
            dir,
            socket,
            cgroups_before,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine
            .docker()
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer in 60 s:\n{}",
                engine.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        engine
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER", DOCKER)
            // docker-compose 1.29 builds through the docker client with BuildKit (the
            // Dockerfile's cache mounts) instead of its own legacy builder.
            .env("COMPOSE_DOCKER_CLI_BUILD", "1")
            .env("DOCKER_BUILDKIT", "1")
            .env("PATH", "/usr/bin:/usr/sbin:/bin:/sbin:/usr/local/bin");
    }

    /// The docker client, talking to this engine.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(DOCKER);
        self.env(&mut cmd);
        cmd
    }

    /// Any program (docker-compose, a script) with this engine's environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.env(&mut cmd);
        cmd
    }

    /// `docker ARGS`, which must succeed: its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("exec")
    }
}

/// Mount points under `dir` (overlay layers, network namespaces) still mounted.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Removes an empty cgroup and its empty children (`buildkit`, containers'), deepest first:
/// a cgroup directory goes with `rmdir`, not by deleting its files.
fn remove_cgroup_tree(dir: &Path) {
    for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&child.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for cgroup in docker_cgroups() {
            if !self.cgroups_before.contains(&cgroup) {
                remove_cgroup_tree(&cgroup);
            }
        }
        // What a killed engine would leave mounted.
        for dir in [self.exec_root(), PathBuf::from(DATA_ROOT)] {
            for m in mounts_under(&dir).into_iter().rev() {
                let _ = Command::new("umount").arg("-l").arg(&m).status();
            }
        }
    }
}
