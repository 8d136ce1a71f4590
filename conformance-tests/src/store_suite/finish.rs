//! Finishing (SPEC §3, "Finishing" and "Executions"): how a claimed job ends, and its records.

use std::time::Duration;

use dogs_core::{
    truncate_millis, Completion, ErrorKind, Execution, ExecutionQuery, ExecutionStatus, JobId,
    JobQuery, JobState, NewJob, RunAt,
};
use serde_json::json;

use super::*;
use crate::harness::TestContext;
use crate::support::*;

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
    let none = store
        .executions(&ExecutionQuery::name("history").limit(0))
        .await
        .unwrap();
    assert!(
        none.is_empty(),
        "a page of 0 records is empty, not unlimited"
    );
    let past_the_end = store
        .executions(
            &ExecutionQuery::name("history")
                .limit(usize::MAX)
                .next_page(),
        )
        .await
        .unwrap();
    assert!(
        past_the_end.is_empty(),
        "the page after one of every record"
    );
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

/// Pruning more expired records than one batch removes (`PRUNE_BATCH`) removes every one of
/// them, and nothing that has not expired.
pub async fn prune_many_batches(ctx: TestContext) {
    let store = ctx.store();
    let now = store.now().await.unwrap();
    let count = dogs_core::PRUNE_BATCH as usize * 2 + 500;
    let expires_at = truncate_millis(now + chrono::Duration::seconds(3));
    let records: Vec<Execution> = (0..count)
        .map(|i| {
            let mut e = execution(
                &JobId::new(format!("j{i}")),
                "expiring",
                &format!("expiring-{i}"),
                ExecutionStatus::Success,
                now,
            );
            e.expires_at = expires_at;
            e
        })
        .collect();
    for chunk in records.chunks(16) {
        let calls = chunk.iter().map(|e| store.record_execution(e));
        for outcome in futures::future::join_all(calls).await {
            outcome.unwrap();
        }
    }
    let lasting = execution(
        &JobId::new("j"),
        "expiring",
        "lasting",
        ExecutionStatus::Success,
        now,
    );
    store.record_execution(&lasting).await.unwrap();
    wait_past(&*store, expires_at).await;
    let report = store.prune().await.unwrap();
    assert!(
        report.executions as usize <= count,
        "one pass removed {} records, {count} had expired",
        report.executions
    );
    // One call went on past its first batches: nothing is left for a second (a store's own
    // expiry, such as MongoDB's TTL monitor, may have removed some first).
    assert_eq!(
        store.prune().await.unwrap().executions,
        0,
        "nothing expired is left behind"
    );
    assert_eq!(
        store
            .executions(&ExecutionQuery::name("expiring").limit(10))
            .await
            .unwrap(),
        vec![lasting]
    );
}
