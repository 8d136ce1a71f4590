//! The command line, as clap parses it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use dogs_core::{ExecutionStatus, JobState};

/// What `--help` shows after the commands: the store URLs and the exit codes.
const AFTER_HELP: &str = "\
Store URLs (--store or DOGS_STORE; the scheme picks the store):
  postgres://user:password@host:5432/db   PostgreSQL (also postgresql://); --namespace: schema
  redis://:password@host:6379/0           Redis (rediss:// for TLS); --namespace: key prefix
  mongodb://user:password@host:27017/db   MongoDB (also mongodb+srv://); --namespace: database
Each namespace defaults to `dogs` (MongoDB: the URL's database, else `dogs`).

Exit codes:
  0  done
  1  store error: unreachable, URL that does not parse or of an unknown store, schema not migrated
  2  usage error: bad arguments, or a dashboard that would open actions to the network
  3  not found: unknown job id, or a cancel or retry that found nothing to act on
  4  conflict: the store refused the action (a retry of a running job, ...)";

/// See and act on the jobs of a dogs store, and serve its dashboard.
#[derive(Debug, Clone, Parser)]
#[command(name = "dogs", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The store's URL: postgres://, postgresql://, redis://, rediss://, mongodb:// or
    /// mongodb+srv://. Prefer DOGS_STORE when the URL holds a password: arguments are visible
    /// to other users of the machine.
    #[arg(
        long,
        global = true,
        env = "DOGS_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub store: Option<String>,

    /// The PostgreSQL schema, Redis key prefix or MongoDB database (default: the store's own,
    /// `dogs`; for MongoDB the URL's database if it names one).
    #[arg(
        long,
        global = true,
        env = "DOGS_NAMESPACE",
        hide_env_values = true,
        value_name = "NS"
    )]
    pub namespace: Option<String>,

    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// Seconds to wait for the store's server to be found and to answer.
    #[arg(long, global = true, default_value_t = 10, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Jobs per name: due, scheduled (run time ahead), running, failed, and whether paused.
    Stats,
    /// Lists jobs in scheduling order (failed jobs newest first), a page at a time.
    Jobs(JobsArgs),
    /// Shows one job: its params, state, lease, progress, last error and executions.
    Job(JobArgs),
    /// Lists the execution records of a job name, newest first.
    Executions(ExecutionsArgs),
    /// Puts a failed job back to run now, or makes a pending one due now; with --name N
    /// --failed, every failed job of a name.
    Retry(RetryArgs),
    /// Removes a pending or failed job; a running one is failed at once as cancelled and its
    /// worker told to stop.
    Cancel(JobArgs),
    /// Pauses a job name: no worker of any process claims its jobs until it is resumed.
    Pause(NameArgs),
    /// Resumes a paused job name.
    Resume(NameArgs),
    /// Removes the failed jobs and execution records whose retention has ended.
    Prune,
    /// Brings the store's layout up to date (PostgreSQL: creates the schema and applies the
    /// migrations; Redis and MongoDB have no schema).
    Migrate,
    /// Serves the web dashboard.
    Dashboard(DashboardArgs),
}

/// A job state to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// Waiting for its run time, or due.
    Pending,
    /// Leased by a worker.
    Running,
    /// Failed for good, kept until its retention ends.
    Failed,
}

impl From<StateArg> for JobState {
    fn from(state: StateArg) -> Self {
        match state {
            StateArg::Pending => JobState::Pending,
            StateArg::Running => JobState::Running,
            StateArg::Failed => JobState::Failed,
        }
    }
}

/// Reads an execution status to list, as the store writes it.
fn execution_status(text: &str) -> Result<ExecutionStatus, String> {
    ExecutionStatus::parse(text).ok_or_else(|| {
        "one of success, error, stale, failed, cancelled or snoozed was expected".to_owned()
    })
}

/// `dogs jobs`.
#[derive(Debug, Clone, Args)]
pub struct JobsArgs {
    /// Only jobs of this name.
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// Only jobs in this state.
    #[arg(long, value_enum, value_name = "STATE")]
    pub state: Option<StateArg>,
    /// Jobs per page.
    #[arg(long, default_value_t = 50, value_name = "L",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub limit: u64,
    /// The page to show, from 1.
    #[arg(long, default_value_t = 1, value_name = "P",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub page: u64,
}

/// A job by id.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// The job's id, as `dogs jobs` shows it.
    pub id: String,
}

/// `dogs executions`.
#[derive(Debug, Clone, Args)]
pub struct ExecutionsArgs {
    /// The job name.
    pub name: String,
    /// Only executions that ended so: success, error, stale, failed, cancelled or snoozed.
    #[arg(long, value_name = "S", value_parser = execution_status)]
    pub status: Option<ExecutionStatus>,
    /// At most this many.
    #[arg(long, default_value_t = 50, value_name = "L",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub limit: u64,
}

/// `dogs retry`: one job by id, or every failed job of a name.
#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["id", "name"]))]
pub struct RetryArgs {
    /// The job's id.
    #[arg(conflicts_with_all = ["name", "failed"])]
    pub id: Option<String>,
    /// Every failed job of this name (with --failed).
    #[arg(long, value_name = "N", requires = "failed")]
    pub name: Option<String>,
    /// With --name: put back every failed job of the name.
    #[arg(long, requires = "name")]
    pub failed: bool,
}

/// A job name.
#[derive(Debug, Clone, Args)]
pub struct NameArgs {
    /// The job name.
    pub name: String,
}

/// `dogs dashboard`.
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// The address to listen on: IP:PORT or HOST:PORT. Anything but a loopback address needs
    /// --token or --read-only.
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "ADDR")]
    pub listen: String,
    /// Show jobs without the actions (retry, cancel, pause, ...).
    #[arg(long)]
    pub read_only: bool,
    /// The token the dashboard asks for before it acts.
    #[arg(
        long,
        env = "DOGS_DASHBOARD_TOKEN",
        hide_env_values = true,
        value_name = "T"
    )]
    pub token: Option<String>,
}
