//! Every way a question can fail, as one line: bad input (named, with what would be right) or
//! DuckDB's own complaint, its first line only (the rest quotes our SQL).

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Input(String),
    #[error("query failed: {0}")]
    Sql(String),
}

pub(super) fn sql_error(e: duckdb::Error) -> QueryError {
    QueryError::Sql(first_line(&e.to_string()))
}

/// DuckDB's first line, which says what is wrong (the lines after it quote our own SQL).
pub(super) fn reason_only(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_owned()
}

pub(super) fn first_line(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

/// "permission denied" with what would give access: the agent writes its data 0750/0640 as
/// root, so reading it takes root or the data's group.
pub(super) fn permission_denied(path: &Path) -> QueryError {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    // The nearest part of the path whose attributes can be read says who may read it.
    let owner = path
        .ancestors()
        .find_map(|p| std::fs::metadata(p).ok().map(|m| (p.to_path_buf(), m)))
        .map(|(p, m)| {
            format!(
                " ({} is mode {:04o}, group {})",
                p.display(),
                m.mode() & 0o7777,
                group_name(m.gid())
            )
        })
        .unwrap_or_default();
    QueryError::Input(format!(
        "{shown}: permission denied{owner}: reading the data needs root or membership of the data's group with group read access (e.g. chgrp -R GROUP {shown} and add yourself to GROUP)"
    ))
}

/// The name of group `gid` from /etc/group, else the number.
fn group_name(gid: u32) -> String {
    std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id: u32 = fields.nth(1)?.parse().ok()?;
                (id == gid).then(|| name.to_owned())
            })
        })
        .unwrap_or_else(|| gid.to_string())
}
