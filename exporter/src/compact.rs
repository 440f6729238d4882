//! `otel-pipetrace compact`: the data directory or the bucket compacted
//! ([`crate::upload::compact`]), said in one line.

use std::{process::ExitCode, time::Duration};

use crate::{
    cli::{CompactArgs, fail},
    config::Config,
    upload::{
        compact::{Compacted, compact_bucket, compact_dir},
        store::Bucket,
    },
};

/// Compacts what `--data` names (default: `output.parquet_dir`).
pub async fn compact(config: &Config, args: &CompactArgs) -> ExitCode {
    let min_age = match humantime_serde::re::humantime::parse_duration(&args.min_age) {
        Ok(d) => d,
        Err(e) => {
            return fail(format!(
                "--min-age {:?}: {e} (a duration such as 1h or 10m; 0s compacts everything)",
                args.min_age
            ));
        }
    };
    let data = args
        .data
        .clone()
        .unwrap_or_else(|| config.output.parquet_dir.clone());
    let shown = data.display().to_string();
    let result = if shown.starts_with("s3://") {
        bucket(config, &shown, min_age).await
    } else if !data.is_dir() {
        Err(format!(
            "--data {shown}: not a directory (the Parquet data directory, or s3://BUCKET/PREFIX)"
        ))
    } else {
        compact_dir(&data, &config.output.host(), min_age).map_err(|e| e.to_string())
    };
    match result {
        Ok(done) => {
            eprintln!(
                "otel-pipetrace: {shown}: {}",
                describe(&done, &args.min_age)
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn bucket(config: &Config, url: &str, min_age: Duration) -> Result<Compacted, String> {
    let section = crate::config::ObjectStoreSection {
        url: url.to_owned(),
        ..config.output.object_store.clone().unwrap_or_default()
    };
    let bucket = Bucket::open(&section).map_err(|e| e.to_string())?;
    // Downloads wait here while merged: a directory of this process's own.
    let work = tempfile::Builder::new()
        .prefix("otel-pipetrace-compact-")
        .tempdir()
        .map_err(|e| {
            format!(
                "a working directory under {}: {e}",
                std::env::temp_dir().display()
            )
        })?;
    compact_bucket(&bucket, min_age, work.path())
        .await
        .map_err(|e| e.to_string())
}

/// `1200 files merged into 14; 3 sources of an interrupted compaction removed; 5 files
/// younger than --min-age 1h left`.
fn describe(done: &Compacted, min_age: &str) -> String {
    let mut text = if done.files_in == 0 {
        "nothing to compact".to_owned()
    } else {
        format!("{} files merged into {}", done.files_in, done.files_out)
    };
    if done.leftovers > 0 {
        text += &format!(
            "; {} sources of an interrupted compaction removed",
            done.leftovers
        );
    }
    if done.young > 0 {
        text += &format!(
            "; {} file{} younger than --min-age {min_age} left",
            done.young,
            if done.young == 1 { "" } else { "s" }
        );
    }
    text
}
