use std::process::ExitCode;

use pipetrace::cli::{self, Command, fail};

/// The binary that answers from the Parquet data, installed beside this one.
const QUERY_ENGINE: &str = "otel-pipetrace-query";

/// Hands the whole command line to `otel-pipetrace-query` (see `pipetrace::answer`); returns
/// only if that binary cannot be started.
fn exec_query_engine() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let engine = match std::env::current_exe() {
        Ok(me) => me.with_file_name(QUERY_ENGINE),
        Err(e) => return fail(format!("cannot find this program's own path: {e}")),
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "otel-pipetrace".into());
    let error = std::process::Command::new(&engine)
        .arg0(arg0)
        .args(args)
        .exec();
    fail(format!(
        "{}: {error} (query, report, compare and export run {QUERY_ENGINE}, installed beside \
         otel-pipetrace; scripts/install installs both)",
        engine.display()
    ))
}

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if cli.command.as_ref().is_some_and(Command::answers_from_data) {
        return exec_query_engine();
    }
    match &cli.command {
        Some(Command::Completions { shell }) => {
            cli::completions(*shell, &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Some(Command::Manpages { dir }) => {
            return match cli::manpages(dir) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(format!(
                    "cannot write man pages into {}: {e}",
                    dir.display()
                )),
            };
        }
        _ => {}
    }
    let config = match cli::configure(&cli) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(Command::Config) = cli.command {
        print!("{}", config.to_toml_redacted());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };

    match cli.command {
        Some(Command::Compact(args)) => {
            runtime.block_on(pipetrace::compact::compact(&config, &args))
        }
        Some(Command::Run {
            command, summary, ..
        }) => {
            let full = summary == "full";
            match runtime.block_on(pipetrace::run::run(&config, &command, full)) {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => {
                    eprintln!("otel-pipetrace: error: {e}");
                    ExitCode::from(e.exit_code().clamp(0, 255) as u8)
                }
            }
        }
        _ => match runtime.block_on(pipetrace::daemon::daemon(&config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
    }
}
