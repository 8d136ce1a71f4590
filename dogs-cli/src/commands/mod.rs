//! The commands: each reads or acts on the store and prints what it found or did.

mod dashboard;
mod executions;
mod jobs;
mod migrate;
mod operate;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use dogs_core::JobStore;

use crate::cli::{Cli, Command};
use crate::exit::{CliError, CliResult};
use crate::open::{open_store_with, OpenOptions};

/// What a command that reads or acts on jobs works with.
pub struct Context {
    /// The open store.
    pub store: Arc<dyn JobStore>,
    /// Whether to print JSON instead of tables.
    pub json: bool,
}

impl Context {
    /// Opens the store the command line names.
    pub async fn open(cli: &Cli) -> CliResult<Context> {
        let store =
            open_store_with(store_url(cli)?, cli.namespace.as_deref(), open_options(cli)).await?;
        Ok(Context {
            store,
            json: cli.json,
        })
    }
}

/// Runs the command of `cli`.
pub async fn run(cli: &Cli) -> CliResult<()> {
    match &cli.command {
        Command::Migrate => migrate::run(cli).await,
        Command::Dashboard(args) => dashboard::run(cli, args).await,
        command => {
            let ctx = Context::open(cli).await?;
            match command {
                Command::Stats => stats::run(&ctx).await,
                Command::Jobs(args) => jobs::list(&ctx, args).await,
                Command::Job(args) => jobs::show(&ctx, &args.id).await,
                Command::Executions(args) => executions::run(&ctx, args).await,
                Command::Retry(args) => operate::retry(&ctx, args).await,
                Command::Cancel(args) => operate::cancel(&ctx, &args.id).await,
                Command::Pause(args) => operate::set_paused(&ctx, &args.name, true).await,
                Command::Resume(args) => operate::set_paused(&ctx, &args.name, false).await,
                Command::Prune => operate::prune(&ctx).await,
                Command::Migrate | Command::Dashboard(_) => Ok(()),
            }
        }
    }
}

/// The store URL of `--store` or `DOGS_STORE`.
fn store_url(cli: &Cli) -> CliResult<&str> {
    cli.store
        .as_deref()
        .filter(|url| !url.trim().is_empty())
        .ok_or_else(|| CliError::usage("no store given: pass --store URL or set DOGS_STORE"))
}

fn open_options(cli: &Cli) -> OpenOptions {
    OpenOptions {
        timeout: Duration::from_secs(cli.timeout),
    }
}
