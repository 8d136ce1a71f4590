//! The fault scenarios: load, crash, store outage, a handler far past its lease.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dogs_core::prelude::*;
use dogs_core::{ErrorKind, ExecutionQuery, ExecutionStatus, JobQuery, JobStore, NewJob};
use serde_json::{json, Value};

use super::process::{log_summary, start_counts, Line, WorkerProcess, WorkerSpec};
use super::servers::OwnServer;
use super::{Env, StoreSettings};
use crate::support::{schedule_new, wait_until};

/// The soak settings, when `SOAK`, `SOAK_JOBS` or `SOAK_SECONDS` is set: the number of jobs
/// (default 1,000,000) and the duration over which they are scheduled (default 30 minutes).
pub fn soak() -> Option<(usize, Duration)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if var("SOAK").is_none() && var("SOAK_JOBS").is_none() && var("SOAK_SECONDS").is_none() {
        return None;
    }
    let jobs = var("SOAK_JOBS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seconds = var("SOAK_SECONDS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1800);
    Some((jobs, Duration::from_secs(seconds)))
}

/// Jobs not yet finished (pending, running or failed) of `name`.
pub(crate) async fn remaining(store: &dyn JobStore, name: &str) -> u64 {
    store
        .count_jobs()
        .await
        .map(|counts| {
            counts
                .iter()
                .filter(|c| c.name == name)
                .map(|c| c.pending + c.running + c.failed)
                .sum()
        })
        .unwrap_or(u64::MAX)
}

/// Schedules `count` jobs of `name` in batches of 500 and returns their ids.
pub(crate) async fn schedule_batch(
    store: &dyn JobStore,
    name: &str,
    first: usize,
    count: usize,
) -> Vec<String> {
    let jobs: Vec<NewJob> = (first..first + count)
        .map(|i| NewJob::new(name, json!({ "n": i })))
        .collect();
    let mut ids = Vec::with_capacity(count);
    for chunk in jobs.chunks(500) {
        for outcome in store.schedule_many(chunk.to_vec()).await.unwrap() {
            match outcome.unwrap() {
                Scheduled::Created(id) => ids.push(id.to_string()),
                other => panic!("expected a new job, got {other:?}"),
            }
        }
    }
    ids
}

pub(crate) fn assert_quiet_logs(workers: &[&WorkerProcess], max_problems: usize) {
    for worker in workers {
        let log = worker.log();
        let (panics, problems) = log_summary(&log);
        assert_eq!(panics, 0, "worker {} panicked:\n{log}", worker.label);
        assert!(
            problems <= max_problems,
            "worker {} logged {problems} warnings and errors (at most {max_problems}):\n{log}",
            worker.label
        );
    }
}

/// W-exactly-once across processes: 3 worker processes × 32 slots while 20,000 jobs are
/// scheduled; every job runs exactly once, none is lost, none is left. With `SOAK`, the jobs are
/// scheduled over the soak's duration and a worker process is killed and replaced every minute:
/// then every job runs at least once, and a job runs again only after a crash (`was_stale`).
pub async fn exactly_once_under_load(env: Env) {
    if env.backend() == "memory" {
        return exactly_once_in_process(env).await;
    }
    let soak = soak();
    let (total, duration) = soak.unwrap_or((20_000, Duration::ZERO));
    let store = env.store().await;
    let spec = |i: usize| WorkerSpec {
        lock: Duration::from_secs(5),
        ..WorkerSpec::new(&format!("w{i}"), "work")
    };
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|i| WorkerProcess::start(&env, &spec(i)))
        .collect();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(total);
    let mut next_kill = Duration::from_secs(60);
    let mut spawned = 3;
    let batch = 500;
    while ids.len() < total {
        let count = batch.min(total - ids.len());
        ids.extend(schedule_batch(&*store, "work", ids.len(), count).await);
        if soak.is_some() {
            // Paced over the soak's duration; one worker killed and replaced every minute.
            let due = duration.mul_f64(ids.len() as f64 / total as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            if started.elapsed() >= next_kill {
                next_kill += Duration::from_secs(60);
                let victim = workers.remove(spawned % 3);
                let label = victim.label.clone();
                // Its execution log stays on disk for the final count.
                let lines = victim.kill();
                println!("soak: killed {label} after {} starts", lines.len());
                workers.insert(spawned % 3, WorkerProcess::start(&env, &spec(spawned)));
                spawned += 1;
            }
        }
    }
    let deadline = if soak.is_some() {
        Duration::from_secs(900)
    } else {
        Duration::from_secs(240)
    };
    wait_until("every job has run and none is left", deadline, || async {
        remaining(&*store, "work").await == 0
    })
    .await;
    let elapsed = started.elapsed();
    for worker in workers.drain(..) {
        worker.stop(Duration::from_secs(30)).await;
    }
    // Every execution log, of live and killed workers alike.
    let mut runs: HashMap<String, Vec<(u32, bool)>> = HashMap::new();
    for i in 0..spawned {
        for line in super::process::read_lines(&env.path(&format!("w{i}.out"))) {
            if let Line::Start(id, tries, stale) = line {
                runs.entry(id).or_default().push((tries, stale));
            }
        }
    }
    let lost: Vec<&String> = ids.iter().filter(|id| !runs.contains_key(*id)).collect();
    let scheduled: HashSet<&String> = ids.iter().collect();
    let unknown: Vec<&String> = runs.keys().filter(|id| !scheduled.contains(id)).collect();
    let reruns = runs.values().filter(|r| r.len() > 1).count();
    // A second run that is not marked as following a lost lease would be a duplicate.
    let duplicated = runs
        .values()
        .filter(|r| r.iter().skip(1).any(|(tries, stale)| !*stale || *tries < 2))
        .count();
    println!(
        "{}: {} jobs in {:.1} s, lost {}, duplicated {duplicated}, re-run after a crash {}, \
         worker processes killed {}",
        env.backend(),
        ids.len(),
        elapsed.as_secs_f64(),
        lost.len(),
        reruns - duplicated,
        spawned - 3
    );
    assert!(
        lost.is_empty(),
        "{} jobs never ran: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        unknown.is_empty(),
        "runs of jobs never scheduled: {unknown:?}"
    );
    assert_eq!(duplicated, 0, "jobs ran twice without a crash");
    if soak.is_none() {
        assert_eq!(
            reruns, 0,
            "with nothing crashing, every job runs exactly once"
        );
    }
}

/// The memory store lives in one process: three worker sets share it instead.
async fn exactly_once_in_process(env: Env) {
    let store = env.store().await;
    let runs: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut sets = Vec::new();
    for i in 0..3 {
        let runs = Arc::clone(&runs);
        let job = EventJob::new("work", move |_: Value, ctx: JobContext| {
            let runs = Arc::clone(&runs);
            async move {
                *runs
                    .lock()
                    .unwrap()
                    .entry(ctx.id().to_string())
                    .or_insert(0) += 1;
                Ok(())
            }
        });
        let options = WorkerOptions {
            workers_count: 32,
            cooldown_period: Duration::ZERO,
            worker_id: Some(format!("set{i}")),
            ..Default::default()
        };
        sets.push(
            start_workers(Arc::clone(&store), [job], options)
                .await
                .unwrap(),
        );
    }
    let ids = schedule_batch(&*store, "work", 0, 20_000).await;
    wait_until(
        "every job has run and none is left",
        Duration::from_secs(120),
        || async { remaining(&*store, "work").await == 0 },
    )
    .await;
    for set in sets {
        set.stop().await;
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), ids.len(), "every job ran");
    assert!(runs.values().all(|&n| n == 1), "each exactly once");
    assert!(ids.iter().all(|id| runs.contains_key(id)), "none lost");
}

/// W-crash-recovery across processes: a worker process killed with SIGKILL while it holds 20
/// running jobs; each runs again on another process once its lease ends, marked `was_stale`,
/// and jobs scheduled after the crash run once; nothing is lost.
pub async fn crash(env: Env) {
    let store = env.store().await;
    let lock = Duration::from_secs(2);
    let holder = WorkerProcess::start(
        &env,
        &WorkerSpec {
            mode: "hold",
            lock,
            ..WorkerSpec::new("holder", "work")
        },
    );
    let held = schedule_batch(&*store, "work", 0, 20).await;
    wait_until(
        "the first worker runs all 20 jobs",
        Duration::from_secs(60),
        || async { holder.started().len() >= 20 },
    )
    .await;
    let lines = holder.kill();
    assert_eq!(
        lines.len(),
        20,
        "the killed worker ran each held job once: {lines:?}"
    );
    let after = schedule_batch(&*store, "work", 20, 20).await;
    let rescuer = WorkerProcess::start(
        &env,
        &WorkerSpec {
            lock,
            ..WorkerSpec::new("rescuer", "work")
        },
    );
    wait_until(
        "every job has run and none is left",
        Duration::from_secs(60),
        || async { remaining(&*store, "work").await == 0 && rescuer.started().len() >= 40 },
    )
    .await;
    let runs: HashMap<String, Vec<(u32, bool)>> =
        rescuer
            .lines()
            .into_iter()
            .fold(HashMap::new(), |mut runs, line| {
                if let Line::Start(id, tries, stale) = line {
                    runs.entry(id).or_default().push((tries, stale));
                }
                runs
            });
    for id in &held {
        assert_eq!(
            runs.get(id),
            Some(&vec![(2, true)]),
            "a job the killed worker held runs again once, as its second try, marked was_stale"
        );
    }
    for id in &after {
        assert_eq!(
            runs.get(id),
            Some(&vec![(1, false)]),
            "a later job runs once"
        );
    }
    assert_eq!(runs.len(), 40, "nothing else ran");
    assert_quiet_logs(&[&rescuer], 0);
    rescuer.stop(Duration::from_secs(30)).await;
}

/// A store outage: the suite's own server is stopped for about 5 seconds while two worker
/// processes run and jobs are scheduled; workers log, back off, reconnect and go on, without
/// panics and without a tight error loop; scheduling during the outage fails with
/// `Unavailable` in bounded time; every job accepted before, during or after runs.
pub async fn store_outage(env: Env) {
    let Some(mut server) = OwnServer::start(env.backend(), &env.dir).await else {
        return;
    };
    let timeout = Duration::from_millis(1500);
    let env = Env {
        settings: StoreSettings {
            url: server.url(),
            timeout,
            ..env.settings.clone()
        },
        ..env
    };
    let store = env.store().await;
    let spec = |label: &str| WorkerSpec {
        slots: 16,
        lock: Duration::from_secs(3),
        poll: Duration::from_millis(500),
        timeout,
        ..WorkerSpec::new(label, "work")
    };
    let mut workers = vec![
        WorkerProcess::start(&env, &spec("a")),
        WorkerProcess::start(&env, &spec("b")),
    ];
    let mut calls = Calls::default();
    calls
        .schedule_for(&*store, Duration::from_secs(2), false)
        .await;
    let before = calls.accepted.len();
    server.stop();
    let down_at = Instant::now();
    calls
        .schedule_for(&*store, Duration::from_secs(5), true)
        .await;
    let during = calls.accepted.len() - before;
    server.restart().await;
    let down_for = down_at.elapsed();
    calls
        .schedule_for(&*store, Duration::from_secs(3), false)
        .await;
    let Calls { accepted, refusals } = calls;
    assert!(before > 0, "jobs were accepted before the outage");
    assert_eq!(during, 0, "nothing is accepted while the server is down");
    assert!(
        !refusals.is_empty(),
        "calls during the outage returned errors"
    );
    for (kind, took) in &refusals {
        assert_eq!(*kind, ErrorKind::Unavailable, "an outage is Unavailable");
        assert!(
            *took < timeout + Duration::from_secs(3),
            "a call during the outage returned within its timeout (took {took:?})"
        );
    }
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = start_counts(workers.iter());
        let never: Vec<&String> = accepted
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .collect();
        if never.is_empty() && remaining(&*store, "work").await == 0 {
            break;
        }
        if Instant::now() >= end {
            let left = store.list_jobs(&JobQuery::name("work")).await;
            panic!(
                "not every accepted job has run after 120 s: never started {never:?}; \
                 in the store {left:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for worker in &mut workers {
        assert!(
            worker.is_running(),
            "worker {} is still running",
            worker.label
        );
    }
    let counts = start_counts(workers.iter());
    let reruns = counts.values().filter(|&&n| n > 1).count();
    println!(
        "{}: server down {:.1} s; {} jobs accepted ({before} before the outage), {} calls \
         refused during it, {reruns} re-run after the outage",
        env.backend(),
        down_for.as_secs_f64(),
        accepted.len(),
        refusals.len()
    );
    // Backing off from 100 ms up to 5 s, a worker logs a few dozen lines over a 5 s outage; a
    // tight loop would log thousands.
    assert_quiet_logs(&workers.iter().collect::<Vec<_>>(), 100);
    for worker in workers {
        worker.stop(Duration::from_secs(30)).await;
    }
}

/// The outcome of scheduling calls around an outage.
#[derive(Default)]
struct Calls {
    accepted: Vec<String>,
    refusals: Vec<(ErrorKind, Duration)>,
}

impl Calls {
    /// Schedules one job every 10 ms for `how_long`; errors count as refusals during an outage.
    async fn schedule_for(&mut self, store: &dyn JobStore, how_long: Duration, outage: bool) {
        let end = Instant::now() + how_long;
        while Instant::now() < end {
            let asked = Instant::now();
            match schedule_job_by_name(store, "work", &json!({}), ScheduleOptions::default()).await
            {
                Ok(Scheduled::Created(id)) => self.accepted.push(id.to_string()),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) if outage => self.refusals.push((e.kind(), asked.elapsed())),
                Err(e) => println!("scheduling failed while the server came back: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The records of one job's executions, as (status, worker id), sorted by worker id.
async fn executions_of(store: &dyn JobStore, id: &str) -> Vec<(ExecutionStatus, String)> {
    let records = store
        .executions(&ExecutionQuery::name("work").limit(100))
        .await
        .unwrap();
    let mut of_job: Vec<(ExecutionStatus, String)> = records
        .iter()
        .filter(|e| e.job_id.as_str() == id)
        .map(|e| (e.status, e.worker_id.clone()))
        .collect();
    of_job.sort_by_key(|(_, worker)| worker.clone());
    of_job
}

/// What a slow handler leaves: one `stale` record of the slow worker, one `success` record of
/// the other, and no job.
async fn assert_stale_then_rerun(store: &dyn JobStore, id: &str) {
    assert_eq!(
        executions_of(store, id).await,
        vec![
            (ExecutionStatus::Success, "other".to_owned()),
            (ExecutionStatus::Stale, "slow".to_owned())
        ],
        "job {id}: the late success changed nothing"
    );
    assert!(store.get_job(&id.into()).await.unwrap().is_none(), "done");
}

/// The memory store lives in one process: the slow worker set and the other share it. One job,
/// so the blocked handler holds one of the runtime's two threads.
async fn slow_handler_in_process(env: Env) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let store = env.store().await;
    let started = Arc::new(AtomicUsize::new(0));
    let late = Arc::new(AtomicUsize::new(0));
    let slow_job = {
        let (started, late) = (Arc::clone(&started), Arc::clone(&late));
        EventJob::new("work", move |_: Value, _ctx: JobContext| {
            let (started, late) = (Arc::clone(&started), Arc::clone(&late));
            async move {
                started.fetch_add(1, SeqCst);
                // Blocks its thread: neither cancellation nor abort can stop it.
                std::thread::sleep(Duration::from_secs(4));
                late.fetch_add(1, SeqCst);
                Ok(())
            }
        })
    };
    // Leases that do not renew themselves: renewal, from the runtime's other thread, would
    // keep a blocked handler's lease until it returns.
    let options = |worker: &str| WorkerOptions {
        lock_time: Duration::from_millis(1500),
        poll_interval: Duration::from_millis(100),
        cooldown_period: Duration::ZERO,
        shutdown_grace: Some(Duration::from_secs(20)),
        worker_id: Some(worker.to_owned()),
        auto_extend: false,
        ..Default::default()
    };
    let slow = start_workers(Arc::clone(&store), [slow_job], options("slow"))
        .await
        .unwrap();
    let id = schedule_new(&*store, NewJob::new("work", json!({}))).await;
    wait_until(
        "the slow worker starts the job",
        Duration::from_secs(30),
        || async { started.load(SeqCst) == 1 },
    )
    .await;
    // It claims nothing more, and waits for its execution.
    let stopping = tokio::spawn(slow.stop());
    let reruns: Arc<Mutex<Vec<(u32, bool)>>> = Arc::default();
    let other_job = {
        let reruns = Arc::clone(&reruns);
        EventJob::new("work", move |_: Value, ctx: JobContext| {
            let reruns = Arc::clone(&reruns);
            async move {
                reruns.lock().unwrap().push((ctx.tries(), ctx.was_stale()));
                Ok(())
            }
        })
    };
    let other = start_workers(Arc::clone(&store), [other_job], options("other"))
        .await
        .unwrap();
    wait_until(
        "the job runs again elsewhere and is done",
        Duration::from_secs(30),
        || async { !reruns.lock().unwrap().is_empty() && remaining(&*store, "work").await == 0 },
    )
    .await;
    wait_until(
        "the slow handler returns, late",
        Duration::from_secs(30),
        || async { late.load(SeqCst) == 1 },
    )
    .await;
    stopping.await.unwrap();
    other.stop().await;
    assert_eq!(
        *reruns.lock().unwrap(),
        vec![(2, true)],
        "once, the second try, was_stale"
    );
    assert_stale_then_rerun(&*store, id.as_str()).await;
}

/// W-stale-detected across processes: a handler blocks its thread far past its lease and cannot
/// be stopped; its worker declares it stale, the job runs again once, on another process, marked
/// `was_stale`, and the late handler's success is never applied.
pub async fn slow_handler(env: Env) {
    if env.backend() == "memory" {
        return slow_handler_in_process(env).await;
    }
    let store = env.store().await;
    let mut slow = WorkerProcess::start(
        &env,
        &WorkerSpec {
            mode: "slow",
            slots: 4,
            lock: Duration::from_millis(1500),
            slow: Duration::from_secs(6),
            ..WorkerSpec::new("slow", "work")
        },
    );
    let ids: Vec<String> = schedule_batch(&*store, "work", 0, 2).await;
    wait_until(
        "the slow worker starts both jobs",
        Duration::from_secs(30),
        || async { slow.started().len() >= 2 },
    )
    .await;
    // It claims nothing more, and waits for its executions.
    slow.request_stop();
    let other = WorkerProcess::start(
        &env,
        &WorkerSpec {
            lock: Duration::from_millis(1500),
            ..WorkerSpec::new("other", "work")
        },
    );
    wait_until(
        "the jobs run again elsewhere and are done",
        Duration::from_secs(60),
        || async { other.started().len() >= 2 && remaining(&*store, "work").await == 0 },
    )
    .await;
    wait_until(
        "the slow handlers return, late",
        Duration::from_secs(30),
        || async {
            slow.lines()
                .iter()
                .filter(|l| matches!(l, Line::Late(_)))
                .count()
                >= 2
        },
    )
    .await;
    slow.wait_exit(Duration::from_secs(30)).await;
    for line in other.lines() {
        let Line::Start(id, tries, stale) = line else {
            continue;
        };
        assert!(ids.contains(&id));
        assert_eq!(
            (tries, stale),
            (2, true),
            "the re-run is the second try, marked was_stale"
        );
    }
    assert_eq!(other.started().len(), 2, "each job ran once elsewhere");
    // The late success changed nothing: each job has one stale and one successful record.
    for id in &ids {
        assert_stale_then_rerun(&*store, id).await;
    }
    assert_eq!(
        remaining(&*store, "work").await,
        0,
        "the late result resurrected nothing"
    );
    other.stop(Duration::from_secs(30)).await;
}
