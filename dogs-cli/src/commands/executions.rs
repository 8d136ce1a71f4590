//! `dogs executions NAME`: a name's execution records, newest first.

use dogs_core::ExecutionQuery;

use super::jobs::executions_table;
use super::Context;
use crate::cli::ExecutionsArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{print, print_json};

/// The most records read to find those of one status: the store filters by name only.
const MAX_SCANNED: usize = 10_000;

/// Records read per call while filtering by status.
const SCAN_PAGE: usize = 200;

pub(super) async fn run(ctx: &Context, args: &ExecutionsArgs) -> CliResult<()> {
    let limit = usize::try_from(args.limit)
        .map_err(|_| CliError::usage(format!("--limit {} is too large", args.limit)))?;
    let status = args.status;
    let page = if status.is_some() {
        SCAN_PAGE.max(limit)
    } else {
        limit
    };
    let mut found = Vec::new();
    let mut offset = 0;
    let mut cut_short = false;
    loop {
        let query = ExecutionQuery::name(args.name.clone())
            .limit(page)
            .offset(offset);
        let batch = ctx.store.executions(&query).await?;
        let read = batch.len();
        offset += read;
        found.extend(
            batch
                .into_iter()
                .filter(|e| status.is_none_or(|s| e.status == s)),
        );
        if status.is_none() || found.len() >= limit || read < page {
            break;
        }
        if offset >= MAX_SCANNED {
            cut_short = true;
            break;
        }
    }
    found.truncate(limit);
    if ctx.json {
        return print_json(&found);
    }
    let mut text = if found.is_empty() {
        format!("no execution records of '{}'", args.name)
    } else {
        executions_table(&found, true)
    };
    if cut_short {
        text.push_str(&format!(
            "\n\n(only the newest {MAX_SCANNED} records were looked at)"
        ));
    }
    print(&text)
}
