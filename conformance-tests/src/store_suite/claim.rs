//! Claiming (SPEC §3, "Claiming"): due jobs only, names, order, exclusivity, leases and fencing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use dogs_core::{
    truncate_millis, ClaimRequest, Completion, ErrorKind, ExecutionQuery, ExecutionStatus, JobId,
    JobState, NewJob, RunAt,
};
use serde_json::json;

use super::*;
use crate::harness::TestContext;
use crate::support::*;

/// S-claim-due-only
pub async fn claim_due_only(ctx: TestContext) {
    let store = ctx.store();
    let id = schedule_new(
        &*store,
        NewJob::new("later", json!({})).run_at(RunAt::In(Duration::from_millis(400))),
    )
    .await;
    let run_at = store.get_job(&id).await.unwrap().unwrap().run_at;
    assert!(
        claim(&*store, "later", LEASE, 10).await.is_empty(),
        "a future job is not claimed"
    );
    let claimed = claim_when_due(&*store, "later", LEASE).await;
    assert_eq!(claimed.job.id, id);
    assert!(
        claimed.claimed_at >= run_at,
        "claimed at {} before its run time {run_at}",
        claimed.claimed_at
    );
}

/// S-claim-names
pub async fn claim_names(ctx: TestContext) {
    let store = ctx.store();
    let a = schedule_new(&*store, NewJob::new("alpha", json!({}))).await;
    let b = schedule_new(&*store, NewJob::new("beta", json!({})).priority(100)).await;
    let claimed = claim(&*store, "alpha", LEASE, 10).await;
    assert_eq!(
        claimed.iter().map(|c| &c.job.id).collect::<Vec<_>>(),
        vec![&a]
    );
    assert!(claim(&*store, "gamma", LEASE, 10).await.is_empty());
    let both = store
        .claim(&ClaimRequest::new(["beta", "gamma"], LEASE, 10))
        .await
        .unwrap()
        .jobs;
    assert_eq!(both.iter().map(|c| &c.job.id).collect::<Vec<_>>(), vec![&b]);
}

/// S-claim-order
pub async fn claim_order(ctx: TestContext) {
    let store = ctx.store();
    let now = truncate_millis(store_now(&*store).await);
    // (label, priority, seconds ago), in scheduling order.
    let jobs = [
        ("low old", 1, 30),
        ("high new", 5, 1),
        ("high old", 5, 20),
        ("tie 1", 3, 10),
        ("tie 2", 3, 10),
        ("negative", -4, 60),
    ];
    let mut ids = HashMap::new();
    for (label, priority, ago) in jobs {
        let run_at = RunAt::At(now - chrono::Duration::seconds(ago));
        let job = NewJob::new("order", json!(label))
            .priority(priority)
            .run_at(run_at);
        ids.insert(label, schedule_new(&*store, job).await);
    }
    let expected: Vec<JobId> = [
        "high old", "high new", "tie 1", "tie 2", "low old", "negative",
    ]
    .iter()
    .map(|label| ids[label].clone())
    .collect();
    let mut claimed = Vec::new();
    while let Some(job) = claim(&*store, "order", LEASE, 1).await.pop() {
        claimed.push(job.job.id);
    }
    assert_eq!(
        claimed, expected,
        "priority, then run time, then scheduling order"
    );
}

/// S-claim-exclusive
pub async fn claim_exclusive(ctx: TestContext) {
    let store = ctx.store();
    let jobs: Vec<NewJob> = (0..200).map(|i| NewJob::new("race", json!(i))).collect();
    for outcome in store.schedule_many(jobs).await.unwrap() {
        outcome.unwrap();
    }
    let first = claim_one(&*store, "race", LEASE).await;
    let claimers = (0..8).map(|_| {
        let store = ctx.clone();
        tokio::spawn(async move {
            let store = store.another_handle().await;
            let mut mine = Vec::new();
            loop {
                let batch = claim(&*store, "race", LEASE, 3).await;
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|c| c.job.id));
            }
        })
    });
    let mut counts: HashMap<JobId, usize> = HashMap::new();
    *counts.entry(first.job.id.clone()).or_default() += 1;
    for claimer in futures::future::join_all(claimers).await {
        for id in claimer.unwrap() {
            *counts.entry(id).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), 200, "every job is claimed");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs claimed more than once: {twice:?}");
    assert!(
        claim(&*store, "race", LEASE, 10).await.is_empty(),
        "no job with a live lease is claimed again"
    );
}

/// S-claim-batch
pub async fn claim_batch(ctx: TestContext) {
    let store = ctx.store();
    let mut by_priority = Vec::new();
    for priority in [3, 9, 1, 7, 5, 2, 8, 4, 6, 10] {
        let id = schedule_new(
            &*store,
            NewJob::new("batch", json!(priority)).priority(priority),
        )
        .await;
        by_priority.push((priority, id));
    }
    by_priority.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
    let expected: Vec<JobId> = by_priority.into_iter().map(|(_, id)| id).collect();
    let first = claim(&*store, "batch", LEASE, 4).await;
    let second = claim(&*store, "batch", LEASE, 10).await;
    assert_eq!(first.len(), 4);
    assert_eq!(second.len(), 6);
    let got: Vec<JobId> = first
        .iter()
        .chain(&second)
        .map(|c| c.job.id.clone())
        .collect();
    assert_eq!(got, expected, "a batch keeps the claim order");
    let tokens: HashSet<_> = first
        .iter()
        .chain(&second)
        .map(|c| c.lease.token.clone())
        .collect();
    assert_eq!(tokens.len(), 10, "every lease has its own token");
    assert!(claim(&*store, "batch", LEASE, 10).await.is_empty());
}

/// S-claim-counts-tries
pub async fn claim_counts_tries(ctx: TestContext) {
    let store = ctx.store();
    let id = schedule_new(&*store, NewJob::new("tries", json!({}))).await;
    let first = claim_one(&*store, "tries", SHORT_LEASE).await;
    assert_eq!(first.job.tries, 1);
    let second = claim_when_due(&*store, "tries", LEASE).await;
    assert_eq!(
        second.job.tries, 2,
        "a claim after a lease ran out counts again"
    );
    store
        .complete(
            &second.lease,
            Completion::Reschedule {
                run_at: RunAt::Now,
                priority: None,
                reset_tries: false,
            },
        )
        .await
        .unwrap();
    let third = claim_one(&*store, "tries", LEASE).await;
    assert_eq!(third.job.tries, 3);
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().tries,
        3,
        "the count is stored"
    );
}

/// S-lease-expiry
pub async fn lease_expiry(ctx: TestContext) {
    let store = ctx.store();
    let id = schedule_new(&*store, NewJob::new("expiry", json!({}))).await;
    let first = claim_one(&*store, "expiry", SHORT_LEASE).await;
    assert!(!first.was_stale, "a first claim is not stale");
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().state,
        JobState::Running
    );
    assert!(
        claim(&*store, "expiry", LEASE, 1).await.is_empty(),
        "a live lease is not claimable"
    );
    let again = claim_when_due(&*store, "expiry", LEASE).await;
    assert_eq!(again.job.id, id);
    assert!(
        again.was_stale,
        "the claim after a lease ran out reports was_stale"
    );
    assert!(again.claimed_at >= first.locked_until);
    assert_ne!(again.lease.token, first.lease.token);
}

/// S-fencing
pub async fn fencing(ctx: TestContext) {
    let store = ctx.store();
    let id = schedule_new(&*store, NewJob::new("fenced", json!({}))).await;
    let old = claim_one(&*store, "fenced", SHORT_LEASE).await;
    let new = claim_when_due(&*store, "fenced", LEASE).await;
    let lock_lost = |r: dogs_core::Result<()>, what: &str| {
        assert_eq!(
            r.map_err(|e| e.kind()).err(),
            Some(ErrorKind::LockLost),
            "{what} with an old token"
        );
    };
    lock_lost(
        store.extend_lock(&old.lease, LEASE).await.map(|_| ()),
        "extend",
    );
    lock_lost(
        store.complete(&old.lease, Completion::Remove).await,
        "complete",
    );
    lock_lost(
        store
            .complete(
                &old.lease,
                Completion::Reschedule {
                    run_at: RunAt::Now,
                    priority: Some(9),
                    reset_tries: true,
                },
            )
            .await,
        "reschedule",
    );
    lock_lost(
        store
            .complete(
                &old.lease,
                Completion::Fail {
                    error: "late".into(),
                    retain_for: LEASE,
                },
            )
            .await,
        "fail",
    );
    lock_lost(
        store.complete(&old.lease, Completion::Demote).await,
        "demote",
    );
    lock_lost(
        store.complete(&old.lease, Completion::Release).await,
        "release",
    );
    let record = execution(
        &id,
        "fenced",
        "late-record",
        ExecutionStatus::Success,
        store_now(&*store).await,
    );
    lock_lost(
        store
            .finish(&old.lease, Completion::Remove, Some(&record))
            .await,
        "finish",
    );
    assert!(
        store
            .executions(&ExecutionQuery::name("fenced"))
            .await
            .unwrap()
            .is_empty(),
        "a fenced finish stores no record"
    );
    let job = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Running, "the new holder keeps the job");
    assert_eq!(job.tries, 2);
    assert_eq!(job.priority, 1);
    assert_eq!(job.locked_until, Some(new.locked_until));
    store.extend_lock(&new.lease, LEASE).await.unwrap();
    store
        .complete(&new.lease, Completion::Remove)
        .await
        .unwrap();
    assert!(store.get_job(&id).await.unwrap().is_none());
    lock_lost(
        store.complete(&new.lease, Completion::Remove).await,
        "complete of a removed job",
    );

    // A batch of outcomes is fenced entry by entry: the lost lease changes nothing, the others
    // apply, with their records.
    let ids = [
        schedule_new(&*store, NewJob::new("fenced", json!(1))).await,
        schedule_new(&*store, NewJob::new("fenced", json!(2))).await,
    ];
    let leases: Vec<dogs_core::Lease> = claim(&*store, "fenced", LEASE, 2)
        .await
        .into_iter()
        .map(|c| c.lease)
        .collect();
    let now = store_now(&*store).await;
    let finish = |lease: &dogs_core::Lease, n: usize, completion| dogs_core::Finish {
        lease: lease.clone(),
        completion,
        execution: Some(execution(
            &lease.job_id,
            "fenced",
            &format!("batch-{n}"),
            ExecutionStatus::Success,
            now,
        )),
    };
    let outcomes = store
        .finish_many(vec![
            finish(&leases[0], 0, Completion::Remove),
            finish(&old.lease, 1, Completion::Remove),
            finish(
                &leases[1],
                2,
                Completion::Reschedule {
                    run_at: RunAt::Now,
                    priority: None,
                    reset_tries: false,
                },
            ),
        ])
        .await
        .unwrap();
    let kinds: Vec<Option<ErrorKind>> = outcomes
        .into_iter()
        .map(|o| o.err().map(|e| e.kind()))
        .collect();
    assert_eq!(kinds, vec![None, Some(ErrorKind::LockLost), None]);
    assert!(store.get_job(&leases[0].job_id).await.unwrap().is_none());
    assert_eq!(
        store
            .get_job(&leases[1].job_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Pending
    );
    let recorded: Vec<String> = store
        .executions(&ExecutionQuery::name("fenced"))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.execution_id)
        .collect();
    assert_eq!(
        recorded.len(),
        2,
        "records of the applied entries only: {recorded:?}"
    );
    assert!(!recorded.contains(&"batch-1".to_owned()));
    assert!(ids.contains(&leases[0].job_id) && ids.contains(&leases[1].job_id));
}

/// S-extend-lease
pub async fn extend_lease(ctx: TestContext) {
    let store = ctx.store();
    let id = schedule_new(&*store, NewJob::new("extend", json!({}))).await;
    let claimed = claim_one(&*store, "extend", SHORT_LEASE).await;
    let before = store_now(&*store).await;
    let until = store
        .extend_lock(&claimed.lease, Duration::from_secs(20))
        .await
        .unwrap();
    assert_close(
        until,
        before + chrono::Duration::seconds(20),
        Duration::from_secs(2),
        "the new lease end",
    );
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().locked_until,
        Some(until)
    );
    wait_past(
        &*store,
        claimed.locked_until + chrono::Duration::milliseconds(100),
    )
    .await;
    assert!(
        claim(&*store, "extend", LEASE, 1).await.is_empty(),
        "an extended lease outlives its first end"
    );
    assert_eq!(
        store.get_job(&id).await.unwrap().unwrap().state,
        JobState::Running
    );
    store
        .complete(&claimed.lease, Completion::Remove)
        .await
        .unwrap();
}

/// S-claim-next-due
pub async fn claim_next_due(ctx: TestContext) {
    let store = ctx.store();
    let claim_of = |names: &'static [&'static str], limit: usize| {
        let store = store.clone();
        async move {
            store
                .claim(&ClaimRequest::new(names.iter().copied(), LEASE, limit).worker_id("test"))
                .await
                .unwrap()
        }
    };
    let nothing = claim_of(&["next"], 5).await;
    assert!(nothing.jobs.is_empty());
    assert_eq!(nothing.next_due, None, "no job of the names: none due ever");

    let now = store_now(&*store).await;
    let later = truncate_millis(now + chrono::Duration::hours(1));
    let sooner = truncate_millis(now + chrono::Duration::minutes(10));
    schedule_new(
        &*store,
        NewJob::new("next", json!(1)).run_at(RunAt::At(later)),
    )
    .await;
    schedule_new(
        &*store,
        NewJob::new("other", json!(2)).run_at(RunAt::At(sooner)),
    )
    .await;
    let waiting = claim_of(&["next"], 5).await;
    assert!(waiting.jobs.is_empty(), "nothing is due yet");
    assert_eq!(
        waiting.next_due,
        Some(later),
        "the earliest job of the requested names"
    );
    assert_eq!(claim_of(&["next", "other"], 5).await.next_due, Some(sooner));

    schedule_new(&*store, NewJob::new("next", json!(3))).await;
    schedule_new(&*store, NewJob::new("next", json!(4))).await;
    let full = claim_of(&["next"], 1).await;
    assert_eq!(full.jobs.len(), 1);
    assert!(full.more_due(), "the limit was reached: more may be due");
    let rest = claim_of(&["next"], 5).await;
    assert_eq!(rest.jobs.len(), 1, "the other due job");
    let lease_end = full.jobs[0].locked_until.min(rest.jobs[0].locked_until);
    assert_eq!(
        rest.next_due,
        Some(lease_end.min(later)),
        "then the earliest of a run time and a lease end"
    );
    assert!(!rest.more_due());
}
