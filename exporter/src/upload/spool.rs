//! The local data directory as the upload spool. Each dataset directory holds three kinds of
//! complete Parquet files, all of them read by `query`:
//!
//! - `DATASET/*.parquet`: written by the sink, not rolled yet;
//! - `DATASET/outbox/host=H/date=D/*.parquet`: rolled (the sink's files of one host and day
//!   merged into one), waiting for upload — the object's key is this path without `outbox/`;
//! - `DATASET/uploaded/host=H/date=D/*.parquet`: confirmed by the server, deleted after
//!   `local_retention`.
//!
//! A rolled file names its sources in its Parquet metadata, so a crash between writing it and
//! deleting them is finished at the next pass, never merged twice. Every step is a rename of a
//! complete file: a reader never sees a partial one.

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use parquet::{
    arrow::{ArrowWriter, arrow_reader::ParquetRecordBatchReaderBuilder},
    basic::Compression,
    file::{
        metadata::KeyValue,
        properties::{WriterProperties, WriterVersion},
        reader::{FileReader, SerializedFileReader},
    },
};

use crate::{
    datasets::{CONNECTIONS, EVENTS, FILES, FINDINGS, PROCESSES},
    sinks::{create_private_dir, create_private_file},
};

pub const OUTBOX: &str = "outbox";
pub const UPLOADED: &str = "uploaded";
/// Parquet metadata key of a rolled file: the JSON list of the files merged into it.
pub(super) const SOURCES_KEY: &str = "pipetrace.sources";
/// Rows per row group of a rolled file: what merging holds in memory at once.
const ROLLED_GROUP_ROWS: usize = 65_536;

pub const DATASETS: [&str; 5] = [EVENTS, PROCESSES, CONNECTIONS, FINDINGS, FILES];

/// One rolled file waiting for upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// `DATASET/host=H/date=D/NAME.parquet`: the object's key under the bucket's prefix.
    pub key: String,
    pub path: PathBuf,
    pub bytes: u64,
}

/// What one roll did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rolled {
    pub files_in: u64,
    pub files_out: u64,
    /// Sink files that could not be read (left in place, named in the log).
    pub unreadable: u64,
}

pub struct Spool {
    dir: PathBuf,
    /// The host of files whose rows do not name one.
    host: String,
    props: WriterProperties,
}

fn is_complete_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "parquet")
        && !path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
}

/// Complete Parquet files directly in `dir`, sorted (none when it does not exist).
fn files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_complete_parquet(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Files two levels below `dir` (`host=H/date=D/F`), with their path relative to `dir`.
fn partitioned_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(hosts) = std::fs::read_dir(dir) else {
        return out;
    };
    for host in hosts.flatten() {
        let Ok(dates) = std::fs::read_dir(host.path()) else {
            continue;
        };
        for date in dates.flatten() {
            let Ok(files) = std::fs::read_dir(date.path()) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                let name = |e: &std::fs::DirEntry| e.file_name().to_string_lossy().into_owned();
                out.push((
                    format!("{}/{}/{}", name(&host), name(&date), name(&file)),
                    path,
                ));
            }
        }
    }
    out.sort();
    out
}

/// A partition value that is safe in a path and in a hive key.
fn partition_value(value: &str) -> String {
    let clean: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        format!("_{clean}")
    } else {
        clean
    }
}

/// The UTC day a sink file was written: from its name (`<unix ns>-…`), else its mtime.
fn file_day(path: &Path) -> String {
    let from_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .and_then(|ns| ns.parse::<i64>().ok());
    let ns = from_name.unwrap_or_else(|| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64)
    });
    chrono::DateTime::from_timestamp_nanos(ns)
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

/// The first row's `host`, if the batch has one.
fn batch_host(batch: &RecordBatch) -> Option<String> {
    let column = batch.column_by_name("host")?;
    let hosts = column.as_any().downcast_ref::<StringArray>()?;
    (!hosts.is_empty() && hosts.is_valid(0)).then(|| hosts.value(0).to_owned())
}

/// The sources a rolled file names.
pub(super) fn sources_of(path: &Path) -> Vec<String> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let Ok(reader) = SerializedFileReader::new(file) else {
        return Vec::new();
    };
    reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == SOURCES_KEY))
        .and_then(|k| k.value.as_deref())
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                remove_empty_dirs(&path);
                // Fails, as intended, while the directory still holds something.
                let _ = std::fs::remove_dir(&path);
            }
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A sink file opened for merging.
pub(super) struct Source {
    pub path: PathBuf,
    pub name: String,
    pub schema: SchemaRef,
    pub host: String,
    pub day: String,
}

impl Spool {
    pub fn new(dir: &Path, host: &str) -> Self {
        let props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROLLED_GROUP_ROWS))
            .build();
        Self {
            dir: dir.to_path_buf(),
            host: host.to_owned(),
            props,
        }
    }

    fn outbox(&self, dataset: &str) -> PathBuf {
        self.dir.join(dataset).join(OUTBOX)
    }

    fn uploaded(&self, dataset: &str) -> PathBuf {
        self.dir.join(dataset).join(UPLOADED)
    }

    /// Finishes what a crash interrupted: partial rolled files go, sources of complete ones
    /// that are still there go (their rows are in the rolled file).
    pub fn recover(&self) {
        for dataset in DATASETS {
            for (_, path) in partitioned_files(&self.outbox(dataset)) {
                if !is_complete_parquet(&path) {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                for source in sources_of(&path) {
                    if !source.contains('/') && is_complete_parquet(Path::new(&source)) {
                        let _ = std::fs::remove_file(self.dir.join(dataset).join(&source));
                    }
                }
            }
        }
    }

    /// Merges the sink's files of each dataset into one file per host, day and schema in the
    /// outbox, then deletes them.
    pub fn roll(&self) -> std::io::Result<Rolled> {
        let mut rolled = Rolled::default();
        for dataset in DATASETS {
            let files = files_in(&self.dir.join(dataset))?;
            let groups = self.group(&files, |path, e| {
                rolled.unreadable += 1;
                tracing::warn!("cannot roll {}: {e}", path.display());
            });
            for ((host, day, _), sources) in groups {
                rolled.files_in += sources.len() as u64;
                self.merge(dataset, &host, &day, sources)?;
                rolled.files_out += 1;
            }
        }
        Ok(rolled)
    }

    /// `paths` opened and grouped by host, day and schema (files of other schemas are not
    /// merged); `unreadable` hears of each that does not open.
    pub(super) fn group(
        &self,
        paths: &[PathBuf],
        mut unreadable: impl FnMut(&Path, parquet::errors::ParquetError),
    ) -> BTreeMap<(String, String, String), Vec<Source>> {
        let mut groups: BTreeMap<(String, String, String), Vec<Source>> = BTreeMap::new();
        for path in paths {
            match self.open_source(path) {
                Ok(source) => {
                    let shape = format!("{:?}", source.schema.fields());
                    groups
                        .entry((source.host.clone(), source.day.clone(), shape))
                        .or_default()
                        .push(source);
                }
                Err(e) => unreadable(path, e),
            }
        }
        groups
    }

    pub(super) fn open_source(&self, path: &Path) -> Result<Source, parquet::errors::ParquetError> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
        let schema = builder.schema().clone();
        let first = builder.with_batch_size(1).build()?.next().transpose()?;
        let host = first
            .as_ref()
            .and_then(batch_host)
            .unwrap_or_else(|| self.host.clone());
        Ok(Source {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            schema,
            host: partition_value(&host),
            day: file_day(path),
        })
    }

    /// Writes `sources` (same schema) as one file, renames it into the outbox, deletes them.
    fn merge(
        &self,
        dataset: &str,
        host: &str,
        day: &str,
        sources: Vec<Source>,
    ) -> std::io::Result<()> {
        let dir = self
            .outbox(dataset)
            .join(format!("host={host}"))
            .join(format!("date={day}"));
        // The first source's name: unique (each sink file is rolled once) and in time order.
        let name = sources[0].name.clone();
        self.write_merged(&dir, &name, &sources)?;
        for source in &sources {
            std::fs::remove_file(&source.path)?;
        }
        Ok(())
    }

    /// Writes `sources` (same schema), batch by batch, as the complete file `dir/name` (it may
    /// replace one of them), naming them in its metadata.
    pub(super) fn write_merged(
        &self,
        dir: &Path,
        name: &str,
        sources: &[Source],
    ) -> std::io::Result<()> {
        create_private_dir(dir)?;
        let tmp = dir.join(format!(".{name}.tmp"));
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        let props = self
            .props
            .clone()
            .into_builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                SOURCES_KEY.to_owned(),
                serde_json::to_string(&names).unwrap_or_default(),
            )]))
            .build();
        let schema = Arc::clone(&sources[0].schema);
        let write = || -> Result<(), parquet::errors::ParquetError> {
            let file = create_private_file(&tmp)?;
            let mut writer = ArrowWriter::try_new(file, schema, Some(props))?;
            for source in sources {
                // Batch by batch: memory holds one row group, not the files.
                let reader =
                    ParquetRecordBatchReaderBuilder::try_new(File::open(&source.path)?)?.build()?;
                for batch in reader {
                    writer.write(&batch?)?;
                }
            }
            let file = writer.into_inner()?;
            file.sync_all()?;
            Ok(())
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            // The OS error's kind survives (a full disk stays "disk full" in the summary).
            let kind = match &e {
                parquet::errors::ParquetError::External(inner) => inner
                    .downcast_ref::<std::io::Error>()
                    .map_or(std::io::ErrorKind::Other, std::io::Error::kind),
                _ => std::io::ErrorKind::Other,
            };
            return Err(std::io::Error::new(kind, format!("{}: {e}", tmp.display())));
        }
        std::fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir);
        Ok(())
    }

    /// The sink's files not rolled yet (a roll failed, or they came after it): files and bytes.
    pub fn unrolled(&self) -> (u64, u64) {
        let mut out = (0, 0);
        for dataset in DATASETS {
            for path in files_in(&self.dir.join(dataset)).unwrap_or_default() {
                out.0 += 1;
                out.1 += std::fs::metadata(&path).map_or(0, |m| m.len());
            }
        }
        out
    }

    /// Rolled files waiting for upload, oldest first.
    pub fn waiting(&self) -> Vec<Waiting> {
        let mut out: Vec<Waiting> = DATASETS
            .iter()
            .flat_map(|dataset| {
                partitioned_files(&self.outbox(dataset))
                    .into_iter()
                    .filter(|(_, path)| is_complete_parquet(path))
                    .map(move |(relative, path)| Waiting {
                        key: format!("{dataset}/{relative}"),
                        bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
                        path,
                    })
            })
            .collect();
        out.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
        out
    }

    /// `waiting` was uploaded: it moves out of the outbox (deleted when nothing is retained).
    pub fn confirm(&self, waiting: &Waiting, retention: Duration) -> std::io::Result<()> {
        if retention.is_zero() {
            return std::fs::remove_file(&waiting.path);
        }
        let (dataset, rest) = waiting.key.split_once('/').unwrap_or(("", &waiting.key));
        let to = self.uploaded(dataset).join(rest);
        if let Some(parent) = to.parent() {
            create_private_dir(parent)?;
        }
        std::fs::rename(&waiting.path, &to)?;
        // Retention counts from the upload.
        File::options()
            .write(true)
            .open(&to)?
            .set_modified(SystemTime::now())
    }

    /// Deletes uploaded files older than `retention` and empty partition directories.
    pub fn expire(&self, retention: Duration) {
        let now = SystemTime::now();
        for dataset in DATASETS {
            let dir = self.uploaded(dataset);
            for (_, path) in partitioned_files(&dir) {
                let old = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age >= retention);
                if old {
                    let _ = std::fs::remove_file(&path);
                }
            }
            remove_empty_dirs(&dir);
            remove_empty_dirs(&self.outbox(dataset));
        }
    }

    /// Drops the oldest waiting files until at most `max_bytes` wait; returns (files, bytes)
    /// dropped.
    pub fn bound(&self, max_bytes: u64) -> (u64, u64) {
        let waiting = self.waiting();
        let mut total: u64 = waiting.iter().map(|w| w.bytes).sum();
        let mut dropped = (0, 0);
        for w in waiting {
            if total <= max_bytes {
                break;
            }
            if std::fs::remove_file(&w.path).is_ok() {
                total -= w.bytes;
                dropped.0 += 1;
                dropped.1 += w.bytes;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;
    use arrow_schema::{DataType, Field, Schema};

    fn write(path: &Path, host: &str, values: &[i64]) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("host", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(values.to_vec())),
                Arc::new(StringArray::from(vec![host; values.len()])),
            ],
        )
        .unwrap();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn values(path: &Path) -> Vec<i64> {
        ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let v = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                v.values().to_vec()
            })
            .collect()
    }

    // 2026-11-30T00:00:00Z and a day later, in ns.
    const DAY1: i64 = 1_795_996_800_000_000_000;
    const DAY2: i64 = DAY1 + 86_400_000_000_000;

    #[test]
    fn rolls_files_into_one_per_host_and_day_and_recovers_from_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join(EVENTS);
        std::fs::create_dir_all(&events).unwrap();
        write(
            &events.join(format!("{DAY1:020}-r-000001.parquet")),
            "a",
            &[1, 2],
        );
        write(
            &events.join(format!("{:020}-r-000002.parquet", DAY1 + 5)),
            "a",
            &[3],
        );
        write(
            &events.join(format!("{DAY2:020}-r-000003.parquet")),
            "a",
            &[4],
        );
        write(
            &events.join(format!("{:020}-s-000001.parquet", DAY1 + 9)),
            "b c",
            &[5],
        );
        std::fs::write(events.join(".partial.parquet.tmp"), b"x").unwrap();
        let spool = Spool::new(dir.path(), "fallback");
        let rolled = spool.roll().unwrap();
        assert_eq!((rolled.files_in, rolled.files_out), (4, 3));
        let waiting = spool.waiting();
        let keys: Vec<&str> = waiting.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                format!("events/host=a/date=2026-11-30/{DAY1:020}-r-000001.parquet").as_str(),
                format!(
                    "events/host=b_c/date=2026-11-30/{:020}-s-000001.parquet",
                    DAY1 + 9
                )
                .as_str(),
                format!("events/host=a/date=2026-12-01/{DAY2:020}-r-000003.parquet").as_str(),
            ]
        );
        assert_eq!(values(&waiting[0].path), [1, 2, 3]);
        assert_eq!(files_in(&events).unwrap(), Vec::<PathBuf>::new());

        // A crash after the rolled file was renamed in, before its sources were deleted: the
        // next pass deletes them instead of rolling them again.
        write(
            &events.join(format!("{DAY1:020}-r-000001.parquet")),
            "a",
            &[1, 2],
        );
        spool.recover();
        assert_eq!(files_in(&events).unwrap(), Vec::<PathBuf>::new());
        assert_eq!(spool.roll().unwrap().files_out, 0);

        // Confirmed: kept for the retention, then gone.
        spool
            .confirm(&waiting[0], Duration::from_secs(3600))
            .unwrap();
        assert!(
            dir.path()
                .join("events/uploaded/host=a/date=2026-11-30")
                .join(format!("{DAY1:020}-r-000001.parquet"))
                .exists()
        );
        spool.expire(Duration::from_secs(3600));
        assert_eq!(partitioned_files(&spool.uploaded(EVENTS)).len(), 1);
        spool.expire(Duration::ZERO);
        assert_eq!(partitioned_files(&spool.uploaded(EVENTS)).len(), 0);
        assert_eq!(spool.waiting().len(), 2);

        // Bounded: the oldest waiting file goes first.
        let sizes: Vec<u64> = spool.waiting().iter().map(|w| w.bytes).collect();
        assert_eq!(spool.bound(sizes[1]), (1, sizes[0]));
        assert_eq!(spool.waiting()[0].key, keys[2]);
    }
}
