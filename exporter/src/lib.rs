//! otel-pipetrace: an eBPF agent that turns every process of a pipeline into telemetry.
//!
//! Event flow, one module per stage: [`preflight`] and [`btf`] → [`loader`] → [`reader`] →
//! [`decode`] → [`tracker`] → [`sinks`]; [`agent`] wires them, [`run`] and [`daemon`] drive them.

pub mod agent;
pub mod btf;
pub mod cgroups;
pub mod cicd;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod ids;
pub mod loader;
pub mod otel_env;
pub mod otlp_transport;
pub mod preflight;
pub mod procfs;
pub mod query;
pub mod reader;
pub mod redact;
pub mod run;
pub mod sampler;
pub mod samples;
pub mod sinks;
pub mod spans;
pub mod stats;
pub mod tracker;
