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

// mimalloc's own C API, linked in with the allocator.
#[allow(unsafe_code)]
unsafe extern "C" {
    fn mi_collect(force: bool);
    fn mi_thread_init();
    fn mi_option_set(option: i32, value: std::ffi::c_long);
    #[cfg(test)]
    fn mi_option_get(option: i32) -> std::ffi::c_long;
}

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (v2 and v3).
const PURGE_DELAY_OPTION: i32 = 15;

/// Makes mimalloc hand memory freed by a burst of requests back to the OS.
///
/// By default (mimalloc v3) it purges freed pages a second after they
/// were freed, and only when later allocations pass by: after a burst of
/// remote writes the
/// request buffers it had freed stayed resident, about 18 MiB, a quarter
/// of the head, after the default ingest benchmark. A 1 ms delay returned
/// them at no measurable CPU cost (0 ms, purging at every free, cost about
/// 10 % of ingest CPU), and a collection each second returns what an idle
/// process still holds.
fn release_free_memory() {
    // SAFETY: setting an option takes no pointers; mimalloc reads its
    // options atomically.
    #[allow(unsafe_code)]
    unsafe {
        mi_option_set(PURGE_DELAY_OPTION, 1);
    }
    let spawned = std::thread::Builder::new()
        .name("memory-release".to_owned())
        .spawn(|| {
            // `mi_collect` does nothing on a thread mimalloc has not set up
            // (one that never allocated), not even the process-wide purge.
            // SAFETY: takes no pointers; safe to call on any thread.
            #[allow(unsafe_code)]
            unsafe {
                mi_thread_init();
            }
            loop {
                std::thread::sleep(Duration::from_secs(1));
                // SAFETY: `mi_collect` takes no pointers and may be called
                // from any thread at any time.
                #[allow(unsafe_code)]
                unsafe {
                    mi_collect(false);
                }
            }
        });
    if let Err(error) = spawned {
        // Only memory held longer than needed: not worth failing over.
        eprintln!("strata: cannot start the memory release thread: {error}");
    }
}

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
    release_free_memory();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc v3's default purge delay is 1000 ms (src/options.c):
        // the index names that option.
        #[allow(unsafe_code)]
        let default = unsafe { mi_option_get(PURGE_DELAY_OPTION) };
        assert_eq!(default, 1000);
    }
}
