//! Ending claimed jobs' executions, every write fenced by the lease token (`{_id, token}`): an
//! outcome and its execution record in one transaction where the deployment has transactions
//! (a batch of outcomes in one, each entry judged alone), else the outcome then the record;
//! extending a lease; and a record on its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{Completion, Error, ErrorKind, Execution, Finish, Lease, Outcomes, Result};
use mongodb::bson::{doc, Document};
use mongodb::error::{TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::ClientSession;

use crate::decode::{date, execution_to_doc, oid};
use crate::store::MongoStore;

/// How many times a transaction that meets a transient error is run again.
const TRANSACTION_RETRIES: usize = 3;

/// The filter of a live lease: the job with this id and token, leased (or reclaimable).
fn leased(lease: &Lease) -> Option<Document> {
    Some(doc! {
        "_id": oid(&lease.job_id)?,
        "token": lease.token.as_str(),
        "state": { "$in": ["running", "pending"] },
    })
}

impl MongoStore {
    pub(crate) async fn extend(&self, lease: &Lease, lock_time: Duration) -> Result<DateTime<Utc>> {
        dogs_core::validate_lock_time(lock_time)?;
        let Some(filter) = leased(lease) else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        let until = dogs_core::add_duration(self.server_now().await?, lock_time);
        let updated = self
            .timed(
                "extending a lease",
                self.inner.jobs.update_one(
                    filter,
                    doc! { "$set": { "locked_until": date(until), "state": "running", "demoted": false } },
                ),
            )
            .await?;
        if updated.matched_count == 1 {
            Ok(until)
        } else {
            Err(Error::lock_lost(&lease.job_id))
        }
    }

    pub(crate) async fn finish_one(
        &self,
        lease: &Lease,
        completion: Completion,
        execution: Option<&Execution>,
    ) -> Result<()> {
        let item = Finish {
            lease: lease.clone(),
            completion,
            execution: execution.cloned(),
        };
        let mut outcomes = self.finish_all(vec![item]).await?;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(Error::new(ErrorKind::Backend, "no outcome")))
    }

    /// Ends a batch. With transactions, the whole batch in one (an entry whose token is not
    /// current changes nothing and does not abort the others); when that transaction fails for
    /// another reason than a transient one, each entry in a transaction of its own, so its error
    /// is its own.
    pub(crate) async fn finish_all(&self, items: Vec<Finish>) -> Result<Vec<Result<()>>> {
        let (mut outcomes, valid) = Outcomes::check(items, |item| item.completion.validate());
        if !valid.is_empty() {
            let now = self.server_now().await?;
            let entries: Vec<&Finish> = valid.iter().map(|(_, item)| item).collect();
            let results = if self.inner.replicated {
                match self.in_transaction(&entries, now).await {
                    Ok(applied) => applied.into_iter().map(Ok).collect(),
                    // The store is away: the same for every entry; the caller retries.
                    Err(e) if entries.len() == 1 || e.kind() == ErrorKind::Unavailable => entries
                        .iter()
                        .map(|_| Err(Error::new(e.kind(), e.message().to_owned())))
                        .collect(),
                    // One entry the server refuses aborts the transaction: each entry alone, so
                    // its error is its own.
                    Err(_) => {
                        let alone = entries.iter().map(|entry| async move {
                            self.in_transaction(std::slice::from_ref(entry), now)
                                .await
                                .map(|mut applied| applied.pop().unwrap_or(false))
                        });
                        futures::future::join_all(alone).await
                    }
                }
            } else {
                let mut each = Vec::with_capacity(entries.len());
                for entry in &entries {
                    each.push(self.without_transaction(entry, now).await);
                }
                each
            };
            for ((i, item), result) in valid.iter().zip(results) {
                let outcome = match result {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(Error::lock_lost(&item.lease.job_id)),
                    Err(e) => Err(e),
                };
                outcomes.set(*i, outcome);
            }
        }
        Ok(outcomes.finish())
    }

    /// Applies `entries` in one transaction, run again when it meets a transient error; per
    /// entry, whether its token was current. Either every write of the batch is saved, or none.
    async fn in_transaction(&self, entries: &[&Finish], now: DateTime<Utc>) -> Result<Vec<bool>> {
        let records = records_of(entries)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self
                .timed("saving job outcomes", async {
                    let mut session = self.inner.database.client().start_session().await?;
                    session
                        .start_transaction()
                        .with_options(self.transaction_options())
                        .await?;
                    let mut applied = Vec::with_capacity(entries.len());
                    for (entry, record) in entries.iter().zip(&records) {
                        match self.apply(entry, record.as_ref(), now, &mut session).await {
                            Ok(done) => applied.push(done),
                            Err(e) => {
                                let _ = session.abort_transaction().await;
                                return Err(e);
                            }
                        }
                    }
                    commit(&mut session).await?;
                    Ok(applied)
                })
                .await;
            match outcome {
                Err(e) if attempt < TRANSACTION_RETRIES && is_transient(&e) => continue,
                other => return other,
            }
        }
    }

    /// Applies one entry without a transaction (a standalone server): the outcome, then its
    /// record. A crash between the two loses the record, never the outcome.
    async fn without_transaction(&self, entry: &Finish, now: DateTime<Utc>) -> Result<bool> {
        let records = records_of(std::slice::from_ref(&entry))?;
        let record = records.first().and_then(Option::as_ref);
        self.timed("saving a job's outcome", async {
            let mut session = self.inner.database.client().start_session().await?;
            self.apply(entry, record, now, &mut session).await
        })
        .await
    }

    /// The fenced write of one entry and, when it applied, its record, in `session`; whether
    /// the token was current.
    async fn apply(
        &self,
        entry: &Finish,
        record: Option<&Document>,
        now: DateTime<Utc>,
        session: &mut ClientSession,
    ) -> mongodb::error::Result<bool> {
        let Some(filter) = leased(&entry.lease) else {
            return Ok(false);
        };
        let jobs = &self.inner.jobs;
        let unset_lease = doc! { "$unset": ["token", "locked_until", "locked_by", "progress"] };
        let applied = match &entry.completion {
            Completion::Remove => {
                jobs.delete_one(filter)
                    .session(&mut *session)
                    .await?
                    .deleted_count
                    == 1
            }
            Completion::Fail { error, retain_for } if self.inner.replicated => {
                // In a transaction, failing moves the document: some MongoDB-compatible servers
                // keep a unique index entry after an update changes or removes the indexed
                // field, and a delete followed by an insert frees the unique identifier
                // everywhere. The transaction makes the two one write.
                let Some(mut failed) = jobs
                    .find_one_and_delete(filter)
                    .session(&mut *session)
                    .await?
                else {
                    return Ok(false);
                };
                for field in ["token", "locked_until", "locked_by", "ukey", "was_stale"] {
                    failed.remove(field);
                }
                failed.insert("state", "failed");
                failed.insert("demoted", false);
                failed.insert("last_error", error.as_str());
                failed.insert(
                    "expires_at",
                    date(dogs_core::add_duration(now, *retain_for)),
                );
                jobs.insert_one(failed).session(&mut *session).await?;
                true
            }
            completion => {
                let pipeline = update_of(completion, now, unset_lease);
                jobs.update_one(filter, pipeline)
                    .session(&mut *session)
                    .await?
                    .matched_count
                    == 1
            }
        };
        if applied {
            if let Some(record) = record {
                // Inserted when absent: recording the same execution twice keeps one, without
                // a duplicate key error (which would abort a transaction).
                let id = record
                    .get("_id")
                    .cloned()
                    .unwrap_or(mongodb::bson::Bson::Null);
                self.inner
                    .executions
                    .update_one(doc! { "_id": id }, doc! { "$setOnInsert": record.clone() })
                    .upsert(true)
                    .session(&mut *session)
                    .await?;
            }
        }
        Ok(applied)
    }

    pub(crate) async fn record(&self, execution: &Execution) -> Result<()> {
        let record = execution_to_doc(execution)?;
        match self
            .timed(
                "recording an execution",
                self.inner.executions.insert_one(record),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if crate::error::is_duplicate(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The update of a job that `completion` makes (every completion but `Remove`; `Fail` here is
/// the one update of a standalone server).
fn update_of(completion: &Completion, now: DateTime<Utc>, unset_lease: Document) -> Vec<Document> {
    match completion {
        Completion::Reschedule {
            run_at,
            priority,
            reset_tries,
        } => {
            let at = dogs_core::truncate_millis(run_at.resolve(now));
            let mut set = doc! {
                "run_at": date(at),
                "state": if at <= now { "pending" } else { "scheduled" },
                "demoted": false,
            };
            if let Some(priority) = priority {
                set.insert("priority", priority);
            }
            if *reset_tries {
                set.insert("tries", 0_i64);
            }
            vec![doc! { "$set": set }, unset_lease]
        }
        Completion::Fail { error, retain_for } => vec![
            doc! { "$set": {
                "state": "failed",
                "demoted": false,
                "last_error": error.as_str(),
                "expires_at": date(dogs_core::add_duration(now, *retain_for)),
            } },
            doc! { "$unset": ["token", "locked_until", "locked_by", "ukey", "was_stale"] },
        ],
        Completion::Demote => vec![
            doc! { "$set": { "state": "pending", "demoted": true, "run_at": date(now) } },
            unset_lease,
        ],
        Completion::Release => vec![
            doc! { "$set": {
                "tries": { "$max": [0, { "$subtract": ["$tries", 1] }] },
                "state": { "$cond": [{ "$lte": ["$run_at", date(now)] }, "pending", "scheduled"] },
            } },
            unset_lease,
        ],
        Completion::Snooze { run_at } => {
            let at = dogs_core::truncate_millis(run_at.resolve(now));
            vec![
                doc! { "$set": {
                    "run_at": date(at),
                    "state": if at <= now { "pending" } else { "scheduled" },
                    "demoted": false,
                    "tries": { "$max": [0, { "$subtract": ["$tries", 1] }] },
                } },
                unset_lease,
            ]
        }
        Completion::Remove => Vec::new(),
    }
}

/// The execution records of `entries`, as documents.
fn records_of(entries: &[&Finish]) -> Result<Vec<Option<Document>>> {
    entries
        .iter()
        .map(|entry| entry.execution.as_ref().map(execution_to_doc).transpose())
        .collect()
}

/// Commits, again while the outcome of the commit is unknown (a network error).
pub(crate) async fn commit(session: &mut ClientSession) -> mongodb::error::Result<()> {
    let mut tries = 0;
    loop {
        tries += 1;
        match session.commit_transaction().await {
            Err(e) if tries < 3 && e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) => continue,
            other => return other,
        }
    }
}

/// Whether the transaction that returned `error` can run again as a whole.
fn is_transient(error: &Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(e) = cause.downcast_ref::<mongodb::error::Error>() {
            return e.contains_label(TRANSIENT_TRANSACTION_ERROR);
        }
        source = cause.source();
    }
    false
}
