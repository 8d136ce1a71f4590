//! The store contract (SPEC §3): one function per `S-…` id, run against every backend.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use dogs_core::{
    truncate_millis, ClaimRequest, Completion, ErrorKind, Execution, ExecutionQuery,
    ExecutionStatus, JobCounts, JobId, JobKind, JobQuery, JobState, NewJob, RecurrentRegistration,
    RunAt, Scheduled,
};
use serde_json::json;

use crate::harness::TestContext;
use crate::support::*;

const LEASE: Duration = Duration::from_secs(30);
const SHORT_LEASE: Duration = Duration::from_millis(300);

/// S-schedule-roundtrip
pub async fn schedule_roundtrip(ctx: TestContext) {
    let store = ctx.store();
    let run_at = truncate_millis(store_now(&*store).await + chrono::Duration::hours(1));
    let params =
        json!({"to": "ada@example.com", "n": 3, "tags": ["a", "é", "😀"], "nested": {"x": null}});
    let id = schedule_new(
        &*store,
        NewJob::new("roundtrip", params.clone())
            .priority(7)
            .run_at(RunAt::At(run_at))
            .unique_identifier("order-1"),
    )
    .await;
    let job = store
        .get_job(&id)
        .await
        .unwrap()
        .expect("the job reads back");
    assert_eq!(job.id, id);
    assert_eq!(job.name, "roundtrip");
    assert_eq!(job.kind, JobKind::Event);
    assert_eq!(job.params, params);
    assert_eq!(job.priority, 7);
    assert_eq!(job.run_at, run_at);
    assert_eq!(job.unique_identifier.as_deref(), Some("order-1"));
    assert_eq!(job.tries, 0);
    assert_eq!(job.state, JobState::Pending);

    let before = store_now(&*store).await;
    let relative = schedule_new(
        &*store,
        NewJob::new("roundtrip", json!(null)).run_at(RunAt::In(Duration::from_secs(60))),
    )
    .await;
    let job = store
        .get_job(&relative)
        .await
        .unwrap()
        .expect("the job reads back");
    assert_eq!(job.params, json!(null));
    assert_eq!(job.unique_identifier, None);
    assert_eq!(job.priority, dogs_core::DEFAULT_PRIORITY);
    assert_close(
        job.run_at,
        before + chrono::Duration::seconds(60),
        Duration::from_secs(2),
        "a relative run time counts from the store's clock",
    );
    assert!(store
        .get_job(&JobId::new("no-such-id"))
        .await
        .unwrap()
        .is_none());
}

/// S-unique-one-winner
pub async fn unique_one_winner(ctx: TestContext) {
    let store = ctx.store();
    let base = truncate_millis(store_now(&*store).await + chrono::Duration::hours(1));
    let calls = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let job = NewJob::new("unique", json!({ "caller": i }))
                .run_at(RunAt::At(base + chrono::Duration::seconds(i)))
                .unique_identifier("the-one");
            (i, store.schedule(job).await.unwrap())
        })
    });
    let outcomes: Vec<(i64, Scheduled)> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let winners: Vec<&(i64, Scheduled)> =
        outcomes.iter().filter(|(_, s)| !s.is_duplicate()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one call creates the job: {outcomes:?}"
    );
    let (winner, created) = winners[0];
    for (_, outcome) in &outcomes {
        assert_eq!(
            outcome.id(),
            created.id(),
            "every duplicate names the existing job"
        );
    }
    let again = store
        .schedule(NewJob::new("unique", json!({"caller": "late"})).unique_identifier("the-one"))
        .await
        .unwrap();
    assert_eq!(again, Scheduled::Duplicate(created.id().clone()));
    let job = store.get_job(created.id()).await.unwrap().unwrap();
    assert_eq!(
        job.params,
        json!({ "caller": winner }),
        "the first job's params are kept"
    );
    assert_eq!(
        job.run_at,
        base + chrono::Duration::seconds(*winner),
        "its run time is kept"
    );
    let all = store.list_jobs(&JobQuery::name("unique")).await.unwrap();
    assert_eq!(all.len(), 1);
}

/// S-unique-per-name
pub async fn unique_per_name(ctx: TestContext) {
    let store = ctx.store();
    let a = schedule_new(
        &*store,
        NewJob::new("first", json!(1)).unique_identifier("shared"),
    )
    .await;
    let b = schedule_new(
        &*store,
        NewJob::new("second", json!(2)).unique_identifier("shared"),
    )
    .await;
    assert_ne!(a, b);
    assert_eq!(store.get_job(&a).await.unwrap().unwrap().name, "first");
    assert_eq!(store.get_job(&b).await.unwrap().unwrap().name, "second");
}

/// S-unique-freed
pub async fn unique_freed(ctx: TestContext) {
    let store = ctx.store();
    let job = || NewJob::new("freed", json!({})).unique_identifier("k");
    let first = schedule_new(&*store, job()).await;
    let claimed = claim_one(&*store, "freed", LEASE).await;
    assert_eq!(
        store.schedule(job()).await.unwrap(),
        Scheduled::Duplicate(first.clone()),
        "a running job still holds its unique identifier"
    );
    store
        .complete(&claimed.lease, Completion::Remove)
        .await
        .unwrap();
    let second = schedule_new(&*store, job()).await;
    assert_ne!(first, second);

    let claimed = claim_one(&*store, "freed", LEASE).await;
    store
        .complete(
            &claimed.lease,
            Completion::Fail {
                error: "gave up".into(),
                retain_for: Duration::from_secs(3600),
            },
        )
        .await
        .unwrap();
    let third = schedule_new(&*store, job()).await;
    assert_ne!(third, second);
    let failed = store
        .get_job(&second)
        .await
        .unwrap()
        .expect("the failed job stays visible");
    assert_eq!(failed.state, JobState::Failed);
}

/// S-bulk-schedule
pub async fn bulk_schedule(ctx: TestContext) {
    let store = ctx.store();
    let existing = schedule_new(
        &*store,
        NewJob::new("bulk", json!(0)).unique_identifier("old"),
    )
    .await;
    let too_large = json!("x".repeat(store.max_params_bytes() + 1));
    let outcomes = store
        .schedule_many(vec![
            NewJob::new("bulk", json!(1)).unique_identifier("a"),
            NewJob::new("bulk", json!(2)).unique_identifier("a"),
            NewJob::new("", json!(3)),
            NewJob::new("bulk", json!(4)).unique_identifier("old"),
            NewJob::new("bulk", too_large),
            NewJob::new("bulk", json!(5)),
            NewJob::new("other", json!(6)).priority(3),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 7);
    let first = match &outcomes[0] {
        Ok(Scheduled::Created(id)) => id.clone(),
        other => panic!("entry 0: {other:?}"),
    };
    assert_eq!(
        outcomes[1].as_ref().ok(),
        Some(&Scheduled::Duplicate(first.clone()))
    );
    assert_eq!(
        outcomes[2].as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::InvalidInput)
    );
    assert_eq!(
        outcomes[3].as_ref().ok(),
        Some(&Scheduled::Duplicate(existing))
    );
    assert_eq!(
        outcomes[4].as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::TooLarge)
    );
    assert!(
        matches!(outcomes[5], Ok(Scheduled::Created(_))),
        "entry 5: {:?}",
        outcomes[5]
    );
    let other = match &outcomes[6] {
        Ok(Scheduled::Created(id)) => id.clone(),
        entry => panic!("entry 6: {entry:?}"),
    };
    let mut params: Vec<i64> = store
        .list_jobs(&JobQuery::name("bulk"))
        .await
        .unwrap()
        .iter()
        .map(|j| j.params.as_i64().unwrap_or(-1))
        .collect();
    params.sort();
    assert_eq!(
        params,
        vec![0, 1, 5],
        "every good entry is stored, no bad one"
    );
    assert_eq!(store.get_job(&other).await.unwrap().unwrap().priority, 3);
}

fn registration(name: &str, key: &str, next: chrono::DateTime<Utc>) -> RecurrentRegistration {
    RecurrentRegistration {
        name: name.into(),
        schedule_key: key.into(),
        priority: 2,
        next_run_at: next,
    }
}

/// S-recurrent-idempotent
pub async fn recurrent_idempotent(ctx: TestContext) {
    let store = ctx.store();
    let later = truncate_millis(store_now(&*store).await + chrono::Duration::hours(1));
    let calls = (0..16).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .register_recurrent(registration("tick", "every 60000ms", later))
                .await
        })
    });
    let ids: HashSet<JobId> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| {
            r.unwrap()
                .unwrap_or_else(|e| panic!("a racing registration failed: {e}"))
        })
        .collect();
    assert_eq!(ids.len(), 1, "every registration names the one record");
    let jobs = store.list_jobs(&JobQuery::name("tick")).await.unwrap();
    assert_eq!(jobs.len(), 1, "exactly one record");
    assert_eq!(jobs[0].kind, JobKind::Recurrent);
    assert_eq!(jobs[0].priority, 2);
    let claimed = claim_one(&*store, "tick", LEASE).await;
    assert_eq!(
        Some(&claimed.job.id),
        ids.iter().next(),
        "a new recurrent job is due at once"
    );
}

/// S-recurrent-keeps-time
pub async fn recurrent_keeps_time(ctx: TestContext) {
    let store = ctx.store();
    let now = store_now(&*store).await;
    let in_hours = |h| truncate_millis(now + chrono::Duration::hours(h));
    let id = store
        .register_recurrent(registration("report", "cron A", in_hours(5)))
        .await
        .unwrap();
    let claimed = claim_one(&*store, "report", LEASE).await;
    store
        .complete(
            &claimed.lease,
            Completion::Reschedule {
                run_at: RunAt::At(in_hours(1)),
                priority: None,
                reset_tries: true,
            },
        )
        .await
        .unwrap();
    let again = store
        .register_recurrent(registration("report", "cron A", in_hours(3)))
        .await
        .unwrap();
    assert_eq!(again, id);
    let job = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(
        job.run_at,
        in_hours(1),
        "an unchanged schedule keeps the next run time"
    );

    store
        .register_recurrent(registration("report", "cron B", in_hours(2)))
        .await
        .unwrap();
    let job = store.get_job(&id).await.unwrap().unwrap();
    assert_eq!(
        job.run_at,
        in_hours(2),
        "a changed schedule recomputes the next run"
    );
    assert_eq!(job.schedule_key.as_deref(), Some("cron B"));
    assert_eq!(
        store
            .list_jobs(&JobQuery::name("report"))
            .await
            .unwrap()
            .len(),
        1
    );
}

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

/// S-fencing-batch
pub async fn fencing_batch(ctx: TestContext) {
    let store = ctx.store();
    for stale_first in [true, false] {
        let id = schedule_new(&*store, NewJob::new("batched", json!({}))).await;
        let stale = claim_one(&*store, "batched", SHORT_LEASE).await;
        let current = claim_when_due(&*store, "batched", LEASE).await;
        let now = store_now(&*store).await;
        let finish = |lease: &dogs_core::Lease, execution_id: &str| dogs_core::Finish {
            lease: lease.clone(),
            completion: Completion::Remove,
            execution: Some(execution(
                &id,
                "batched",
                execution_id,
                ExecutionStatus::Success,
                now,
            )),
        };
        let tag = if stale_first { "a" } else { "b" };
        let (stale_record, current_record) = (format!("stale-{tag}"), format!("current-{tag}"));
        let mut items = vec![
            finish(&stale.lease, &stale_record),
            finish(&current.lease, &current_record),
        ];
        if !stale_first {
            items.reverse();
        }
        let kinds: Vec<Option<ErrorKind>> = store
            .finish_many(items)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.err().map(|e| e.kind()))
            .collect();
        let mut expected = vec![Some(ErrorKind::LockLost), None];
        if !stale_first {
            expected.reverse();
        }
        assert_eq!(kinds, expected, "each entry is judged by its own token");
        assert!(
            store.get_job(&id).await.unwrap().is_none(),
            "the job is done"
        );
        let recorded: Vec<String> = store
            .executions(&ExecutionQuery::name("batched").job_id(id.clone()))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.execution_id)
            .collect();
        assert_eq!(
            recorded,
            vec![current_record],
            "the stale entry stores no record"
        );
    }
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

/// S-complete-event
pub async fn complete_event(ctx: TestContext) {
    let store = ctx.store();
    let id = schedule_new(&*store, NewJob::new("done", json!({}))).await;
    let keep = schedule_new(
        &*store,
        NewJob::new("done", json!({})).run_at(RunAt::In(Duration::from_secs(3600))),
    )
    .await;
    let claimed = claim_one(&*store, "done", LEASE).await;
    store
        .complete(&claimed.lease, Completion::Remove)
        .await
        .unwrap();
    assert!(
        store.get_job(&id).await.unwrap().is_none(),
        "a completed event job is removed"
    );
    let left: Vec<JobId> = store
        .list_jobs(&JobQuery::name("done"))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(left, vec![keep]);
}

/// S-reschedule
pub async fn reschedule(ctx: TestContext) {
    let store = ctx.store();
    let later = schedule_new(&*store, NewJob::new("again", json!("later"))).await;
    let claimed = claim_one(&*store, "again", LEASE).await;
    let before = store_now(&*store).await;
    store
        .complete(
            &claimed.lease,
            Completion::Reschedule {
                run_at: RunAt::In(Duration::from_secs(3600)),
                priority: Some(9),
                reset_tries: false,
            },
        )
        .await
        .unwrap();
    let job = store.get_job(&later).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Pending, "the lease is released");
    assert_eq!(job.priority, 9);
    assert_eq!(job.tries, 1, "tries kept");
    assert_close(
        job.run_at,
        before + chrono::Duration::hours(1),
        Duration::from_secs(2),
        "the next run",
    );
    assert!(
        claim(&*store, "again", LEASE, 1).await.is_empty(),
        "not claimable before its run time"
    );
    lock_lost_after_release(&*store, &claimed.lease).await;

    let now_job = schedule_new(&*store, NewJob::new("again", json!("now"))).await;
    let claimed = claim_one(&*store, "again", LEASE).await;
    assert_eq!(claimed.job.id, now_job);
    store
        .complete(
            &claimed.lease,
            Completion::Reschedule {
                run_at: RunAt::Now,
                priority: None,
                reset_tries: true,
            },
        )
        .await
        .unwrap();
    let job = store.get_job(&now_job).await.unwrap().unwrap();
    assert_eq!(
        (job.tries, job.priority),
        (0, 1),
        "tries reset, priority kept"
    );
    let claimed = claim_one(&*store, "again", LEASE).await;
    assert_eq!((claimed.job.id, claimed.job.tries), (now_job, 1));
}

async fn lock_lost_after_release(store: &dyn dogs_core::JobStore, lease: &dogs_core::Lease) {
    let second = store.complete(lease, Completion::Remove).await;
    assert_eq!(
        second.map_err(|e| e.kind()).err(),
        Some(ErrorKind::LockLost),
        "a released lease's token is no longer current"
    );
}

/// S-fail-terminal
pub async fn fail_terminal(ctx: TestContext) {
    let store = ctx.store();
    let id = schedule_new(&*store, NewJob::new("doomed", json!({"x": 1}))).await;
    let claimed = claim_one(&*store, "doomed", LEASE).await;
    let before = store_now(&*store).await;
    store
        .complete(
            &claimed.lease,
            Completion::Fail {
                error: "boom: no such user".into(),
                retain_for: Duration::from_secs(3600),
            },
        )
        .await
        .unwrap();
    let job = store
        .get_job(&id)
        .await
        .unwrap()
        .expect("a failed job stays visible");
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.last_error.as_deref(), Some("boom: no such user"));
    assert_close(
        job.expires_at.expect("a failed job has an expiry"),
        before + chrono::Duration::hours(1),
        Duration::from_secs(2),
        "the retention end",
    );
    assert!(
        claim(&*store, "doomed", LEASE, 10).await.is_empty(),
        "a failed job is never claimed"
    );
    let failed = store
        .list_jobs(&JobQuery::name("doomed").state(JobState::Failed))
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    lock_lost_after_release(&*store, &claimed.lease).await;

    let short = schedule_new(&*store, NewJob::new("doomed", json!({"x": 2}))).await;
    let claimed = claim_one(&*store, "doomed", LEASE).await;
    store
        .complete(
            &claimed.lease,
            Completion::Fail {
                error: "brief".into(),
                retain_for: Duration::from_millis(300),
            },
        )
        .await
        .unwrap();
    wait_until("the failed job's retention to end", DEADLINE, || async {
        store.get_job(&short).await.unwrap().is_none()
    })
    .await;
    store.prune().await.unwrap();
    assert!(store.get_job(&short).await.unwrap().is_none());
    assert!(
        store.get_job(&id).await.unwrap().is_some(),
        "pruning keeps jobs still retained"
    );
}

/// S-demote-stale
pub async fn demote_stale(ctx: TestContext) {
    let store = ctx.store();
    let stale = schedule_new(&*store, NewJob::new("demote", json!("stale")).priority(5)).await;
    let claimed = claim_one(&*store, "demote", LEASE).await;
    assert_eq!(claimed.job.id, stale);
    let low = schedule_new(&*store, NewJob::new("demote", json!("low")).priority(1)).await;
    let lower = schedule_new(&*store, NewJob::new("demote", json!("lower")).priority(-3)).await;
    store
        .complete(&claimed.lease, Completion::Demote)
        .await
        .unwrap();
    assert_eq!(
        store.get_job(&stale).await.unwrap().unwrap().state,
        JobState::Pending
    );
    let order: Vec<_> = claim(&*store, "demote", LEASE, 10).await;
    let ids: Vec<&JobId> = order.iter().map(|c| &c.job.id).collect();
    assert_eq!(
        ids,
        vec![&low, &lower, &stale],
        "a demoted job comes after every other due job"
    );
    let again = &order[2];
    assert!(
        again.was_stale,
        "the claim after a stale execution reports was_stale"
    );
    assert_eq!(again.job.priority, 5, "it keeps its own priority");

    store
        .complete(
            &again.lease,
            Completion::Reschedule {
                run_at: RunAt::Now,
                priority: None,
                reset_tries: false,
            },
        )
        .await
        .unwrap();
    schedule_new(
        &*store,
        NewJob::new("demote", json!("newcomer")).priority(1),
    )
    .await;
    let next = claim_one(&*store, "demote", LEASE).await;
    assert_eq!(
        next.job.id, stale,
        "after its stale run it ranks by its own priority again"
    );
    assert!(!next.was_stale);

    // A lease that runs out (a worker that died or hung) demotes the job the same way.
    let expired = schedule_new(&*store, NewJob::new("expired", json!("stale")).priority(5)).await;
    let lost = claim_one(&*store, "expired", SHORT_LEASE).await;
    let fresh = schedule_new(&*store, NewJob::new("expired", json!("fresh")).priority(1)).await;
    wait_past(&*store, lost.locked_until).await;
    let order = claim(&*store, "expired", LEASE, 10).await;
    let ids: Vec<&JobId> = order.iter().map(|c| &c.job.id).collect();
    assert_eq!(
        ids,
        vec![&fresh, &expired],
        "a job whose lease ran out comes after every other due job"
    );
    assert!(order[1].was_stale);
    assert_eq!(order[1].job.priority, 5);
}

/// S-cancel-pending
pub async fn cancel_pending(ctx: TestContext) {
    let store = ctx.store();
    let id = schedule_new(&*store, NewJob::new("cancel", json!({}))).await;
    assert!(store.cancel(&id).await.unwrap());
    assert!(store.get_job(&id).await.unwrap().is_none());
    assert!(
        !store.cancel(&id).await.unwrap(),
        "cancelling a missing job reports false"
    );
    assert!(!store.cancel(&JobId::new("not-an-id")).await.unwrap());

    let unique = NewJob::new("cancel", json!({}))
        .unique_identifier("u1")
        .run_at(RunAt::In(Duration::from_secs(60)));
    let by_key = schedule_new(&*store, unique.clone()).await;
    assert!(store.cancel_unique("cancel", "u1").await.unwrap());
    assert!(store.get_job(&by_key).await.unwrap().is_none());
    assert!(!store.cancel_unique("cancel", "u1").await.unwrap());
    schedule_new(&*store, unique).await;

    let running = schedule_new(&*store, NewJob::new("busy", json!({}))).await;
    let claimed = claim_one(&*store, "busy", LEASE).await;
    assert_eq!(
        store.cancel(&running).await.map_err(|e| e.kind()).err(),
        Some(ErrorKind::Conflict),
        "a running job is not cancelled"
    );
    store
        .complete(&claimed.lease, Completion::Remove)
        .await
        .unwrap();
}

fn execution(
    job_id: &JobId,
    name: &str,
    execution_id: &str,
    status: ExecutionStatus,
    started_at: chrono::DateTime<Utc>,
) -> Execution {
    let started_at = truncate_millis(started_at);
    Execution {
        job_id: job_id.clone(),
        execution_id: execution_id.into(),
        name: name.into(),
        kind: JobKind::Event,
        priority: 4,
        tries: 2,
        unique_identifier: Some("uid".into()),
        params: json!({"a": [1, 2, 3]}),
        started_at,
        ended_at: started_at + chrono::Duration::milliseconds(1500),
        duration: Duration::from_millis(1500),
        status,
        error: (status != ExecutionStatus::Success)
            .then(|| format!("{} happened", status.as_str())),
        result: (status == ExecutionStatus::Success).then(|| json!({"sent": true})),
        worker_id: "worker-1".into(),
        expires_at: started_at + chrono::Duration::days(7),
    }
}

/// S-execution-roundtrip
pub async fn execution_roundtrip(ctx: TestContext) {
    let store = ctx.store();
    let now = store_now(&*store).await;
    let job = JobId::new("job-1");
    let statuses = [
        ExecutionStatus::Success,
        ExecutionStatus::Error,
        ExecutionStatus::Stale,
        ExecutionStatus::Failed,
        ExecutionStatus::Cancelled,
    ];
    let mut written = Vec::new();
    for (i, status) in statuses.into_iter().enumerate() {
        let record = execution(
            &job,
            "history",
            &format!("exec-{i}"),
            status,
            now - chrono::Duration::minutes(10 - i as i64),
        );
        store.record_execution(&record).await.unwrap();
        written.push(record);
    }
    let mut other = execution(
        &JobId::new("job-2"),
        "elsewhere",
        "exec-x",
        ExecutionStatus::Success,
        now,
    );
    other.unique_identifier = None;
    other.result = Some(json!([1, "two"]));
    store.record_execution(&other).await.unwrap();

    let newest_first: Vec<Execution> = written.iter().rev().cloned().collect();
    let read = store
        .executions(&ExecutionQuery::name("history"))
        .await
        .unwrap();
    assert_eq!(
        read, newest_first,
        "records read back unchanged, newest first"
    );
    let page = store
        .executions(&ExecutionQuery::name("history").limit(2).offset(1))
        .await
        .unwrap();
    assert_eq!(page, newest_first[1..3].to_vec());
    let by_job = store
        .executions(&ExecutionQuery::name("history").job_id(JobId::new("job-2")))
        .await
        .unwrap();
    assert!(by_job.is_empty());
    assert_eq!(
        store
            .executions(&ExecutionQuery::name("elsewhere"))
            .await
            .unwrap(),
        vec![other]
    );
}

/// S-execution-idempotent
pub async fn execution_idempotent(ctx: TestContext) {
    let store = ctx.store();
    let record = execution(
        &JobId::new("j"),
        "once",
        "same-id",
        ExecutionStatus::Success,
        store_now(&*store).await,
    );
    store.record_execution(&record).await.unwrap();
    store.record_execution(&record).await.unwrap();
    let read = store
        .executions(&ExecutionQuery::name("once"))
        .await
        .unwrap();
    assert_eq!(read, vec![record]);
}

/// S-execution-retention
pub async fn execution_retention(ctx: TestContext) {
    let store = ctx.store();
    let now = store_now(&*store).await;
    let mut brief = execution(
        &JobId::new("j"),
        "kept",
        "brief",
        ExecutionStatus::Success,
        now,
    );
    brief.expires_at = truncate_millis(now + chrono::Duration::milliseconds(300));
    let lasting = execution(
        &JobId::new("j"),
        "kept",
        "lasting",
        ExecutionStatus::Error,
        now - chrono::Duration::seconds(1),
    );
    store.record_execution(&brief).await.unwrap();
    store.record_execution(&lasting).await.unwrap();
    assert_eq!(
        store
            .executions(&ExecutionQuery::name("kept"))
            .await
            .unwrap()
            .len(),
        2
    );
    wait_past(&*store, brief.expires_at).await;
    let read = store
        .executions(&ExecutionQuery::name("kept"))
        .await
        .unwrap();
    assert_eq!(
        read,
        vec![lasting.clone()],
        "an expired record is not returned"
    );
    store.prune().await.unwrap();
    let after = store.prune().await.unwrap();
    assert_eq!(
        after.executions, 0,
        "a pruning pass leaves no expired record behind"
    );
    assert_eq!(
        store
            .executions(&ExecutionQuery::name("kept"))
            .await
            .unwrap(),
        vec![lasting]
    );
}

/// S-list-and-stats
pub async fn list_and_stats(ctx: TestContext) {
    let store = ctx.store();
    for i in 0..3 {
        schedule_new(&*store, NewJob::new("alpha", json!(i)).priority(i)).await;
    }
    schedule_new(
        &*store,
        NewJob::new("alpha", json!("future")).run_at(RunAt::In(Duration::from_secs(600))),
    )
    .await;
    schedule_new(&*store, NewJob::new("beta", json!(0))).await;
    schedule_new(&*store, NewJob::new("beta", json!(1))).await;
    let running = claim_one(&*store, "alpha", LEASE).await;
    let failing = claim_one(&*store, "beta", LEASE).await;
    store
        .complete(
            &failing.lease,
            Completion::Fail {
                error: "x".into(),
                retain_for: LEASE,
            },
        )
        .await
        .unwrap();

    let pending = store
        .list_jobs(&JobQuery::name("alpha").state(JobState::Pending))
        .await
        .unwrap();
    assert_eq!(pending.len(), 3);
    assert!(pending
        .iter()
        .all(|j| j.state == JobState::Pending && j.name == "alpha"));
    let run = store
        .list_jobs(&JobQuery::name("alpha").state(JobState::Running))
        .await
        .unwrap();
    assert_eq!(
        run.iter().map(|j| &j.id).collect::<Vec<_>>(),
        vec![&running.job.id]
    );
    let failed = store
        .list_jobs(&JobQuery::name("beta").state(JobState::Failed))
        .await
        .unwrap();
    assert_eq!(
        failed.iter().map(|j| &j.id).collect::<Vec<_>>(),
        vec![&failing.job.id]
    );
    assert_eq!(
        store
            .list_jobs(&JobQuery::name("alpha"))
            .await
            .unwrap()
            .len(),
        4
    );
    let all_pending = store
        .list_jobs(&JobQuery::default().state(JobState::Pending))
        .await
        .unwrap();
    assert_eq!(all_pending.len(), 4);
    let page = store
        .list_jobs(
            &JobQuery::name("alpha")
                .state(JobState::Pending)
                .limit(2)
                .offset(1),
        )
        .await
        .unwrap();
    assert_eq!(
        page,
        pending[1..3].to_vec(),
        "pages follow the listing order"
    );

    let counts = store.count_jobs().await.unwrap();
    assert_eq!(
        counts,
        vec![
            JobCounts {
                name: "alpha".into(),
                pending: 3,
                running: 1,
                failed: 0
            },
            JobCounts {
                name: "beta".into(),
                pending: 1,
                running: 0,
                failed: 1
            },
        ]
    );
}
