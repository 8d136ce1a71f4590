//! Claiming: one call of the schema's `claim` function per batch, which promotes due jobs,
//! reclaims leases that ran out, leases the first due jobs with `FOR UPDATE SKIP LOCKED`, and
//! says when the next job is due when it leases fewer than asked.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use dogs_core::{ClaimRequest, Claimed, JobId, Lease, LeaseToken, Result};
use sqlx::postgres::PgRow;

use crate::decode::{claimed_from_row, get};
use crate::error::db_error;
use crate::sql::{millis, parse_id};
use crate::store::{Conn, PostgresStore};

/// The claim's candidate query with its inputs named (the schema placeholder is left in).
pub(crate) fn claim_candidates(names: &str, lock_ms: &str, limit: &str, now: &str) -> String {
    include_str!("claim_candidates.sql")
        .replace("{names}", names)
        .replace("{lock_ms}", lock_ms)
        .replace("{limit}", limit)
        .replace("{now}", now)
}

/// The capped claim's candidate query with its inputs named (the schema placeholder is left in).
pub(crate) fn claim_capped_candidates(
    names: &str,
    lock_ms: &str,
    caps: &str,
    limit: &str,
    now: &str,
) -> String {
    include_str!("claim_capped_candidates.sql")
        .replace("{names}", names)
        .replace("{lock_ms}", lock_ms)
        .replace("{caps}", caps)
        .replace("{limit}", limit)
        .replace("{now}", now)
}

impl PostgresStore {
    /// The plan PostgreSQL chooses now for the claim's candidate query (`EXPLAIN`), to check on
    /// real data that claims read the `jobs_claim` index of due jobs only.
    pub async fn explain_claim(&self, names: &[&str], limit: usize) -> Result<String> {
        let query = claim_capped_candidates("$1", "$2", "$4", "$3::int", "\"{schema}\".ms_now()")
            .replace("{schema}", &self.inner.schema);
        let query = &format!("EXPLAIN {query}");
        let lock_ms = &vec![0i64; names.len()];
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let caps = &vec![limit; names.len()];
        let lines: Vec<String> = self
            .attempt("explaining the claim", move |mut conn: Conn| async move {
                let outcome = sqlx::query_scalar(query)
                    .bind(names)
                    .bind(lock_ms)
                    .bind(limit)
                    .bind(caps)
                    .persistent(self.persistent())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("explaining the claim", e));
                (conn, outcome)
            })
            .await?;
        Ok(lines.join("\n"))
    }

    pub(crate) async fn claim_jobs(&self, request: &ClaimRequest) -> Result<Claimed> {
        request.validate()?;
        if request.limit == 0 || request.names.is_empty() {
            let now = dogs_core::JobStore::now(self).await?;
            return Ok(Claimed::full(Vec::new(), now));
        }
        let names: &Vec<&str> = &request.names.iter().map(|n| n.name.as_str()).collect();
        let lock_ms: &Vec<i64> = &request.names.iter().map(|n| millis(n.lock_time)).collect();
        let limit = i32::try_from(request.limit).unwrap_or(i32::MAX);
        let caps: &Vec<i32> = &request
            .names
            .iter()
            .map(|n| i32::try_from(n.cap(request.limit)).unwrap_or(i32::MAX))
            .collect();
        let rows = self
            .attempt("claiming jobs", move |mut conn: Conn| async move {
                let outcome = sqlx::query(&self.inner.sql.claim)
                    .bind(names)
                    .bind(lock_ms)
                    .bind(caps)
                    .bind(limit)
                    .bind(&request.worker_id)
                    .persistent(self.persistent())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("claiming jobs", e));
                (conn, outcome)
            })
            .await?;
        // The statement has committed: from here on, nothing may fail the claim, or the jobs
        // it leased would wait for their leases to end.
        let mut claimed = Claimed::default();
        let mut meta = None;
        for row in &rows {
            if get::<Option<i64>>(row, "id").ok().flatten().is_none() {
                meta = Some(row);
                continue;
            }
            if let Ok(now) = get(row, "claimed_at") {
                claimed.now = now;
            }
            match claimed_from_row(row) {
                Ok(job) => claimed.jobs.push(job),
                Err(e) => {
                    if let Some(lease) = lease_of(row) {
                        dogs_core::fail_unreadable(self, &lease, &e).await;
                    }
                }
            }
        }
        match meta {
            Some(row) => {
                if let Ok(now) = get(row, "claimed_at") {
                    claimed.now = now;
                }
                claimed.next_due =
                    get::<Option<DateTime<Utc>>>(row, "next_due").unwrap_or(Some(claimed.now));
            }
            None => claimed.next_due = Some(claimed.now),
        }
        claimed.jobs.sort_by_key(|c| {
            (
                c.was_stale,
                Reverse(c.job.priority),
                c.job.run_at,
                parse_id(&c.job.id),
            )
        });
        Ok(claimed)
    }
}

/// The lease of a claimed row, even one whose other columns cannot be read.
fn lease_of(row: &PgRow) -> Option<Lease> {
    Some(Lease {
        job_id: JobId::new(get::<i64>(row, "id").ok()?.to_string()),
        token: LeaseToken::new(get::<String>(row, "lease_token").ok()?),
    })
}
