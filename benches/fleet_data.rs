//! A fleet's day of data, made and shipped by the real code: for each host, a daemon's day of
//! processes through the real Parquet sink (one file per dataset an hour), rolled by the real
//! spool every hour as `roll_interval = "1h"` does, then uploaded by the real uploader to the
//! bucket. Prints one JSON object: rows, objects, bytes and the upload's seconds.
//!
//! cargo bench -p pipetrace --bench fleet_data -- HOSTS PROCESSES_PER_HOST DIR S3_URL ENDPOINT
//! (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)

use std::{path::PathBuf, time::Instant};

use pipetrace::{
    capture::clock::{Clock, monotonic_ns},
    sinks::{
        Sink,
        parquet::{ParquetSettings, ParquetSink},
    },
    upload::spool::Spool,
};

#[path = "synthetic.rs"]
mod synthetic;
#[path = "upload.rs"]
mod upload;
use synthetic::{Stream, Template, template};

const HOURS: u64 = 24;
const HOUR_NS: u64 = 3_600_000_000_000;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let hosts: u64 = arg(0, "100").parse().expect("HOSTS");
    let per_host: u64 = arg(1, "24000").parse().expect("PROCESSES_PER_HOST");
    let root = PathBuf::from(arg(2, "/tmp/pipetrace-fleet"));
    let url = arg(3, "s3://fleet/bench");
    let endpoint = arg(4, "http://127.0.0.1:8333");

    let mut templates: Vec<Template> = (0..64).map(template).collect();
    let clock = Clock::new();
    // The day ends now; processes spread evenly over it (monotonic ns, so that the clock maps
    // them to today's wall time; on a machine up for less than a day, over its uptime).
    let now = monotonic_ns();
    let span = (HOURS * HOUR_NS).min(now - 1_000_000_000);
    let day_start = now - span;
    let per_hour = per_host / HOURS;
    let step = (span / HOURS) / per_hour.max(1);

    let write_started = Instant::now();
    let mut dirs = Vec::new();
    for h in 0..hosts {
        let host = format!("host-{h:03}");
        let dir = root.join(&host);
        let _ = std::fs::remove_dir_all(&dir);
        let settings = ParquetSettings {
            dir: dir.clone(),
            host: host.clone(),
            revision: None,
            flush_rows: 1_000_000,
            flush_bytes: usize::MAX,
            flush_interval: std::time::Duration::from_secs(7 * 24 * 3600),
            unwritten_bytes: 64 << 20,
        };
        let mut sink =
            ParquetSink::create(settings, clock, &format!("{h:016x}")).expect("parquet sink");
        let spool = Spool::new(&dir, &host);
        for hour in 0..HOURS {
            let stream = Stream {
                start_ns: day_start + hour * (span / HOURS),
                step_ns: step,
                first: hour * per_hour,
            };
            synthetic::feed(&mut sink, per_hour, &mut templates, stream);
            sink.write_all().expect("hourly write");
            spool.roll().expect("roll");
        }
        sink.close().expect("close");
        dirs.push((dir, host));
    }
    let write_s = write_started.elapsed().as_secs_f64();

    let (objects, bytes, upload_s) = upload::upload_all(&url, &endpoint, &dirs);
    println!(
        "{{\"hosts\": {hosts}, \"processes\": {}, \"events\": {}, \"objects\": {objects}, \"bytes\": {bytes}, \"write_s\": {write_s:.3}, \"upload_s\": {upload_s:.3}}}",
        hosts * per_hour * HOURS,
        3 * hosts * per_hour * HOURS,
    );
}
