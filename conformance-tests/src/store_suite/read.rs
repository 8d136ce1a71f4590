//! Reading (SPEC §3, "Reading"): listing and counting jobs.

use std::time::Duration;

use dogs_core::{
    truncate_millis, Completion, ExecutionStatus, JobCounts, JobId, JobKind, JobQuery, JobState,
    NewJob, RunAt,
};
use serde_json::json;

use super::schedule::registration;
use super::*;
use crate::harness::TestContext;
use crate::support::*;

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
                scheduled: 1,
                running: 1,
                failed: 0,
                paused: false,
            },
            JobCounts {
                name: "beta".into(),
                pending: 1,
                scheduled: 0,
                running: 0,
                failed: 1,
                paused: false,
            },
        ]
    );
}

/// The ids of `jobs`, in order.
fn ids(jobs: &[dogs_core::Job]) -> Vec<JobId> {
    jobs.iter().map(|job| job.id.clone()).collect()
}

/// Fails the job of `claimed` for good.
async fn fail(store: &dyn dogs_core::JobStore, claimed: &dogs_core::ClaimedJob) {
    store
        .complete(
            &claimed.lease,
            Completion::Fail {
                error: "broken".into(),
                retain_for: LEASE,
            },
        )
        .await
        .unwrap();
}

/// list-paged: jobs are listed in scheduling order and paged at the store, failed jobs newest
/// first, whatever the other states around them; counts split pending into due and scheduled.
pub async fn list_paged(ctx: TestContext) {
    let store = ctx.store();
    let mut alpha = Vec::new();
    for i in 0..6 {
        alpha.push(schedule_new(&*store, NewJob::new("alpha", json!(i)).priority(1)).await);
    }
    let later = schedule_new(
        &*store,
        NewJob::new("alpha", json!("later"))
            .priority(9)
            .run_at(RunAt::In(Duration::from_secs(600))),
    )
    .await;
    let beta = schedule_new(&*store, NewJob::new("beta", json!(0))).await;
    // The first three of alpha are claimed: the first and the third are failed, in that order.
    let claimed = claim(&*store, "alpha", LEASE, 3).await;
    assert_eq!(ids_of_claimed(&claimed), alpha[0..3].to_vec());
    fail(&*store, &claimed[0]).await;
    fail(&*store, &claimed[2]).await;
    let failed_beta = claim_one(&*store, "beta", LEASE).await;
    fail(&*store, &failed_beta).await;

    let list = |query: JobQuery| {
        let store = store.clone();
        async move { ids(&store.list_jobs(&query).await.unwrap()) }
    };
    let pending = JobQuery::name("alpha").state(JobState::Pending);
    assert_eq!(
        list(pending.clone()).await,
        vec![
            alpha[3].clone(),
            alpha[4].clone(),
            alpha[5].clone(),
            later.clone()
        ],
        "pending jobs in scheduling order, due or not"
    );
    assert_eq!(
        list(pending.clone().limit(2).offset(1)).await,
        alpha[4..6].to_vec(),
        "a page of pending jobs"
    );
    assert_eq!(list(pending.offset(4)).await, Vec::<JobId>::new());
    assert_eq!(
        list(JobQuery::name("alpha").limit(0)).await,
        Vec::<JobId>::new(),
        "a page of 0 jobs is empty, not unlimited"
    );
    assert_eq!(
        list(JobQuery::name("alpha").limit(usize::MAX).next_page()).await,
        Vec::<JobId>::new(),
        "the page after one of every job is empty"
    );
    assert_eq!(
        list(JobQuery::default().state(JobState::Failed).limit(0)).await,
        Vec::<JobId>::new()
    );
    assert_eq!(
        list(JobQuery::name("alpha").state(JobState::Running)).await,
        vec![alpha[1].clone()]
    );
    assert_eq!(
        list(JobQuery::name("alpha").state(JobState::Failed)).await,
        vec![alpha[2].clone(), alpha[0].clone()],
        "failed jobs newest first"
    );
    assert_eq!(
        list(JobQuery::name("alpha").state(JobState::Failed).offset(1)).await,
        vec![alpha[0].clone()]
    );
    assert_eq!(
        list(JobQuery::default().state(JobState::Failed).limit(2)).await,
        vec![beta.clone(), alpha[2].clone()],
        "failed jobs of every name, newest first"
    );
    let mut everything = alpha.clone();
    everything.push(later.clone());
    assert_eq!(
        list(JobQuery::name("alpha")).await,
        everything,
        "every state, in scheduling order"
    );
    assert_eq!(
        list(JobQuery::name("alpha").limit(3).offset(5)).await,
        vec![alpha[5].clone(), later.clone()]
    );
    assert_eq!(
        list(JobQuery::default().limit(2).offset(6)).await,
        vec![later, beta],
        "every name, in scheduling order"
    );

    store.pause("beta").await.unwrap();
    let counts = store.count_jobs().await.unwrap();
    assert_eq!(
        counts,
        vec![
            JobCounts {
                name: "alpha".into(),
                pending: 4,
                scheduled: 1,
                running: 1,
                failed: 2,
                paused: false,
            },
            JobCounts {
                name: "beta".into(),
                pending: 0,
                scheduled: 0,
                running: 0,
                failed: 1,
                paused: true,
            },
        ]
    );
    // A running job that is cancelled is failed, and no longer running, also when it comes
    // first in scheduling order.
    let running = claim_one(&*store, "alpha", LEASE).await;
    assert_eq!(running.job.id, alpha[3]);
    assert!(store.cancel(&claimed[1].job.id).await.unwrap());
    assert_eq!(
        list(JobQuery::name("alpha").state(JobState::Running).limit(1)).await,
        vec![alpha[3].clone()],
        "a cancelled job is not running"
    );
    assert_eq!(
        list(JobQuery::default().state(JobState::Running)).await,
        vec![alpha[3].clone()],
    );
    let alpha_counts = store.count_jobs().await.unwrap().remove(0);
    assert_eq!(
        (
            alpha_counts.pending,
            alpha_counts.running,
            alpha_counts.failed
        ),
        (3, 1, 3),
        "a cancelled job is counted once, as failed"
    );
    // A name whose jobs are all gone is no longer counted.
    store.cancel(&failed_beta.job.id).await.unwrap();
    store.resume("beta").await.unwrap();
    let names: Vec<String> = store
        .count_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["alpha".to_owned()]);
}

fn ids_of_claimed(claimed: &[dogs_core::ClaimedJob]) -> Vec<JobId> {
    claimed.iter().map(|c| c.job.id.clone()).collect()
}

/// recurrent-listed: the recurrent jobs, one per name, sorted by name, and no event job.
pub async fn recurrent_listed(ctx: TestContext) {
    let store = ctx.store();
    let later = truncate_millis(store_now(&*store).await + chrono::Duration::hours(1));
    let report = store
        .register_recurrent(registration("report", "cron 0 * * * * Europe/Paris", later))
        .await
        .unwrap();
    let cleanup = store
        .register_recurrent(registration("cleanup", "every 60000ms", later))
        .await
        .unwrap();
    // An event job of a recurrent job's name is not a recurrent job.
    schedule_new(&*store, NewJob::new("report", json!({"once": true}))).await;
    schedule_new(&*store, NewJob::new("email", json!(1))).await;
    let listed = store.list_recurrent().await.unwrap();
    assert_eq!(ids(&listed), vec![cleanup, report]);
    assert!(listed.iter().all(|j| j.kind == JobKind::Recurrent));
    assert_eq!(
        listed[1].schedule_key.as_deref(),
        Some("cron 0 * * * * Europe/Paris")
    );
    assert!(
        listed[1].run_at < later,
        "a new recurrent job is due at once"
    );
    assert_eq!(listed[1].state, JobState::Pending);
    // A recurrent job failed for good is listed until its retention ends.
    let claimed = claim_one(&*store, "cleanup", LEASE).await;
    store
        .complete(
            &claimed.lease,
            Completion::Fail {
                error: "gone".into(),
                retain_for: Duration::from_millis(300),
            },
        )
        .await
        .unwrap();
    let listed = store.list_recurrent().await.unwrap();
    assert_eq!(listed[0].state, JobState::Failed);
    wait_past(
        &*store,
        store_now(&*store).await + chrono::Duration::milliseconds(400),
    )
    .await;
    assert_eq!(
        ids(&store.list_recurrent().await.unwrap()),
        vec![listed[1].id.clone()],
        "a failed recurrent job past its retention is not listed"
    );
}

/// execution-stats: recorded executions summed per minute and status, each counted once, with
/// their run times; records of before the window are left out.
pub async fn execution_stats(ctx: TestContext) {
    let store = ctx.store();
    let now = store_now(&*store).await;
    let minute = dogs_core::minute_of(now - chrono::Duration::minutes(5));
    let job = JobId::new("1");
    let at = |seconds: i64, ms: u64, status: ExecutionStatus, id: &str| {
        let mut e = execution(&job, "mail", id, status, minute);
        e.ended_at = minute + chrono::Duration::seconds(seconds);
        e.started_at = e.ended_at - chrono::Duration::milliseconds(ms as i64);
        e.duration = Duration::from_millis(ms);
        e
    };
    let records = [
        at(1, 100, ExecutionStatus::Success, "e1"),
        at(30, 300, ExecutionStatus::Success, "e2"),
        // The same execution again: counted once.
        at(30, 300, ExecutionStatus::Success, "e2"),
        at(59, 50, ExecutionStatus::Error, "e3"),
        at(61, 2000, ExecutionStatus::Stale, "e4"),
        // Another job name, the same minute.
        {
            let mut e = at(62, 10, ExecutionStatus::Success, "e5");
            e.name = "report".into();
            e
        },
        // Before the window.
        at(-3600, 7, ExecutionStatus::Success, "e6"),
    ];
    for record in &records {
        store.record_execution(record).await.unwrap();
    }
    let next = minute + chrono::Duration::minutes(1);
    let figure = |minute, status, count, total_ms, max_ms| dogs_core::ExecutionMinute {
        minute,
        status,
        count,
        total_ms,
        max_ms,
    };
    let stats = store
        .execution_stats(now - chrono::Duration::minutes(30))
        .await
        .unwrap();
    assert_eq!(
        stats,
        vec![
            figure(minute, ExecutionStatus::Error, 1, 50, 50),
            figure(minute, ExecutionStatus::Success, 2, 400, 300),
            figure(next, ExecutionStatus::Stale, 1, 2000, 2000),
            figure(next, ExecutionStatus::Success, 1, 10, 10),
        ]
    );
    assert_eq!(stats[1].mean_ms(), 200);
    let recent = store.execution_stats(next).await.unwrap();
    assert_eq!(recent.len(), 2, "only the minutes from `since`: {recent:?}");

    // An execution saved with its job's outcome counts too.
    schedule_new(&*store, NewJob::new("mail", json!("x"))).await;
    let claimed = claim_one(&*store, "mail", LEASE).await;
    let mut record = at(90, 40, ExecutionStatus::Success, "e7");
    record.job_id = claimed.job.id.clone();
    store
        .finish(&claimed.lease, Completion::Remove, Some(&record))
        .await
        .unwrap();
    let recent = store.execution_stats(next).await.unwrap();
    assert_eq!(
        recent[1],
        figure(next, ExecutionStatus::Success, 2, 50, 40),
        "{recent:?}"
    );
}
