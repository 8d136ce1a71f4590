//! What an operator does to jobs and names: retrying failed jobs (or running pending ones now),
//! pausing names, and limiting how many of a name run at once.

use chrono::{DateTime, Utc};
use dogs_core::{Error, ErrorKind, JobId, NameSettings, Result, RetryBatch};

use crate::state::{parse_id, Effects, Slot, State};

impl State {
    /// Puts a failed job back to run now (tries reset), or makes a pending one due now.
    pub(crate) fn retry(&mut self, id: &JobId, now: DateTime<Utc>) -> Result<(bool, Effects)> {
        let Some(seq) = parse_id(id) else {
            return Ok((false, Effects::default()));
        };
        let Some(record) = self.jobs.get(&seq) else {
            return Ok((false, Effects::default()));
        };
        if record.slot == Slot::Failed && record.expires_at.is_some_and(|at| at <= now) {
            return Ok((false, Effects::default()));
        }
        if record.is_live(now) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("job {seq} is running; cancel it first to run it again"),
            ));
        }
        let failed = record.slot == Slot::Failed;
        if record.still_stopping(now) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("job {seq} was cancelled while it ran and may still be stopping; retry it once its lease ends"),
            ));
        }
        if failed {
            if let Some(unique) = &record.unique_identifier {
                let key = (record.name.clone(), unique.clone());
                if let Some(other) = self.unique.get(&key).filter(|other| **other != seq) {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "job {seq} cannot run again: job {other} holds its unique identifier"
                        ),
                    ));
                }
                self.unique.insert(key, seq);
            }
        }
        let effects = self.update(seq, |record| {
            if failed {
                record.tries = 0;
                record.last_error = None;
                record.expires_at = None;
                record.lease = None;
                record.demoted = false;
                record.progress = None;
            }
            record.run_at = record.run_at.min(now);
            record.slot = Slot::Ready;
        });
        Ok((true, effects))
    }

    /// Puts back up to `limit` failed jobs of `name` after `after`, in scheduling order.
    pub(crate) fn retry_failed_batch(
        &mut self,
        name: &str,
        after: Option<&JobId>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> (RetryBatch, Effects) {
        let from = after
            .and_then(parse_id)
            .map_or(0, |seq| seq.saturating_add(1));
        let failed: Vec<u64> = self
            .jobs
            .range(from..)
            .filter(|(_, r)| {
                r.name == name && r.slot == Slot::Failed && r.expires_at.is_none_or(|at| at > now)
            })
            .map(|(seq, _)| *seq)
            .take(limit)
            .collect();
        let mut batch = RetryBatch {
            retried: 0,
            full: failed.len() >= limit,
            last: failed.last().map(|seq| JobId::new(seq.to_string())),
        };
        let mut all = Effects::default();
        for seq in failed {
            if let Ok((true, effects)) = self.retry(&JobId::new(seq.to_string()), now) {
                batch.retried += 1;
                all.merge(effects);
            }
        }
        (batch, all)
    }

    /// Pauses or resumes `name`; says whether a resumed name has due jobs to wake workers for.
    pub(crate) fn set_paused(&mut self, name: &str, paused: bool) -> Effects {
        self.change_settings(name, |s| s.paused = paused);
        Effects {
            due_now: !paused && self.ready.get(name).is_some_and(|set| !set.is_empty()),
            due_at: None,
        }
    }

    pub(crate) fn set_concurrency_limit(&mut self, name: &str, limit: Option<u32>) {
        self.change_settings(name, |s| s.concurrency_limit = limit);
    }

    /// Changes a name's settings; a name left with none is forgotten.
    fn change_settings(&mut self, name: &str, change: impl FnOnce(&mut NameSettings)) {
        let settings = self
            .settings
            .entry(name.to_owned())
            .or_insert_with(|| NameSettings {
                name: name.to_owned(),
                ..NameSettings::default()
            });
        change(settings);
        if !settings.paused && settings.concurrency_limit.is_none() {
            self.settings.remove(name);
        }
    }

    pub(crate) fn name_settings(&self) -> Vec<NameSettings> {
        self.settings.values().cloned().collect()
    }
}
