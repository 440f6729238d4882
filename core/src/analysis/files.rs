//! A run's files in short, for the summary and the reports: what each step left behind (its
//! outputs), which steps read the most, what was deleted. The rule for an output is
//! `query outputs`'s (`outputs.sql`): a path's last change in the run made it (a write, a
//! create, a truncate, a rename's or link's new name, a symlink) and nothing took it away later.

use std::collections::{BTreeMap, HashMap};

/// One row of the `files` dataset, with the step of its process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFact {
    pub step: String,
    /// As the `operation` column: read, write, create, delete, rename, …
    pub operation: String,
    pub path: String,
    pub target: Option<String>,
    pub bytes: Option<u64>,
    /// Times (files for `reads_under`).
    pub count: u64,
    /// When the process first did it (any clock, only compared).
    pub time_ns: i64,
}

/// A file that exists at the end of the run, and the step that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub path: String,
    pub bytes: Option<u64>,
    pub step: String,
}

/// A step's reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub step: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilesSummary {
    /// By step, then path.
    pub outputs: Vec<Output>,
    /// The most bytes read first.
    pub readers: Vec<Reader>,
    pub files_read: u64,
    pub files_written: u64,
    pub files_deleted: u64,
}

impl FilesSummary {
    pub fn of(facts: &[FileFact]) -> Self {
        // (time, made, path, bytes, step) of each change, in the order of `outputs.sql`.
        let mut changes: Vec<(i64, bool, &str, Option<u64>, &str)> = Vec::new();
        let mut readers: HashMap<&str, (u64, u64)> = HashMap::new();
        let mut summary = FilesSummary::default();
        for f in facts {
            match f.operation.as_str() {
                "read" | "reads_under" => {
                    let r = readers.entry(&f.step).or_default();
                    let files = if f.operation == "reads_under" {
                        f.count
                    } else {
                        1
                    };
                    r.0 += files;
                    r.1 += f.bytes.unwrap_or(0);
                    summary.files_read += files;
                }
                "write" | "create" | "truncate" | "symlink" => {
                    summary.files_written += 1;
                    changes.push((f.time_ns, true, &f.path, f.bytes, &f.step));
                }
                "delete" => {
                    summary.files_deleted += 1;
                    changes.push((f.time_ns, false, &f.path, None, &f.step));
                }
                "rename" | "link" => {
                    if f.operation == "rename" {
                        changes.push((f.time_ns, false, &f.path, None, &f.step));
                    }
                    if let Some(t) = &f.target {
                        changes.push((f.time_ns, true, t, f.bytes, &f.step));
                    }
                }
                _ => {}
            }
        }
        // The last change of each path (at one time, a removal before a making).
        let mut last: BTreeMap<&str, (i64, bool, Option<u64>, &str)> = BTreeMap::new();
        for (time, made, path, bytes, step) in changes {
            let later = last
                .get(path)
                .is_none_or(|&(t, m, _, _)| (time, !made) > (t, !m));
            if later {
                last.insert(path, (time, made, bytes, step));
            }
        }
        summary.outputs = last
            .into_iter()
            .filter(|(_, (_, made, _, _))| *made)
            .map(|(path, (_, _, bytes, step))| Output {
                path: path.to_owned(),
                bytes,
                step: step.to_owned(),
            })
            .collect();
        summary
            .outputs
            .sort_by(|a, b| a.step.cmp(&b.step).then(a.path.cmp(&b.path)));
        summary.readers = readers
            .into_iter()
            .map(|(step, (files, bytes))| Reader {
                step: step.to_owned(),
                files,
                bytes,
            })
            .collect();
        summary
            .readers
            .sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.step.cmp(&b.step)));
        summary
    }

    pub fn is_empty(&self) -> bool {
        self.files_read == 0 && self.files_written == 0 && self.files_deleted == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(step: &str, op: &str, path: &str, target: Option<&str>, t: i64) -> FileFact {
        FileFact {
            step: step.into(),
            operation: op.into(),
            path: path.into(),
            target: target.map(Into::into),
            bytes: Some(10),
            count: 1,
            time_ns: t,
        }
    }

    #[test]
    fn outputs_are_what_the_last_change_left() {
        let s = FilesSummary::of(&[
            fact("cc", "create", "/b/x.o", None, 1),
            fact("cc", "create", "/tmp/cc1.s", None, 2),
            fact("cc", "delete", "/tmp/cc1.s", None, 3),
            fact("ld", "read", "/b/x.o", None, 4),
            fact("ld", "create", "/b/app.tmp", None, 5),
            fact("ld", "rename", "/b/app.tmp", Some("/b/app"), 6),
        ]);
        let outputs: Vec<&str> = s.outputs.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(outputs, ["/b/x.o", "/b/app"]);
        assert_eq!(s.outputs[1].step, "ld");
        assert_eq!((s.files_read, s.files_written, s.files_deleted), (1, 3, 1));
        assert_eq!(s.readers[0].step, "ld");
    }
}
