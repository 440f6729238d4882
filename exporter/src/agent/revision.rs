//! The commit a run builds, for the `revision` column: the CI's `vcs.ref.head.revision`, else
//! the commit checked out in the git repository around the working directory. Read from
//! `.git` itself (HEAD, the ref it names, packed-refs) rather than by running `git`: the agent
//! runs as root, and a repository's config can make `git` run programs.

use std::path::Path;

/// The revision for a run started in `cwd` under the CI attributes `cicd`.
pub fn revision(cicd: &[(&'static str, String)], cwd: Option<&Path>) -> Option<String> {
    cicd.iter()
        .find(|(k, _)| *k == "vcs.ref.head.revision")
        .map(|(_, v)| v.clone())
        .or_else(|| cwd.and_then(git_head))
}

/// The commit HEAD points to in the repository containing `dir`, if any.
pub fn git_head(dir: &Path) -> Option<String> {
    let git_dir = dir
        .ancestors()
        .find_map(crate::diagnosis::git_index::git_dir_of)?;
    // A linked worktree keeps its HEAD in its own directory and the refs in the common one.
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|| git_dir.clone());
    let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(name) = head.strip_prefix("ref:").map(str::trim) else {
        return object_id(head);
    };
    if name.contains("..") {
        return None;
    }
    if let Ok(id) = std::fs::read_to_string(common.join(name)) {
        return object_id(id.trim());
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (id, r) = line.split_once(' ')?;
        (r.trim() == name).then(|| object_id(id)).flatten()
    })
}

/// A SHA-1 or SHA-256 object id in hex.
fn object_id(text: &str) -> Option<String> {
    (matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39";
    const B: &str = "0123456789abcdef0123456789abcdef01234567";

    fn repo(head: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git/refs/heads")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), head).unwrap();
        dir
    }

    #[test]
    fn a_branch_a_packed_ref_and_a_detached_head() {
        let r = repo("ref: refs/heads/main\n");
        std::fs::write(r.path().join(".git/refs/heads/main"), format!("{A}\n")).unwrap();
        std::fs::create_dir_all(r.path().join("src/deep")).unwrap();
        assert_eq!(git_head(&r.path().join("src/deep")).as_deref(), Some(A));

        let r = repo("ref: refs/heads/dev\n");
        std::fs::write(
            r.path().join(".git/packed-refs"),
            format!("# pack-refs with: peeled\n{A} refs/heads/main\n{B} refs/heads/dev\n"),
        )
        .unwrap();
        assert_eq!(git_head(r.path()).as_deref(), Some(B));

        let r = repo(&format!("{B}\n"));
        assert_eq!(git_head(r.path()).as_deref(), Some(B));
        assert_eq!(git_head(&repo("garbage").path().join(".")), None);
    }

    #[test]
    fn the_ci_says_first() {
        let r = repo(&format!("{B}\n"));
        let ci = vec![("vcs.ref.head.revision", A.to_owned())];
        assert_eq!(revision(&ci, Some(r.path())).as_deref(), Some(A));
        assert_eq!(revision(&[], Some(r.path())).as_deref(), Some(B));
    }
}
