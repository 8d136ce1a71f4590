#![doc = include_str!("../README.md")]

pub mod cli;
pub mod commands;
pub mod exit;
pub mod open;
pub mod output;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;
pub use exit::{CliError, CliResult, Exit};
pub use open::{migrate_store, open_store, open_store_with, Migrated, OpenOptions, StoreKind};

/// Runs `dogs` with the process's arguments and environment, and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut secrets = cli
        .store
        .as_deref()
        .map(open::url_secrets)
        .unwrap_or_default();
    if let cli::Command::Dashboard(args) = &cli.command {
        secrets.extend(args.token.iter().filter(|t| !t.is_empty()).cloned());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "dogs: cannot start the runtime: {e}");
            return Exit::Store.into();
        }
    };
    let outcome = runtime.block_on(commands::run(&cli));
    // Background tasks of the store (wake-up listeners) are not waited for.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => Exit::Done.into(),
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "dogs: {}", error.line(&secrets));
            error.exit.into()
        }
    }
}
