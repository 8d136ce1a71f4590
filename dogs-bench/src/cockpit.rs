//! The `overview` scenario: what a dashboard's overview costs the store, with a few jobs stored
//! and with `--stored` (1,000,000) future jobs and a tenth as many failed ones, and what a
//! dashboard refreshing every 2 s costs a drain beside it (alternated rounds of one run).

use std::sync::Arc;
use std::time::Duration;

use dogs_core::{JobQuery, JobState, JobStore};
use tokio::time::Instant;

use crate::backend::Backend;
use crate::measure::Figure;
use crate::scenarios::{drain_once, fill_depth, namespace, Outcome};
use crate::Settings;

/// The reads of one refresh of the overview and of a page of each list: counts per name and
/// state, the last hour's execution figures, the recurrent jobs, a page of due jobs and a page
/// of failed jobs.
pub(crate) async fn overview_reads(store: &dyn JobStore) -> dogs_core::Result<()> {
    let now = store.now().await?;
    store.count_jobs().await?;
    store
        .execution_stats(now - chrono::Duration::hours(1))
        .await?;
    store.list_recurrent().await?;
    store
        .list_jobs(&JobQuery::name("noop").state(JobState::Pending).limit(51))
        .await?;
    store
        .list_jobs(&JobQuery::default().state(JobState::Failed).limit(51))
        .await?;
    Ok(())
}

/// The milliseconds of `rounds` overview refreshes, one after another.
async fn time_reads(store: &dyn JobStore, rounds: usize) -> Outcome<Vec<f64>> {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        overview_reads(store).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(times)
}

pub async fn run(settings: &Settings, backend: &Backend) -> Outcome<Vec<Figure>> {
    let stored = settings.stored;
    let (mut empty, mut full, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..settings.runs {
        let ns = namespace(run);
        let store = backend.open(&ns).await?;
        fill_depth(&*store, 10, 1).await?;
        empty.extend(time_reads(&*store, 20).await?);
        fill_depth(&*store, stored, stored / 10).await?;
        full.extend(time_reads(&*store, 20).await?);
        // Drains without and with a dashboard refreshing every 2 s, alternated.
        for _ in 0..2 {
            let (plain, _, _) = drain_once(settings, backend, &store, 32).await?;
            let poller = {
                let store: Arc<dyn JobStore> = store.clone();
                tokio::spawn(async move {
                    loop {
                        let _ = overview_reads(&*store).await;
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                })
            };
            let polled = drain_once(settings, backend, &store, 32).await;
            poller.abort();
            ratios.push(polled?.0 / plain);
        }
        drop(store);
        backend.cleanup(&ns).await?;
    }
    Ok(vec![
        Figure::new(
            "overview reads, 11 jobs stored",
            "ms",
            empty,
            "counts, last hour's figures, recurrent jobs, a page of due and of failed jobs",
        ),
        Figure::new(
            &format!(
                "overview reads, {stored} future + {} failed jobs stored",
                stored / 10
            ),
            "ms",
            full,
            "the same reads",
        ),
        Figure::new(
            "drain with a dashboard refreshing every 2 s / without",
            "ratio",
            ratios,
            &format!(
                "{} due no-op jobs, 32 slots, same deep store, alternated",
                settings.jobs
            ),
        ),
    ])
}
