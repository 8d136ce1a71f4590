//! `dogs stats`: jobs per name and state.

use serde::Serialize;

use super::Context;
use crate::exit::CliResult;
use crate::output::{print, print_json, yes_no, Table};

/// One name's counts, as `--json` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct NameStats {
    name: String,
    /// Pending jobs whose run time has come.
    due: u64,
    /// Pending jobs whose run time is ahead.
    scheduled: u64,
    /// Every pending job: `due` + `scheduled`.
    pending: u64,
    running: u64,
    failed: u64,
    paused: bool,
}

pub(super) async fn run(ctx: &Context) -> CliResult<()> {
    let stats: Vec<NameStats> = ctx
        .store
        .count_jobs()
        .await?
        .into_iter()
        .map(|c| NameStats {
            due: c.pending.saturating_sub(c.scheduled),
            scheduled: c.scheduled,
            pending: c.pending,
            running: c.running,
            failed: c.failed,
            paused: c.paused,
            name: c.name,
        })
        .collect();
    if ctx.json {
        return print_json(&stats);
    }
    if stats.is_empty() {
        return print("no jobs");
    }
    let mut table = Table::new(&["NAME", "DUE", "SCHEDULED", "RUNNING", "FAILED", "PAUSED"]);
    for s in &stats {
        table.row(vec![
            s.name.clone(),
            s.due.to_string(),
            s.scheduled.to_string(),
            s.running.to_string(),
            s.failed.to_string(),
            yes_no(s.paused),
        ]);
    }
    print(&table.render())
}
