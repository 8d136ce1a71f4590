//! `dogs-bench`: measures dogs on every store and prints a table (and JSON).
//!
//! ```text
//! dogs-bench <scenario> <backend> [--runs N] [--jobs N] [--history on|off] [--prefetch N] [--auto-extend on|off] [--json FILE]
//!   scenario: enqueue | drain | latency | depth | recurrent | history | overhead | overview
//!   backend:  memory | postgres | redis | redis_cluster | redis_cluster_wait | mongo | sqlite | sqlite_full
//! ```
//!
//! `--history off` drains jobs that keep no execution record (`save_executions_for` zero);
//! `--prefetch N` sets `WorkerOptions::prefetch` of the drains, `--auto-extend` their
//! `auto_extend`. `overhead` drains in alternated rounds with renewal and a Prometheus recorder
//! off, then on. `overview` times a dashboard's reads with few and with `--stored N` (1,000,000)
//! future jobs stored, and drains beside a dashboard refreshing every 2 s.
//!
//! Servers come from `DOGS_POSTGRES_URL`, `DOGS_REDIS_URL`, `DOGS_REDIS_CLUSTER_URL` and
//! `DOGS_MONGO_URL` (defaults: the local servers `scripts/test` uses; the cluster on ports 7100 to
//! 7102). Each run uses a fresh namespace, removed afterwards. Every
//! figure is the median of the runs, with min and max.

/// With the `mimalloc` feature, the process allocates through mimalloc instead of the system's
/// allocator (the per-execution allocations of the worker loop are a large share of its cost).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The global allocator this build measures with.
const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system"
};

mod backend;
mod cockpit;
mod history;
mod measure;
mod overhead;
mod scenarios;

use std::time::Duration;

use serde_json::json;

/// Settings of one invocation.
#[derive(Debug, Clone)]
pub struct Settings {
    scenario: String,
    backend: String,
    runs: usize,
    jobs: usize,
    /// Whether drained jobs keep an execution record.
    history: bool,
    /// Execution records stored before the history scenario's second drains.
    records: usize,
    /// `WorkerOptions::prefetch` of the drains (default: the library's).
    prefetch: Option<usize>,
    /// `WorkerOptions::auto_extend` of the drains (default: the library's).
    auto_extend: Option<bool>,
    /// Future jobs stored before the overview scenario's second measure.
    stored: usize,
    json: Option<String>,
}

fn parse_args() -> Result<Settings, String> {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().ok_or("missing scenario")?;
    let backend = args.next().ok_or("missing backend")?;
    let mut settings = Settings {
        scenario,
        backend,
        runs: 3,
        jobs: 100_000,
        history: true,
        records: 10_000_000,
        prefetch: None,
        auto_extend: None,
        stored: 1_000_000,
        json: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => settings.runs = value.parse().map_err(|_| "--runs takes a number")?,
            "--jobs" => settings.jobs = value.parse().map_err(|_| "--jobs takes a number")?,
            "--records" => {
                settings.records = value.parse().map_err(|_| "--records takes a number")?
            }
            "--json" => settings.json = Some(value),
            "--stored" => settings.stored = value.parse().map_err(|_| "--stored takes a number")?,
            "--prefetch" => {
                settings.prefetch = Some(value.parse().map_err(|_| "--prefetch takes a number")?)
            }
            "--auto-extend" => {
                settings.auto_extend = match value.as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    _ => return Err("--auto-extend takes on or off".into()),
                }
            }
            "--history" => {
                settings.history = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return Err("--history takes on or off".into()),
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if settings.runs == 0 || settings.jobs == 0 {
        return Err("--runs and --jobs must be at least 1".into());
    }
    Ok(settings)
}

const USAGE: &str = "usage: dogs-bench <enqueue|drain|latency|depth|recurrent|history|overhead|overview> <memory|postgres|redis|redis_cluster|redis_cluster_wait|mongo|sqlite|sqlite_full> [--runs N] [--jobs N] [--records N] [--stored N] [--history on|off] [--prefetch N] [--auto-extend on|off] [--json FILE]";

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let settings = match parse_args() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let backend = match backend::Backend::parse(&settings.backend) {
        Some(backend) => backend,
        None => {
            eprintln!("unknown backend {}\n{USAGE}", settings.backend);
            std::process::exit(2);
        }
    };
    let figures = match scenarios::run(&settings, &backend).await {
        Ok(figures) => figures,
        Err(e) => {
            eprintln!("{}: {e}", settings.scenario);
            std::process::exit(1);
        }
    };
    println!(
        "{} on {} ({} runs, {} cores shared by the store and the workers, {} allocator)",
        settings.scenario,
        settings.backend,
        settings.runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        ALLOCATOR
    );
    println!(
        "{:<44} {:>12} {:>12} {:>12}  settings",
        "figure", "median", "min", "max"
    );
    for figure in &figures {
        println!(
            "{:<44} {:>12.3} {:>12.3} {:>12.3}  {}",
            format!("{} ({})", figure.name, figure.unit),
            figure.median,
            figure.min,
            figure.max,
            figure.settings
        );
    }
    if let Some(path) = &settings.json {
        let value = json!({
            "scenario": settings.scenario,
            "backend": settings.backend,
            "runs": settings.runs,
            "allocator": ALLOCATOR,
            "figures": figures,
        });
        if let Err(e) = std::fs::write(path, format!("{value:#}\n")) {
            eprintln!("writing {path}: {e}");
            std::process::exit(1);
        }
    }
    // Give background tasks (listeners) a moment to end quietly.
    tokio::time::sleep(Duration::from_millis(50)).await;
}
