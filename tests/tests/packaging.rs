//! The release artifacts as a user installs them: `scripts/release` builds the archive and the
//! Debian package once; the archive runs unpacked anywhere, without the build tree; the
//! package passes lintian, installs with dpkg, runs from PATH and removes cleanly.

use std::{
    path::Path,
    process::{Command, Output},
};

use pipetrace_tests::{output_text as text, release_artifacts, require_root};

/// A PATH with no Rust toolchain (no ~/.cargo/bin) and no /usr/local/bin (where
/// scripts/install puts the development build).
const SYSTEM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
const CACHE: &str = "/var/cache/otel-pipetrace";

/// Runs `argv` with only the system PATH and HOME, in a mount namespace where the build
/// machine's cache (the toolchain, the target directory, the libduckdb.so the build linked)
/// is an empty tmpfs: what the artifact needs must come with it.
fn without_build_tree(home: &Path, argv: &[&str]) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("mount -t tmpfs none {CACHE} && exec \"$@\""))
        .arg("sh")
        .args(argv)
        .env_clear()
        .env("PATH", SYSTEM_PATH)
        .env("HOME", home)
        .output()
        .unwrap()
}

#[test]
fn the_archive_traces_and_answers_unpacked_into_an_empty_directory() {
    require_root!();
    let _cores = pipetrace_tests::loads_every_core();
    let (archive, _) = release_artifacts();
    let dir = tempfile::tempdir().unwrap();
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(dir.path())
        .arg("--strip-components=1")
        .output()
        .unwrap();
    assert!(unpacked.status.success(), "{}", text(&unpacked));
    let agent = dir.path().join("bin/otel-pipetrace");
    let agent = agent.to_str().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let traced = without_build_tree(
        dir.path(),
        &[
            agent,
            "run",
            "--summary",
            "line",
            "--parquet",
            data,
            "--",
            "sh",
            "-c",
            "echo from-the-archive && /bin/true",
        ],
    );
    assert!(traced.status.success(), "{}", text(&traced));
    assert!(
        text(&traced).contains("from-the-archive"),
        "{}",
        text(&traced)
    );
    assert!(
        text(&traced).contains("2 processes, 0 failed"),
        "{}",
        text(&traced)
    );

    // `query` runs the second binary, which loads the libduckdb.so shipped beside it.
    let answered = without_build_tree(
        dir.path(),
        &[
            agent,
            "query",
            "processes",
            "--data",
            data,
            "--format",
            "csv",
        ],
    );
    assert!(answered.status.success(), "{}", text(&answered));
    let rows = String::from_utf8_lossy(&answered.stdout).to_string();
    assert!(rows.contains("from-the-archive"), "{rows}");

    // Completions and man pages, generated from the CLI definition.
    let completion = dir
        .path()
        .join("share/bash-completion/completions/otel-pipetrace");
    let complete = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p otel-pipetrace",
            completion.display()
        ))
        .output()
        .unwrap();
    assert!(
        text(&complete).contains("-F _otel__pipetrace")
            && text(&complete).ends_with("otel-pipetrace\n"),
        "{}",
        text(&complete)
    );
    let page = Command::new("man")
        .arg("-l")
        .arg(dir.path().join("share/man/man1/otel-pipetrace-run.1.gz"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let page = text(&page);
    assert!(
        page.contains("Trace CMD and all its descendants") && page.contains("--parquet"),
        "{page}"
    );
    for installed in [
        "etc/otel-pipetrace/pipetrace.toml",
        "share/otel-pipetrace/otel-pipetrace.service",
        "share/zsh/vendor-completions/_otel-pipetrace",
        "share/fish/vendor_completions.d/otel-pipetrace.fish",
        "share/man/man1/otel-pipetrace.1.gz",
    ] {
        assert!(dir.path().join(installed).is_file(), "{installed} missing");
    }
}

/// Purges the package even when an assertion fails half-way.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "otel-pipetrace"])
            .output();
    }
}

fn sh(script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("PATH", SYSTEM_PATH)
        .output()
        .unwrap()
}

#[test]
fn the_debian_package_passes_lintian_installs_runs_and_goes_away() {
    require_root!();
    let _cores = pipetrace_tests::loads_every_core();
    let (_, deb) = release_artifacts();
    let lintian = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .unwrap();
    let findings = text(&lintian);
    assert!(
        !findings.lines().any(|l| l.starts_with("E:")),
        "lintian errors:\n{findings}"
    );

    let _cleanup = Installed;
    let install = Command::new("dpkg").arg("-i").arg(deb).output().unwrap();
    assert!(install.status.success(), "{}", text(&install));

    let which = sh("command -v otel-pipetrace");
    assert_eq!(
        String::from_utf8_lossy(&which.stdout).trim(),
        "/usr/bin/otel-pipetrace"
    );
    let data = tempfile::tempdir().unwrap();
    let run = sh(&format!(
        "otel-pipetrace run --summary line --parquet {} -- true",
        data.path().display()
    ));
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        text(&run).contains("1 processes, 0 failed"),
        "{}",
        text(&run)
    );

    // The unit is valid where it was installed, and nothing enabled or started it.
    let unit = "/lib/systemd/system/otel-pipetrace.service";
    let verify = Command::new("systemd-analyze")
        .args(["verify", unit])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        std::fs::read_to_string(unit)
            .unwrap()
            .contains("ExecStart=/usr/bin/otel-pipetrace "),
        "the unit runs the packaged binary"
    );
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/otel-pipetrace.service").exists()
    );
    assert!(
        // The packaged binary's own (other tests run agents of their own meanwhile).
        sh("pgrep -f '^/usr/bin/otel-pipetrace( |$)'")
            .stdout
            .is_empty(),
        "nothing started the daemon"
    );

    // The configuration is a conffile; the data directory is root's and its group's.
    let conffiles = sh("dpkg-query --control-show otel-pipetrace conffiles");
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains("/etc/otel-pipetrace/pipetrace.toml"),
        "{}",
        text(&conffiles)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata("/var/lib/otel-pipetrace")
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750);
    for installed in [
        "/usr/share/man/man1/otel-pipetrace.1.gz",
        "/usr/share/bash-completion/completions/otel-pipetrace",
        "/usr/lib/otel-pipetrace/libduckdb.so",
    ] {
        assert!(Path::new(installed).is_file(), "{installed} missing");
    }

    // Removal keeps the edited configuration; purge takes it too.
    let remove = Command::new("dpkg")
        .args(["-r", "otel-pipetrace"])
        .output()
        .unwrap();
    assert!(remove.status.success(), "{}", text(&remove));
    assert!(!Path::new("/usr/bin/otel-pipetrace").exists());
    assert!(!Path::new("/usr/lib/otel-pipetrace").exists());
    assert!(Path::new("/etc/otel-pipetrace/pipetrace.toml").exists());
    let purge = Command::new("dpkg")
        .args(["--purge", "otel-pipetrace"])
        .output()
        .unwrap();
    assert!(purge.status.success(), "{}", text(&purge));
    assert!(!Path::new("/etc/otel-pipetrace").exists());
    assert!(!sh("dpkg -s otel-pipetrace").status.success());
}
