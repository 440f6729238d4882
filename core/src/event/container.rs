/// The container a process runs in, as its cgroup path tells it: the runtime's id and, on
/// Kubernetes, the pod's uid. Read from the path alone (no call to a runtime): Docker and
/// containerd with either cgroup driver, CRI-O, Podman (conmon's own scope is not the
/// container), nerdctl, BuildKit's runc worker and the kubelet's pod slices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The full id (64 hex digits for the OCI runtimes).
    pub id: String,
    /// `docker`, `containerd`, `cri-o`, `podman`, `buildkit` (`container.runtime`).
    pub runtime: &'static str,
    /// The pod's uid, dashes restored (`k8s.pod.uid`).
    pub pod_uid: Option<String>,
}

/// A 64-hex-digit id (or BuildKit's 25-character one) in `word`, if it is one whole.
fn container_id(word: &str) -> Option<&str> {
    let hex = word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit());
    let buildkit = word.len() == 25
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (hex || buildkit).then_some(word)
}

/// The pod uid of a kubelet cgroup component: `pod<uid>` (cgroupfs driver) or
/// `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd driver).
fn pod_uid(component: &str) -> Option<String> {
    let rest = component.strip_suffix(".slice").unwrap_or(component);
    let uid = rest.rsplit_once("pod").map(|(_, u)| u)?;
    let uid = uid.replace('_', "-");
    (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
}

/// The container of the process whose cgroup v2 path (as `/proc/PID/cgroup` shows it, from
/// the hierarchy's root) is `path`; `None` outside one.
pub fn container_of(path: &str) -> Option<Container> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let pod_uid = components
        .iter()
        .filter(|c| c.starts_with("pod") || c.contains("-pod"))
        .find_map(|c| pod_uid(c));
    let kubernetes = components.iter().any(|c| c.starts_with("kubepods"));
    // The innermost component that names a container wins (nested runtimes: Docker in a pod).
    for (at, c) in components.iter().enumerate().rev() {
        // systemd driver: `<prefix>-<id>.scope`.
        if let Some(scope) = c.strip_suffix(".scope") {
            let Some((prefix, id)) = scope.rsplit_once('-') else {
                continue;
            };
            let Some(id) = container_id(id) else {
                continue;
            };
            let runtime = match prefix {
                "docker" => "docker",
                "cri-containerd" | "containerd" | "nerdctl" => "containerd",
                "crio" => "cri-o",
                "libpod" => "podman",
                // `libpod-conmon-<id>`: the monitor beside the container, not in it.
                _ => continue,
            };
            return Some(Container {
                id: id.to_owned(),
                runtime,
                pod_uid,
            });
        }
        // cgroupfs driver: `/docker/<id>`, `/kubepods/<qos>/pod<uid>/<id>`, containerd's
        // namespaces (`/default/<id>`, `/moby/<id>`), BuildKit's `/buildkit/<id>`.
        let Some(id) = container_id(c) else {
            continue;
        };
        let parent = if at > 0 { components[at - 1] } else { "" };
        let runtime = match parent {
            "docker" | "moby" => "docker",
            "buildkit" => "buildkit",
            _ if kubernetes => "containerd",
            "default" | "k8s.io" => "containerd",
            "libpod_parent" | "machine.slice" => "podman",
            _ => continue,
        };
        return Some(Container {
            id: id.to_owned(),
            runtime,
            pod_uid,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1d2c9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e";

    fn of(path: &str) -> Option<(String, &'static str, Option<String>)> {
        container_of(path).map(|c| (c.id, c.runtime, c.pod_uid))
    }

    #[test]
    fn reads_the_container_from_each_runtimes_cgroup_layout() {
        let docker = Some((ID.to_owned(), "docker", None));
        assert_eq!(of(&format!("/system.slice/docker-{ID}.scope")), docker);
        assert_eq!(of(&format!("/docker/{ID}")), docker);
        assert_eq!(
            of(&format!("/machine.slice/libpod-{ID}.scope/container")),
            Some((ID.to_owned(), "podman", None))
        );
        // conmon's own scope is beside the container, not in it.
        assert_eq!(
            of(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
        assert_eq!(
            of(&format!("/default/{ID}")),
            Some((ID.to_owned(), "containerd", None))
        );
        let uid = "0b6d1a0e-7f3c-4c2a-9a51-2b7d0c6e1f00";
        let systemd_pod = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            uid.replace('-', "_")
        );
        assert_eq!(
            of(&systemd_pod),
            Some((ID.to_owned(), "containerd", Some(uid.to_owned())))
        );
        assert_eq!(
            of(&format!("/kubepods/besteffort/pod{uid}/{ID}")),
            Some((ID.to_owned(), "containerd", Some(uid.to_owned())))
        );
        assert_eq!(
            of(&format!(
                "/kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope",
                uid.replace('-', "_")
            )),
            Some((ID.to_owned(), "cri-o", Some(uid.to_owned())))
        );
        assert_eq!(
            of("/buildkit/k3xq8c9w2m1n0b7v6c5x4z3a2"),
            Some(("k3xq8c9w2m1n0b7v6c5x4z3a2".to_owned(), "buildkit", None))
        );
        // Not containers: a user session, a CI runner's service, the root.
        assert_eq!(of("/user.slice/user-1000.slice/session-3.scope"), None);
        assert_eq!(of("/system.slice/actions.runner.service"), None);
        assert_eq!(of("/"), None);
    }
}
