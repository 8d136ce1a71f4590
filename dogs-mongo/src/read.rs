//! Reading jobs and execution records, each with its state by the server's clock.

use dogs_core::{Execution, ExecutionQuery, Job, JobId, JobQuery, Result};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};

use crate::decode::{date, execution_from_doc, job_from_doc, oid, readable};
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

    /// The page `query` asks for, `paused` left unset.
    pub(crate) async fn read_unmarked(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let now = self.server_now().await?;
        let filter = match &query.name {
            Some(name) => doc! { "name": name },
            None => doc! {},
        };
        let docs: Vec<Document> = self
            .timed("listing jobs", async {
                self.inner.jobs.find(filter).await?.try_collect().await
            })
            .await?;
        let jobs = readable(docs.into_iter().map(|d| job_from_doc(d, now)));
        // ObjectIds in hex sort in creation order.
        Ok(query.page(jobs, |id| id.clone()))
    }

    pub(crate) async fn read_executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        let now = self.server_now().await?;
        let mut filter = doc! { "name": &query.name, "expires_at": { "$gt": date(now) } };
        if let Some(job_id) = &query.job_id {
            filter.insert("job_id", job_id.as_str());
        }
        let docs: Vec<Document> = self
            .timed("reading executions", async {
                self.inner
                    .executions
                    .find(filter)
                    .sort(doc! { "started_at": -1, "_id": -1 })
                    .skip(u64::try_from(query.offset).unwrap_or(u64::MAX))
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
