//! What an operator does to jobs and names: retrying failed jobs (or running pending ones now),
//! pausing names and limiting how many of a name run at once (the names collection, which
//! claims read), cancelling a running job, and a running job's progress.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use dogs_core::{
    Error, ErrorKind, JobId, Lease, NameSettings, Result, RetryBatch, CANCELLED_ERROR,
    CANCELLED_RETENTION,
};
use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};

use crate::decode::{date, json_to_bson, oid, opt_date, unique_key};
use crate::error::is_duplicate;
use crate::store::{primary, MongoStore};

/// Whether a job document holds a live lease at `now`.
fn is_live(doc: &Document, now: DateTime<Utc>) -> bool {
    doc.get_str("state").ok() == Some("running")
        && opt_date(doc, "locked_until").is_some_and(|at| at > now)
}

/// Whether a job cancelled while it ran still has the lease it had: its handler may still be
/// stopping, so it counts against its name's limit and is not retried.
fn still_stopping(doc: &Document, now: DateTime<Utc>) -> bool {
    doc.get_str("state").ok() == Some("failed")
        && doc.get_str("last_error").ok() == Some(CANCELLED_ERROR)
        && opt_date(doc, "locked_until").is_some_and(|at| at > now)
}

/// The filter of a name's jobs that count against its concurrency limit at `now`: live
/// leases, and jobs cancelled while they ran whose lease has not ended.
pub(crate) fn holding(name: &str, now: DateTime<Utc>) -> Document {
    doc! {
        "name": name,
        "locked_until": { "$gt": date(now) },
        "$or": [
            { "state": "running" },
            { "state": "failed", "last_error": CANCELLED_ERROR },
        ],
    }
}

impl MongoStore {
    /// Reads a job by id on the primary.
    async fn job_doc_by(&self, filter: Document) -> Result<Option<Document>> {
        self.timed(
            "reading a job",
            self.inner
                .jobs
                .find_one(filter)
                .selection_criteria(primary()),
        )
        .await
    }

    pub(crate) async fn retry_job(&self, id: ObjectId) -> Result<bool> {
        let now = self.server_now().await?;
        let Some(job) = self.job_doc_by(doc! { "_id": id }).await? else {
            return Ok(false);
        };
        let state = job.get_str("state").unwrap_or_default();
        if state == "failed" && opt_date(&job, "expires_at").is_some_and(|at| at <= now) {
            return Ok(false);
        }
        if is_live(&job, now) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "job {} is running; cancel it first to run it again",
                    id.to_hex()
                ),
            ));
        }
        if state == "failed" {
            return self.put_back(&job, now).await;
        }
        let updated = self
            .timed(
                "running a job now",
                self.inner.jobs.update_one(
                    doc! { "_id": id, "state": { "$ne": "failed" } },
                    vec![doc! { "$set": {
                        "run_at": { "$min": ["$run_at", date(now)] },
                        "state": { "$cond": [{ "$eq": ["$state", "scheduled"] }, "pending", "$state"] },
                    } }],
                ),
            )
            .await?;
        Ok(updated.matched_count == 1)
    }

    /// Puts a failed job back to run now, taking its unique identifier again: `Conflict` when
    /// another live job holds it.
    async fn put_back(&self, job: &Document, now: DateTime<Utc>) -> Result<bool> {
        let Ok(id) = job.get_object_id("_id") else {
            return Ok(false);
        };
        if still_stopping(job, now) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("job {} may still be stopping", id.to_hex()),
            ));
        }
        let mut set = doc! {
            "state": "pending",
            "run_at": { "$min": ["$run_at", date(now)] },
            "tries": 0_i64,
            "demoted": false,
        };
        if let (Ok(name), Ok(uid)) = (job.get_str("name"), job.get_str("uid")) {
            set.insert("ukey", unique_key(name, uid));
        }
        let update = vec![
            doc! { "$set": set },
            doc! { "$unset": ["last_error", "expires_at", "token", "locked_until", "locked_by", "was_stale", "progress"] },
        ];
        match self
            .timed(
                "retrying a job",
                self.inner.jobs.update_one(
                    doc! {
                        "_id": id,
                        "state": "failed",
                        // Not one cancelled while it ran whose lease has not ended.
                        "$nor": [{ "last_error": CANCELLED_ERROR, "locked_until": { "$gt": date(now) } }],
                    },
                    update,
                ),
            )
            .await
        {
            Ok(updated) => Ok(updated.matched_count == 1),
            Err(e) if is_duplicate(&e) => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "job {} cannot run again: another live job holds its unique identifier",
                    id.to_hex()
                ),
            )),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn retry_failed_jobs(
        &self,
        name: &str,
        after: Option<&JobId>,
        limit: usize,
    ) -> Result<RetryBatch> {
        let now = self.server_now().await?;
        let mut filter =
            doc! { "name": name, "state": "failed", "expires_at": { "$gt": date(now) } };
        if let Some(after) = after {
            // An id of another format goes on after every id of this store.
            match oid(after) {
                Some(after) => filter.insert("_id", doc! { "$gt": after }),
                None => return Ok(RetryBatch::default()),
            };
        }
        let failed: Vec<Document> = self
            .timed("finding failed jobs", async {
                self.inner
                    .jobs
                    .find(filter)
                    .sort(doc! { "_id": 1 })
                    .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                    .selection_criteria(primary())
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        let mut batch = RetryBatch {
            retried: 0,
            full: failed.len() >= limit,
            last: failed
                .last()
                .and_then(|d| d.get_object_id("_id").ok())
                .map(|id| JobId::new(id.to_hex())),
        };
        for job in &failed {
            match self.put_back(job, now).await {
                Ok(true) => batch.retried += 1,
                Ok(false) => {}
                Err(e) if e.kind() == ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
        }
        Ok(batch)
    }

    /// Cancels a job found by `filter`: removed when it is not running; failed as cancelled,
    /// with its unique identifier freed and its lease end kept, when it is (one write fenced
    /// by the lease's own token). A job cancelled while it ran whose lease has not ended is
    /// left as it is (its handler may still be stopping).
    pub(crate) async fn cancel_filter(&self, filter: Document) -> Result<bool> {
        for _ in 0..5 {
            let now = self.server_now().await?;
            let Some(job) = self.job_doc_by(filter.clone()).await? else {
                return Ok(false);
            };
            let state = job.get_str("state").unwrap_or_default();
            if state == "failed" && opt_date(&job, "expires_at").is_some_and(|at| at <= now) {
                return Ok(false);
            }
            if still_stopping(&job, now) {
                return Ok(true);
            }
            let (Ok(id), Ok(token)) = (job.get_object_id("_id"), job.get_str("token")) else {
                if self.remove_unless_live(&job, now).await? {
                    return Ok(true);
                }
                continue;
            };
            if !is_live(&job, now) {
                if self.remove_unless_live(&job, now).await? {
                    return Ok(true);
                }
                continue;
            }
            if job.get_str("kind").ok() != Some("event") {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "job {} is a running recurrent job: pause its name to stop it",
                        id.to_hex()
                    ),
                ));
            }
            if self.fail_cancelled(id, token, now).await? {
                return Ok(true);
            }
            // Its lease changed hands or it ended meanwhile: look again.
        }
        Err(Error::new(
            ErrorKind::Conflict,
            "the job kept changing while it was being cancelled",
        ))
    }

    /// Fails a running job as cancelled under its lease's token, keeping `locked_until`;
    /// whether the token was still current. In a transaction where there are transactions,
    /// the document is moved (deleted, then inserted) so its unique identifier is freed on
    /// every server, as failing an execution does.
    async fn fail_cancelled(&self, id: ObjectId, token: &str, now: DateTime<Utc>) -> Result<bool> {
        let filter = doc! { "_id": id, "token": token, "state": "running" };
        let expires_at = date(dogs_core::add_duration(now, CANCELLED_RETENTION));
        let jobs = &self.inner.jobs;
        if !self.inner.replicated {
            let updated = self
                .timed(
                    "cancelling a job",
                    jobs.update_one(
                        filter,
                        vec![
                            doc! { "$set": {
                                "state": "failed", "demoted": false,
                                "last_error": CANCELLED_ERROR, "expires_at": expires_at,
                            } },
                            doc! { "$unset": ["token", "locked_by", "ukey", "was_stale"] },
                        ],
                    ),
                )
                .await?;
            return Ok(updated.matched_count == 1);
        }
        self.timed("cancelling a job", async {
            let mut session = self.inner.database.client().start_session().await?;
            session
                .start_transaction()
                .with_options(self.transaction_options())
                .await?;
            let Some(mut cancelled) = jobs
                .find_one_and_delete(filter)
                .session(&mut session)
                .await?
            else {
                let _ = session.abort_transaction().await;
                return Ok(false);
            };
            for field in ["token", "locked_by", "ukey", "was_stale"] {
                cancelled.remove(field);
            }
            cancelled.insert("state", "failed");
            cancelled.insert("demoted", false);
            cancelled.insert("last_error", CANCELLED_ERROR);
            cancelled.insert("expires_at", expires_at);
            jobs.insert_one(cancelled).session(&mut session).await?;
            crate::finish::commit(&mut session).await?;
            Ok(true)
        })
        .await
    }

    /// Removes `job` unless it holds a live lease by now; whether it removed it.
    async fn remove_unless_live(&self, job: &Document, now: DateTime<Utc>) -> Result<bool> {
        let Some(id) = job.get("_id").cloned() else {
            return Ok(false);
        };
        let deleted = self
            .timed(
                "cancelling a job",
                self.inner.jobs.delete_one(doc! {
                    "_id": id,
                    "$nor": [{ "state": "running", "locked_until": { "$gt": date(now) } }],
                }),
            )
            .await?;
        Ok(deleted.deleted_count == 1)
    }

    pub(crate) async fn change_settings(&self, name: &str, change: Document) -> Result<()> {
        self.timed(
            "changing a job name's settings",
            self.inner
                .names
                .update_one(doc! { "_id": name }, doc! { "$set": change })
                .upsert(true),
        )
        .await?;
        // A name left with no setting is forgotten, so claims of it read nothing.
        self.timed(
            "changing a job name's settings",
            self.inner.names.delete_one(doc! {
                "_id": name,
                "paused": { "$ne": true },
                "concurrency_limit": { "$not": { "$gt": 0 } },
            }),
        )
        .await?;
        // Resuming, or a new limit, may make due jobs claimable.
        self.inner.wake_local();
        Ok(())
    }

    /// The settings of `names` (every name when `None`) that hold any.
    pub(crate) async fn read_settings(&self, names: Option<&[&str]>) -> Result<Vec<NameSettings>> {
        let filter = match names {
            Some(names) => doc! { "_id": { "$in": names } },
            None => doc! {},
        };
        let docs: Vec<Document> = self
            .timed("reading job name settings", async {
                self.inner
                    .names
                    .find(filter)
                    .sort(doc! { "_id": 1 })
                    .selection_criteria(primary())
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| {
                let name = d.get_str("_id").ok()?.to_owned();
                let paused = d.get_bool("paused").unwrap_or(false);
                let concurrency_limit = match d.get("concurrency_limit") {
                    Some(Bson::Int64(l)) => u32::try_from(*l).ok().filter(|l| *l > 0),
                    Some(Bson::Int32(l)) => u32::try_from(*l).ok().filter(|l| *l > 0),
                    _ => None,
                };
                (paused || concurrency_limit.is_some()).then_some(NameSettings {
                    name,
                    paused,
                    concurrency_limit,
                })
            })
            .collect())
    }

    /// The settings of the requested names, by name.
    pub(crate) async fn settings_of(
        &self,
        names: &[&str],
    ) -> Result<HashMap<String, NameSettings>> {
        Ok(self
            .read_settings(Some(names))
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect())
    }

    pub(crate) async fn store_progress(
        &self,
        lease: &Lease,
        progress: &serde_json::Value,
    ) -> Result<()> {
        dogs_core::validate_progress(progress, self.inner.max_params_bytes)?;
        let Some(id) = oid(&lease.job_id) else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        let updated = self
            .timed(
                "storing a job's progress",
                self.inner.jobs.update_one(
                    doc! { "_id": id, "token": lease.token.as_str(), "state": "running" },
                    doc! { "$set": { "progress": json_to_bson(progress)? } },
                ),
            )
            .await?;
        if updated.matched_count == 0 {
            return Err(Error::lock_lost(&lease.job_id));
        }
        Ok(())
    }
}
