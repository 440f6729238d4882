//! `cicd.*` (and `vcs.*`) resource attributes from the environment of a CI job: GitHub
//! Actions, GitLab CI, Jenkins.

/// Attributes for the CI system the environment shows, empty when none.
pub fn attributes(env: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    let get = |name: &str| env(name).filter(|v| !v.is_empty());
    let mut out: Vec<(&'static str, Option<String>)> = Vec::new();
    if get("GITHUB_ACTIONS").as_deref() == Some("true") {
        let repo_url = match (get("GITHUB_SERVER_URL"), get("GITHUB_REPOSITORY")) {
            (Some(server), Some(repo)) => Some(format!("{server}/{repo}")),
            _ => None,
        };
        let run_url = match (&repo_url, get("GITHUB_RUN_ID")) {
            (Some(repo), Some(id)) => Some(match get("GITHUB_RUN_ATTEMPT") {
                Some(attempt) => format!("{repo}/actions/runs/{id}/attempts/{attempt}"),
                None => format!("{repo}/actions/runs/{id}"),
            }),
            _ => None,
        };
        out.extend([
            ("cicd.system", Some("github_actions".to_owned())),
            ("cicd.pipeline.name", get("GITHUB_WORKFLOW")),
            ("cicd.pipeline.run.id", get("GITHUB_RUN_ID")),
            ("cicd.pipeline.run.url.full", run_url),
            ("cicd.pipeline.task.name", get("GITHUB_JOB")),
            ("cicd.worker.name", get("RUNNER_NAME")),
            ("vcs.repository.url.full", repo_url),
            ("vcs.ref.head.name", get("GITHUB_REF_NAME")),
            ("vcs.ref.head.revision", get("GITHUB_SHA")),
        ]);
    } else if get("GITLAB_CI").as_deref() == Some("true") {
        out.extend([
            ("cicd.system", Some("gitlab_ci".to_owned())),
            (
                "cicd.pipeline.name",
                get("CI_PIPELINE_NAME").or_else(|| get("CI_PROJECT_PATH")),
            ),
            ("cicd.pipeline.run.id", get("CI_PIPELINE_ID")),
            ("cicd.pipeline.run.url.full", get("CI_PIPELINE_URL")),
            ("cicd.pipeline.task.name", get("CI_JOB_NAME")),
            ("cicd.pipeline.task.run.id", get("CI_JOB_ID")),
            ("cicd.pipeline.task.run.url.full", get("CI_JOB_URL")),
            (
                "cicd.worker.name",
                get("CI_RUNNER_DESCRIPTION").or_else(|| get("CI_RUNNER_ID")),
            ),
            ("vcs.repository.url.full", get("CI_PROJECT_URL")),
            ("vcs.ref.head.name", get("CI_COMMIT_REF_NAME")),
            ("vcs.ref.head.revision", get("CI_COMMIT_SHA")),
        ]);
    } else if get("JENKINS_URL").is_some() {
        out.extend([
            ("cicd.system", Some("jenkins".to_owned())),
            ("cicd.pipeline.name", get("JOB_NAME")),
            (
                "cicd.pipeline.run.id",
                get("BUILD_NUMBER").or_else(|| get("BUILD_ID")),
            ),
            ("cicd.pipeline.run.url.full", get("BUILD_URL")),
            ("cicd.pipeline.task.name", get("STAGE_NAME")),
            ("cicd.worker.name", get("NODE_NAME")),
            ("vcs.repository.url.full", get("GIT_URL")),
            ("vcs.ref.head.name", get("GIT_BRANCH")),
            ("vcs.ref.head.revision", get("GIT_COMMIT")),
        ]);
    }
    out.into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// Of `attributes`, those that describe the job itself (a task run in the `cicd`
/// conventions): they go on the run's span as well as on the resource.
pub fn task_attributes(attributes: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    attributes
        .iter()
        .filter(|(k, _)| k.starts_with("cicd.pipeline.task."))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn attrs(vars: &[(&str, &str)]) -> HashMap<&'static str, String> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        attributes(|k| map.get(k).map(|v| v.to_string()))
            .into_iter()
            .collect()
    }

    #[test]
    fn github_actions() {
        let a = attrs(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_WORKFLOW", "build"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/app"),
            ("GITHUB_JOB", "test"),
            ("RUNNER_NAME", "runner-1"),
        ]);
        assert_eq!(a["cicd.pipeline.name"], "build");
        assert_eq!(a["cicd.pipeline.run.id"], "42");
        assert_eq!(
            a["cicd.pipeline.run.url.full"],
            "https://github.com/acme/app/actions/runs/42/attempts/2"
        );
        assert_eq!(a["cicd.pipeline.task.name"], "test");
        assert_eq!(a["cicd.worker.name"], "runner-1");
    }

    #[test]
    fn gitlab_and_jenkins_and_none() {
        let g = attrs(&[
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_PATH", "acme/app"),
            ("CI_PIPELINE_ID", "7"),
            ("CI_JOB_NAME", "unit"),
            ("CI_JOB_ID", "99"),
        ]);
        assert_eq!(g["cicd.pipeline.name"], "acme/app");
        assert_eq!(g["cicd.pipeline.task.run.id"], "99");
        let j = attrs(&[
            ("JENKINS_URL", "https://ci/"),
            ("JOB_NAME", "nightly"),
            ("BUILD_NUMBER", "12"),
            ("BUILD_URL", "https://ci/job/nightly/12/"),
        ]);
        assert_eq!(
            j["cicd.pipeline.run.url.full"],
            "https://ci/job/nightly/12/"
        );
        assert!(attrs(&[("CI", "true")]).is_empty());
    }
}
