use std::process::ExitCode;

use clap::Parser;

// One allocator on every target: the image's static musl build would otherwise get musl's,
// whose malloc and free cost a request ~20k instructions more, behind one lock for every
// thread (benches/README.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
