//! The benchmarks' upload: every object the spools of `dirs` hold, created in the bucket by the
//! real uploader one at a time (and kept locally, as `local_retention` does: the benchmarks
//! query them locally too). Returns objects, bytes and seconds.

use std::{path::PathBuf, time::Instant};

use pipetrace::{
    config::ObjectStoreSection,
    upload::{spool::Spool, store::Bucket},
};

pub fn upload_all(url: &str, endpoint: &str, dirs: &[(PathBuf, String)]) -> (u64, u64, f64) {
    let section = ObjectStoreSection {
        url: url.to_owned(),
        endpoint: endpoint.to_owned(),
        path_style: true,
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bucket = Bucket::open(&section).expect("bucket");
    let started = Instant::now();
    let (mut objects, mut bytes) = (0u64, 0u64);
    runtime.block_on(async {
        for (dir, host) in dirs {
            let spool = Spool::new(dir, host);
            for w in spool.waiting() {
                bucket.create(&w.key, &w.path).await.expect("upload");
                spool
                    .confirm(&w, std::time::Duration::from_secs(86_400))
                    .expect("confirm");
                objects += 1;
                bytes += w.bytes;
            }
        }
    });
    (objects, bytes, started.elapsed().as_secs_f64())
}
