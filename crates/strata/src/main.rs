//! `strata`: every role of the Strata time-series database in one binary.

mod cli;
mod config;
mod local_querier;
mod logging;
mod meta_tool;
mod querier_service;
mod server;
mod tool;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// glibc's allocator spent a third of ingest CPU in malloc/free under
/// concurrent writes (measured with perf); mimalloc's thread-local heaps fit
/// the many small label allocations better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Some(cli::Command::Tool(command)) = &cli.command {
        return tool::run(command);
    }
    let config = match cli.config().and_then(|c| c.validate().map(|()| c)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("strata: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("strata: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = {
        // The span exporter's gRPC channel lives on the runtime.
        let _runtime = runtime.enter();
        match logging::init(&config.log, &config.tracing) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("strata: {error}");
                return ExitCode::from(2);
            }
        }
    };
    let result = runtime.block_on(server::run(config));
    telemetry.shutdown();
    // A replay still running after a signal must not hold the exit up.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("strata: {error:#}");
            ExitCode::FAILURE
        }
    }
}
