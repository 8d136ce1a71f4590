//! Claiming: one script call (`lua/claim.lua`) promotes the requested names' due jobs,
//! reclaims their leases that ran out, leases the first due jobs in claim order, fails for good
//! the records it cannot read, and says when the next job is due.

use std::sync::atomic::Ordering;

use dogs_core::{ClaimRequest, Claimed, Error, ErrorKind, JobId, Lease, LeaseToken, Result};
use redis::Value as RedisValue;

use crate::decode::{claimed_from_record, from_millis, millis, ClaimedRecord};
use crate::error::{bad_reply, parse_error, redis_error};
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
            invocation.arg(&name.name).arg(millis(name.lock_time));
        }
        let reply: Vec<RedisValue> = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("claiming jobs", e))?;
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
        for value in reply {
            let text: String =
                redis::from_redis_value(value).map_err(|e| parse_error("a claimed job", e))?;
            let record: ClaimedRecord = serde_json::from_str(&text).map_err(|e| {
                Error::new(ErrorKind::Corrupt, "Redis: a claimed job cannot be read").with_source(e)
            })?;
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
