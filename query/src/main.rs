//! `otel-pipetrace-query`: `query`, `report`, `compare` and `export`, which `otel-pipetrace`
//! hands over to this binary, the only one that links DuckDB.

use std::process::ExitCode;

use pipetrace_query::cli;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let config = match cli::configure(&cli) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match &cli.command {
        Some(command) => pipetrace_query::answer::answer(command, &config),
        None => cli::fail(
            "otel-pipetrace-query answers query, report, compare and export; \
             the daemon is otel-pipetrace",
        ),
    }
}
