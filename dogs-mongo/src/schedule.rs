//! Scheduling: event jobs (an insert, with the unique index of live jobs keeping duplicates
//! out), and the upsert of each recurrent job's one record.

use chrono::{DateTime, Utc};
use dogs_core::{
    Error, ErrorKind, JobId, NewJob, OnDuplicate, Outcomes, RecurrentRegistration, Result,
    Scheduled,
};
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use mongodb::options::ReturnDocument;

use crate::decode::{date, job_id, json_to_bson, unique_key};
use crate::error::{is_duplicate, mongo_error, DUPLICATE_KEY};
use crate::store::MongoStore;

impl MongoStore {
    fn job_doc(&self, job: &NewJob, now: DateTime<Utc>) -> Result<(ObjectId, Document)> {
        let id = ObjectId::new();
        let run_at = dogs_core::truncate_millis(job.run_at.resolve(now));
        let mut doc = doc! {
            "_id": id,
            "name": &job.name,
            "kind": "event",
            "params": json_to_bson(&job.params)?,
            "priority": job.priority,
            "run_at": date(run_at),
            "tries": 0_i64,
            "state": if run_at <= now { "pending" } else { "scheduled" },
            "demoted": false,
            "created_at": date(now),
        };
        if let Some(unique) = &job.unique_identifier {
            doc.insert("uid", unique.as_str());
            doc.insert("ukey", unique_key(&job.name, unique));
        }
        if let Some(trace) = &job.trace_context {
            doc.insert("trace_context", trace.as_str());
        }
        Ok((id, doc))
    }

    async fn find_live(&self, name: &str, unique: &str) -> Result<Option<JobId>> {
        let found = self
            .timed(
                "finding a duplicate job",
                self.inner
                    .jobs
                    .find_one(doc! { "ukey": unique_key(name, unique) })
                    .projection(doc! { "_id": 1 })
                    .selection_criteria(crate::store::primary()),
            )
            .await?;
        found.map(|d| job_id(&d)).transpose()
    }

    pub(crate) async fn schedule_one(&self, job: NewJob) -> Result<Scheduled> {
        job.validate(self.inner.max_params_bytes)?;
        let now = self.server_now().await?;
        for _ in 0..5 {
            let (id, doc) = self.job_doc(&job, now)?;
            match self
                .timed("scheduling a job", self.inner.jobs.insert_one(doc))
                .await
            {
                Ok(_) => return Ok(Scheduled::Created(JobId::new(id.to_hex()))),
                Err(e) if is_duplicate(&e) => {
                    let unique = job.unique_identifier.as_deref().unwrap_or_default();
                    if job.on_duplicate == OnDuplicate::Replace {
                        if let Some(replaced) = self.replace_pending(&job, unique, now).await? {
                            return Ok(Scheduled::Replaced(replaced));
                        }
                    }
                    if let Some(existing) = self.find_live(&job.name, unique).await? {
                        return Ok(Scheduled::Duplicate(existing));
                    }
                    // The live job went away in between: try again.
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "job '{}' kept conflicting with a job being removed",
                job.name
            ),
        ))
    }

    /// Gives the pending live job of `job`'s name and unique identifier `job`'s params, priority
    /// and run time; its id, or `None` when there is no pending one (it runs, or is gone).
    async fn replace_pending(
        &self,
        job: &NewJob,
        unique: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<JobId>> {
        let run_at = dogs_core::truncate_millis(job.run_at.resolve(now));
        let replaced = self
            .timed(
                "replacing a job",
                self.inner
                    .jobs
                    .find_one_and_update(
                        doc! {
                            "ukey": unique_key(&job.name, unique),
                            "$or": [
                                { "state": { "$in": ["pending", "scheduled"] } },
                                // Its lease ran out: pending too.
                                { "state": "running", "locked_until": { "$lte": date(now) } },
                            ],
                        },
                        doc! {
                            "$set": {
                                "params": json_to_bson(&job.params)?,
                                "priority": job.priority,
                                "run_at": date(run_at),
                                "state": if run_at <= now { "pending" } else { "scheduled" },
                            },
                            // A lease that ran out is no longer its holder's.
                            "$unset": {
                                "token": "", "locked_until": "", "locked_by": "",
                                "was_stale": "", "progress": "",
                            },
                        },
                    )
                    .projection(doc! { "_id": 1 }),
            )
            .await?;
        replaced.map(|d| job_id(&d)).transpose()
    }

    pub(crate) async fn schedule_all(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>> {
        if jobs.iter().any(|j| j.on_duplicate == OnDuplicate::Replace) {
            // Replacing is judged entry by entry, in order, against what earlier ones did.
            let mut outcomes = Vec::with_capacity(jobs.len());
            for job in jobs {
                outcomes.push(self.schedule_one(job).await);
            }
            return Ok(outcomes);
        }
        let now = self.server_now().await?;
        let (mut outcomes, valid) =
            Outcomes::check(jobs, |job| job.validate(self.inner.max_params_bytes));
        let mut docs = Vec::new();
        let mut placed: Vec<(usize, ObjectId, NewJob)> = Vec::new();
        for (i, job) in valid {
            match self.job_doc(&job, now) {
                Ok((id, doc)) => {
                    placed.push((i, id, job));
                    docs.push(doc);
                }
                Err(e) => outcomes.set(i, Err(e)),
            }
        }
        let mut duplicates: Vec<usize> = Vec::new();
        if !docs.is_empty() {
            let inserted = tokio::time::timeout(
                self.inner.request_timeout,
                self.inner.jobs.insert_many(docs).ordered(false),
            )
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "MongoDB: scheduling jobs got no answer within {:?}",
                    self.inner.request_timeout
                ))
            })?;
            match inserted {
                Ok(_) => {}
                Err(e) => match e.kind.as_ref() {
                    mongodb::error::ErrorKind::InsertMany(failure)
                        if failure.write_concern_error.is_none() =>
                    {
                        for write in failure.write_errors.iter().flatten() {
                            if write.code == DUPLICATE_KEY {
                                duplicates.push(write.index);
                            } else if let Some((i, _, _)) = placed.get(write.index) {
                                outcomes.set(
                                    *i,
                                    Err(Error::new(
                                        ErrorKind::Backend,
                                        format!("MongoDB refused the job: {}", write.message),
                                    )),
                                );
                            }
                        }
                    }
                    _ => return Err(mongo_error("scheduling jobs", e)),
                },
            }
        }
        for (n, (i, id, job)) in placed.into_iter().enumerate() {
            if outcomes.is_set(i) {
                continue;
            }
            let outcome = if duplicates.contains(&n) {
                let unique = job.unique_identifier.as_deref().unwrap_or_default();
                match self.find_live(&job.name, unique).await? {
                    Some(existing) => Ok(Scheduled::Duplicate(existing)),
                    None => self.schedule_one(job).await,
                }
            } else {
                Ok(Scheduled::Created(JobId::new(id.to_hex())))
            };
            outcomes.set(i, outcome);
        }
        Ok(outcomes.finish())
    }

    pub(crate) async fn register(&self, job: RecurrentRegistration) -> Result<JobId> {
        job.validate()?;
        let now = date(self.server_now().await?);
        let next = date(dogs_core::truncate_millis(job.next_run_at));
        let is_new = doc! { "$eq": [{ "$type": "$created_at" }, "missing"] };
        let changed = doc! { "$ne": [{ "$ifNull": ["$schedule_key", ""] }, &job.schedule_key] };
        let next_state = doc! { "$cond": [{ "$lte": [next, now] }, "pending", "scheduled"] };
        let update = vec![doc! { "$set": {
            "priority": job.priority,
            "params": { "$ifNull": ["$params", Bson::Null] },
            "tries": { "$ifNull": ["$tries", 0_i64] },
            "demoted": { "$ifNull": ["$demoted", false] },
            "run_at": { "$cond": [is_new.clone(), now, { "$cond": [changed.clone(), next, "$run_at"] }] },
            "state": { "$cond": [is_new.clone(), "pending", { "$cond": [
                { "$and": [changed, { "$in": ["$state", ["scheduled", "pending"]] }] },
                next_state,
                "$state",
            ] }] },
            "schedule_key": &job.schedule_key,
            "created_at": { "$ifNull": ["$created_at", now] },
        } }];
        for _ in 0..5 {
            let result = self
                .timed(
                    "registering a recurrent job",
                    self.inner
                        .jobs
                        .find_one_and_update(
                            doc! { "name": &job.name, "kind": "recurrent" },
                            update.clone(),
                        )
                        .upsert(true)
                        .return_document(ReturnDocument::After)
                        .projection(doc! { "_id": 1 }),
                )
                .await;
            match result {
                Ok(Some(doc)) => return job_id(&doc),
                // Some servers answer a racing upsert with no document; the next attempt
                // finds the record the other registration wrote.
                Ok(None) => continue,
                // Two registrations raced to insert; the next attempt updates the winner's.
                Err(e) if is_duplicate(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("recurrent job '{}' kept conflicting", job.name),
        ))
    }
}
