//! Claiming: promotes the requested names' due jobs and reclaims their leases that ran out, then
//! in rounds finds the first due jobs in claim order, leases them in one update under a fresh
//! token, and reads back the ones it won. Every read is on the primary; a claim that fails after
//! leasing gives back what it leased; a claim short because other claimers won says more are
//! due.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use dogs_core::{ClaimRequest, Claimed, JobId, Lease, LeaseToken, Result};
use futures::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Document};

use crate::decode::{claimed_from_doc, date};
use crate::store::{primary, MongoStore};

/// How many find-and-lease rounds one claim takes at most when other claimers win its
/// candidates.
const ROUNDS: usize = 3;

/// The claim's candidate filter: due jobs of `names`.
pub(crate) fn candidates_filter(names: &[&str], now: DateTime<Utc>) -> Document {
    doc! { "name": { "$in": names }, "state": "pending", "run_at": { "$lte": date(now) } }
}

/// The claim order: not demoted first, then priority, run time, scheduling order.
pub(crate) fn claim_sort() -> Document {
    doc! { "demoted": 1, "priority": -1, "run_at": 1, "_id": 1 }
}

/// Makes the next read-back of a claim fail, as a network error after the update would.
#[cfg(test)]
pub(crate) static FAIL_READ_BACK: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

impl MongoStore {
    /// The plan the server chooses now for a claim's candidate query (`explain`), to check on
    /// real data that claims read the `claim` index of due jobs only.
    pub async fn explain_claim(&self, names: &[&str], limit: i64) -> Result<Document> {
        let now = self.server_now().await?;
        let command = doc! {
            "explain": {
                "find": self.inner.jobs.name(),
                "filter": candidates_filter(names, now),
                "sort": claim_sort(),
                "hint": "claim",
                "limit": limit,
            },
            "verbosity": "queryPlanner",
        };
        self.timed(
            "explaining the claim",
            self.inner
                .database
                .run_command(command)
                .selection_criteria(primary()),
        )
        .await
    }

    pub(crate) async fn claim_jobs(&self, request: &ClaimRequest) -> Result<Claimed> {
        request.validate()?;
        let now = self.server_now().await?;
        if request.limit == 0 || request.names.is_empty() {
            return Ok(Claimed::full(Vec::new(), now));
        }
        let names: Vec<&str> = request.names.iter().map(|n| n.name.as_str()).collect();
        let date_now = date(now);
        // The names' due scheduled jobs become pending; their leases that ran out are
        // reclaimed, demoted.
        self.timed(
            "promoting due jobs",
            self.inner.jobs.update_many(
                doc! { "name": { "$in": &names }, "$or": [
                    { "state": "scheduled", "run_at": { "$lte": date_now } },
                    { "state": "running", "locked_until": { "$lte": date_now } },
                ] },
                vec![doc! { "$set": {
                    "demoted": { "$or": ["$demoted", { "$eq": ["$state", "running"] }] },
                    "state": "pending",
                } }],
            ),
        )
        .await?;
        // Paused names are left out; a name capped in this claim, or limited across
        // processes, is claimed on its own.
        let settings = self.settings_of(&names).await?;
        let mut open: Vec<&str> = Vec::new();
        let mut alone: Vec<(&str, usize, Option<u32>)> = Vec::new();
        for n in &request.names {
            match settings.get(&n.name) {
                Some(s) if s.paused => {}
                Some(s) if s.concurrency_limit.is_some() => {
                    alone.push((&n.name, n.cap(request.limit), s.concurrency_limit));
                }
                _ if n.cap(request.limit) < request.limit => {
                    alone.push((&n.name, n.cap(request.limit), None));
                }
                _ => open.push(&n.name),
            }
        }
        let mut won = Vec::new();
        let mut lost_races = false;
        for (name, cap, limit) in alone {
            let wanted = cap.min(request.limit - won.len());
            if wanted == 0 {
                continue;
            }
            let (lost, docs) = match limit {
                None => self.claim_rounds(request, &[name], wanted, now).await?,
                Some(limit) => {
                    self.claim_limited(request, name, wanted, limit, now)
                        .await?
                }
            };
            lost_races |= lost;
            won.extend(docs);
        }
        if !open.is_empty() && won.len() < request.limit {
            let (lost, docs) = self
                .claim_rounds(request, &open, request.limit - won.len(), now)
                .await?;
            lost_races |= lost;
            won.extend(docs);
        }
        let names: Vec<&str> = names
            .into_iter()
            .filter(|n| !settings.get(*n).is_some_and(|s| s.paused))
            .collect();
        let mut claimed = Vec::with_capacity(won.len());
        for doc in won {
            let lease = match (doc.get_object_id("_id"), doc.get_str("token")) {
                (Ok(id), Ok(token)) => Lease {
                    job_id: JobId::new(id.to_hex()),
                    token: LeaseToken::new(token),
                },
                _ => continue,
            };
            match claimed_from_doc(doc, now) {
                Ok(job) => claimed.push(job),
                Err(e) => dogs_core::fail_unreadable(self, &lease, &e).await,
            }
        }
        claimed.sort_by_key(|c| {
            (
                c.was_stale,
                Reverse(c.job.priority),
                c.job.run_at,
                c.job.id.clone(),
            )
        });
        let next_due = if claimed.len() >= request.limit || lost_races {
            Some(now)
        } else {
            self.next_due(&names, now).await?
        };
        Ok(Claimed {
            jobs: claimed,
            next_due,
            now,
        })
    }

    /// Takes up to `limit` due jobs of `names` in find-and-lease rounds; whether it lost races
    /// to other claimers, and the documents it won.
    async fn claim_rounds(
        &self,
        request: &ClaimRequest,
        names: &[&str],
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<(bool, Vec<Document>)> {
        let mut won = Vec::new();
        let mut lost_races = false;
        for _ in 0..ROUNDS {
            let wanted = i64::try_from(limit - won.len()).unwrap_or(i64::MAX);
            let (seen, docs) = self.claim_round(request, names, wanted, now).await?;
            lost_races = docs.len() < seen;
            won.extend(docs);
            // Stop when every candidate was won or there were none: the queue is drained.
            if !lost_races || won.len() >= limit {
                break;
            }
        }
        Ok((lost_races, won))
    }

    /// Takes up to `wanted` due jobs of a name limited to `limit` running executions across
    /// processes: under the name's claim lock (a field of its settings document, taken with
    /// one conditional update and ending by itself should its holder die), counts its live
    /// leases and takes at most what the limit leaves. A claimer that finds the lock taken
    /// takes none and says it lost a race.
    async fn claim_limited(
        &self,
        request: &ClaimRequest,
        name: &str,
        wanted: usize,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<(bool, Vec<Document>)> {
        let lock = uuid::Uuid::new_v4().simple().to_string();
        let held_until = dogs_core::add_duration(now, self.inner.request_timeout * 3);
        let taken = self
            .timed(
                "taking a job name's claim lock",
                self.inner.names.update_one(
                    doc! { "_id": name, "$or": [
                        { "claim_lock": { "$exists": false } },
                        { "claim_lock_until": { "$lte": date(now) } },
                    ] },
                    doc! { "$set": { "claim_lock": &lock, "claim_lock_until": date(held_until) } },
                ),
            )
            .await?;
        if taken.matched_count == 0 {
            return Ok((true, Vec::new()));
        }
        let claimed = async {
            let live = self
                .timed(
                    "counting running jobs",
                    self.inner
                        .jobs
                        .count_documents(crate::operate::holding(name, now))
                        .selection_criteria(primary()),
                )
                .await?;
            let room = u64::from(limit).saturating_sub(live);
            let wanted = wanted.min(usize::try_from(room).unwrap_or(usize::MAX));
            if wanted == 0 {
                return Ok((false, Vec::new()));
            }
            self.claim_rounds(request, &[name], wanted, now).await
        }
        .await;
        let released = self
            .timed(
                "releasing a job name's claim lock",
                self.inner.names.update_one(
                    doc! { "_id": name, "claim_lock": &lock },
                    doc! { "$unset": { "claim_lock": "", "claim_lock_until": "" } },
                ),
            )
            .await;
        match (claimed, released) {
            (Ok((lost, docs)), Ok(released)) if released.matched_count == 1 => Ok((lost, docs)),
            // The lock ended before the claim did (a slow claim), so another claimer may have
            // counted without these leases: what this claim leased is given back.
            (Ok((_, docs)), Ok(_)) => {
                self.give_back_docs(&docs).await;
                Ok((true, Vec::new()))
            }
            (Ok((_, docs)), Err(e)) => {
                self.give_back_docs(&docs).await;
                Err(e)
            }
            (Err(e), _) => Err(e),
        }
    }

    /// Gives back leased documents a claim will not return.
    async fn give_back_docs(&self, docs: &[Document]) {
        let (ids, tokens): (Vec<ObjectId>, Vec<String>) = docs
            .iter()
            .filter_map(|d| {
                Some((
                    d.get_object_id("_id").ok()?,
                    d.get_str("token").ok()?.to_owned(),
                ))
            })
            .unzip();
        if !ids.is_empty() {
            self.give_back(&ids, &tokens).await;
        }
    }

    /// Takes up to `limit` of the first due jobs: finds them in claim order, leases them in
    /// one update under a fresh token, and reads back the ones this claim won. When the update
    /// or the read-back fails, what it may have leased is given back before the error returns.
    async fn claim_round(
        &self,
        request: &ClaimRequest,
        names: &[&str],
        limit: i64,
        now: DateTime<Utc>,
    ) -> Result<(usize, Vec<Document>)> {
        let candidates: Vec<Document> = self
            .timed("finding due jobs", async {
                self.inner
                    .jobs
                    .find(candidates_filter(names, now))
                    .sort(claim_sort())
                    // The partial index of pending jobs; a planner that tried `by_name` first
                    // would read every job of the name, future ones included.
                    .hint(mongodb::options::Hint::Name("claim".to_owned()))
                    .limit(limit)
                    .projection(doc! { "_id": 1 })
                    .selection_criteria(primary())
                    .await?
                    .try_collect()
                    .await
            })
            .await?;
        let ids: Vec<ObjectId> = candidates
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect();
        if ids.is_empty() {
            return Ok((0, Vec::new()));
        }
        // Each lease's token is this claim's random base and the job's id.
        let base = uuid::Uuid::new_v4().simple().to_string();
        let tokens: Vec<String> = ids
            .iter()
            .map(|id| format!("{base}:{}", id.to_hex()))
            .collect();
        // Each name's lease end, chosen per document (dates are computed here, not by the server).
        let branches: Vec<Document> = request
            .names
            .iter()
            .map(|n| {
                let until = date(dogs_core::add_duration(now, n.lock_time));
                doc! { "case": { "$eq": ["$name", &n.name] }, "then": until }
            })
            .collect();
        let locked_until = doc! { "$switch": { "branches": branches, "default": date(now) } };
        let update = vec![doc! { "$set": {
            "was_stale": { "$or": [{ "$ne": [{ "$type": "$token" }, "missing"] }, "$demoted"] },
            "state": "running",
            "token": { "$concat": [format!("{base}:"), { "$toString": "$_id" }] },
            "locked_until": locked_until,
            "locked_by": &request.worker_id,
            "demoted": false,
            // A count written by hand as something else stays as it is, so the update goes
            // through and the read back fails that one job alone.
            "tries": { "$cond": [
                { "$in": [{ "$type": "$tries" }, ["int", "long", "double", "decimal"]] },
                { "$add": ["$tries", 1] },
                "$tries",
            ] },
        } }];
        let leased = async {
            self.timed(
                "leasing jobs",
                self.inner.jobs.update_many(
                    doc! { "_id": { "$in": &ids }, "state": "pending", "run_at": { "$lte": date(now) } },
                    update,
                ),
            )
            .await?;
            #[cfg(test)]
            if FAIL_READ_BACK.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(dogs_core::Error::unavailable(
                    "MongoDB: reading leased jobs failed (a test's failure)",
                ));
            }
            self.timed("reading leased jobs", async {
                self.inner
                    .jobs
                    .find(doc! { "_id": { "$in": &ids }, "token": { "$in": &tokens } })
                    .selection_criteria(primary())
                    .await?
                    .try_collect::<Vec<Document>>()
                    .await
            })
            .await
        };
        match leased.await {
            Ok(won) => Ok((ids.len(), won)),
            Err(e) => {
                self.give_back(&ids, &tokens).await;
                Err(e)
            }
        }
    }

    /// Gives back the leases a failed claim may hold: their jobs are due again at once, with
    /// their tries given back and their `was_stale` kept.
    async fn give_back(&self, ids: &[ObjectId], tokens: &[String]) {
        let released = self
            .timed(
                "giving back leased jobs",
                self.inner.jobs.update_many(
                    doc! { "_id": { "$in": ids }, "token": { "$in": tokens }, "state": "running" },
                    vec![
                        doc! { "$set": {
                            "state": "pending",
                            "demoted": { "$ifNull": ["$was_stale", false] },
                            "tries": { "$cond": [
                                { "$in": [{ "$type": "$tries" }, ["int", "long", "double", "decimal"]] },
                                { "$max": [0, { "$subtract": ["$tries", 1] }] },
                                "$tries",
                            ] },
                        } },
                        doc! { "$unset": ["token", "locked_until", "locked_by", "was_stale"] },
                    ],
                ),
            )
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "giving back the leases of a failed claim failed; those jobs run once their leases end");
        }
    }

    /// When the earliest job of `names` becomes claimable: the earliest run time of a pending
    /// job (now, or a little later when this process's estimate of the server's clock is behind
    /// the clock that promoted it), else of a scheduled one, or the earliest lease end; `None`
    /// when there is no job of those names.
    async fn next_due(&self, names: &[&str], now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let mut next: Option<DateTime<Utc>> = None;
        for (state, field) in [
            ("pending", "run_at"),
            ("scheduled", "run_at"),
            ("running", "locked_until"),
        ] {
            let first = self
                .timed(
                    "finding the next due job",
                    self.inner
                        .jobs
                        .find_one(doc! { "name": { "$in": names }, "state": state })
                        .sort(doc! { field: 1 })
                        .projection(doc! { field: 1 })
                        .selection_criteria(primary()),
                )
                .await?;
            if let Some(at) = first.and_then(|d| d.get_datetime(field).ok().copied()) {
                let at = crate::decode::from_date(at).max(now);
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            if next == Some(now) {
                break;
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use dogs_core::{ClaimRequest, ErrorKind, JobStore, NewJob};

    use super::FAIL_READ_BACK;
    use crate::MongoStore;

    /// The test server's URL (`DOGS_MONGO_URL`); without one the test says so and passes,
    /// unless `DOGS_REQUIRE` names `mongo`.
    fn test_url() -> Option<String> {
        let url = std::env::var("DOGS_MONGO_URL")
            .ok()
            .filter(|u| !u.is_empty());
        if url.is_none() {
            let required = std::env::var("DOGS_REQUIRE").unwrap_or_default();
            assert!(
                !required.split([',', ' ']).any(|b| b.trim() == "mongo"),
                "DOGS_REQUIRE names mongo but DOGS_MONGO_URL is unset"
            );
            println!("mongo: skipped: DOGS_MONGO_URL is unset");
        }
        url
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_that_fails_after_leasing_gives_back_what_it_leased() {
        let Some(url) = test_url() else { return };
        let database = format!("dogs_t_give_back_{:08x}", fastrand::u32(..));
        let store = MongoStore::builder()
            .url(&url)
            .database(&database)
            .connect()
            .await
            .unwrap();
        for i in 0..3 {
            store
                .schedule(NewJob::new("given-back", serde_json::json!(i)))
                .await
                .unwrap();
        }
        let request = ClaimRequest::new(["given-back"], Duration::from_secs(600), 3);
        FAIL_READ_BACK.store(true, Ordering::SeqCst);
        let failed = store.claim(&request).await;
        assert_eq!(
            failed.map(|c| c.jobs.len()).map_err(|e| e.kind()),
            Err(ErrorKind::Unavailable)
        );
        let claimed = store.claim(&request).await.unwrap();
        store.database().drop().await.unwrap();
        assert_eq!(
            claimed.jobs.len(),
            3,
            "the failed claim's leases were given back: the jobs are claimable at once"
        );
        for job in &claimed.jobs {
            assert_eq!(job.job.tries, 1, "the failed claim's try was given back");
        }
    }
}
