//! The process model: the table of processes built from the record stream, their tree and
//! trace identity, and what the tracker reports to the sinks.

pub mod cgroups;
pub mod ids;
/// The process model (in `pipetrace-core`: the datasets and the analysis read it too).
pub use pipetrace_core::model;
pub mod procfs;
pub mod redact;
pub mod report;
pub mod samples;
pub mod trace_context;
pub mod tracker;
pub mod written;
