//! Claiming: moving what has become due into the ready sets, leasing the first due jobs of the
//! requested names, and telling when the next one is due.

use chrono::{DateTime, Utc};
use dogs_core::{
    add_duration, truncate_millis, ClaimRequest, Claimed, ClaimedJob, Lease, LeaseToken,
    NameSettings,
};

use crate::state::{Effects, LeaseState, Slot, State};

/// How many expired failed jobs a claim removes, at most.
const CLAIM_PRUNES: usize = 64;

impl State {
    /// Moves the jobs of `names` that have become due or whose lease ran out to the ready sets
    /// (the latter demoted), and drops failed jobs past their retention.
    fn promote<'a>(&mut self, names: impl Iterator<Item = &'a str>, now: DateTime<Utc>) {
        for name in names {
            while let Some(&(run_at, seq)) = self.future.get(name).and_then(|set| set.first()) {
                if run_at > now {
                    break;
                }
                self.update(seq, |r| r.slot = Slot::Ready);
            }
            while let Some(&(until, seq)) = self.leases.get(name).and_then(|set| set.first()) {
                if until > now {
                    break;
                }
                // Its execution went stale: it waits behind every other due job.
                self.update(seq, |r| {
                    r.slot = Slot::Ready;
                    r.demoted = true;
                });
            }
        }
        // A few expired failed jobs per claim (reads hide the rest until they are pruned), so no
        // claim waits on a long removal.
        for _ in 0..CLAIM_PRUNES {
            match self.failed.first() {
                Some(&(expires_at, seq)) if expires_at <= now => self.remove(seq),
                _ => break,
            }
        }
    }

    pub(crate) fn claim(
        &mut self,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> (Claimed, Effects) {
        self.promote(request.names.iter().map(|n| n.name.as_str()), now);
        // What each name may still take in this claim: its cap in the request, cut by its
        // concurrency limit less its live leases (expired ones were just reclaimed); none
        // when it is paused.
        let mut room: Vec<usize> = Vec::with_capacity(request.names.len());
        for n in &request.names {
            let left = match self.settings.get(&n.name).cloned() {
                Some(s) if s.paused => 0,
                Some(NameSettings {
                    concurrency_limit: Some(limit),
                    ..
                }) => {
                    let live = self.leases.get(&n.name).map_or(0, |set| set.len())
                        + self.still_cancelling(&n.name, now);
                    n.cap(request.limit)
                        .min((limit as usize).saturating_sub(live))
                }
                _ => n.cap(request.limit),
            };
            room.push(left);
        }
        let mut jobs = Vec::new();
        let mut effects = Effects::default();
        while jobs.len() < request.limit {
            let best = request
                .names
                .iter()
                .enumerate()
                .filter(|(i, _)| room[*i] > 0)
                .filter_map(|(i, n)| {
                    let key = self.ready.get(&n.name)?.first()?;
                    Some((*key, n.lock_time, i))
                })
                .min_by_key(|(key, _, _)| *key);
            let Some(((_, _, _, seq), lock_time, i)) = best else {
                break;
            };
            room[i] -= 1;
            let until = truncate_millis(add_duration(now, lock_time));
            let mut was_stale = false;
            effects.merge(self.update(seq, |record| {
                was_stale = record.lease.is_some() || record.demoted;
                record.demoted = false;
                record.tries = record.tries.saturating_add(1);
                record.lease = Some(LeaseState {
                    token: LeaseToken::generate(),
                    until,
                    by: request.worker_id.clone(),
                });
                record.slot = Slot::Leased;
            }));
            if let Some(record) = self.jobs.get(&seq) {
                if let Some(lease) = &record.lease {
                    jobs.push(ClaimedJob {
                        job: record.view(now),
                        lease: Lease {
                            job_id: record.id(),
                            token: lease.token.clone(),
                        },
                        locked_until: until,
                        claimed_at: now,
                        was_stale,
                    });
                }
            }
        }
        let next_due = if jobs.len() < request.limit {
            // A paused name is left out: resuming it wakes the workers.
            self.next_due_of(
                request
                    .names
                    .iter()
                    .map(|n| n.name.as_str())
                    .filter(|n| !self.settings.get(*n).is_some_and(|s| s.paused)),
                now,
            )
        } else {
            Some(now)
        };
        (
            Claimed {
                jobs,
                next_due,
                now,
            },
            effects,
        )
    }

    /// When the earliest job of `names` becomes claimable: now when one is due, else the
    /// earliest run time or lease end, `None` when there is no job of those names.
    fn next_due_of<'a>(
        &self,
        names: impl Iterator<Item = &'a str>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut next: Option<DateTime<Utc>> = None;
        for name in names {
            if self.ready.get(name).is_some_and(|set| !set.is_empty()) {
                return Some(now);
            }
            let firsts = [
                self.future.get(name).and_then(|set| set.first()),
                self.leases.get(name).and_then(|set| set.first()),
            ];
            for (at, _) in firsts.into_iter().flatten() {
                next = Some(next.map_or(*at, |n| n.min(*at)));
            }
        }
        next
    }

    /// The first instant after `after` at which a future job of any name becomes due or a
    /// lease ends.
    pub(crate) fn next_due_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use std::ops::Bound;
        let range = (Bound::Excluded((after, u64::MAX)), Bound::Unbounded);
        self.future
            .values()
            .chain(self.leases.values())
            .filter_map(|set| set.range(range).next().map(|(at, _)| *at))
            .min()
    }
}
