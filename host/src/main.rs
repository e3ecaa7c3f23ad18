use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = wasmfn::cli::Cli::parse();
    // Held to the end so queued log lines are written before the process exits.
    let _logs = wasmfn::logging::init(cli.log_format(), cli.log_audience());
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
