//! Reading jobs and execution records, each with its state by the server's clock.

use dogs_core::{Error, ErrorKind, Execution, ExecutionQuery, Job, JobId, JobQuery, Result};

use crate::decode::{job_from_hash, readable};
use crate::error::redis_error;
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

    /// The page `query` asks for, `paused` left unset.
    pub(crate) async fn read_unmarked(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let index = match &query.name {
            Some(name) => self.key(&["byname", name]),
            None => self.key(&["jobs"]),
        };
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(index)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("listing jobs", e))?;
        let (now, hashes) = self.jobs_with_time(&ids).await?;
        let jobs = readable(
            ids.iter()
                .zip(&hashes)
                .filter(|(_, hash)| !hash.is_empty())
                .map(|(id, hash)| job_from_hash(id, hash, now)),
        );
        Ok(query.page(jobs, |id| id.as_str().parse::<u64>().unwrap_or(u64::MAX)))
    }

    pub(crate) async fn read_executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
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
