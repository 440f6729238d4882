//! otel-pipetrace, the agent: an eBPF agent that turns every process of a pipeline into
//! telemetry.
//!
//! The folders follow the data: [`capture`] (kernel programs, ring buffer, decoding) →
//! [`process`] (the process table and what it reports) → [`diagnosis`] (leaks, hangs,
//! deadlocks, runaways, found from what the tracker reports) → [`sinks`] (JSONL, Parquet, OTLP spans,
//! metrics) → [`upload`] (the Parquet files to object storage); [`agent`] routes the reports
//! from the tracker to the sinks; [`run`] and [`daemon`] drive an agent. What the query side
//! shares with it (configuration, command line, event types, the process model, datasets,
//! analysis, presentation) is the `pipetrace-core` crate, re-exported here under the same names.
//! `docs/architecture.md` tells the path of one event.

pub use pipetrace_core::{analysis, cli, config, datasets, event, present};

pub mod agent;
pub mod capture;
pub mod compact;
pub mod daemon;
pub mod diagnosis;
pub mod process;
pub mod run;
pub mod run_history;
pub mod sinks;
pub mod upload;
