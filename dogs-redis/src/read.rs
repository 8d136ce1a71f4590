//! Reading jobs and execution records, each with its state by the server's clock.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use dogs_core::{
    stats_since, Error, ErrorKind, Execution, ExecutionMinute, ExecutionQuery, ExecutionStatus,
    Job, JobCounts, JobId, JobKind, JobQuery, JobState, Result,
};
use redis::Value as RedisValue;

use crate::decode::{from_millis, job_from_hash, readable};
use crate::error::{bad_reply, parse_error, redis_error};
use crate::store::RedisStore;

impl RedisStore {
    pub(crate) async fn read_job(&self, id: &JobId) -> Result<Option<Job>> {
        if id.as_str().parse::<u64>().is_err() {
            return Ok(None);
        }
        let (now, mut hashes) = self.jobs_with_time(&[id.as_str().to_owned()]).await?;
        let job = match hashes.pop() {
            Some(hash) if !hash.is_empty() => job_from_hash(id.as_str(), &hash, now)?,
            _ => None,
        };
        let Some(mut job) = job else {
            return Ok(None);
        };
        job.paused = self.paused_names().await?.contains(&job.name);
        Ok(Some(job))
    }

    pub(crate) async fn read_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let mut page = self.read_unmarked(query).await?;
        let paused = self.paused_names().await?;
        for job in &mut page {
            job.paused = paused.contains(&job.name);
        }
        Ok(page)
    }

    /// The page `query` asks for, `paused` left unset: found by `lua/list.lua`, then read.
    pub(crate) async fn read_unmarked(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let state = query.state.map(JobState::as_str).unwrap_or("");
        let mut found: Vec<String> = self
            .inner
            .scripts
            .list
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(query.name.as_deref().unwrap_or(""))
            .arg(state)
            .arg(query.offset)
            .arg(query.limit)
            .run(self, "listing jobs")
            .await?;
        if found.is_empty() {
            return Err(bad_reply("listing jobs"));
        }
        let ids = found.split_off(1);
        let (now, hashes) = self.jobs_with_time(&ids).await?;
        let jobs = readable(
            ids.iter()
                .zip(&hashes)
                .filter(|(_, hash)| !hash.is_empty())
                .map(|(id, hash)| job_from_hash(id, hash, now)),
        );
        // A job that changed state between finding and reading is left out of this page.
        Ok(jobs
            .into_iter()
            .filter(|job| query.state.is_none_or(|s| job.state == s))
            .collect())
    }

    /// Counts from the per-name indexes, by `lua/counts.lua`.
    pub(crate) async fn read_counts(&self) -> Result<Vec<JobCounts>> {
        let reply: Vec<RedisValue> = self
            .inner
            .scripts
            .counts
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .run(self, "counting jobs")
            .await?;
        let mut counts = Vec::new();
        for entry in reply.get(1..).unwrap_or_default().chunks(5) {
            let [name, pending, scheduled, running, failed] = entry else {
                return Err(bad_reply("counting jobs"));
            };
            let number = |v: &RedisValue| -> Result<u64> {
                redis::from_redis_value_ref::<i64>(v)
                    .map(|n| u64::try_from(n).unwrap_or(0))
                    .map_err(|e| parse_error("a count", e))
            };
            counts.push(JobCounts {
                name: redis::from_redis_value_ref(name)
                    .map_err(|e| parse_error("a job name", e))?,
                pending: number(pending)?,
                scheduled: number(scheduled)?,
                running: number(running)?,
                failed: number(failed)?,
                paused: false,
            });
        }
        counts.sort_by(|a, b| a.name.cmp(&b.name));
        JobCounts::mark_paused(&mut counts, &self.read_settings().await?);
        Ok(counts)
    }

    pub(crate) async fn read_recurrent(&self) -> Result<Vec<Job>> {
        let by_name: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.key(&["recurrent"]))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("listing recurrent jobs", e))?;
        let ids: Vec<String> = by_name.into_iter().map(|(_, id)| id).collect();
        let (now, hashes) = self.jobs_with_time(&ids).await?;
        let mut jobs = readable(
            ids.iter()
                .zip(&hashes)
                .filter(|(_, hash)| !hash.is_empty())
                .map(|(id, hash)| job_from_hash(id, hash, now)),
        );
        jobs.retain(|job| job.kind == JobKind::Recurrent);
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        let paused = self.paused_names().await?;
        for job in &mut jobs {
            job.paused = paused.contains(&job.name);
        }
        Ok(jobs)
    }

    /// Reads the per-minute figures the scripts keep (`P:minute:<ms>`), one hash per minute.
    pub(crate) async fn read_stats(&self, since: DateTime<Utc>) -> Result<Vec<ExecutionMinute>> {
        let now = from_millis(self.server_ms().await?);
        let since = stats_since(since, now);
        let mut minutes = Vec::new();
        let mut at = since;
        while at <= now {
            minutes.push(at);
            at += TimeDelta::minutes(1);
        }
        let mut pipe = redis::pipe();
        for minute in &minutes {
            pipe.hgetall(self.key(&["minute", &minute.timestamp_millis().to_string()]));
        }
        let hashes: Vec<HashMap<String, i64>> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("reading execution figures", e))?;
        let mut out = Vec::new();
        for (minute, hash) in minutes.into_iter().zip(hashes) {
            let mut statuses: Vec<&str> = hash
                .keys()
                .filter_map(|field| field.strip_suffix(":n"))
                .collect();
            statuses.sort_unstable();
            for status in statuses {
                let Some(status_kind) = ExecutionStatus::parse(status) else {
                    continue;
                };
                let get = |suffix: &str| {
                    hash.get(&format!("{status}:{suffix}"))
                        .map_or(0, |n| u64::try_from(*n).unwrap_or(0))
                };
                out.push(ExecutionMinute {
                    minute,
                    status: status_kind,
                    count: get("n"),
                    total_ms: get("ms"),
                    max_ms: get("max"),
                });
            }
        }
        Ok(out)
    }

    pub(crate) async fn read_executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let now = self.server_ms().await?;
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.key(&["execs", &query.name]))
            .arg("+inf")
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("reading executions", e))?;
        let mut found = Vec::new();
        let mut skipped = 0;
        for chunk in ids.chunks(200) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hget(self.key(&["exec", id]), "json");
            }
            let jsons: Vec<Option<String>> = pipe
                .query_async(&mut self.conn())
                .await
                .map_err(|e| redis_error("reading executions", e))?;
            let records = readable(jsons.into_iter().flatten().map(|json| {
                serde_json::from_str::<Execution>(&json)
                    .map(Some)
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Corrupt,
                            "Redis: an execution record cannot be read",
                        )
                        .with_source(e)
                    })
            }));
            for record in records {
                if record.expires_at.timestamp_millis() <= now
                    || query.job_id.as_ref().is_some_and(|id| *id != record.job_id)
                {
                    continue;
                }
                if skipped < query.offset {
                    skipped += 1;
                    continue;
                }
                found.push(record);
                if found.len() >= query.limit {
                    return Ok(found);
                }
            }
        }
        Ok(found)
    }
}
