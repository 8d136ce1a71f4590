//! `dogs migrate`: brings the store's layout up to date.

use super::{open_options, store_url};
use crate::cli::Cli;
use crate::exit::CliResult;
use crate::open::migrate_store;
use crate::output::{print, print_json};

pub(super) async fn run(cli: &Cli) -> CliResult<()> {
    let migrated =
        migrate_store(store_url(cli)?, cli.namespace.as_deref(), open_options(cli)).await?;
    if cli.json {
        print_json(&migrated)
    } else {
        print(&migrated.message)
    }
}
