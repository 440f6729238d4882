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
    /// Each file read (listed: not those summarised per directory) by each step, with its size
    /// at the open: `compare`'s inputs.
    /// By step and path as compared across runs (see [`stable`]): the size and the path.
    pub reads: BTreeMap<(String, String), (Option<u64>, String)>,
    /// Each file each step changed (written, created, the new name of a rename), likewise.
    pub writes: BTreeMap<(String, String), String>,
}

/// A path as compared across runs: its temporary names, ids and timestamps replaced as in step
/// keys (`/tmp/ccX1b2.s` → `/tmp/<tmp>`), so that a compiler's scratch file is the same input
/// in every run.
fn stable(path: &str) -> String {
    super::step_key::step_key(path)
}

/// How an input or output of a step differs from the baseline's: the cache-miss answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileDifference {
    /// Read in both, with another size.
    ChangedInput {
        before: Option<u64>,
        after: Option<u64>,
    },
    /// Read now by a step the baseline ran too, which did not read it there.
    NewInput,
    /// Written now by a step the baseline ran too, which did not write it there.
    NewOutput,
}

impl FileDifference {
    pub fn words(&self) -> String {
        let size = |b: &Option<u64>| b.map_or_else(|| "?".to_owned(), |b| format!("{b} B"));
        match self {
            Self::ChangedInput { before, after } => {
                format!("changed input ({} → {})", size(before), size(after))
            }
            Self::NewInput => "newly read".into(),
            Self::NewOutput => "newly written".into(),
        }
    }
}

/// A file of a step that differs from the baseline.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileChange {
    pub difference: FileDifference,
    pub step: String,
    pub path: String,
}

/// The files of `run`'s steps that differ from `baseline`'s runs: inputs read with another size
/// than in every baseline run (a header edited between two builds), whatever step reads them;
/// and, for the steps the baseline ran too, inputs and outputs new to the step. A step the
/// baseline lacks is new as a whole (`compare`'s step table says so): listing everything it
/// read, the compiler's libraries included, would bury the input that changed. Changed inputs
/// first.
pub fn differences(run: &FilesSummary, baseline: &[&FilesSummary]) -> Vec<FileChange> {
    let mut sizes: HashMap<&str, Vec<Option<u64>>> = HashMap::new();
    let mut steps: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for b in baseline {
        for ((step, path), (size, _)) in &b.reads {
            sizes.entry(path).or_default().push(*size);
            steps.insert(step);
        }
        for (step, _) in b.writes.keys() {
            steps.insert(step);
        }
    }
    let read_by_step = |step: &str, path: &str| {
        baseline
            .iter()
            .any(|b| b.reads.contains_key(&(step.to_owned(), path.to_owned())))
    };
    let mut out = Vec::new();
    for ((step, path), (size, real)) in &run.reads {
        let difference = match sizes.get(path.as_str()) {
            Some(before) if !before.contains(size) => FileDifference::ChangedInput {
                before: before.last().copied().flatten(),
                after: *size,
            },
            _ if steps.contains(step.as_str()) && !read_by_step(step, path) => {
                FileDifference::NewInput
            }
            _ => continue,
        };
        out.push(FileChange {
            difference,
            step: step.clone(),
            path: real.clone(),
        });
    }
    for (key, real) in &run.writes {
        if steps.contains(key.0.as_str()) && !baseline.iter().any(|b| b.writes.contains_key(key)) {
            out.push(FileChange {
                difference: FileDifference::NewOutput,
                step: key.0.clone(),
                path: real.clone(),
            });
        }
    }
    out.sort();
    out
}

/// A run's files added up one process at a time, without keeping its reads: what `run`
/// holds for its summary (a build's millions of reads would not fit), and, keeping them, what
/// the query side builds a run's summary with.
#[derive(Debug, Default)]
pub struct FilesTally {
    keep_inputs: bool,
    summary: FilesSummary,
    /// Each changed path's last change: (time, made it, bytes, step). At one time, a removal
    /// wins (as in `outputs.sql`).
    last: BTreeMap<String, (i64, bool, Option<u64>, String)>,
    readers: HashMap<String, (u64, u64)>,
}

impl FilesTally {
    /// `keep_inputs`: keep each step's reads and writes, for [`differences`].
    pub fn new(keep_inputs: bool) -> Self {
        Self {
            keep_inputs,
            ..Self::default()
        }
    }

    pub fn add(&mut self, f: FileFact) {
        let s = &mut self.summary;
        if self.keep_inputs {
            match f.operation.as_str() {
                "read" => {
                    s.reads
                        .insert((f.step.clone(), stable(&f.path)), (f.bytes, f.path.clone()));
                }
                "write" | "create" | "truncate" => {
                    s.writes
                        .insert((f.step.clone(), stable(&f.path)), f.path.clone());
                }
                "rename" | "link" => {
                    if let Some(t) = &f.target {
                        s.writes.insert((f.step.clone(), stable(t)), t.clone());
                    }
                }
                _ => {}
            }
        }
        match f.operation.as_str() {
            "read" | "reads_under" => {
                let files = if f.operation == "reads_under" {
                    f.count
                } else {
                    1
                };
                let r = self.readers.entry(f.step).or_default();
                r.0 += files;
                r.1 += f.bytes.unwrap_or(0);
                s.files_read += files;
            }
            "write" | "create" | "truncate" | "symlink" => {
                s.files_written += 1;
                self.change(f.time_ns, true, f.path, f.bytes, f.step);
            }
            "delete" => {
                s.files_deleted += 1;
                self.change(f.time_ns, false, f.path, None, f.step);
            }
            "rename" | "link" => {
                if f.operation == "rename" {
                    self.change(f.time_ns, false, f.path, None, f.step.clone());
                }
                if let Some(t) = f.target {
                    self.change(f.time_ns, true, t, f.bytes, f.step);
                }
            }
            _ => {}
        }
    }

    fn change(&mut self, time: i64, made: bool, path: String, bytes: Option<u64>, step: String) {
        let later = self
            .last
            .get(&path)
            .is_none_or(|&(t, m, _, _)| (time, !made) > (t, !m));
        if later {
            self.last.insert(path, (time, made, bytes, step));
        }
    }

    pub fn finish(self) -> FilesSummary {
        let mut summary = self.summary;
        summary.outputs = self
            .last
            .into_iter()
            .filter(|(_, (_, made, _, _))| *made)
            .map(|(path, (_, _, bytes, step))| Output { path, bytes, step })
            .collect();
        summary
            .outputs
            .sort_by(|a, b| a.step.cmp(&b.step).then(a.path.cmp(&b.path)));
        summary.readers = self
            .readers
            .into_iter()
            .map(|(step, (files, bytes))| Reader { step, files, bytes })
            .collect();
        summary
            .readers
            .sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.step.cmp(&b.step)));
        summary
    }
}

impl FilesSummary {
    /// A run's files in short, its inputs and outputs kept for [`differences`].
    pub fn of(facts: &[FileFact]) -> Self {
        let mut tally = FilesTally::new(true);
        for f in facts {
            tally.add(f.clone());
        }
        tally.finish()
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

    #[test]
    fn a_header_edited_between_builds_is_a_changed_input() {
        let read = |step: &str, path: &str, bytes: u64| FileFact {
            bytes: Some(bytes),
            ..fact(step, "read", path, None, 1)
        };
        let before = FilesSummary::of(&[
            read("cc -c a.c", "/s/a.c", 100),
            read("cc -c a.c", "/s/a.h", 40),
            read("cc -c b.c", "/s/b.c", 10),
        ]);
        let after = FilesSummary::of(&[
            read("cc -c a.c", "/s/a.c", 100),
            read("cc -c a.c", "/s/a.h", 52),
            read("cc -c a.c", "/s/b.h", 7),
            read("cc -c b.c", "/s/b.c", 10),
            fact("cc -c a.c", "create", "/s/a.o", None, 2),
        ]);
        let d = differences(&after, &[&before]);
        let seen: Vec<(&str, String)> = d
            .iter()
            .map(|c| (c.path.as_str(), c.difference.words()))
            .collect();
        assert_eq!(
            seen,
            [
                ("/s/a.h", "changed input (40 B → 52 B)".to_owned()),
                ("/s/b.h", "newly read".to_owned()),
                ("/s/a.o", "newly written".to_owned()),
            ]
        );
        // A step the baseline lacks lists only the inputs that changed.
        let first = FilesSummary::of(&[read("cc -c z.c", "/s/a.h", 40)]);
        let d = differences(&after, &[&first]);
        let seen: Vec<&str> = d.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(seen, ["/s/a.h"]);
    }
}
