//! The end-to-end suite as one test binary (as ripgrep's): libtest schedules every test of every
//! file together, so a file of long waits (a receiver, a Compose stack) no longer holds up the
//! rest while the cores idle, and the suite links one executable instead of one per file.
//! Each module is one file of `tests/tests/`, named by what it proves (docs/testing.md).

mod activity;
mod answers;
mod capture;
mod capture_edges;
mod ci_integrations;
mod cli;
mod containers;
mod daemon;
mod deploy;
mod diagnosis;
mod engines;
mod faults;
mod files;
mod fleet;
mod gateway;
mod history;
mod layout;
mod metrics;
mod network;
mod oom;
mod otlp;
mod outputs;
mod packaging;
mod query;
mod resources;
mod scale;
mod secrets;
mod startup;
