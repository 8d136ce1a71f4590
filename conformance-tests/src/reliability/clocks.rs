//! Worker clocks that are wrong: skewed from the start, or stepped while the worker runs (NTP,
//! a resumed virtual machine). The store's clock decides: no live lease is stolen, no job runs
//! early.

use std::collections::HashSet;
use std::time::Duration;

use dogs_core::{ClaimRequest, ClaimedJob, JobId, JobStore, NewJob, RunAt};
use serde_json::json;

use super::process::{WorkerProcess, WorkerSpec};
use super::scenarios::assert_quiet_logs;
use super::Env;
use crate::support::{schedule_new, wait_until};

/// libfaketime with a clock `offset` off (`+10m`), monotonic time left alone.
fn fake_clock(offset: &str) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), super::servers::libfaketime()),
        ("FAKETIME".into(), offset.into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ("FAKETIME_DONT_RESET".into(), "1".into()),
    ]
}

/// libfaketime reading the clock's offset from `file` at every call, so the test can step the
/// clock of a running process.
fn stepping_clock(file: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), super::servers::libfaketime()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ("FAKETIME_DONT_RESET".into(), "1".into()),
    ]
}

/// What a wrong clock must leave alone: three live leases held by the test (60 s) and three
/// jobs due in a minute.
struct Bait {
    name: String,
    held: Vec<ClaimedJob>,
    future: Vec<JobId>,
}

impl Bait {
    async fn lay(store: &dyn JobStore, name: &str) -> Bait {
        for i in 0..3 {
            schedule_new(store, NewJob::new(name, json!({ "held": i }))).await;
        }
        let held = store
            .claim(&ClaimRequest::new([name], Duration::from_secs(60), 3).worker_id("test"))
            .await
            .unwrap()
            .jobs;
        assert_eq!(held.len(), 3);
        let mut future = Vec::new();
        for i in 0..3 {
            future.push(
                schedule_new(
                    store,
                    NewJob::new(name, json!({ "future": i }))
                        .run_at(RunAt::In(Duration::from_secs(60))),
                )
                .await,
            );
        }
        Bait {
            name: name.to_owned(),
            held,
            future,
        }
    }

    /// Checks that `worker` ran exactly `due` jobs and none of the bait, and that the test's
    /// leases are still its own.
    async fn check(self, store: &dyn JobStore, worker: &WorkerProcess, due: usize) {
        let name = &self.name;
        let ran: HashSet<String> = worker.started().into_iter().collect();
        assert_eq!(ran.len(), due, "{name}: only the due jobs ran, once each");
        for claimed in &self.held {
            assert!(
                !ran.contains(claimed.job.id.as_str()),
                "{name}: a live lease was stolen"
            );
            store
                .complete(&claimed.lease, dogs_core::Completion::Remove)
                .await
                .unwrap_or_else(|e| panic!("{name}: the lease held by the test was lost: {e}"));
        }
        for id in &self.future {
            assert!(
                !ran.contains(id.as_str()),
                "{name}: a job due in a minute ran early"
            );
            let job = store.get_job(id).await.unwrap().unwrap();
            assert_eq!(
                job.state,
                dogs_core::JobState::Pending,
                "{name}: still waiting"
            );
        }
    }
}

/// Schedules 10 due jobs for each worker's name, in two rounds a few seconds apart (each worker
/// claims many times meanwhile), and waits until each worker ran its jobs.
async fn run_due(store: &dyn JobStore, workers: &[(&WorkerProcess, &str)]) {
    for round in 0..2 {
        let mut due = Vec::new();
        for (_, name) in workers {
            for i in 0..10 {
                let id = schedule_new(
                    store,
                    NewJob::new(*name, json!({ "due": i, "round": round })),
                )
                .await;
                due.push((*name, id.to_string()));
            }
        }
        wait_until(
            "the workers run every due job",
            Duration::from_secs(30),
            || async {
                due.iter().all(|(name, id)| {
                    workers
                        .iter()
                        .any(|(w, n)| n == name && w.started().contains(id))
                })
            },
        )
        .await;
        if round == 0 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
}

/// Clock skew: worker processes whose clocks are ten minutes ahead and ten minutes behind run
/// due jobs, but neither steals a live lease nor runs a job due in a minute: the store's clock
/// decides.
pub async fn clock_skew(env: Env) {
    let store = env.store().await;
    let mut workers = Vec::new();
    for (label, offset) in [("ahead", "+10m"), ("behind", "-10m")] {
        let name = format!("skew_{label}");
        let bait = Bait::lay(&*store, &name).await;
        let worker = WorkerProcess::start(
            &env,
            &WorkerSpec {
                slots: 8,
                poll: Duration::from_millis(100),
                env: fake_clock(offset),
                ..WorkerSpec::new(label, &name)
            },
        );
        // The fake clock took: the worker's clock is ten minutes off, as asked.
        let off = worker.clock_offset.as_secs_f64();
        assert!(
            (off - 600.0).abs() < 60.0 && worker.clock_ahead == (label == "ahead"),
            "worker {label}: its clock is {off:.0} s {} (libfaketime not in effect?)",
            if worker.clock_ahead {
                "ahead"
            } else {
                "behind"
            }
        );
        workers.push((worker, name, bait));
    }
    let running: Vec<(&WorkerProcess, &str)> =
        workers.iter().map(|(w, n, _)| (w, n.as_str())).collect();
    run_due(&*store, &running).await;
    for (worker, _, bait) in workers {
        bait.check(&*store, &worker, 20).await;
        assert_quiet_logs(&[&worker], 0);
        worker.stop(Duration::from_secs(30)).await;
    }
}

/// A clock step: the clock of a running worker process jumps ten minutes ahead (libfaketime
/// re-reads its offset from a file). Its next claims neither steal a live lease nor run a job due
/// in a minute.
pub async fn clock_step(env: Env) {
    let store = env.store().await;
    let bait = Bait::lay(&*store, "step").await;
    let file = env.path("clock");
    std::fs::write(&file, "+0\n").unwrap();
    let worker = WorkerProcess::start(
        &env,
        &WorkerSpec {
            slots: 8,
            poll: Duration::from_millis(100),
            env: stepping_clock(&file),
            ..WorkerSpec::new("stepped", "step")
        },
    );
    let off = worker.clock_offset.as_secs_f64();
    assert!(off < 5.0, "the clock starts right: {off:.1} s off");
    std::fs::write(&file, "+10m\n").unwrap();
    // The step took: a job run now sees the worker's clock ten minutes ahead.
    let probe = schedule_new(&*store, NewJob::new("step", json!({ "probe": true }))).await;
    let clock = crate::support::wait_for("the probe to run", Duration::from_secs(30), || async {
        worker
            .start_clocks()
            .into_iter()
            .find(|(id, _)| id == probe.as_str())
            .map(|(_, clock)| clock)
    })
    .await;
    let ahead = (clock - chrono::Utc::now().timestamp_millis()) as f64 / 1000.0;
    assert!(
        (ahead - 600.0).abs() < 60.0,
        "the worker's clock stepped ten minutes ahead, not {ahead:.0} s (libfaketime not in effect?)"
    );
    run_due(&*store, &[(&worker, "step")]).await;
    bait.check(&*store, &worker, 21).await;
    assert_quiet_logs(&[&worker], 0);
    worker.stop(Duration::from_secs(30)).await;
}
