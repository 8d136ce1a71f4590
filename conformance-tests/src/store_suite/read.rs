//! Reading (SPEC §3, "Reading"): listing and counting jobs.

use std::time::Duration;

use dogs_core::{Completion, JobCounts, JobQuery, JobState, NewJob, RunAt};
use serde_json::json;

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
