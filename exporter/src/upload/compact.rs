//! `otel-pipetrace compact`: many small Parquet files made into few. Every `run` writes files
//! of its own, and a fleet of ephemeral runners uploads an object per job: every query reads
//! every file's footer, so ten thousand runs in ten thousand files take seconds where one file
//! per host and day takes a fraction of one (`docs/benchmarks.md`). Locally, the sink's files
//! of each host, day and schema become one; in a bucket, the objects of each
//! `DATASET/host=H/date=D/` partition. Files younger than `min_age` stay (a run may still be
//! writing, the uploader rolling).
//!
//! The merged file names its sources in its metadata and is in place before they go: a reader
//! sees every row — for the moment of the deletions possibly twice, never none — and a
//! compaction interrupted between the two is finished by the next one.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use super::{
    spool::{DATASETS, Source, Spool, sources_of},
    store::{Bucket, Listed, StoreError},
};

/// What a compaction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub files_in: u64,
    pub files_out: u64,
    /// Sources of an earlier, interrupted compaction removed.
    pub leftovers: u64,
    /// Files left because they are younger than the minimum age.
    pub young: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CompactError + '_ {
    move |source| CompactError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn older_than(modified: SystemTime, min_age: Duration) -> bool {
    SystemTime::now()
        .duration_since(modified)
        .is_ok_and(|age| age >= min_age)
}

/// `paths` in groups of one host, day and schema, two files or more, in name (time) order; a
/// file that does not open is left alone.
fn mergeable(spool: &Spool, paths: &[PathBuf]) -> Vec<Vec<Source>> {
    spool
        .group(paths, |path, e| {
            tracing::warn!("cannot compact {}: {e}", path.display());
        })
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort_by(|a, b| a.name.cmp(&b.name));
            g
        })
        .collect()
}

/// The data directory `dir`: each dataset's own files (not the upload spool's: the uploader
/// owns those) of one host, day and schema, older than `min_age`, into one file named as the
/// earliest (names sort in time order).
pub fn compact_dir(dir: &Path, host: &str, min_age: Duration) -> Result<Compacted, CompactError> {
    let spool = Spool::new(dir, host);
    let mut done = Compacted::default();
    for dataset in DATASETS {
        let dataset_dir = dir.join(dataset);
        let mut files = Vec::new();
        let entries = match std::fs::read_dir(&dataset_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&dataset_dir)(e)),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".parquet") || !path.is_file() {
                continue;
            }
            // An interrupted compaction: its file is complete, its sources are still here.
            for source in sources_of(&path) {
                let leftover = dataset_dir.join(&source);
                if source != name && !source.contains('/') && leftover.is_file() {
                    std::fs::remove_file(&leftover).map_err(io(&leftover))?;
                    done.leftovers += 1;
                }
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| older_than(t, min_age));
            if old {
                files.push(path);
            } else {
                done.young += 1;
            }
        }
        files.retain(|p| p.is_file());
        for group in mergeable(&spool, &files) {
            let name = group[0].name.clone();
            spool
                .write_merged(&dataset_dir, &name, &group)
                .map_err(io(&dataset_dir))?;
            for source in &group[1..] {
                std::fs::remove_file(&source.path).map_err(io(&source.path))?;
            }
            done.files_in += group.len() as u64;
            done.files_out += 1;
        }
    }
    Ok(done)
}

/// Marks a merged object's name: `<first source's time>-compacted-<hash of the sources>`.
const COMPACTED: &str = "-compacted-";

/// FNV-1a over the source names: the merged object's name differs from every earlier one.
fn fnv1a(names: &[&str]) -> u64 {
    names
        .iter()
        .flat_map(|n| n.bytes().chain([0]))
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The sources a merged object names, read from its footer with two range requests.
async fn remote_sources(bucket: &Bucket, object: &Listed) -> Result<Vec<String>, StoreError> {
    use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
    if object.size < 12 {
        return Ok(Vec::new());
    }
    let tail = bucket
        .read_range(&object.relative, object.size - 8..object.size)
        .await?;
    let Ok(tail) = <[u8; 8]>::try_from(tail.as_slice()) else {
        return Ok(Vec::new());
    };
    let Ok(footer) = FooterTail::try_from(tail) else {
        return Ok(Vec::new());
    };
    let length = footer.metadata_length() as u64;
    if length + 8 > object.size {
        return Ok(Vec::new());
    }
    let bytes = bucket
        .read_range(&object.relative, object.size - 8 - length..object.size - 8)
        .await?;
    let Ok(metadata) = ParquetMetaDataReader::decode_metadata(&bytes) else {
        return Ok(Vec::new());
    };
    Ok(metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == super::spool::SOURCES_KEY))
        .and_then(|k| k.value.as_deref())
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default())
}

/// The bucket: each `DATASET/host=H/date=D/` partition's objects older than `min_age` (of one
/// schema) into one, created before they are deleted. `work` holds the downloads meanwhile.
pub async fn compact_bucket(
    bucket: &Bucket,
    min_age: Duration,
    work: &Path,
) -> Result<Compacted, CompactError> {
    let spool = Spool::new(work, "unknown");
    let mut done = Compacted::default();
    for dataset in DATASETS {
        let mut partitions: BTreeMap<String, Vec<Listed>> = BTreeMap::new();
        for object in bucket.list(&format!("{dataset}/")).await? {
            if let Some((partition, name)) = object.relative.rsplit_once('/')
                && name.ends_with(".parquet")
                && !name.starts_with('.')
            {
                partitions
                    .entry(partition.to_owned())
                    .or_default()
                    .push(object);
            }
        }
        for (partition, objects) in partitions {
            let name_of = |o: &Listed| o.relative.rsplit('/').next().unwrap_or("").to_owned();
            // An interrupted compaction: its object is there, some sources too.
            let mut gone = Vec::new();
            for merged in objects.iter().filter(|o| name_of(o).contains(COMPACTED)) {
                for source in remote_sources(bucket, merged).await? {
                    if let Some(left) = objects.iter().find(|o| name_of(o) == source)
                        && left.relative != merged.relative
                    {
                        bucket.delete(&left.relative).await?;
                        gone.push(left.relative.clone());
                        done.leftovers += 1;
                    }
                }
            }
            let (old, young): (Vec<&Listed>, Vec<&Listed>) = objects
                .iter()
                .filter(|o| !gone.contains(&o.relative))
                .partition(|o| older_than(o.modified, min_age));
            done.young += young.len() as u64;
            if old.len() < 2 {
                continue;
            }
            let scratch = work.join(format!("{dataset}-{}", fnv1a(&[&partition])));
            std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;
            let mut paths = Vec::new();
            for object in &old {
                let path = scratch.join(name_of(object));
                bucket.download(&object.relative, &path).await?;
                paths.push(path);
            }
            for group in mergeable(&spool, &paths) {
                let names: Vec<&str> = group.iter().map(|s| s.name.as_str()).collect();
                let first_time = names[0].split('-').next().unwrap_or("0");
                let name = format!("{first_time}{COMPACTED}{:016x}.parquet", fnv1a(&names));
                let out = scratch.join("merged");
                spool.write_merged(&out, &name, &group).map_err(io(&out))?;
                bucket
                    .create(&format!("{partition}/{name}"), &out.join(&name))
                    .await?;
                for source in &group {
                    bucket
                        .delete(&format!("{partition}/{}", source.name))
                        .await?;
                }
                done.files_in += group.len() as u64;
                done.files_out += 1;
            }
            std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_name_differs_with_its_sources() {
        assert_ne!(fnv1a(&["a", "bc"]), fnv1a(&["ab", "c"]));
        assert_eq!(fnv1a(&["x"]), fnv1a(&["x"]));
    }
}
