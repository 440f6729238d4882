//! otel-pipetrace: an eBPF agent that turns every process of a pipeline into telemetry.
//!
//! The folders follow the data: [`capture`] (kernel programs, ring buffer, decoding) →
//! [`process`] (the process table and what it reports) → [`sinks`] (JSONL, Parquet, OTLP spans,
//! metrics); [`analysis`] computes answers (the critical path, the run summary, step keys) from
//! recorded processes and [`present`] shows them to people; [`datasets`] defines the Parquet
//! datasets' columns once, for the sink that writes them and the queries that read them;
//! [`agent`] routes the reports from
//! the tracker to the sinks; [`run`] and [`daemon`]
//! drive an agent, [`query`] reads the Parquet it wrote and [`answer`] runs the commands that
//! read it (in the binary `otel-pipetrace-query`); [`config`] is read by all of them.
//! `docs/architecture.md` tells the path of one event.

pub mod agent;
pub mod analysis;
pub mod answer;
pub mod capture;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod datasets;
pub mod event;
pub mod present;
pub mod process;
pub mod query;
pub mod report;
pub mod run;
pub mod sinks;
pub mod upload;
