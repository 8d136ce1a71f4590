//! The SQLite store against the memory store, the reference implementation: the same random
//! sequences of operations on both give the same outcomes and leave the same jobs behind.
//!
//! Ids match (both number jobs 1, 2, 3, … in scheduling order); lease tokens are paired by the
//! claim that handed them out. Times are compared coarsely (due now or an hour ahead), since
//! the two stores' clocks are read at slightly different instants.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    ClaimName, ClaimRequest, Completion, Finish, Job, JobCounts, JobId, JobQuery, JobStore, Lease,
    NameSettings, NewJob, OnDuplicate, RecurrentRegistration, Result, RunAt,
};
use dogs_memory::MemoryStore;
use dogs_sqlite::SqliteStore;
use serde_json::json;

use crate::harness::TestContext;

const HOUR: Duration = Duration::from_secs(3600);
const NAMES: [&str; 3] = ["a", "b", "c"];

/// A job as compared: what both stores must agree on.
#[derive(Debug, PartialEq)]
struct Seen {
    id: JobId,
    name: String,
    kind: dogs_core::JobKind,
    params: serde_json::Value,
    priority: i32,
    unique_identifier: Option<String>,
    tries: u32,
    state: dogs_core::JobState,
    due: bool,
    leased: bool,
    locked_by: Option<String>,
    last_error: Option<String>,
    expires: bool,
    schedule_key: Option<String>,
    progress: Option<serde_json::Value>,
    paused: bool,
}

fn seen(job: &Job, now: DateTime<Utc>) -> Seen {
    Seen {
        id: job.id.clone(),
        name: job.name.clone(),
        kind: job.kind,
        params: job.params.clone(),
        priority: job.priority,
        unique_identifier: job.unique_identifier.clone(),
        tries: job.tries,
        state: job.state,
        due: job.run_at <= now + chrono::Duration::minutes(30),
        leased: job.locked_until.is_some(),
        locked_by: job.locked_by.clone(),
        last_error: job.last_error.clone(),
        expires: job.expires_at.is_some(),
        schedule_key: job.schedule_key.clone(),
        progress: job.progress.clone(),
        paused: job.paused,
    }
}

/// Both stores' jobs, counts and settings.
async fn snapshot(store: &dyn JobStore) -> Snapshot {
    let now = store.now().await.unwrap();
    let jobs = store
        .list_jobs(&JobQuery::default().limit(100_000))
        .await
        .unwrap();
    let recurrent = store.list_recurrent().await.unwrap();
    let mut executions = Vec::new();
    for name in NAMES {
        executions.extend(
            store
                .executions(&dogs_core::ExecutionQuery::name(name).limit(1000))
                .await
                .unwrap(),
        );
    }
    (
        jobs.iter().map(|j| seen(j, now)).collect(),
        store.count_jobs().await.unwrap(),
        store.name_settings().await.unwrap(),
        recurrent.iter().map(|j| seen(j, now)).collect(),
        executions,
    )
}

/// What both stores must agree on after each step.
type Snapshot = (
    Vec<Seen>,
    Vec<JobCounts>,
    Vec<NameSettings>,
    Vec<Seen>,
    Vec<dogs_core::Execution>,
);

/// An execution record of the job `id` (its id drawn from a few, so some are recorded twice).
fn record(rng: &mut fastrand::Rng, id: &JobId) -> Option<dogs_core::Execution> {
    if rng.u8(0..3) == 0 {
        return None;
    }
    let started_at =
        dogs_core::truncate_millis(Utc::now()) - chrono::Duration::seconds(rng.i64(0..100));
    Some(dogs_core::Execution {
        job_id: id.clone(),
        execution_id: format!("e{}", rng.u8(0..60)),
        name: NAMES[rng.usize(0..NAMES.len())].to_owned(),
        kind: dogs_core::JobKind::Event,
        priority: rng.i32(0..3),
        tries: rng.u32(1..4),
        unique_identifier: rng.bool().then(|| "u".to_owned()),
        params: json!({"p": rng.u8(0..9)}),
        started_at,
        ended_at: started_at + chrono::Duration::milliseconds(1500),
        duration: Duration::from_millis(1500),
        status: dogs_core::ExecutionStatus::Success,
        error: None,
        result: rng.bool().then(|| json!([1, "two"])),
        worker_id: "w".to_owned(),
        expires_at: started_at + chrono::Duration::days(1),
    })
}

/// An outcome as compared: the value, or the error's kind.
fn kind_of<T>(outcome: &Result<T>) -> std::result::Result<&T, dogs_core::ErrorKind> {
    outcome.as_ref().map_err(|e| e.kind())
}

fn run_at(rng: &mut fastrand::Rng) -> RunAt {
    match rng.u8(0..4) {
        0 => RunAt::Now,
        1 => RunAt::In(HOUR),
        2 => RunAt::At(Utc::now() - chrono::Duration::hours(1)),
        _ => RunAt::At(dogs_core::truncate_millis(
            Utc::now() + chrono::Duration::hours(2),
        )),
    }
}

fn new_job(rng: &mut fastrand::Rng) -> NewJob {
    let mut job = NewJob::new(NAMES[rng.usize(0..NAMES.len())], json!(rng.u32(0..100)))
        .priority(rng.i32(0..3))
        .run_at(run_at(rng));
    if rng.bool() {
        job = job.unique_identifier(format!("u{}", rng.u8(0..3)));
    }
    if rng.u8(0..3) == 0 {
        job = job.on_duplicate(OnDuplicate::Replace);
    }
    job
}

fn completion(rng: &mut fastrand::Rng) -> Completion {
    match rng.u8(0..6) {
        0 => Completion::Remove,
        1 => Completion::Reschedule {
            run_at: run_at(rng),
            priority: rng.bool().then(|| rng.i32(0..3)),
            reset_tries: rng.bool(),
        },
        2 => Completion::Fail {
            error: format!("failed {}", rng.u8(0..9)),
            retain_for: HOUR,
        },
        3 => Completion::Demote,
        4 => Completion::Release,
        _ => Completion::Snooze {
            run_at: run_at(rng),
        },
    }
}

fn claim_request(rng: &mut fastrand::Rng) -> ClaimRequest {
    let mut names = Vec::new();
    for name in NAMES {
        if rng.u8(0..3) > 0 {
            let max = (rng.u8(0..4) == 0).then(|| rng.usize(0..3));
            names.push(ClaimName {
                name: name.to_owned(),
                lock_time: HOUR,
                max,
            });
        }
    }
    ClaimRequest {
        names,
        limit: rng.usize(0..5),
        worker_id: format!("w{}", rng.u8(0..2)),
    }
}

/// Random operations on a memory store and a SQLite store (in memory and in a file, in turn)
/// give the same outcomes and leave the same jobs and records: 10 sequences of 250 steps, or
/// as many as `DOGS_SQLITE_SEQUENCES` says.
pub async fn matches_memory(ctx: TestContext) {
    let sequences = std::env::var("DOGS_SQLITE_SEQUENCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10u64);
    for seed in 0..sequences {
        let memory = MemoryStore::new();
        let sqlite: Box<dyn JobStore> = if seed % 2 == 0 {
            Box::new(SqliteStore::in_memory().await.unwrap())
        } else {
            let path = super::db_path(&format!("{}-{seed}", ctx.namespace()));
            Box::new(SqliteStore::open(&path).await.unwrap())
        };
        run(seed, &memory, &*sqlite).await;
        drop(sqlite);
        let _ = super::remove_db(super::db_path(&format!("{}-{seed}", ctx.namespace())));
    }
}

async fn run(seed: u64, memory: &MemoryStore, sqlite: &dyn JobStore) {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Leases handed out, paired: (memory's, SQLite's).
    let mut leases: Vec<(Lease, Lease)> = Vec::new();
    let ids = |rng: &mut fastrand::Rng| JobId::new(rng.u32(1..40).to_string());
    for step in 0..250 {
        let op = rng.u8(0..17);
        let what = format!("seed {seed}, step {step}, op {op}");
        match op {
            0..=2 => {
                let job = new_job(&mut rng);
                let (a, b) = (
                    memory.schedule(job.clone()).await,
                    sqlite.schedule(job).await,
                );
                assert_eq!(kind_of(&a), kind_of(&b), "{what}: schedule");
            }
            3 => {
                let jobs: Vec<NewJob> = (0..rng.usize(0..6)).map(|_| new_job(&mut rng)).collect();
                let a = memory.schedule_many(jobs.clone()).await.unwrap();
                let b = sqlite.schedule_many(jobs).await.unwrap();
                let a: Vec<_> = a.iter().map(kind_of).collect();
                let b: Vec<_> = b.iter().map(kind_of).collect();
                assert_eq!(a, b, "{what}: schedule_many");
            }
            4 => {
                let registration = RecurrentRegistration {
                    name: NAMES[rng.usize(0..NAMES.len())].to_owned(),
                    schedule_key: format!("every {}", rng.u8(0..2)),
                    priority: rng.i32(0..3),
                    next_run_at: dogs_core::truncate_millis(
                        Utc::now() + chrono::Duration::hours(2),
                    ),
                };
                let a = memory.register_recurrent(registration.clone()).await;
                let b = sqlite.register_recurrent(registration).await;
                assert_eq!(kind_of(&a), kind_of(&b), "{what}: register_recurrent");
            }
            5..=7 | 16 => {
                let mut request = claim_request(&mut rng);
                if op == 16 {
                    // Leases that run out before the next step, in both stores.
                    for name in &mut request.names {
                        name.lock_time = Duration::from_millis(1);
                    }
                }
                let a = memory.claim(&request).await.unwrap();
                let b = sqlite.claim(&request).await.unwrap();
                let summary = |c: &dogs_core::Claimed| {
                    (
                        c.jobs
                            .iter()
                            .map(|j| {
                                (
                                    j.job.id.clone(),
                                    j.job.tries,
                                    j.was_stale,
                                    j.job.params.clone(),
                                )
                            })
                            .collect::<Vec<_>>(),
                        c.next_due.is_some(),
                        c.more_due(),
                    )
                };
                assert_eq!(summary(&a), summary(&b), "{what}: claim {request:?}");
                for (x, y) in a.jobs.iter().zip(&b.jobs) {
                    leases.push((x.lease.clone(), y.lease.clone()));
                }
                if op == 16 {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            }
            8 | 9 if !leases.is_empty() => {
                let (x, y) = leases[rng.usize(0..leases.len())].clone();
                let completion = completion(&mut rng);
                let execution = record(&mut rng, &x.job_id);
                let a = memory
                    .finish(&x, completion.clone(), execution.as_ref())
                    .await;
                let b = sqlite
                    .finish(&y, completion.clone(), execution.as_ref())
                    .await;
                assert_eq!(kind_of(&a), kind_of(&b), "{what}: finish {completion:?}");
            }
            10 if !leases.is_empty() => {
                type Picked = (Lease, Lease, Completion, Option<dogs_core::Execution>);
                let picked: Vec<Picked> = (0..rng.usize(1..5))
                    .map(|_| {
                        let (x, y) = leases[rng.usize(0..leases.len())].clone();
                        let execution = record(&mut rng, &x.job_id);
                        (x, y, completion(&mut rng), execution)
                    })
                    .collect();
                let finishes = |first: bool| -> Vec<Finish> {
                    picked
                        .iter()
                        .map(|(x, y, c, e)| Finish {
                            lease: if first { x.clone() } else { y.clone() },
                            completion: c.clone(),
                            execution: e.clone(),
                        })
                        .collect()
                };
                let a = memory.finish_many(finishes(true)).await.unwrap();
                let b = sqlite.finish_many(finishes(false)).await.unwrap();
                let a: Vec<_> = a.iter().map(kind_of).collect();
                let b: Vec<_> = b.iter().map(kind_of).collect();
                assert_eq!(a, b, "{what}: finish_many");
            }
            11 => {
                let id = ids(&mut rng);
                let (a, b) = if rng.bool() {
                    (memory.cancel(&id).await, sqlite.cancel(&id).await)
                } else {
                    let (name, unique) = (
                        NAMES[rng.usize(0..NAMES.len())],
                        format!("u{}", rng.u8(0..3)),
                    );
                    (
                        memory.cancel_unique(name, &unique).await,
                        sqlite.cancel_unique(name, &unique).await,
                    )
                };
                assert_eq!(kind_of(&a), kind_of(&b), "{what}: cancel");
            }
            12 => {
                let (a, b) = if rng.bool() {
                    let id = ids(&mut rng);
                    (
                        memory.retry(&id).await.map(u64::from),
                        sqlite.retry(&id).await.map(u64::from),
                    )
                } else {
                    let name = NAMES[rng.usize(0..NAMES.len())];
                    (
                        memory.retry_failed(name).await,
                        sqlite.retry_failed(name).await,
                    )
                };
                assert_eq!(kind_of(&a), kind_of(&b), "{what}: retry");
            }
            13 => {
                let name = NAMES[rng.usize(0..NAMES.len())];
                let (a, b) = if rng.bool() {
                    let paused = rng.bool();
                    (
                        memory.set_paused(name, paused).await,
                        sqlite.set_paused(name, paused).await,
                    )
                } else {
                    let limit = rng.bool().then(|| rng.u32(0..3));
                    (
                        memory.set_concurrency_limit(name, limit).await,
                        sqlite.set_concurrency_limit(name, limit).await,
                    )
                };
                assert_eq!(kind_of(&a), kind_of(&b), "{what}: settings");
            }
            14 if !leases.is_empty() => {
                let (x, y) = leases[rng.usize(0..leases.len())].clone();
                let progress = json!({"done": rng.u8(0..100)});
                let a = memory.set_progress(&x, &progress).await;
                let b = sqlite.set_progress(&y, &progress).await;
                assert_eq!(kind_of(&a), kind_of(&b), "{what}: set_progress");
            }
            15 if !leases.is_empty() => {
                let (x, y) = leases[rng.usize(0..leases.len())].clone();
                let a = memory.extend_lock(&x, HOUR).await.map(|_| ());
                let b = sqlite.extend_lock(&y, HOUR).await.map(|_| ());
                assert_eq!(kind_of(&a), kind_of(&b), "{what}: extend_lock");
            }
            _ => continue,
        }
        let (a, b) = (snapshot(memory).await, snapshot(sqlite).await);
        assert_eq!(a, b, "{what}: the stores differ afterwards");
    }
}
