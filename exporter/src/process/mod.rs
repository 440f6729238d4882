//! The process model: the table of processes built from the record stream, their tree and
//! trace identity, and what the tracker reports to the sinks.

pub mod cgroups;
pub mod ids;
pub mod model;
pub mod procfs;
pub mod redact;
pub mod report;
pub mod samples;
pub mod trace_context;
pub mod tracker;
