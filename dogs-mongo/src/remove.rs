//! Removing jobs and records: pruning failed jobs and execution records past their retention
//! (beside the TTL indexes, which remove them too). Cancelling is in `operate`.

use dogs_core::{prune_in_batches, PruneBatch, PruneReport, Result, PRUNE_BATCH};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;

use crate::decode::date;
use crate::store::MongoStore;

impl MongoStore {
    /// Removes what had expired when it began, in batches ([`prune_in_batches`]).
    pub(crate) async fn prune_expired(&self) -> Result<PruneReport> {
        let now = date(self.server_now().await?);
        let (jobs, executions) = (
            doc! { "state": "failed", "expires_at": { "$lte": now } },
            doc! { "expires_at": { "$lte": now } },
        );
        prune_in_batches(|| async {
            let (jobs_found, jobs) = self.prune_batch(&self.inner.jobs, &jobs).await?;
            let (found, executions) = self
                .prune_batch(&self.inner.executions, &executions)
                .await?;
            Ok(PruneBatch {
                removed: PruneReport { jobs, executions },
                // Steered by what was found: the TTL monitor may remove some of a batch
                // between the find and the delete.
                full: jobs_found >= PRUNE_BATCH || found >= PRUNE_BATCH,
            })
        })
        .await
    }

    /// Removes up to [`PRUNE_BATCH`] documents of `collection` that match `filter`: how many it
    /// found, and how many it removed.
    async fn prune_batch(
        &self,
        collection: &Collection<Document>,
        filter: &Document,
    ) -> Result<(u64, u64)> {
        let batch: Vec<Document> = self
            .timed("pruning", async {
                collection
                    .find(filter.clone())
                    .projection(doc! { "_id": 1 })
                    .limit(PRUNE_BATCH as i64)
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
            return Ok((0, 0));
        }
        // The filter again: a document that changed since it was found (a failed job retried)
        // is not removed.
        let removed = self
            .timed(
                "pruning",
                collection
                    .delete_many(doc! { "$and": [{ "_id": { "$in": &ids } }, filter.clone()] }),
            )
            .await?
            .deleted_count;
        Ok((ids.len() as u64, removed))
    }
}

impl MongoStore {
    /// Deletes every document of the store's collections (jobs, name settings, execution
    /// records) and keeps the collections with their indexes: a process still scheduling
    /// meanwhile writes into a collection whose unique indexes hold, where a dropped one
    /// would be created again without them. Collections of others in the same database are
    /// left alone. Takes time in proportion to what it deletes; an error leaves the rest for
    /// the next call.
    pub(crate) async fn delete_documents(&self) -> Result<()> {
        for collection in [&self.inner.jobs, &self.inner.names, &self.inner.executions] {
            collection
                .delete_many(mongodb::bson::doc! {})
                .await
                .map_err(|e| crate::error::mongo_error("removing every document", e))?;
        }
        Ok(())
    }
}
