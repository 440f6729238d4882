//! otel-pipetrace-query: the answers from the Parquet data, and the only crate that links
//! DuckDB. [`query`] reads the datasets the agent wrote (local or in a bucket), [`report`] makes
//! documents from one run (HTML, run comparison, Chrome trace), and [`answer`] runs `query`,
//! `report`, `compare` and `export`, which `otel-pipetrace` hands over to this binary.

pub use pipetrace_core::{analysis, cli, config, datasets, event, files, health, present};

pub mod answer;
pub mod query;
pub mod report;
