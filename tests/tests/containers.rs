//! Processes in containers: their container as the cgroup path names it, on the spans a real
//! OTLP collector received. The cgroups are made by the test in the layout each runtime uses
//! (no engine runs: a process moved into `…/docker/<id>` is, to the kernel and the agent, in
//! that container's cgroup).

use pipetrace_tests::{require_root, rotel::Rotel, trace_with};

/// `<cgroup v2 mount>/<rel>`, made for the test and removed when dropped.
struct V2Cgroup(std::path::PathBuf);

impl V2Cgroup {
    fn new(rel: &str) -> Self {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = mounts
            .lines()
            .find_map(|l| {
                let (before, after) = l.split_once(" - ")?;
                (after.split_whitespace().next()? == "cgroup2").then(|| {
                    before
                        .split_whitespace()
                        .nth(4)
                        .map(std::path::PathBuf::from)
                })?
            })
            .expect("a cgroup v2 hierarchy");
        let dir = root.join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for V2Cgroup {
    fn drop(&mut self) {
        // The leaf, then the parents the test made (empty ones only: `remove_dir` refuses).
        let mut dir = Some(self.0.as_path());
        while let Some(d) = dir {
            if std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
}

#[test]
fn a_process_in_a_docker_cgroup_carries_the_containers_id() {
    require_root!();
    let id = format!(
        "{:064x}",
        std::process::id() as u128 * 0x9e37_79b9_7f4a_7c15
    );
    let cgroup = V2Cgroup::new(&format!("docker/{id}"));
    let rotel = Rotel::start();
    let endpoint = rotel.grpc_endpoint();
    // The shell moves itself into the container's cgroup, then runs a child there.
    let script = format!(
        "echo $$ > {}/cgroup.procs && sleep 0.2 && cat /proc/self/cgroup > /dev/null",
        cgroup.0.display()
    );
    let t = trace_with(
        &[
            ("PIPETRACE_OTLP__ENDPOINT", endpoint.as_str()),
            ("PIPETRACE_OTLP__BATCH_DELAY", "50ms"),
        ],
        &[],
        &["sh", "-c", &script],
    );
    assert_eq!(t.status, 0, "{}", t.stderr);
    let spans = rotel.wait_for(|spans| spans.iter().any(|s| s.attr("container.id").is_some()));
    let sleep = spans
        .iter()
        .find(|s| {
            s.attr("process.command_line")
                .is_some_and(|c| c.starts_with("sleep"))
        })
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(sleep.attr("container.id"), Some(id.as_str()));
    assert_eq!(sleep.attr("container.runtime"), Some("docker"));
    // The run's own span is not in a container.
    assert!(
        spans
            .iter()
            .filter(|s| s.attr("container.id").is_none())
            .count()
            >= 1
    );
}
