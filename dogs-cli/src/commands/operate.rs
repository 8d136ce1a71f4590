//! The commands that act on jobs: `retry`, `cancel`, `pause`, `resume` and `prune`.

use dogs_core::{JobId, JobState};
use serde::Serialize;

use super::Context;
use crate::cli::RetryArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{print, print_json, time};

/// What `dogs retry ID` did, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Retried {
    id: JobId,
    /// The state the job was in: `failed` (now pending, due now) or `pending` (now due now).
    was: Option<JobState>,
}

/// What `dogs retry --name N --failed` did, as `--json` prints it.
#[derive(Debug, Serialize)]
struct RetriedFailed {
    name: String,
    /// How many failed jobs were put back.
    retried: u64,
}

pub(super) async fn retry(ctx: &Context, args: &RetryArgs) -> CliResult<()> {
    match (&args.id, &args.name) {
        (Some(id), _) => retry_one(ctx, JobId::from(id.as_str())).await,
        (None, Some(name)) if args.failed => retry_failed(ctx, name).await,
        _ => Err(CliError::usage(
            "give a job id, or --name N --failed for every failed job of a name",
        )),
    }
}

async fn retry_one(ctx: &Context, id: JobId) -> CliResult<()> {
    let was = ctx.store.get_job(&id).await?.map(|job| job.state);
    if !ctx.store.retry(&id).await? {
        return Err(CliError::not_found(format!("no job with id {id}")));
    }
    if ctx.json {
        return print_json(&Retried { id, was });
    }
    print(&match was {
        Some(JobState::Failed) => {
            format!("job {id} was failed: it is pending again, due now, its tries back at 0")
        }
        _ => format!("job {id} is due now"),
    })
}

async fn retry_failed(ctx: &Context, name: &str) -> CliResult<()> {
    let retried = ctx.store.retry_failed(name).await?;
    if retried == 0 {
        return Err(CliError::not_found(format!(
            "no failed job of '{name}' to put back"
        )));
    }
    if ctx.json {
        return print_json(&RetriedFailed {
            name: name.to_owned(),
            retried,
        });
    }
    let jobs = if retried == 1 { "job" } else { "jobs" };
    print(&format!(
        "put back {retried} failed {jobs} of '{name}': pending, due now"
    ))
}

/// What `dogs cancel` did, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Cancelled {
    id: JobId,
    /// `true` when the job is gone; `false` when it was running and is kept, failed as
    /// cancelled, while its worker stops.
    removed: bool,
}

pub(super) async fn cancel(ctx: &Context, id: &str) -> CliResult<()> {
    let id = JobId::from(id);
    if !ctx.store.cancel(&id).await? {
        return Err(CliError::not_found(format!("no job with id {id}")));
    }
    let kept = ctx.store.get_job(&id).await?;
    if ctx.json {
        return print_json(&Cancelled {
            removed: kept.is_none(),
            id,
        });
    }
    print(&match kept {
        None => format!("job {id} removed"),
        Some(job) => format!(
            "job {id} was running: it is failed as cancelled and its worker told to stop; it stays visible until {}",
            job.expires_at.map_or_else(|| "its retention ends".to_owned(), time)
        ),
    })
}

/// What `dogs pause` and `dogs resume` did, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Paused {
    name: String,
    paused: bool,
}

pub(super) async fn set_paused(ctx: &Context, name: &str, paused: bool) -> CliResult<()> {
    ctx.store.set_paused(name, paused).await?;
    if ctx.json {
        return print_json(&Paused {
            name: name.to_owned(),
            paused,
        });
    }
    print(&if paused {
        format!("paused '{name}': no worker claims its jobs until `dogs resume {name}`")
    } else {
        format!("resumed '{name}': its jobs run again")
    })
}

/// What `dogs prune` removed, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Pruned {
    /// Failed jobs past their retention.
    jobs: u64,
    /// Execution records past their expiry.
    executions: u64,
}

pub(super) async fn prune(ctx: &Context) -> CliResult<()> {
    let report = ctx.store.prune().await?;
    if ctx.json {
        return print_json(&Pruned {
            jobs: report.jobs,
            executions: report.executions,
        });
    }
    print(&format!(
        "removed {} failed jobs and {} execution records past their retention",
        report.jobs, report.executions
    ))
}
