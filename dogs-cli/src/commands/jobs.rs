//! `dogs jobs` (a page of jobs) and `dogs job ID` (one job and its executions).

use dogs_core::{Execution, ExecutionQuery, Job, JobId, JobQuery, JobState};
use serde::Serialize;

use super::Context;
use crate::cli::JobsArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{self, fields, maybe, maybe_time, print, print_json, time, yes_no, Table};

/// The executions `dogs job` shows.
const JOB_EXECUTIONS: usize = 100;

/// A page of jobs, as `--json` prints it.
#[derive(Debug, Serialize)]
struct JobsPage {
    page: u64,
    limit: u64,
    /// The next page's number, when there are more jobs.
    next_page: Option<u64>,
    jobs: Vec<Job>,
}

pub(super) async fn list(ctx: &Context, args: &JobsArgs) -> CliResult<()> {
    let limit = usize::try_from(args.limit)
        .map_err(|_| CliError::usage(format!("--limit {} is too large", args.limit)))?;
    let offset = usize::try_from(args.page.saturating_sub(1))
        .ok()
        .and_then(|page| page.checked_mul(limit))
        .ok_or_else(|| CliError::usage(format!("--page {} is too large", args.page)))?;
    let query = JobQuery {
        name: args.name.clone(),
        state: args.state.map(JobState::from),
        // One more than the page tells whether another page follows.
        limit: limit.saturating_add(1),
        offset,
    };
    let mut jobs = ctx.store.list_jobs(&query).await?;
    let more = jobs.len() > limit;
    jobs.truncate(limit);
    let next_page = more.then(|| args.page + 1);
    if ctx.json {
        return print_json(&JobsPage {
            page: args.page,
            limit: args.limit,
            next_page,
            jobs,
        });
    }
    if jobs.is_empty() {
        return print(if args.page > 1 {
            "no jobs on this page"
        } else {
            "no jobs"
        });
    }
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "STATE",
        "PRIORITY",
        "RUN AT",
        "TRIES",
        "UNIQUE ID",
    ]);
    for job in &jobs {
        table.row(vec![
            job.id.to_string(),
            job.name.clone(),
            state_text(job),
            job.priority.to_string(),
            time(job.run_at),
            job.tries.to_string(),
            maybe(job.unique_identifier.as_deref()),
        ]);
    }
    let footer = match next_page {
        Some(next) => format!(
            "page {} ({} jobs); more on the next page: dogs jobs{} --page {next}",
            args.page,
            jobs.len(),
            filters(args)
        ),
        None => format!("page {} ({} jobs); no more jobs", args.page, jobs.len()),
    };
    print(&format!("{}\n\n{footer}", table.render()))
}

/// The filters of `args` as they are written on the command line.
fn filters(args: &JobsArgs) -> String {
    let mut text = String::new();
    if let Some(name) = &args.name {
        text.push_str(&format!(" --name {name}"));
    }
    if let Some(state) = args.state {
        text.push_str(&format!(" --state {}", JobState::from(state).as_str()));
    }
    if args.limit != 50 {
        text.push_str(&format!(" --limit {}", args.limit));
    }
    text
}

/// The job's state, with `paused` when its name is.
fn state_text(job: &Job) -> String {
    if job.paused {
        format!("{} (paused)", job.state.as_str())
    } else {
        job.state.as_str().to_owned()
    }
}

/// One job and its executions, as `--json` prints them.
#[derive(Debug, Serialize)]
struct JobDetail {
    job: Job,
    executions: Vec<Execution>,
}

pub(super) async fn show(ctx: &Context, id: &str) -> CliResult<()> {
    let id = JobId::from(id);
    let Some(job) = ctx.store.get_job(&id).await? else {
        return Err(CliError::not_found(format!("no job with id {id}")));
    };
    let executions = ctx
        .store
        .executions(
            &ExecutionQuery::name(job.name.clone())
                .job_id(id)
                .limit(JOB_EXECUTIONS),
        )
        .await?;
    if ctx.json {
        return print_json(&JobDetail { job, executions });
    }
    let lease = match (&job.locked_by, job.locked_until) {
        (None, None) => "-".to_owned(),
        (by, until) => format!(
            "{} until {}",
            by.as_deref().unwrap_or("(unknown worker)"),
            maybe_time(until)
        ),
    };
    let json = |value: &serde_json::Value| {
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    };
    let mut pairs = vec![
        ("id", job.id.to_string()),
        ("name", job.name.clone()),
        ("kind", job.kind.as_str().to_owned()),
        ("state", state_text(&job)),
        ("priority", job.priority.to_string()),
        ("tries", job.tries.to_string()),
        ("run at", time(job.run_at)),
        ("created at", time(job.created_at)),
        ("unique id", maybe(job.unique_identifier.as_deref())),
        ("lease", lease),
        (
            "progress",
            job.progress.as_ref().map_or("-".to_owned(), json),
        ),
        ("last error", maybe(job.last_error.as_deref())),
    ];
    if let Some(expires) = job.expires_at {
        pairs.push(("removed at", time(expires)));
    }
    if let Some(key) = &job.schedule_key {
        pairs.push(("schedule", key.clone()));
    }
    pairs.push(("paused", yes_no(job.paused)));
    let mut text = fields(&pairs);
    text.push_str("\nparams:\n");
    for line in json(&job.params).lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    if executions.is_empty() {
        text.push_str("\nno execution records");
    } else {
        text.push_str(&format!(
            "\nexecutions, newest first:\n{}",
            executions_table(&executions, false)
        ));
    }
    print(&text)
}

/// A table of execution records; with `with_job`, a column of their job ids.
pub(super) fn executions_table(executions: &[Execution], with_job: bool) -> String {
    let mut headers = vec!["STARTED"];
    if with_job {
        headers.push("JOB");
    }
    headers.extend(["STATUS", "TRY", "DURATION", "WORKER", "ERROR"]);
    let mut table = Table::new(&headers);
    for e in executions {
        let mut row = vec![time(e.started_at)];
        if with_job {
            row.push(e.job_id.to_string());
        }
        row.extend([
            e.status.as_str().to_owned(),
            e.tries.to_string(),
            output::duration(e.duration),
            e.worker_id.clone(),
            maybe(e.error.as_deref()),
        ]);
        table.row(row);
    }
    table.render()
}
