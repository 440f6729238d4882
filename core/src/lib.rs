//! What the agent (`pipetrace`) and the query side (`pipetrace-query`) share, and so what links
//! neither a kernel loader nor DuckDB: [`config`] (every section, the layers, the flags), the
//! command line both binaries parse ([`cli`]), what the kernel reports ([`event`]) and the
//! process model built from it ([`model`], [`clock`]), the Parquet datasets' columns
//! ([`datasets`]), answers computed from recorded processes ([`analysis`]), how they read for
//! people ([`present`], with the Markdown report), and what each file output wrote and lost
//! ([`health`], [`files`]). `docs/architecture.md` tells the path of one event.

pub mod analysis;
pub mod cli;
pub mod clock;
pub mod config;
pub mod datasets;
pub mod event;
pub mod file_log;
pub mod files;
pub mod health;
pub mod model;
pub mod present;
