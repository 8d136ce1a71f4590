//! Removing jobs and records: cancelling a job that is not running, and pruning failed jobs and
//! execution records past their retention (beside the TTL indexes, which remove them too).

use dogs_core::{rest_between_prune_batches, Error, ErrorKind, PruneReport, Result};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};

use crate::decode::date;
use crate::store::MongoStore;

/// How many records one pruning pass removes at a time.
const PRUNE_BATCH: i64 = 1000;

impl MongoStore {
    pub(crate) async fn cancel_filter(&self, filter: Document) -> Result<bool> {
        let now = self.server_now().await?;
        let mut removable = filter.clone();
        removable.insert(
            "$nor",
            vec![doc! { "state": "running", "locked_until": { "$gt": date(now) } }],
        );
        let deleted = self
            .timed("cancelling a job", self.inner.jobs.delete_one(removable))
            .await?;
        if deleted.deleted_count == 1 {
            return Ok(true);
        }
        let exists = self
            .timed(
                "cancelling a job",
                self.inner
                    .jobs
                    .find_one(filter)
                    .selection_criteria(crate::store::primary()),
            )
            .await?;
        match exists {
            Some(_) => Err(Error::new(
                ErrorKind::Conflict,
                "the job is running and cannot be cancelled",
            )),
            None => Ok(false),
        }
    }

    pub(crate) async fn prune_expired(&self) -> Result<PruneReport> {
        let now = date(self.server_now().await?);
        let mut report = PruneReport::default();
        for (collection, filter, count) in [
            (
                &self.inner.jobs,
                doc! { "state": "failed", "expires_at": { "$lte": now } },
                &mut report.jobs,
            ),
            (
                &self.inner.executions,
                doc! { "expires_at": { "$lte": now } },
                &mut report.executions,
            ),
        ] {
            loop {
                let started = std::time::Instant::now();
                let batch: Vec<Document> = self
                    .timed("pruning", async {
                        collection
                            .find(filter.clone())
                            .projection(doc! { "_id": 1 })
                            .limit(PRUNE_BATCH)
                            .await?
                            .try_collect()
                            .await
                    })
                    .await?;
                let ids: Vec<Bson> = batch
                    .into_iter()
                    .filter_map(|mut d| d.remove("_id"))
                    .collect();
                if ids.is_empty() {
                    break;
                }
                let removed = self
                    .timed(
                        "pruning",
                        collection.delete_many(doc! { "_id": { "$in": &ids } }),
                    )
                    .await?
                    .deleted_count;
                *count += removed;
                if (ids.len() as i64) < PRUNE_BATCH {
                    break;
                }
                rest_between_prune_batches(started.elapsed()).await;
            }
        }
        Ok(report)
    }
}
