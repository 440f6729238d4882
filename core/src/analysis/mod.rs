//! What the recorded processes mean: computed from a run's processes, whether they come from
//! the Parquet files (`query`, reports) or from memory at the end of `run`.

pub mod critical_path;
pub mod files;
pub mod findings;
pub mod history;
pub mod run;
pub mod step_key;
pub mod steps;
pub mod summary;
pub mod usage;
