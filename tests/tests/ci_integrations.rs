//! The GitHub Action and the GitLab template: checked by the checkers their platforms' users
//! run (actionlint, zizmor, GitLab's CI schema), and the script both run (`ci/pipetrace-ci`)
//! tracing a job for real: installed from the release archive, scoped to the job's cgroup,
//! its spans in a real OTLP receiver under the job's trace context, its report in the job
//! summary.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use pipetrace_tests::{
    output_text, query_json, release_artifacts, require_root,
    rotel::{Rotel, TOOLS_VENV},
    script, workspace,
};

fn tool(name: &str) -> Command {
    let path = Path::new(TOOLS_VENV).join("bin").join(name);
    assert!(
        path.exists(),
        "{} missing: run scripts/setup",
        path.display()
    );
    Command::new(path)
}

fn check(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", output_text(&out));
    output_text(&out)
}

/// A repository with the Action at its root and `workflow` as its workflow: actionlint checks
/// a local action's inputs only from inside such a layout.
fn repository_with(workflow: &str) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join(".github/workflows")).unwrap();
    std::fs::create_dir_all(repo.path().join("ci")).unwrap();
    std::fs::copy(
        workspace().join("action.yml"),
        repo.path().join("action.yml"),
    )
    .unwrap();
    std::fs::copy(
        workspace().join("ci/pipetrace-ci"),
        repo.path().join("ci/pipetrace-ci"),
    )
    .unwrap();
    std::fs::write(repo.path().join(".github/workflows/build.yml"), workflow).unwrap();
    check(
        Command::new("git")
            .arg("init")
            .arg("-q")
            .arg(repo.path())
            .output()
            .unwrap(),
        "git init",
    );
    repo
}

#[test]
fn the_action_and_the_template_pass_their_platforms_checkers() {
    let example =
        std::fs::read_to_string(workspace().join("ci/github/example-workflow.yml")).unwrap();
    let repo = repository_with(&example);
    check(
        tool("actionlint")
            .current_dir(repo.path())
            .output()
            .unwrap(),
        "actionlint on the example workflow and the Action",
    );
    // The checker does look at the Action: an input it does not declare is an error.
    let wrong = example.replace("otlp-endpoint:", "otlp-endpont:");
    assert_ne!(wrong, example);
    let repo = repository_with(&wrong);
    let out = tool("actionlint")
        .current_dir(repo.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("otlp-endpont"),
        "{}",
        output_text(&out)
    );

    check(
        tool("zizmor")
            .args(["--offline", "action.yml", "ci/github/example-workflow.yml"])
            .current_dir(workspace())
            .output()
            .unwrap(),
        "zizmor",
    );
    check(
        tool("check-jsonschema")
            .args(["--builtin-schema", "vendor.gitlab-ci"])
            .args([
                "ci/gitlab/otel-pipetrace.gitlab-ci.yml",
                "ci/gitlab/example.gitlab-ci.yml",
            ])
            .current_dir(workspace())
            .output()
            .unwrap(),
        "GitLab CI schema",
    );
    // The schema is strict enough to catch a misspelt key.
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(workspace().join("ci/gitlab/example.gitlab-ci.yml")).unwrap();
    let misspelt = dir.path().join("misspelt.yml");
    std::fs::write(&misspelt, example.replace("  script:", "  scripts:")).unwrap();
    let out = tool("check-jsonschema")
        .args(["--builtin-schema", "vendor.gitlab-ci"])
        .arg(&misspelt)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
}

/// A cgroup v2 group for the job, removed with it.
struct JobCgroup(PathBuf);

impl Drop for JobCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A group of its own for each job (tests run at once: one group would hold both jobs).
fn job_cgroup(job: &str) -> JobCgroup {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let mount = mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&"cgroup2"))
        .map(|f| PathBuf::from(f[1]))
        .expect("a cgroup v2 mount");
    let group = mount.join(format!("pipetrace-ci-{job}-{}", std::process::id()));
    std::fs::create_dir_all(&group).unwrap();
    JobCgroup(group)
}

#[test]
fn a_job_traced_by_the_ci_script_reports_its_steps_and_joins_the_job_trace() {
    require_root!();
    let _cores = pipetrace_tests::loads_every_core();
    let (archive, _) = release_artifacts();
    let rotel = Rotel::start();
    let cgroup = job_cgroup("root-job");
    let dir = tempfile::tempdir().unwrap();
    let runner_temp = dir.path().join("runner-temp");
    std::fs::create_dir_all(&runner_temp).unwrap();
    let summary = dir.path().join("step-summary.md");
    std::fs::write(&summary, "## Build\n\n").unwrap();
    let ci = workspace().join("ci/pipetrace-ci");
    // The job as a runner runs it: its shell in its own cgroup, the Action's start, the
    // steps (one fails and is tolerated, as `continue-on-error` would), the Action's stop.
    let job = script(
        dir.path(),
        "job.sh",
        &format!(
            "set -e\necho $$ > {procs}\n{ci} start\n\
             sh -c 'echo job-step-marker; sleep 0.2'\n\
             sh -c 'exit 4' || true\n/bin/true\n{ci} stop\n",
            procs = cgroup.0.join("cgroup.procs").display(),
            ci = ci.display(),
        ),
    );
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let job_span = "b7ad6b7169203331";
    // Meanwhile, outside the job's cgroup: not the job's, not traced.
    let outside = std::thread::spawn(|| {
        for _ in 0..20 {
            let _ = Command::new("sh")
                .args(["-c", "echo outside-marker"])
                .output();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    let out = Command::new(&job)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", dir.path())
        .env("RUNNER_TEMP", &runner_temp)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_JOB", "build")
        .env("GITHUB_RUN_ID", "4242")
        .env("PIPETRACE_ARCHIVE", archive)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.grpc_endpoint())
        .env("OTEL_EXPORTER_OTLP_HEADERS", "")
        .env(
            "PIPETRACE_TRACEPARENT",
            format!("00-{trace_id}-{job_span}-01"),
        )
        .output()
        .unwrap();
    outside.join().unwrap();
    let log = output_text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("job-step-marker"), "{log}");
    assert!(log.contains("pipetrace-ci: tracing the job"), "{log}");

    // The job summary: what was there, then the report of the job's steps.
    let written = std::fs::read_to_string(&summary).unwrap();
    assert!(
        written.starts_with("## Build\n\n## otel-pipetrace"),
        "{written}"
    );
    assert!(written.contains("sh -c 'exit 4'"), "{written}");
    let ci_dir = runner_temp.join("otel-pipetrace");
    assert!(ci_dir.join("report.html").is_file());

    // Exactly the job's processes: its steps, none of the script's own helpers after the agent
    // started, nothing from outside the cgroup.
    let processes = query_json(&ci_dir.join("data"), &["processes"]);
    let commands: Vec<&str> = processes
        .iter()
        .map(|p| p["command"].as_str().unwrap())
        .collect();
    for step in [
        "sh -c 'echo job-step-marker; sleep 0.2'",
        "sleep 0.2",
        "sh -c 'exit 4'",
        "/bin/true",
    ] {
        assert!(commands.contains(&step), "{step} not in {commands:?}");
    }
    assert!(
        !commands.iter().any(|c| c.contains("outside-marker")),
        "{commands:?}"
    );
    for helper in ["grep", "pgrep", "sleep 0.1", "cat ", "mkfifo", "kill"] {
        assert!(
            !commands.iter().any(|c| c.starts_with(helper)),
            "{helper}: {commands:?}"
        );
    }
    let failed = processes
        .iter()
        .find(|p| p["command"] == "sh -c 'exit 4'")
        .unwrap();
    assert_eq!(failed["exit_code"], 4);

    // The spans: in the job's trace, the trees' roots children of the job's span, the
    // resource naming the job.
    let spans = rotel.wait_for(|s| {
        s.iter()
            .any(|s| s.attr("process.command_line") == Some("/bin/true"))
    });
    let job_spans: Vec<_> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    assert!(
        job_spans.len() >= 4,
        "{} spans in the job's trace of {}",
        job_spans.len(),
        spans.len()
    );
    assert!(
        job_spans.iter().any(|s| s.parent_id == job_span),
        "no root under the job's span"
    );
    let marker = job_spans
        .iter()
        .find(|s| s.attr("process.command_line") == Some("sh -c 'echo job-step-marker; sleep 0.2'"))
        .expect("the step's span");
    assert_eq!(marker.resource["cicd.pipeline.task.name"], "build");
    assert_eq!(marker.resource["cicd.pipeline.run.id"], "4242");

    // Stopping twice, or a stop without a start, says so.
    let again = Command::new(&ci)
        .arg("stop")
        .env("PIPETRACE_CI_DIR", &ci_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        output_text(&again).contains("not started here"),
        "{}",
        output_text(&again)
    );
}

/// A user allowed to sudo without a password, as on GitHub's hosted runners; removed with it.
struct SudoUser(&'static str);

impl SudoUser {
    fn create() -> Self {
        let user = SudoUser("pipetrace-ci-test");
        let _ = Command::new("userdel").args(["-r", user.0]).output();
        check(
            Command::new("useradd")
                .args(["-m", "-s", "/bin/bash", user.0])
                .output()
                .unwrap(),
            "useradd",
        );
        let rule = format!("/etc/sudoers.d/{}", user.0);
        std::fs::write(&rule, format!("{} ALL=(ALL) NOPASSWD: ALL\n", user.0)).unwrap();
        check(
            Command::new("visudo")
                .args(["-cf", &rule])
                .output()
                .unwrap(),
            "visudo",
        );
        user
    }
}

impl Drop for SudoUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/etc/sudoers.d/{}", self.0));
        let _ = Command::new("userdel").args(["-r", self.0]).output();
    }
}

#[test]
fn a_job_of_an_unprivileged_user_is_traced_through_sudo() {
    require_root!();
    let _cores = pipetrace_tests::loads_every_core();
    let (archive, _) = release_artifacts();
    let user = SudoUser::create();
    let cgroup = job_cgroup("user-job");
    let dir = tempfile::Builder::new()
        .prefix("pipetrace-ci-user")
        .tempdir()
        .unwrap();
    let runner_temp = dir.path().join("runner-temp");
    std::fs::create_dir_all(&runner_temp).unwrap();
    let summary = dir.path().join("step-summary.md");
    std::fs::write(&summary, "").unwrap();
    let archive_copy = dir.path().join("release.tar.gz");
    std::fs::copy(archive, &archive_copy).unwrap();
    let ci = workspace().join("ci/pipetrace-ci");
    let job = script(
        dir.path(),
        "job.sh",
        &format!(
            "set -e\n{ci} start\nsh -c 'echo user-step-marker; sleep 0.2'\n{ci} stop\n",
            ci = ci.display()
        ),
    );
    check(
        Command::new("chown")
            .arg("-R")
            .arg(user.0)
            .arg(dir.path())
            .output()
            .unwrap(),
        "chown",
    );
    // The runner's shell joins the job's cgroup as root, then is the user.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {procs} && exec runuser -u {user} -- \"$@\"",
            procs = cgroup.0.join("cgroup.procs").display(),
            user = user.0
        ))
        .arg("sh")
        .arg(&job)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", format!("/home/{}", user.0))
        .env("RUNNER_TEMP", &runner_temp)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("PIPETRACE_ARCHIVE", &archive_copy)
        .output()
        .unwrap();
    let log = output_text(&out);
    assert!(out.status.success(), "{log}");
    let written = std::fs::read_to_string(&summary).unwrap();
    assert!(
        written.contains("sh -c 'echo user-step-marker; sleep 0.2'"),
        "{written}"
    );
    // The agent ran as root and is gone; what it wrote belongs to the job's user.
    let ci_dir = runner_temp.join("otel-pipetrace");
    let pgrep = Command::new("pgrep")
        .args(["-f", &ci_dir.join("pipetrace.toml").to_string_lossy()])
        .output()
        .unwrap();
    assert!(
        pgrep.stdout.is_empty(),
        "the agent still runs: {}",
        output_text(&pgrep)
    );
    use std::os::unix::fs::MetadataExt;
    let uid = |path: &Path| std::fs::metadata(path).unwrap().uid();
    let user_uid = uid(&job);
    for written in ["data", "report.md", "report.html", "agent.log"] {
        assert_eq!(uid(&ci_dir.join(written)), user_uid, "{written}");
    }
    let processes = query_json(&ci_dir.join("data"), &["processes"]);
    assert!(
        processes
            .iter()
            .any(|p| p["command"] == "sh -c 'echo user-step-marker; sleep 0.2'"),
        "{processes:?}"
    );
}
