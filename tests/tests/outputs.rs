//! Outputs that fail, on real file systems: a data directory on a disk that is full from the
//! start or fills and frees during the run, and a JSONL reader that goes away. Nothing is lost
//! silently: what was written is read back by an independent reader (the DuckDB CLI) and
//! matches the summary line's counts; rows the disk refused are written once space returns;
//! a JSONL file never ends mid-line (root: the tests mount their own tmpfs).

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use pipetrace_tests::{command, require_root, rotel::TOOLS_VENV, script};

/// A tmpfs of `size` mounted on a fresh directory, filled to the last byte by `filler`, and
/// unmounted on drop.
struct FullDisk {
    dir: tempfile::TempDir,
}

impl FullDisk {
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {out:?}");
        // dd stops at ENOSPC: the disk is then full.
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=4k", "status=none"])
            .arg(format!("of={}", dir.path().join("filler").display()))
            .stderr(Stdio::null())
            .status();
        let disk = Self { dir };
        assert_eq!(disk.free_bytes(), 0, "the disk is full");
        disk
    }

    /// Gives `bytes` back (the filler shrinks): room for part of the output.
    fn free(&self, bytes: u64) {
        let filler = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path().join("filler"))
            .unwrap();
        let len = filler.metadata().unwrap().len();
        filler.set_len(len - bytes).unwrap();
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free_bytes(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(self.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let n: Vec<u64> = text
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        n[0] * n[1]
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// `(written, received, dropped)` of one output in the summary line: `parquet: 3 of 52
/// processes written, 49 dropped, …`.
fn output_counts(summary: &str, sink: &str) -> Option<(u64, u64, u64)> {
    let clause = summary.split(&format!("{sink}: ")).nth(1)?;
    let words: Vec<&str> = clause.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    let written = words[0].parse().ok()?;
    let received = words[2].parse().ok()?;
    let dropped = words
        .windows(2)
        .find(|w| w[1] == "dropped")
        .map_or(0, |w| w[0].parse().unwrap());
    Some((written, received, dropped))
}

fn summary_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find(|l| l.starts_with("otel-pipetrace: ") && l.contains(" processes, "))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"))
        .to_owned()
}

/// The processes the summary line counts: `otel-pipetrace: 52 processes, …`.
fn processes(summary: &str) -> u64 {
    summary
        .trim_start_matches("otel-pipetrace: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no process count in {summary}"))
}

/// Rows of a dataset, read by the DuckDB CLI (0 when no file was written).
fn parquet_rows(dir: &Path) -> u64 {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            name.ends_with(".parquet") && !name.starts_with('.'),
            "only complete files under their final names: {name}"
        );
    }
    if files.is_empty() {
        return 0;
    }
    duckdb_count(&format!("{}/*.parquet", dir.display()))
}

/// Rows of the Parquet files `glob` matches, counted by the DuckDB CLI.
fn duckdb_count(glob: &str) -> u64 {
    let out = Command::new(Path::new(TOOLS_VENV).join("bin/duckdb"))
        .args(["-csv", "-noheader", "-c"])
        .arg(format!("SELECT count(*) FROM read_parquet('{glob}')"))
        .output()
        .unwrap();
    assert!(out.status.success(), "duckdb: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Every line of a JSONL file, each parsed; the file ends with a whole line.
fn jsonl_lines(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "ends mid-line");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
    }
    text.lines().count() as u64
}

/// `run` with its Parquet data on `disk`, a file every 50 rows (so that some are written while
/// the disk is full).
fn run_with_parquet_on(disk: &Path) -> Command {
    let mut cmd = command();
    cmd.env("PIPETRACE_OUTPUT__FLUSH_ROWS", "50")
        .args(["run", "--summary", "line", "--grace", "0s", "--parquet"])
        .arg(disk.join("pq"));
    cmd
}

/// `run` with Parquet and JSONL on `disk`.
fn run_on(disk: &Path, flags: &[&str], cmd: &[&str]) -> Output {
    run_with_parquet_on(disk)
        .arg("--jsonl")
        .arg(disk.join("events.jsonl"))
        .args(flags)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap()
}

#[test]
fn a_disk_full_from_the_start_is_said_counted_and_fails_the_run_on_request() {
    require_root!();
    let disk = FullDisk::new("256k");
    let work = ["sh", "-c", "for i in $(seq 50); do /bin/true; done"];
    let out = run_on(disk.path(), &["--fail-on-loss"], &work);
    let summary = summary_line(&out);
    assert_eq!(out.status.code(), Some(75), "{summary}");
    let n = processes(&summary);
    assert_eq!(n, 52, "{summary}");
    // Said on the line scripts parse, with the reason and where.
    assert_eq!(
        output_counts(&summary, "parquet"),
        Some((0, n, n)),
        "{summary}"
    );
    let pq = disk.path().join("pq");
    assert!(
        summary.contains(&format!("(disk full: {}/", pq.display())),
        "{summary}"
    );
    let (written, received, dropped) = output_counts(&summary, "jsonl").unwrap();
    assert_eq!((written, dropped), (0, received), "{summary}");
    assert!(
        received >= 2 * n,
        "an exec and an exit per process: {summary}"
    );
    assert!(summary.contains("disk full"), "{summary}");
    // Nothing under a final name, no half-written file left.
    for dataset in ["events", "processes", "connections"] {
        assert_eq!(parquet_rows(&pq.join(dataset)), 0);
    }
    assert_eq!(jsonl_lines(&disk.path().join("events.jsonl")), 0);
    // The control: without the flag the command's own status is the run's.
    let out = run_on(disk.path(), &[], &work);
    assert_eq!(out.status.code(), Some(0), "{}", summary_line(&out));
}

#[test]
fn rows_the_disk_refused_are_written_once_space_returns() {
    require_root!();
    let disk = FullDisk::new("2m");
    let filler = disk.path().join("filler");
    let dir = tempfile::tempdir().unwrap();
    // A hundred processes while the disk is full, then space returns, then a hundred more;
    // the pause lets a retry happen while the run goes on.
    let pipeline = script(
        dir.path(),
        "pipeline.sh",
        &format!(
            "for i in $(seq 100); do /bin/true; done\nsleep 1.2\nrm {}\nsleep 2.5\nfor i in $(seq 100); do /bin/true; done\n",
            filler.display()
        ),
    );
    let out = run_on(
        disk.path(),
        &["--fail-on-loss"],
        &[pipeline.to_str().unwrap()],
    );
    let summary = summary_line(&out);
    // Nothing was lost, so --fail-on-loss keeps the command's status.
    assert_eq!(out.status.code(), Some(0), "{summary}");
    let n = processes(&summary);
    assert!(n >= 204, "{summary}");
    assert_eq!(
        output_counts(&summary, "parquet"),
        Some((n, n, 0)),
        "{summary}"
    );
    assert!(summary.contains("failed (disk full: "), "{summary}");
    let pq = disk.path().join("pq");
    assert_eq!(parquet_rows(&pq.join("processes")), n, "{summary}");
    let (written, received, dropped) = output_counts(&summary, "jsonl").unwrap();
    assert_eq!((written, dropped), (received, 0), "{summary}");
    assert_eq!(jsonl_lines(&disk.path().join("events.jsonl")), written);
    assert_eq!(
        parquet_rows(&pq.join("events")),
        written,
        "one row per line"
    );
}

#[test]
fn a_jsonl_reader_that_goes_away_costs_counted_lines_not_the_run() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    let mut agent = command()
        .args(["run", "--summary", "line", "--jsonl", "-", "--parquet"])
        .arg(data.path())
        .args([
            "--",
            "sh",
            "-c",
            "/bin/true; sleep 1; for i in $(seq 100); do /bin/true; done; exit 3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader takes the first lines, then goes away.
    let mut stdout = agent.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = agent.wait_with_output().unwrap();
    let summary = summary_line(&out);
    // The run goes on: the command's own status, every process in the other output.
    assert_eq!(out.status.code(), Some(3), "{summary}");
    let n = processes(&summary);
    assert!(n >= 103, "{summary}");
    assert_eq!(parquet_rows(&data.path().join("processes")), n);
    let (written, received, dropped) = output_counts(&summary, "jsonl").unwrap();
    assert!(written > 0 && dropped > 0, "{summary}");
    assert_eq!(written + dropped, received, "{summary}");
    assert!(summary.contains("(reader gone: stdout)"), "{summary}");
}

#[test]
fn a_disk_that_fills_mid_write_keeps_whole_lines_and_counts_the_rest() {
    require_root!();
    let disk = FullDisk::new("1m");
    // Room for part of the JSON lines (each ≈ 300 bytes); JSONL alone, so no other output
    // takes the room first.
    disk.free(48 * 1024);
    let out = command()
        .args(["run", "--summary", "line", "--grace", "0s", "--jsonl"])
        .arg(disk.path().join("events.jsonl"))
        .args(["--", "sh", "-c", "for i in $(seq 300); do /bin/true; done"])
        .output()
        .unwrap();
    let summary = summary_line(&out);
    assert_eq!(out.status.code(), Some(0), "{summary}");
    let (written, received, dropped) = output_counts(&summary, "jsonl").unwrap();
    assert!(written > 0 && written < received, "{summary}");
    assert_eq!(written + dropped, received, "{summary}");
    // The file holds exactly the lines said written, the last one whole, and they fill the
    // room to within a line.
    let file = disk.path().join("events.jsonl");
    assert_eq!(jsonl_lines(&file), written);
    assert!(disk.free_bytes() < 4096, "{} bytes left", disk.free_bytes());
}

/// `run` with Parquet (alone) on `disk`.
fn run_parquet_on(disk: &Path, pipeline: &Path) -> Output {
    run_with_parquet_on(disk)
        .arg("--")
        .arg(pipeline)
        .output()
        .unwrap()
}

#[test]
fn a_read_only_remount_mid_run_holds_the_rows_until_it_is_writable_again() {
    require_root!();
    let disk = FullDisk::new("4m");
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = disk.path().display();
    let pipeline = script(
        dir.path(),
        "pipeline.sh",
        &format!(
            "mount -o remount,ro {d}\nfor i in $(seq 100); do /bin/true; done\nsleep 1.5\nmount -o remount,rw {d}\nfor i in $(seq 100); do /bin/true; done\n"
        ),
    );
    let out = run_parquet_on(disk.path(), &pipeline);
    let summary = summary_line(&out);
    assert_eq!(out.status.code(), Some(0), "{summary}");
    let n = processes(&summary);
    assert_eq!(
        output_counts(&summary, "parquet"),
        Some((n, n, 0)),
        "{summary}"
    );
    assert!(summary.contains("(read-only file system: "), "{summary}");
    assert_eq!(parquet_rows(&disk.path().join("pq/processes")), n);
}

#[test]
fn a_data_directory_removed_mid_run_is_made_again_and_written() {
    require_root!();
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pq = data.path().join("pq");
    let pipeline = script(
        dir.path(),
        "pipeline.sh",
        &format!(
            "for i in $(seq 100); do /bin/true; done\nsleep 0.5\nrm -rf {}\nfor i in $(seq 100); do /bin/true; done\n",
            pq.display()
        ),
    );
    let out = run_parquet_on(data.path(), &pipeline);
    let summary = summary_line(&out);
    assert_eq!(out.status.code(), Some(0), "{summary}");
    // Nothing the agent could not write: the directory came back with the rows after it.
    assert_eq!(output_counts(&summary, "parquet"), None, "{summary}");
    let rows = parquet_rows(&pq.join("processes"));
    assert!(rows >= 100, "{rows} rows after the removal: {summary}");
}

#[test]
fn a_daemon_on_a_full_disk_says_it_in_its_metrics_and_its_stop_line() {
    require_root!();
    let disk = FullDisk::new("256k");
    let dir = tempfile::tempdir().unwrap();
    let name = format!("ptout{}.sh", std::process::id());
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[scope]\nmode = \"descendants\"\nroot_names = [\"{name}\"]\n[output]\nparquet_dir = \"{}\"\nflush_rows = 50\n[metrics]\nprometheus_listen = \"127.0.0.1:0\"\n",
            disk.path().join("pq").display()
        ),
    )
    .unwrap();
    let mut cmd = command();
    cmd.arg("--config")
        .arg(&config)
        .env_remove("PIPETRACE_OUTPUT__PARQUET_DIR");
    let mut daemon = pipetrace_tests::start_daemon(cmd);
    let port = daemon.metrics_port.expect("a metrics endpoint");
    let work = script(
        dir.path(),
        &name,
        "for i in $(seq 60); do /bin/true; done\n",
    );
    assert!(Command::new(&work).status().unwrap().success());
    let errors = |labels: &[&str]| {
        pipetrace_tests::prometheus::counter(port, "pipetrace_sink_errors_total", labels)
    };
    pipetrace_tests::wait_until(
        "a failed write in the metrics",
        std::time::Duration::from_secs(30),
        || errors(&["sink=\"parquet\"", "reason=\"disk full\""]) > 0,
    );
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    daemon.stderr.read_to_string(&mut rest).unwrap();
    assert!(daemon.child.wait().unwrap().success(), "{rest}");
    let stop = rest
        .lines()
        .find(|l| l.starts_with("otel-pipetrace: stopped;"))
        .unwrap_or_else(|| panic!("no stop line: {rest}"));
    let (written, received, dropped) = output_counts(stop, "parquet").unwrap();
    assert!(received >= 61, "{stop}");
    assert_eq!((written, dropped), (0, received), "{stop}");
    assert!(stop.contains("(disk full: "), "{stop}");
}

/// Waits for `child` up to `limit`; kills it and fails past that.
fn output_within(mut child: std::process::Child, limit: std::time::Duration, what: &str) -> Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_stuck_jsonl_reader_holds_up_neither_the_tracing_nor_the_parquet_data() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("events.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // A reader that holds the pipe open and never reads: once the pipe's 64 KiB are full,
    // every JSONL write blocks, for good.
    let mut reader = Command::new("sh")
        .args(["-c", "exec sleep 300 < \"$0\""])
        .arg(&fifo)
        .spawn()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let pq = data.path().join("pq");
    let child = command()
        .env("PIPETRACE_OUTPUT__CLOSE_TIMEOUT", "2s")
        .args([
            "run",
            "--summary",
            "line",
            "--grace",
            "0s",
            "--fail-on-loss",
        ])
        .arg("--parquet")
        .arg(&pq)
        .arg("--jsonl")
        .arg(&fifo)
        .args(["--", "sh", "-c", "for i in $(seq 1000); do /bin/true; done"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = output_within(
        child,
        std::time::Duration::from_secs(90),
        "the run hung behind its JSONL reader",
    );
    let _ = reader.kill();
    let _ = reader.wait();
    let summary = summary_line(&out);
    // The record is incomplete, and the run says so.
    assert_eq!(out.status.code(), Some(75), "{summary}");
    let n = processes(&summary);
    assert!(n > 1000, "{summary}");
    // The tracing and the other output went on as if nothing happened.
    assert!(summary.contains(", 0 events lost"), "{summary}");
    assert_eq!(output_counts(&summary, "parquet"), None, "{summary}");
    assert_eq!(parquet_rows(&pq.join("processes")), n);
    // The lines the reader never took are counted, and the wait for them was bounded.
    let (written, received, _) = output_counts(&summary, "jsonl").unwrap();
    // Fork, exec and exit of each process (the command's own fork is `run`'s).
    assert!(received >= 3 * (n - 1) && written < received, "{summary}");
    assert!(
        summary.contains("unwritten when the agent stopped waiting after 2s"),
        "{summary}"
    );
}

/// A disk whose writes can be held: slowfs (`tests/src/bin/slowfs.rs`, FUSE) over a fresh
/// directory, every write waiting while the hold file exists. Unmounted on drop.
struct HeldDisk {
    backing: tempfile::TempDir,
    mount: tempfile::TempDir,
    hold: PathBuf,
    slowfs: std::process::Child,
    said: std::sync::mpsc::Receiver<String>,
}

impl HeldDisk {
    fn new() -> Self {
        use std::io::BufRead;
        let backing = tempfile::tempdir().unwrap();
        let mount = tempfile::tempdir().unwrap();
        let hold = backing.path().with_extension("hold");
        let mut slowfs = Command::new(env!("CARGO_BIN_EXE_slowfs"))
            .arg(backing.path())
            .arg(mount.path())
            .arg("--hold")
            .arg(&hold)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tell, said) = std::sync::mpsc::channel();
        let stdout = std::io::BufReader::new(slowfs.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tell.send(line);
            }
        });
        let disk = Self {
            backing,
            mount,
            hold,
            slowfs,
            said,
        };
        assert_eq!(disk.next_line(), "mounted");
        disk
    }

    fn next_line(&self) -> String {
        self.said
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("slowfs said nothing for 60 s")
    }
}

impl Drop for HeldDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.hold);
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mount.path())
            .status();
        let _ = self.slowfs.kill();
        let _ = self.slowfs.wait();
    }
}

/// The `.NAME.PID.tmp` files under the three datasets of a Parquet directory.
fn unfinished_files(pq: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for dataset in ["events", "processes", "connections", "findings", "files"] {
        for entry in std::fs::read_dir(pq.join(dataset)).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                found.push(format!("{dataset}/{name}"));
            }
        }
    }
    found
}

/// Rows of every file under its final name in a dataset, by the DuckDB CLI.
fn finished_rows(dir: &Path) -> u64 {
    duckdb_count(&format!("{}/[!.]*.parquet", dir.display()))
}

#[test]
fn an_agent_killed_mid_write_leaves_no_partial_file_and_the_next_start_clears_what_it_left() {
    require_root!();
    let disk = HeldDisk::new();
    let pq = disk.mount.path().join("pq");
    let dir = tempfile::tempdir().unwrap();
    // Files every 50 rows: the first are written (seen in the backing directory), then the
    // disk holds every write.
    let pipeline = script(
        dir.path(),
        "pipeline.sh",
        &format!(
            "for i in $(seq 100); do /bin/true; done\n\
             for i in $(seq 600); do ls {pq}/processes/*.parquet >/dev/null 2>&1 && break; sleep 0.1; done\n\
             touch {hold}\nfor i in $(seq 100); do /bin/true; done\n",
            pq = disk.backing.path().join("pq").display(),
            hold = disk.hold.display()
        ),
    );
    let mut agent = run_with_parquet_on(disk.mount.path())
        .arg("--")
        .arg(&pipeline)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let held = disk.next_line();
    assert!(held.starts_with("held pq/"), "{held}");
    // SIGKILL while the write is in the file system; the write returns once the hold ends, and
    // the agent dies before it can finish the file.
    agent.kill().unwrap();
    std::fs::remove_file(&disk.hold).unwrap();
    let killed = output_within(
        agent,
        std::time::Duration::from_secs(30),
        "the killed agent did not end",
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(killed.status.signal(), Some(libc::SIGKILL));
    let backing = disk.backing.path().join("pq");
    let left = unfinished_files(&backing);
    assert!(
        left.iter().any(|f| held.ends_with(f.as_str())),
        "the held file stays unfinished, under a hidden name: {left:?} ({held})"
    );
    // Every file under a final name is whole (DuckDB reads them all): those written before
    // the hold.
    let before = finished_rows(&backing.join("processes"));
    assert!(before > 0, "no processes in finished files");

    // The next start removes what the killed agent left, says so, and writes next to it.
    let out = run_with_parquet_on(disk.mount.path())
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let said = format!(
        "removed {} unfinished Parquet file{} an earlier agent left in {}",
        left.len(),
        if left.len() == 1 { "" } else { "s" },
        pq.display()
    );
    assert!(stderr.contains(&said), "'{said}' not in: {stderr}");
    assert_eq!(unfinished_files(&backing), Vec::<String>::new());
    assert_eq!(parquet_rows(&backing.join("processes")), before + 1);
}

#[test]
fn a_data_directory_made_unwritable_mid_run_holds_the_rows_until_its_permission_returns() {
    require_root!();
    // The agent as a user with only its two capabilities: no CAP_DAC_OVERRIDE, so the
    // directory's mode binds it as it binds any user. The pipeline runs as that user too.
    let data = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let pq = data.path().join("pq");
    let processes_dir = pq.join("processes");
    let pipeline = script(
        data.path(),
        "pipeline.sh",
        &format!(
            "chmod 0500 {d}\nfor i in $(seq 100); do /bin/true; done\nsleep 1.5\nchmod 0750 {d}\nfor i in $(seq 100); do /bin/true; done\n",
            d = processes_dir.display()
        ),
    );
    let out = pipetrace_tests::as_nobody(&["bpf", "perfmon"])
        .env("PIPETRACE_OUTPUT__FLUSH_ROWS", "50")
        .args([
            "run",
            "--summary",
            "line",
            "--grace",
            "0s",
            "--fail-on-loss",
            "--parquet",
        ])
        .arg(&pq)
        .arg("--")
        .arg(&pipeline)
        .output()
        .unwrap();
    let summary = summary_line(&out);
    assert_eq!(out.status.code(), Some(0), "{summary}");
    let n = processes(&summary);
    assert!(n > 200, "{summary}");
    // The refused writes are said, and every row was written once the mode allowed it.
    assert_eq!(
        output_counts(&summary, "parquet"),
        Some((n, n, 0)),
        "{summary}"
    );
    assert!(summary.contains("(permission denied: "), "{summary}");
    assert_eq!(parquet_rows(&processes_dir), n);
}
