//! Handlers that block their thread past their lease (W-slot-held): they cannot be stopped, so
//! their slot and their job's lease stay theirs until they return, and what they return then
//! does not count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dogs_core::prelude::*;
use dogs_core::{ExecutionStatus, WorkerOptions};

use super::*;
use crate::harness::TestContext;

/// W-slot-held
pub async fn slot_held(ctx: TestContext) {
    let store = ctx.store();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = log::<String>();
    let (r, m, d) = (running.clone(), most.clone(), done.clone());
    let job = EventJob::new("blocking", move |kind: String, ctx: JobContext| {
        let (r, m, d) = (r.clone(), m.clone(), d.clone());
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            if kind == "blocker" && ctx.tries() == 1 {
                // Blocks its thread far past its lease: it cannot be stopped.
                std::thread::sleep(Duration::from_millis(1500));
            }
            r.fetch_sub(1, Ordering::SeqCst);
            push(&d, format!("{kind} {}", ctx.tries()));
            Ok(())
        }
    })
    .lock_time(Duration::from_millis(300));
    let options = WorkerOptions {
        workers_count: 1,
        ..without_renewal()
    };
    schedule_job(
        &*store,
        &job,
        &"blocker".to_owned(),
        ScheduleOptions::default().priority(10),
    )
    .await
    .unwrap();
    // Both are due before the worker starts, so nothing here has to watch the blocker while
    // it holds up its thread; priority makes the blocker the first claim.
    schedule_job(
        &*store,
        &job,
        &"other".to_owned(),
        ScheduleOptions::default(),
    )
    .await
    .unwrap();
    let workers = start(store.clone(), vec![job.definition()], options).await;
    wait_until("every run to end", DEADLINE, || async {
        read(&done).len() == 3
    })
    .await;
    workers.stop().await;
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "one slot, one handler at a time, even when one blocks past its lease"
    );
    assert_eq!(
        read(&done)[0],
        "blocker 1",
        "nothing ran before it returned"
    );
}

/// A handler that blocks its thread past its lease cannot be stopped: its job is not released
/// while it still runs, so another worker runs it again only once the lease has ended, as after
/// a crash, never earlier.
pub async fn blocked_handler_keeps_its_lease(ctx: TestContext) {
    let store = ctx.store();
    let lock = Duration::from_millis(600);
    let definition = || {
        EventJob::new("blocked", move |_: (), ctx: JobContext| async move {
            if ctx.tries() == 1 {
                std::thread::sleep(Duration::from_millis(1500));
            }
            Ok(())
        })
        .lock_time(lock)
    };
    let options = WorkerOptions {
        workers_count: 1,
        poll_interval: Duration::from_millis(20),
        ..without_renewal()
    };
    // Two worker sets of one slot each: the one that runs the blocked handler cannot claim the
    // job again while it blocks; the other takes it as soon as the store lets it.
    let first = start(
        store.clone(),
        vec![definition().definition()],
        options.clone(),
    )
    .await;
    let second = start(
        ctx.another_handle().await,
        vec![definition().definition()],
        options,
    )
    .await;
    // The lease starts at the claim, after this: a lower bound of its end needs no allowance
    // for how late the execution started.
    let before = store.now().await.unwrap();
    let id = schedule_job(&*store, &definition(), &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, id.id()).await;
    // The blocked run's record is saved once its handler returns.
    let runs = wait_for("both runs' records", DEADLINE, || async {
        let records = executions(&*store, "blocked").await;
        (records.iter().any(|r| r.tries == 1) && records.iter().any(|r| r.tries == 2))
            .then_some(records)
    })
    .await;
    first.stop().await;
    second.stop().await;
    let blocked = runs.iter().find(|r| r.tries == 1).expect("the blocked run");
    let rerun = runs.iter().find(|r| r.tries == 2).expect("the second run");
    assert_eq!(
        blocked.status,
        ExecutionStatus::Stale,
        "it returned after its lease ended: its outcome does not count ({runs:?})"
    );
    assert_eq!(rerun.status, ExecutionStatus::Success, "{runs:?}");
    // Stored times keep milliseconds, and a store whose clock each handle estimates from the
    // server's (MongoDB) may read it a few milliseconds apart from two handles.
    let lease_end =
        before + chrono::Duration::from_std(lock).unwrap() - chrono::Duration::milliseconds(25);
    assert!(
        rerun.started_at >= lease_end,
        "ran again {} ms after it was scheduled, before its {lock:?} lease could end",
        (rerun.started_at - before).num_milliseconds()
    );
    assert_eq!(runs.len(), 2, "{runs:?}");
}

/// A handler that panics only after its lease ended (its thread was held up past it) is as
/// late as a stale execution: the panic is not applied as an error (no retry backoff, no
/// `on_error`), the execution is recorded as stale, and the job runs again at once.
pub async fn late_panic_is_stale(ctx: TestContext) {
    let store = ctx.store();
    let errors = Arc::new(AtomicUsize::new(0));
    let seen = errors.clone();
    let job = EventJob::new("late-panic", move |_: (), ctx: JobContext| async move {
        if ctx.tries() == 1 {
            std::thread::sleep(Duration::from_millis(1500));
            panic!("too late to count");
        }
        Ok(())
    })
    .lock_time(Duration::from_millis(600))
    .on_error(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        ErrorAction::Default
    });
    let options = WorkerOptions {
        workers_count: 1,
        ..without_renewal()
    };
    let workers = start(store.clone(), vec![job.definition()], options).await;
    let id = schedule_job(&*store, &job, &(), ScheduleOptions::default())
        .await
        .unwrap();
    wait_gone(&*store, id.id()).await;
    workers.stop().await;
    let runs = wait_executions(&*store, "late-panic", 2).await;
    let mut statuses: Vec<(u32, ExecutionStatus)> =
        runs.iter().map(|r| (r.tries, r.status)).collect();
    statuses.sort_by_key(|(tries, _)| *tries);
    assert_eq!(
        statuses,
        vec![(1, ExecutionStatus::Stale), (2, ExecutionStatus::Success)],
        "{runs:?}"
    );
    assert_eq!(errors.load(Ordering::SeqCst), 0, "on_error was not called");
}
