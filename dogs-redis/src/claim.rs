//! Claiming: one script call (`lua/claim.lua`) promotes the requested names' due jobs,
//! reclaims their leases that ran out, leases the first due jobs in claim order, fails for good
//! the records it cannot read, and says when the next job is due.

use std::sync::atomic::Ordering;

use dogs_core::{ClaimRequest, Claimed, Error, ErrorKind, JobId, Lease, LeaseToken, Result};
use redis::Value as RedisValue;

use crate::decode::{claimed_from_record, from_millis, millis, ClaimedRecord};
use crate::error::{bad_reply, parse_error};
use crate::store::RedisStore;

impl RedisStore {
    pub(crate) async fn claim_jobs(&self, request: &ClaimRequest) -> Result<Claimed> {
        request.validate()?;
        if request.limit == 0 || request.names.is_empty() {
            let now = from_millis(self.server_ms().await?);
            return Ok(Claimed::full(Vec::new(), now));
        }
        let token_base = uuid::Uuid::new_v4().simple().to_string();
        let mut invocation = self.inner.scripts.claim.key(self.key(&["seq"]));
        invocation
            .arg(&self.inner.tag)
            .arg(request.limit)
            .arg(&request.worker_id)
            .arg(&token_base);
        for name in &request.names {
            invocation
                .arg(&name.name)
                .arg(millis(name.lock_time))
                .arg(name.cap(request.limit));
        }
        let reply: Vec<RedisValue> = invocation.run(self, "claiming jobs").await?;
        let mut reply = reply.into_iter();
        let now: i64 = reply
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or_else(|| bad_reply("claiming jobs"))?;
        let commands: u64 = reply
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or_else(|| bad_reply("claiming jobs"))?;
        let next_due: i64 = reply
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or_else(|| bad_reply("claiming jobs"))?;
        self.inner
            .last_claim_commands
            .store(commands, Ordering::Relaxed);
        let claimed_at = from_millis(now);
        let mut claimed = Vec::new();
        // The script has leased the jobs: from here on, nothing may fail the claim, or the
        // jobs it leased would wait for their leases to end.
        for value in reply {
            let bytes: Vec<u8> = match redis::from_redis_value(value) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::error!(error = %parse_error("a claimed job", e), "skipping a claimed job that cannot be read");
                    continue;
                }
            };
            // Bytes that are not UTF-8 (written by hand) are read as well as they can be.
            let text = String::from_utf8_lossy(&bytes);
            let record: ClaimedRecord = match serde_json::from_str(&text) {
                Ok(record) => record,
                Err(e) => {
                    tracing::error!(
                        error = %Error::new(ErrorKind::Corrupt, "Redis: a claimed job cannot be read").with_source(e),
                        "skipping a claimed job that cannot be read; it runs again once its lease ends"
                    );
                    continue;
                }
            };
            if let Some(id) = &record.unreadable {
                // The script failed it for good already; say so here.
                tracing::error!(
                    job.id = %id,
                    error = record.error.as_deref().unwrap_or_default(),
                    "a claimed job record cannot be read; it is failed for good"
                );
                continue;
            }
            let lease = Lease {
                job_id: JobId::new(record.id.clone()),
                token: LeaseToken::new(record.token.clone()),
            };
            match claimed_from_record(record, claimed_at) {
                Ok(job) => claimed.push(job),
                Err(e) => dogs_core::fail_unreadable(self, &lease, &e).await,
            }
        }
        Ok(Claimed {
            jobs: claimed,
            next_due: (next_due >= 0).then(|| from_millis(next_due)),
            now: claimed_at,
        })
    }
}
