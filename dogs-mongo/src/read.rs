//! Reading jobs and execution records, each with its state by the server's clock. A job read
//! by id (which workers do to learn of a cancellation) is read on the primary with read concern
//! `majority`; listings, counts and figures, which only show, follow the URL's read preference
//! and read concern (a dashboard may read a secondary, and see it lag).

use chrono::{DateTime, Utc};
use dogs_core::{
    stats_since, Execution, ExecutionMinute, ExecutionQuery, Job, JobCounts, JobId, JobQuery,
    JobState, Result,
};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};

use crate::decode::{
    counts_from_doc, date, execution_from_doc, job_from_doc, minute_from_doc, oid, readable,
};
use crate::store::MongoStore;

impl MongoStore {
    pub(crate) async fn read_job(&self, id: &JobId) -> Result<Option<Job>> {
        let Some(id) = oid(id) else {
            return Ok(None);
        };
        let now = self.server_now().await?;
        let doc = self
            .timed(
                "reading a job",
                self.inner.jobs.find_one(doc! { "_id": id }),
            )
            .await?;
        let Some(mut job) = doc.map(|doc| job_from_doc(doc, now)).transpose()?.flatten() else {
            return Ok(None);
        };
        let settings = self.read_settings(Some(&[job.name.as_str()])).await?;
        job.paused = settings.iter().any(|s| s.paused);
        Ok(Some(job))
    }

    pub(crate) async fn read_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let mut page = self.read_unmarked(query).await?;
        Job::mark_paused(&mut page, &self.read_settings(None).await?);
        Ok(page)
    }

    /// The page `query` asks for, `paused` left unset: filtered, ordered and paged by the
    /// server, through the `by_name` index.
    pub(crate) async fn read_unmarked(&self, query: &JobQuery) -> Result<Vec<Job>> {
        // MongoDB reads a limit of 0 as no limit.
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.server_now().await?;
        let at = date(now);
        let live = doc! { "state": "running", "locked_until": { "$gt": at } };
        let mut filter = match query.state {
            None => doc! { "$nor": [ { "state": "failed", "expires_at": { "$lte": at } } ] },
            Some(JobState::Failed) => doc! { "state": "failed", "expires_at": { "$gt": at } },
            Some(JobState::Running) => live,
            Some(JobState::Pending) => doc! { "$nor": [ { "state": "failed" }, live ] },
        };
        if let Some(name) = &query.name {
            filter.insert("name", name);
        }
        let order = if query.newest_first() { -1 } else { 1 };
        let docs: Vec<Document> = self
            .timed("listing jobs", async {
                self.inner
                    .jobs_shown
                    .find(filter)
                    .sort(doc! { "_id": order })
                    .skip(skip(query.offset))
                    .limit(i64::try_from(query.limit).unwrap_or(i64::MAX))
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        Ok(readable(docs.into_iter().map(|d| job_from_doc(d, now))))
    }

    /// Counts per name and state in one aggregation on the server: one read of the visible
    /// jobs, each counted once, grouped by name.
    pub(crate) async fn read_counts(&self) -> Result<Vec<JobCounts>> {
        let at = date(self.server_now().await?);
        let failed = doc! { "$eq": ["$state", "failed"] };
        let live = doc! { "$and": [
            { "$eq": ["$state", "running"] },
            { "$gt": ["$locked_until", at] },
        ] };
        let one_if = |condition: Document| doc! { "$sum": { "$cond": [condition, 1_i64, 0_i64] } };
        let pipeline = [
            doc! { "$match": { "$nor": [ { "state": "failed", "expires_at": { "$lte": at } } ] } },
            doc! { "$group": {
                "_id": "$name",
                "failed": one_if(failed.clone()),
                "running": one_if(live.clone()),
                "pending": one_if(doc! { "$and": [ { "$not": [failed.clone()] }, { "$not": [live.clone()] } ] }),
                "scheduled": one_if(doc! { "$and": [
                    { "$not": [failed] },
                    { "$not": [live] },
                    { "$gt": ["$run_at", at] },
                ] }),
            } },
        ];
        let docs: Vec<Document> = self
            .timed("counting jobs", async {
                self.inner
                    .jobs_shown
                    .aggregate(pipeline)
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        let mut counts = readable(docs.into_iter().map(|d| counts_from_doc(&d).map(Some)));
        counts.sort_by(|a, b| a.name.cmp(&b.name));
        JobCounts::mark_paused(&mut counts, &self.read_settings(None).await?);
        Ok(counts)
    }

    pub(crate) async fn read_recurrent(&self) -> Result<Vec<Job>> {
        let now = self.server_now().await?;
        let docs: Vec<Document> = self
            .timed("listing recurrent jobs", async {
                self.inner
                    .jobs_shown
                    .find(doc! { "kind": "recurrent" })
                    .sort(doc! { "name": 1 })
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        let mut jobs = readable(docs.into_iter().map(|d| job_from_doc(d, now)));
        Job::mark_paused(&mut jobs, &self.read_settings(None).await?);
        Ok(jobs)
    }

    /// Sums the window's records on the server, grouped by the minute they ended and status,
    /// through the `by_end` index.
    pub(crate) async fn read_stats(&self, since: DateTime<Utc>) -> Result<Vec<ExecutionMinute>> {
        let now = self.server_now().await?;
        let since = stats_since(since, now);
        let pipeline = [
            doc! { "$match": {
                "ended_at": { "$gte": date(since) },
                "expires_at": { "$gt": date(now) },
            } },
            doc! { "$group": {
                "_id": {
                    "minute": { "$subtract": [
                        { "$toLong": "$ended_at" },
                        { "$mod": [ { "$toLong": "$ended_at" }, 60_000_i64 ] },
                    ] },
                    "status": "$status",
                },
                "n": { "$sum": 1_i64 },
                "total_ms": { "$sum": "$duration_ms" },
                "max_ms": { "$max": "$duration_ms" },
            } },
            doc! { "$sort": { "_id.minute": 1, "_id.status": 1 } },
        ];
        let docs: Vec<Document> = self
            .timed("summing executions", async {
                self.inner
                    .executions_shown
                    .aggregate(pipeline)
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        Ok(readable(
            docs.into_iter().map(|d| minute_from_doc(&d).map(Some)),
        ))
    }

    pub(crate) async fn read_executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        // MongoDB reads a limit of 0 as no limit.
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.server_now().await?;
        let mut filter = doc! { "name": &query.name, "expires_at": { "$gt": date(now) } };
        if let Some(job_id) = &query.job_id {
            filter.insert("job_id", job_id.as_str());
        }
        let docs: Vec<Document> = self
            .timed("reading executions", async {
                self.inner
                    .executions_shown
                    .find(filter)
                    .sort(doc! { "started_at": -1, "_id": -1 })
                    .skip(skip(query.offset))
                    .limit(i64::try_from(query.limit).unwrap_or(i64::MAX))
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        Ok(readable(
            docs.into_iter().map(|d| execution_from_doc(d).map(Some)),
        ))
    }
}

/// An offset as MongoDB takes it: at most `i64::MAX` (a larger one is refused by the driver,
/// and skips every document all the same).
fn skip(offset: usize) -> u64 {
    i64::try_from(offset).map_or(i64::MAX.unsigned_abs(), i64::unsigned_abs)
}
