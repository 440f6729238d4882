//! The official DuckDB CLI as an independent reader of the Parquet data: the same SQL must
//! give the same rows.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::rotel::TOOLS_VENV;

pub fn duckdb_cli() -> PathBuf {
    let path = PathBuf::from(TOOLS_VENV).join("bin/duckdb");
    assert!(path.exists(), "{}: run scripts/setup", path.display());
    path
}

/// Runs SQL in the official DuckDB CLI; rows as JSON objects.
pub fn duckdb_json(script: &str) -> Vec<Value> {
    let mut child = Command::new(duckdb_cli())
        .args(["-json", ":memory:"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "duckdb CLI: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // One JSON array per statement that returns rows: the last one is the query's.
    let last = text
        .trim()
        .rsplit_once("\n[")
        .map_or(text.trim().to_owned(), |(_, t)| format!("[{t}"));
    if last.is_empty() {
        return Vec::new();
    }
    match serde_json::from_str(&last) {
        Ok(Value::Array(rows)) => rows,
        other => panic!("duckdb CLI output is not a JSON array: {other:?}\n{text}"),
    }
}

/// Timestamps print differently (`T`/`Z` vs ` `/`+00`); compare their digits.
pub fn normalize(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() >= 19 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' => {
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            Value::String(digits.trim_end_matches('0').to_owned())
        }
        other => other.clone(),
    }
}

pub fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => normalize(a) == normalize(b),
    }
}

pub fn assert_same_rows(name: &str, ours: &[Value], oracle: &[Value]) {
    assert_eq!(
        ours.len(),
        oracle.len(),
        "{name}: row count\nours {ours:#?}\ncli {oracle:#?}"
    );
    for (i, (a, b)) in ours.iter().zip(oracle).enumerate() {
        let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{name} row {i}: columns"
        );
        for (k, va) in a {
            assert!(
                same(va, &b[k]),
                "{name} row {i} column {k}: ours {va} vs CLI {}",
                b[k]
            );
        }
    }
}
