//! Scheduling (SPEC §3, "Scheduling"): event jobs, unique identifiers, bulk, recurrent records.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use dogs_core::{
    truncate_millis, Completion, ErrorKind, JobId, JobKind, JobQuery, JobState, NewJob,
    RecurrentRegistration, RunAt, Scheduled,
};
use serde_json::json;

use super::*;
use crate::harness::TestContext;
use crate::support::*;

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
    assert_eq!(job.trace_context, None);

    // The scheduler's trace context reads back, and comes with the claim, alone and in bulk.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut traced = NewJob::new("traced", json!({}));
    traced.trace_context = Some(traceparent.to_owned());
    let one = schedule_new(&*store, traced.clone()).await;
    let many = store.schedule_many(vec![traced]).await.unwrap();
    let many = many[0].as_ref().unwrap().id().clone();
    for id in [&one, &many] {
        let job = store.get_job(id).await.unwrap().unwrap();
        assert_eq!(job.trace_context.as_deref(), Some(traceparent));
    }
    for claimed in claim(&*store, "traced", LEASE, 10).await {
        assert_eq!(claimed.job.trace_context.as_deref(), Some(traceparent));
        store
            .complete(&claimed.lease, Completion::Remove)
            .await
            .unwrap();
    }

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

pub(crate) fn registration(
    name: &str,
    key: &str,
    next: chrono::DateTime<Utc>,
) -> RecurrentRegistration {
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
