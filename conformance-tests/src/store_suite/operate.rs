//! What an operator does: retry failed jobs, pause names, cancel running jobs, limit a name
//! across processes, and replace a pending duplicate.

use std::collections::HashSet;
use std::time::Duration;

use dogs_core::{
    ClaimRequest, Completion, ErrorKind, ExecutionQuery, ExecutionStatus, JobQuery, JobState,
    NewJob, OnDuplicate, RunAt, Scheduled, CANCELLED_ERROR,
};
use serde_json::json;

use super::*;
use crate::harness::TestContext;
use crate::support::*;

/// Fails a job of `name` for good and returns its id.
async fn failed_job(store: &dyn dogs_core::JobStore, job: NewJob) -> dogs_core::JobId {
    let name = job.name.clone();
    let id = schedule_new(store, job).await;
    let claimed = claim_one(store, &name, LEASE).await;
    assert_eq!(claimed.job.id, id);
    store
        .complete(
            &claimed.lease,
            Completion::Fail {
                error: "it broke".into(),
                retain_for: Duration::from_secs(3600),
            },
        )
        .await
        .unwrap();
    id
}

/// S-retry-failed
pub async fn retry_failed(ctx: TestContext) {
    let store = ctx.store();
    let id = failed_job(
        &*store,
        NewJob::new("retried", json!({"n": 1})).unique_identifier("u"),
    )
    .await;
    let started = store_now(&*store).await;
    store
        .record_execution(&execution(
            &id,
            "retried",
            "retried-exec-1",
            ExecutionStatus::Failed,
            started,
        ))
        .await
        .unwrap();
    assert!(store.retry(&id).await.unwrap(), "a failed job is put back");
    let job = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Pending);
    assert_eq!(job.tries, 0, "its tries are reset");
    assert_eq!(job.last_error, None);
    assert!(job.run_at <= store_now(&*store).await, "it is due now");
    let history = store
        .executions(&ExecutionQuery::name("retried"))
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "its past executions stay");
    // It holds its unique identifier again.
    assert_eq!(
        store
            .schedule(NewJob::new("retried", json!({})).unique_identifier("u"))
            .await
            .unwrap(),
        Scheduled::Duplicate(id.clone())
    );
    let claimed = claim_one(&*store, "retried", LEASE).await;
    assert_eq!((claimed.job.id.clone(), claimed.job.tries), (id.clone(), 1));

    // A running job cannot be retried.
    assert_eq!(
        store.retry(&id).await.map_err(|e| e.kind()).err(),
        Some(ErrorKind::Conflict),
        "a running job is not retried"
    );
    store
        .complete(&claimed.lease, Completion::Remove)
        .await
        .unwrap();
    assert!(
        !store.retry(&id).await.unwrap(),
        "a missing job is not found"
    );
    assert!(!store
        .retry(&dogs_core::JobId::new("not-an-id"))
        .await
        .unwrap());

    // A failed job whose unique identifier was taken since stays failed.
    let blocked = failed_job(
        &*store,
        NewJob::new("retried", json!({})).unique_identifier("v"),
    )
    .await;
    let holder = schedule_new(
        &*store,
        NewJob::new("retried", json!({})).unique_identifier("v"),
    )
    .await;
    assert_eq!(
        store.retry(&blocked).await.map_err(|e| e.kind()).err(),
        Some(ErrorKind::Conflict)
    );
    assert_eq!(
        store.get_job(&blocked).await.unwrap().unwrap().state,
        JobState::Failed
    );
    store.cancel(&holder).await.unwrap();
    store.cancel(&blocked).await.unwrap();

    // Run now: a pending job due later becomes due now, its tries kept.
    let later = schedule_new(
        &*store,
        NewJob::new("retried", json!({})).run_at(RunAt::In(Duration::from_secs(3600))),
    )
    .await;
    assert!(store.retry(&later).await.unwrap());
    let claimed = claim_one(&*store, "retried", LEASE).await;
    assert_eq!(
        claimed.job.id, later,
        "a pending job is due now once retried"
    );
    store
        .complete(&claimed.lease, Completion::Remove)
        .await
        .unwrap();

    // Every failed job of a name, in batches.
    let count = dogs_core::RETRY_BATCH + 5;
    let jobs: Vec<NewJob> = (0..count)
        .map(|i| NewJob::new("bulk-retried", json!(i)))
        .collect();
    fail_all(&*store, jobs).await;
    let other = failed_job(&*store, NewJob::new("not-retried", json!({}))).await;
    assert_eq!(
        store.retry_failed("bulk-retried").await.unwrap(),
        count as u64,
        "retry_failed puts back every failed job of the name"
    );
    assert_eq!(store.retry_failed("bulk-retried").await.unwrap(), 0);
    let counts = store.count_jobs().await.unwrap();
    let bulk = counts.iter().find(|c| c.name == "bulk-retried").unwrap();
    assert_eq!((bulk.pending, bulk.failed), (count as u64, 0));
    assert_eq!(
        store.get_job(&other).await.unwrap().unwrap().state,
        JobState::Failed,
        "other names' failed jobs are left"
    );

    // A whole batch that cannot be put back (their unique identifiers are taken) does not stop
    // the ones after it.
    let blocked: Vec<NewJob> = (0..dogs_core::RETRY_BATCH)
        .map(|i| NewJob::new("retried-past", json!(i)).unique_identifier(format!("u{i}")))
        .collect();
    fail_all(&*store, blocked.clone()).await;
    fail_all(
        &*store,
        (0..5)
            .map(|i| NewJob::new("retried-past", json!(i)))
            .collect(),
    )
    .await;
    // Live jobs take the first ones' unique identifiers (another name's claims leave them be).
    let holders: Vec<NewJob> = blocked
        .into_iter()
        .map(|mut job| {
            job.name = "retried-past".into();
            job
        })
        .collect();
    for outcome in store.schedule_many(holders).await.unwrap() {
        assert!(matches!(outcome.unwrap(), Scheduled::Created(_)));
    }
    assert_eq!(
        store.retry_failed("retried-past").await.unwrap(),
        5,
        "the failed jobs after a batch that could not be put back are put back"
    );
}

/// Stores `jobs` (of one name) and fails each for good.
async fn fail_all(store: &dyn dogs_core::JobStore, jobs: Vec<NewJob>) {
    let name = jobs[0].name.clone();
    let mut left = jobs.len();
    for outcome in store.schedule_many(jobs).await.unwrap() {
        outcome.unwrap();
    }
    while left > 0 {
        let batch = claim(store, &name, LEASE, left.min(500)).await;
        assert!(!batch.is_empty());
        left -= batch.len();
        let finishes = batch
            .into_iter()
            .map(|c| dogs_core::Finish {
                lease: c.lease,
                completion: Completion::Fail {
                    error: "bulk".into(),
                    retain_for: Duration::from_secs(3600),
                },
                execution: None,
            })
            .collect();
        for outcome in store.finish_many(finishes).await.unwrap() {
            outcome.unwrap();
        }
    }
}

/// S-pause-resume
pub async fn pause_resume(ctx: TestContext) {
    let store = ctx.store();
    let running = schedule_new(&*store, NewJob::new("paused", json!(0))).await;
    let held = claim_one(&*store, "paused", LEASE).await;
    assert_eq!(held.job.id, running);
    store.pause("paused").await.unwrap();
    let id = schedule_new(&*store, NewJob::new("paused", json!(1))).await;
    schedule_new(&*store, NewJob::new("not-paused", json!(2))).await;
    let request = ClaimRequest::new(["paused", "not-paused"], LEASE, 10);
    let claimed = store.claim(&request).await.unwrap();
    let names: Vec<&str> = claimed.jobs.iter().map(|c| c.job.name.as_str()).collect();
    assert_eq!(names, vec!["not-paused"], "a paused name is not claimed");
    // Another handle (another process, or a worker restarted) sees the stored pause.
    let other = ctx.another_handle().await;
    assert!(claim(&*other, "paused", LEASE, 10).await.is_empty());
    assert_eq!(
        other.name_settings().await.unwrap(),
        vec![dogs_core::NameSettings {
            name: "paused".into(),
            paused: true,
            concurrency_limit: None,
        }]
    );
    let counts = other.count_jobs().await.unwrap();
    let paused = counts.iter().find(|c| c.name == "paused").unwrap();
    assert!(paused.paused, "counts show the name as paused");
    assert_eq!((paused.pending, paused.running), (1, 1));
    assert!(
        !counts
            .iter()
            .find(|c| c.name == "not-paused")
            .unwrap()
            .paused
    );
    assert!(other.get_job(&id).await.unwrap().unwrap().paused);
    let listed = other.list_jobs(&JobQuery::name("paused")).await.unwrap();
    assert!(
        listed.iter().all(|j| j.paused),
        "listings show the name as paused"
    );
    // The running job finishes.
    store
        .complete(&held.lease, Completion::Remove)
        .await
        .unwrap();
    // A paused name with no jobs is counted.
    store.pause("idle-paused").await.unwrap();
    let counts = store.count_jobs().await.unwrap();
    let idle = counts.iter().find(|c| c.name == "idle-paused").unwrap();
    assert!(idle.paused && idle.pending == 0);
    assert!(
        counts.windows(2).all(|w| w[0].name < w[1].name),
        "counts stay sorted by name"
    );

    other.resume("paused").await.unwrap();
    let claimed = claim_one(&*store, "paused", LEASE).await;
    assert_eq!(claimed.job.id, id, "a resumed name is claimed again");
    assert!(!store.get_job(&id).await.unwrap().unwrap().paused);
    store.resume("idle-paused").await.unwrap();
    assert!(store.name_settings().await.unwrap().is_empty());
    assert_eq!(
        store.pause("").await.map_err(|e| e.kind()).err(),
        Some(ErrorKind::InvalidInput)
    );
}

/// S-cancel-running
pub async fn cancel_running(ctx: TestContext) {
    let store = ctx.store();
    let id = schedule_new(
        &*store,
        NewJob::new("cancelled", json!({})).unique_identifier("c"),
    )
    .await;
    let claimed = claim_one(&*store, "cancelled", Duration::from_secs(3)).await;
    let mut wakeups = store.wakeups();
    if let Some(w) = &mut wakeups {
        w.mark_seen();
    }
    assert!(
        store.cancel(&id).await.unwrap(),
        "a running job is cancelled"
    );
    let job = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Failed,
        "it is marked cancelled at once"
    );
    assert_eq!(job.last_error.as_deref(), Some(CANCELLED_ERROR));
    let lost = |r: dogs_core::Result<()>| r.map_err(|e| e.kind()).err();
    assert_eq!(
        lost(store.extend_lock(&claimed.lease, LEASE).await.map(|_| ())),
        Some(ErrorKind::LockLost)
    );
    assert_eq!(
        lost(store.complete(&claimed.lease, Completion::Remove).await),
        Some(ErrorKind::LockLost)
    );
    assert_eq!(
        lost(
            store
                .complete(
                    &claimed.lease,
                    Completion::Reschedule {
                        run_at: RunAt::Now,
                        priority: None,
                        reset_tries: false,
                    },
                )
                .await
        ),
        Some(ErrorKind::LockLost)
    );
    assert_eq!(
        lost(store.set_progress(&claimed.lease, &json!(1)).await),
        Some(ErrorKind::LockLost)
    );
    assert!(
        claim(&*store, "cancelled", LEASE, 10).await.is_empty(),
        "it is not claimed"
    );
    // The workers are told, where the store can tell them.
    if let Some(w) = &mut wakeups {
        tokio::time::timeout(DEADLINE, w.wait_cancelled())
            .await
            .expect("a cancellation notice");
    }
    // Its unique identifier is free, and it can be retried.
    schedule_new(
        &*store,
        NewJob::new("cancelled", json!({})).unique_identifier("d"),
    )
    .await;
    assert!(store.cancel_unique("cancelled", "d").await.unwrap());
    let again = schedule_new(
        &*store,
        NewJob::new("cancelled", json!({})).unique_identifier("c"),
    )
    .await;
    store.cancel(&again).await.unwrap();
    // Not while its handler may still be stopping: until the lease it had ends.
    assert_eq!(
        store.retry(&id).await.map_err(|e| e.kind()).err(),
        Some(ErrorKind::Conflict),
        "a job cancelled while running is not retried before its lease ends"
    );
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().state,
        JobState::Failed,
        "a refused retry changes nothing"
    );
    assert!(claim(&*store, "cancelled", LEASE, 10).await.is_empty());
    // Cancelling it again leaves it as it is until then (its place stays held).
    assert!(store.cancel(&id).await.unwrap());
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().state,
        JobState::Failed
    );
    wait_past(&*store, claimed.locked_until).await;
    assert!(store.retry(&id).await.unwrap());
    let claimed = claim_one(&*store, "cancelled", LEASE).await;
    assert_eq!(claimed.job.id, id);
    // By name and unique identifier, too.
    assert!(store.cancel_unique("cancelled", "c").await.unwrap());
    assert_eq!(
        lost(store.complete(&claimed.lease, Completion::Remove).await),
        Some(ErrorKind::LockLost)
    );

    // A recurrent job's run is not cancelled: its record would stop its schedule. Pausing
    // its name is how to stop it.
    let recurrent = store
        .register_recurrent(dogs_core::RecurrentRegistration {
            name: "cancelled-recurrent".into(),
            schedule_key: "every 1h".into(),
            priority: 1,
            next_run_at: store_now(&*store).await,
        })
        .await
        .unwrap();
    let run = claim_one(&*store, "cancelled-recurrent", LEASE).await;
    assert_eq!(
        store.cancel(&recurrent).await.map_err(|e| e.kind()).err(),
        Some(ErrorKind::Conflict),
        "a running recurrent job is not cancelled"
    );
    assert_eq!(
        store.get_job(&recurrent).await.unwrap().unwrap().state,
        JobState::Running
    );
    store
        .complete(
            &run.lease,
            Completion::Reschedule {
                run_at: RunAt::In(Duration::from_secs(3600)),
                priority: None,
                reset_tries: true,
            },
        )
        .await
        .unwrap();
}

/// S-global-concurrency
pub async fn global_concurrency(ctx: TestContext) {
    let store = ctx.store();
    const LIMIT: usize = 3;
    store
        .set_concurrency_limit("limited", Some(LIMIT as u32))
        .await
        .unwrap();
    assert_eq!(
        store
            .set_concurrency_limit("limited", Some(0))
            .await
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::InvalidInput)
    );
    let jobs: Vec<NewJob> = (0..40).map(|i| NewJob::new("limited", json!(i))).collect();
    for outcome in store.schedule_many(jobs).await.unwrap() {
        outcome.unwrap();
    }
    // Racing claimers, each its own handle, never hold more than the limit together.
    for round in 0..3 {
        let claimers = (0..6).map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let store = ctx.another_handle().await;
                claim(&*store, "limited", LEASE, 5).await
            })
        });
        let mut won = Vec::new();
        for claimer in futures::future::join_all(claimers).await {
            won.extend(claimer.unwrap());
        }
        assert_eq!(
            won.len(),
            LIMIT,
            "round {round}: the limit is held across claimers"
        );
        let ids: HashSet<_> = won.iter().map(|c| c.job.id.clone()).collect();
        assert_eq!(ids.len(), LIMIT);
        assert!(claim(&*store, "limited", LEASE, 5).await.is_empty());
        // One ends: one more may run.
        let (first, rest) = won.split_first().unwrap();
        store
            .complete(&first.lease, Completion::Remove)
            .await
            .unwrap();
        let more = claim(&*store, "limited", LEASE, 5).await;
        assert_eq!(more.len(), 1, "a finished execution frees its place");
        for c in rest.iter().chain(&more) {
            store.complete(&c.lease, Completion::Remove).await.unwrap();
        }
    }
    // A lease that ran out frees its place too; a cancelled execution holds its place until
    // then (its handler may still be stopping).
    let short = claim(&*store, "limited", SHORT_LEASE, 5).await;
    assert_eq!(short.len(), LIMIT);
    assert!(store.cancel(&short[0].job.id).await.unwrap());
    assert!(
        claim(&*store, "limited", LEASE, 5).await.is_empty(),
        "a cancelled execution counts until its lease ends"
    );
    let after = short.iter().map(|c| c.locked_until).max().unwrap();
    wait_past(&*store, after).await;
    assert_eq!(claim(&*store, "limited", LEASE, 5).await.len(), LIMIT);
    let settings = store.name_settings().await.unwrap();
    assert_eq!(settings[0].concurrency_limit, Some(LIMIT as u32));
    // Without the limit, the rest are claimed.
    store.set_concurrency_limit("limited", None).await.unwrap();
    assert!(claim(&*store, "limited", LEASE, 50).await.len() > LIMIT);
    assert!(store.name_settings().await.unwrap().is_empty());
}

/// S-unique-replace
pub async fn unique_replace(ctx: TestContext) {
    let store = ctx.store();
    let first = schedule_new(
        &*store,
        NewJob::new("debounced", json!({"v": 1}))
            .unique_identifier("k")
            .run_at(RunAt::In(Duration::from_secs(60))),
    )
    .await;
    let before = store_now(&*store).await;
    let replacing = NewJob::new("debounced", json!({"v": 2}))
        .unique_identifier("k")
        .priority(7)
        .run_at(RunAt::In(Duration::from_secs(120)))
        .on_duplicate(OnDuplicate::Replace);
    assert_eq!(
        store.schedule(replacing.clone()).await.unwrap(),
        Scheduled::Replaced(first.clone()),
        "the pending duplicate is replaced and keeps its id"
    );
    let job = store.get_job(&first).await.unwrap().unwrap();
    assert_eq!(job.params, json!({"v": 2}));
    assert_eq!(job.priority, 7);
    assert!(
        job.run_at >= before + chrono::Duration::seconds(119),
        "its run time moved"
    );
    // Keep (the default) leaves it as it is.
    let kept = NewJob::new("debounced", json!({"v": 3})).unique_identifier("k");
    assert_eq!(
        store.schedule(kept).await.unwrap(),
        Scheduled::Duplicate(first.clone())
    );
    assert_eq!(
        store.get_job(&first).await.unwrap().unwrap().params,
        json!({"v": 2})
    );
    // In bulk too, judged against earlier entries of the same call.
    let bulk = store
        .schedule_many(vec![
            NewJob::new("debounced", json!({"v": 4}))
                .unique_identifier("k")
                .run_at(RunAt::Now)
                .on_duplicate(OnDuplicate::Replace),
            NewJob::new("debounced", json!({"v": 5}))
                .unique_identifier("k2")
                .on_duplicate(OnDuplicate::Replace),
            NewJob::new("debounced", json!({"v": 6}))
                .unique_identifier("k2")
                .on_duplicate(OnDuplicate::Replace),
        ])
        .await
        .unwrap();
    assert_eq!(
        bulk[0].as_ref().unwrap(),
        &Scheduled::Replaced(first.clone())
    );
    let k2 = bulk[1].as_ref().unwrap().clone();
    assert!(matches!(k2, Scheduled::Created(_)));
    assert_eq!(
        bulk[2].as_ref().unwrap(),
        &Scheduled::Replaced(k2.id().clone())
    );
    assert_eq!(
        store.get_job(k2.id()).await.unwrap().unwrap().params,
        json!({"v": 6})
    );
    // Now due: claimed with the replaced params.
    let claimed = claim(&*store, "debounced", LEASE, 10).await;
    let running = claimed.iter().find(|c| c.job.id == first).unwrap();
    assert_eq!(running.job.params, json!({"v": 4}));
    // A pending duplicate whose last lease ran out is replaced, and the old holder's token no
    // longer completes it.
    let stale = schedule_new(
        &*store,
        NewJob::new("debounced-stale", json!({"v": 1})).unique_identifier("s"),
    )
    .await;
    let old = claim_one(&*store, "debounced-stale", SHORT_LEASE).await;
    wait_past(&*store, old.locked_until).await;
    let fresh = NewJob::new("debounced-stale", json!({"v": 2}))
        .unique_identifier("s")
        .on_duplicate(OnDuplicate::Replace);
    assert_eq!(
        store.schedule(fresh).await.unwrap(),
        Scheduled::Replaced(stale.clone())
    );
    assert_eq!(
        store
            .complete(&old.lease, Completion::Remove)
            .await
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::LockLost),
        "the replaced job is no longer the old holder's"
    );
    let claimed_again = claim_one(&*store, "debounced-stale", LEASE).await;
    assert_eq!(claimed_again.job.params, json!({"v": 2}));
    store
        .complete(&claimed_again.lease, Completion::Remove)
        .await
        .unwrap();

    // A running duplicate is left alone and reported.
    assert_eq!(
        store.schedule(replacing).await.unwrap(),
        Scheduled::Duplicate(first.clone()),
        "a running duplicate is not replaced"
    );
    let job = store.get_job(&first).await.unwrap().unwrap();
    assert_eq!(
        (job.params, job.state),
        (json!({"v": 4}), JobState::Running)
    );
    for c in &claimed {
        store.complete(&c.lease, Completion::Remove).await.unwrap();
    }
}

/// `JobStore::remove_all`: everything of the namespace goes, nothing of another one.
pub async fn remove_all(ctx: TestContext) {
    let store = ctx.store();
    let other = ctx.open_other("other").await;
    let now = store_now(&*store).await;
    schedule_new(&*store, NewJob::new("mail", json!(1))).await;
    schedule_new(
        &*store,
        NewJob::new("mail", json!(2)).unique_identifier("u"),
    )
    .await;
    failed_job(&*store, NewJob::new("report", json!(3))).await;
    let running = claim_one(&*store, "mail", Duration::from_secs(60)).await;
    store
        .register_recurrent(super::schedule::registration(
            "nightly",
            "every 1000ms",
            now,
        ))
        .await
        .unwrap();
    let id = dogs_core::JobId::new("job-1");
    let record = execution(&id, "mail", "exec-1", ExecutionStatus::Success, now);
    store.record_execution(&record).await.unwrap();
    store.pause("mail").await.unwrap();
    store
        .set_concurrency_limit("report", Some(2))
        .await
        .unwrap();
    let kept = schedule_new(&*other, NewJob::new("mail", json!("other"))).await;
    other.record_execution(&record).await.unwrap();
    other.pause("mail").await.unwrap();

    store.remove_all().await.unwrap();

    let reopened = ctx.another_handle().await;
    assert_eq!(reopened.count_jobs().await.unwrap(), vec![]);
    assert!(reopened
        .list_jobs(&JobQuery::default())
        .await
        .unwrap()
        .is_empty());
    assert!(reopened.list_recurrent().await.unwrap().is_empty());
    assert!(reopened.get_job(&running.job.id).await.unwrap().is_none());
    assert!(reopened
        .executions(&ExecutionQuery::name("mail"))
        .await
        .unwrap()
        .is_empty());
    assert!(reopened.name_settings().await.unwrap().is_empty());
    // The unique identifier is free again.
    let again = reopened
        .schedule(NewJob::new("mail", json!(4)).unique_identifier("u"))
        .await
        .unwrap();
    assert!(matches!(again, Scheduled::Created(_)), "{again:?}");

    let jobs = other.list_jobs(&JobQuery::name("mail")).await.unwrap();
    assert_eq!(jobs.iter().map(|j| &j.id).collect::<Vec<_>>(), vec![&kept]);
    assert_eq!(
        other
            .executions(&ExecutionQuery::name("mail"))
            .await
            .unwrap(),
        vec![record]
    );
    assert!(other.count_jobs().await.unwrap()[0].paused);
    ctx.remove_other("other").await;
}
