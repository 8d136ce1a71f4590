//! Claiming: in one write transaction, promotes the requested names' scheduled jobs whose time
//! has come, reclaims their leases that ran out (demoted: their execution went stale), works out
//! what each name may still take (paused, concurrency limits), picks the first due jobs per name
//! through `jobs_claim`, leases them with fresh random tokens, and says when the next one is
//! due when it leased fewer than asked.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use dogs_core::{ClaimName, ClaimRequest, Claimed, Result, CANCELLED_ERROR};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::decode::{claimed_from_row, get, lease_of};
use crate::error::db_error;
use crate::sql::{after, json_list, JOB_COLUMNS};
use crate::store::{SqliteStore, Write};

/// Makes the names' (`?1`) scheduled jobs whose time (`?2`) has come pending.
const PROMOTE: &str = "UPDATE jobs SET state = 'pending'
     WHERE state = 'scheduled' AND name IN (SELECT value FROM json_each(?1)) AND run_at <= ?2";

/// Makes the names' (`?1`) leases that ran out (`?2`) pending again, behind every other due job.
const RECLAIM: &str = "UPDATE jobs SET state = 'pending', demoted = 1
     WHERE state = 'running' AND name IN (SELECT value FROM json_each(?1)) AND locked_until <= ?2";

/// The stored settings of the names (`?1`).
const SETTINGS: &str = "SELECT name, paused, concurrency_limit FROM names
     WHERE name IN (SELECT value FROM json_each(?1))";

/// How many executions of a name (`?1`) hold live leases at `?2`: running jobs, and jobs
/// cancelled while they ran whose lease has not ended (their handlers may be stopping), found
/// through `jobs_cancelling`, whose condition names `CANCELLED_ERROR` (`{cancelled}`) as text.
const LIVE: &str = "SELECT
     (SELECT count(*) FROM jobs WHERE state = 'running' AND name = ?1 AND locked_until > ?2)
   + (SELECT count(*) FROM jobs WHERE state = 'failed' AND last_error = '{cancelled}'
          AND name = ?1 AND locked_until > ?2)";

/// The statement of [`LIVE`].
fn live_sql() -> String {
    LIVE.replace("{cancelled}", &CANCELLED_ERROR.replace('\'', "''"))
}

/// The first due jobs of one name, in claim order: `{name}` and `{room}` are its parameters.
///
/// Every pending job is claimable, as every job in the memory store's ready set is: its run
/// time has come, or its lease ran out (a reclaimed job is run again at once, demoted, even when
/// its run time was moved ahead meanwhile, by a recurrent job's new schedule).
const CANDIDATES: &str = "SELECT * FROM (SELECT id, name, demoted, priority, run_at,
         (lease_token IS NOT NULL OR demoted) AS stale
     FROM jobs WHERE state = 'pending' AND name = {name}
     ORDER BY demoted, priority DESC, run_at, id LIMIT {room})";

/// Leases the jobs `?3` (a JSON list of ids) until `?1` for worker `?2`.
const LEASE: &str = "UPDATE jobs SET state = 'running', tries = min(tries, 2147483646) + 1,
         demoted = 0, lease_token = lower(hex(randomblob(16))), locked_until = ?1, locked_by = ?2
     WHERE id IN (SELECT value FROM json_each(?3))
     RETURNING {columns}, lease_token";

/// When the names (`?1`) next have a claimable job: whether one is due, else the earliest run
/// time and lease end, each found per name through its index.
const NEXT_DUE: &str = "SELECT
     EXISTS (SELECT 1 FROM json_each(?1) AS n
             WHERE EXISTS (SELECT 1 FROM jobs WHERE state = 'pending' AND name = n.value)) AS due,
     (SELECT min((SELECT run_at FROM jobs WHERE state = 'scheduled' AND name = n.value
                  ORDER BY run_at LIMIT 1)) FROM json_each(?1) AS n) AS next_run,
     (SELECT min((SELECT locked_until FROM jobs WHERE state = 'running' AND name = n.value
                  ORDER BY locked_until LIMIT 1)) FROM json_each(?1) AS n) AS next_lease";

/// How many names one candidate query reads: SQLite takes at most 500 terms in a compound
/// `SELECT` (`SQLITE_MAX_COMPOUND_SELECT`), so a claim of more names reads them in chunks.
pub(crate) const NAMES_PER_QUERY: usize = 256;

/// The candidate query for `count` names: per name, its first due jobs, merged in claim order
/// and cut to the limit. Parameters: `?1` the limit, then (name, room) per name.
pub(crate) fn candidates_sql(count: usize) -> String {
    let parts: Vec<String> = (0..count)
        .map(|i| {
            CANDIDATES
                .replace("{name}", &format!("?{}", 2 + 2 * i))
                .replace("{room}", &format!("?{}", 3 + 2 * i))
        })
        .collect();
    format!(
        "SELECT id, name, stale, demoted, priority, run_at FROM ({})
         ORDER BY demoted, priority DESC, run_at, id LIMIT ?1",
        parts.join(" UNION ALL ")
    )
}

/// The lease statement.
fn lease_sql() -> String {
    LEASE.replace("{columns}", JOB_COLUMNS)
}

impl SqliteStore {
    /// The plans SQLite chooses now for the claim's statements (`EXPLAIN QUERY PLAN`), to check
    /// on real data that claims read the indexes of due jobs, future jobs and leases only, and
    /// scan no table: each statement's name, then its plan, one step a line.
    pub async fn explain_claim(&self, names: &[&str], limit: usize) -> Result<String> {
        let now = crate::sql::ms(crate::sql::clock_now());
        let list = json_list(names)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let statements: Vec<(&str, String)> = vec![
            ("promote", PROMOTE.to_owned()),
            ("reclaim", RECLAIM.to_owned()),
            ("settings", SETTINGS.to_owned()),
            ("live", live_sql()),
            (
                "candidates",
                candidates_sql(names.len().clamp(1, NAMES_PER_QUERY)),
            ),
            ("lease", lease_sql()),
            ("next_due", NEXT_DUE.to_owned()),
        ];
        let (list, statements) = (&list, &statements);
        self.read("explaining the claim", move |mut conn| async move {
            let mut text = String::new();
            for (name, sql) in statements {
                let explain = format!("EXPLAIN QUERY PLAN {sql}");
                let mut query = sqlx::query(&explain);
                query = match *name {
                    "live" => query.bind(names.first().copied().unwrap_or("")).bind(now),
                    "candidates" => {
                        let mut query = query.bind(limit);
                        for name in names.iter().take(NAMES_PER_QUERY) {
                            query = query.bind(*name).bind(limit);
                        }
                        query
                    }
                    "lease" => query.bind(now).bind("explain").bind("[]"),
                    _ => query.bind(list.as_str()).bind(now),
                };
                let rows = query
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("explaining the claim", e))?;
                text.push_str(name);
                text.push_str(":\n");
                for row in &rows {
                    let detail: String = get(row, "detail")?;
                    text.push_str("  ");
                    text.push_str(&detail);
                    text.push('\n');
                }
            }
            Ok(text)
        })
        .await
    }

    pub(crate) async fn claim_jobs(&self, request: &ClaimRequest) -> Result<Claimed> {
        request.validate()?;
        if request.names.is_empty() {
            // No job of no name: none due ever, unless none was asked for (the limit reached).
            let now = crate::sql::clock_now();
            return Ok(Claimed {
                jobs: Vec::new(),
                next_due: (request.limit == 0).then_some(now),
                now,
            });
        }
        // A claim of no job still promotes and reclaims, as the memory store's does.
        // A name asked for twice is claimed as its first entry says.
        let mut names: Vec<&ClaimName> = Vec::with_capacity(request.names.len());
        for name in &request.names {
            if !names.iter().any(|n| n.name == name.name) {
                names.push(name);
            }
        }
        let what = "claiming jobs";
        let mut write = self.begin(what).await?;
        let now = write.now;
        let now_ms = write.now_ms();
        let list = json_list(&names.iter().map(|n| n.name.as_str()).collect::<Vec<_>>())?;
        // Promoting, reclaiming and reading the settings in one round trip.
        let settings = sqlx::query(&format!("{PROMOTE}; {RECLAIM}; {SETTINGS}"))
            .bind(&list)
            .bind(now_ms)
            .fetch_all(write.conn())
            .await
            .map_err(|e| db_error(what, e))?;
        let rooms = rooms(&mut write, &names, &settings, request.limit).await?;
        let picked = pick(&mut write, &names, &rooms, request.limit).await?;
        let rows = lease(&mut write, &names, &picked, &request.worker_id).await?;
        let next_due = if rows.len() < request.limit {
            let open: Vec<&str> = names
                .iter()
                .zip(&rooms)
                .filter(|(_, room)| !room.paused)
                .map(|(n, _)| n.name.as_str())
                .collect();
            next_due(&mut write, &open).await?
        } else {
            Some(now)
        };
        self.commit(write, what).await?;
        // The transaction has committed: from here on, nothing may fail the claim, or the jobs
        // it leased would wait for their leases to end.
        let order: HashMap<i64, (usize, bool)> = picked
            .iter()
            .enumerate()
            .map(|(place, (id, _, stale))| (*id, (place, *stale)))
            .collect();
        let mut read: Vec<(usize, dogs_core::ClaimedJob)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let (place, stale) = row
                .try_get::<i64, _>("id")
                .ok()
                .and_then(|id| order.get(&id).copied())
                .unwrap_or((usize::MAX, false));
            match claimed_from_row(row, now, stale) {
                Ok(job) => read.push((place, job)),
                Err(e) => {
                    if let Some(lease) = lease_of(row) {
                        dogs_core::fail_unreadable(self, &lease, &e).await;
                    }
                }
            }
        }
        read.sort_by_key(|(place, _)| *place);
        Ok(Claimed {
            jobs: read.into_iter().map(|(_, job)| job).collect(),
            next_due,
            now,
        })
    }
}

/// What one name may take in this claim.
struct Room {
    paused: bool,
    left: usize,
}

/// What each name may still take: its cap in the request, cut by its concurrency limit less
/// its live leases (expired ones were just reclaimed); none when it is paused.
async fn rooms(
    write: &mut Write,
    names: &[&ClaimName],
    settings: &[SqliteRow],
    limit: usize,
) -> Result<Vec<Room>> {
    let what = "reading job name settings";
    let now = write.now_ms();
    let mut stored: HashMap<String, (bool, Option<i64>)> = HashMap::new();
    for row in settings {
        stored.insert(
            get(row, "name")?,
            (
                get::<i64>(row, "paused")? != 0,
                get::<Option<i64>>(row, "concurrency_limit")?,
            ),
        );
    }
    let mut rooms = Vec::with_capacity(names.len());
    for name in names {
        let cap = name.cap(limit);
        let room = match stored.get(&name.name) {
            Some((true, _)) => Room {
                paused: true,
                left: 0,
            },
            Some((false, Some(max))) => {
                let live: i64 = sqlx::query_scalar(&live_sql())
                    .bind(&name.name)
                    .bind(now)
                    .fetch_one(write.conn())
                    .await
                    .map_err(|e| db_error(what, e))?;
                let free = usize::try_from(max.saturating_sub(live).max(0)).unwrap_or(usize::MAX);
                Room {
                    paused: false,
                    left: cap.min(free),
                }
            }
            _ => Room {
                paused: false,
                left: cap,
            },
        };
        rooms.push(room);
    }
    Ok(rooms)
}

/// A job to lease: its id, its name, and whether its previous execution went stale.
type Pick = (i64, String, bool);

/// The jobs to lease, in claim order.
async fn pick(
    write: &mut Write,
    names: &[&ClaimName],
    rooms: &[Room],
    limit: usize,
) -> Result<Vec<Pick>> {
    let open: Vec<(&str, usize)> = names
        .iter()
        .zip(rooms)
        .filter(|(_, room)| room.left > 0)
        .map(|(n, room)| (n.name.as_str(), room.left))
        .collect();
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    // Each chunk's first jobs in claim order, then all of them merged in claim order (every
    // job of the claim's first `limit` is among its chunk's first `limit`) and cut to the limit.
    let mut found: Vec<((i64, i64, i64, i64), Pick)> = Vec::new();
    for chunk in open.chunks(NAMES_PER_QUERY) {
        let sql = candidates_sql(chunk.len());
        let mut query = sqlx::query(&sql).bind(count(limit));
        for (name, room) in chunk {
            query = query.bind(*name).bind(count(*room));
        }
        let rows = query
            .fetch_all(write.conn())
            .await
            .map_err(|e| db_error("picking jobs to claim", e))?;
        for row in &rows {
            let id = get::<i64>(row, "id")?;
            let order = (
                get::<i64>(row, "demoted")?,
                get::<i64>(row, "priority")?.saturating_neg(),
                get::<i64>(row, "run_at")?,
                id,
            );
            found.push((
                order,
                (
                    id,
                    get::<String>(row, "name")?,
                    get::<i64>(row, "stale")? != 0,
                ),
            ));
        }
    }
    found.sort_by_key(|(order, _)| *order);
    found.truncate(limit);
    Ok(found.into_iter().map(|(_, pick)| pick).collect())
}

/// Leases `picked`, each for its name's lease time, and returns the leased rows.
async fn lease(
    write: &mut Write,
    names: &[&ClaimName],
    picked: &[Pick],
    worker_id: &str,
) -> Result<Vec<SqliteRow>> {
    // Grouped by lease end: one statement per distinct lease time (usually one).
    let mut by_end: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (id, name, _) in picked {
        let lock_time = names
            .iter()
            .find(|n| &n.name == name)
            .map(|n| n.lock_time)
            .unwrap_or_default();
        by_end
            .entry(after(write.now, lock_time))
            .or_default()
            .push(*id);
    }
    let sql = lease_sql();
    let mut leased = Vec::with_capacity(picked.len());
    for (until, ids) in by_end {
        let mut rows = sqlx::query(&sql)
            .bind(until)
            .bind(worker_id)
            .bind(json_list(&ids)?)
            .fetch_all(write.conn())
            .await
            .map_err(|e| db_error("claiming jobs", e))?;
        leased.append(&mut rows);
    }
    Ok(leased)
}

/// When the earliest job of `names` becomes claimable: now when one is due, else the earliest
/// run time or lease end, `None` when there is no job of those names.
async fn next_due(write: &mut Write, names: &[&str]) -> Result<Option<DateTime<Utc>>> {
    if names.is_empty() {
        return Ok(None);
    }
    let row = sqlx::query(NEXT_DUE)
        .bind(json_list(names)?)
        .fetch_one(write.conn())
        .await
        .map_err(|e| db_error("finding the next due job", e))?;
    if get::<i64>(&row, "due")? != 0 {
        return Ok(Some(write.now));
    }
    // An unreadable value (written by hand) never fails the claim: it is left out.
    let next = [
        get::<Option<i64>>(&row, "next_run").ok().flatten(),
        get::<Option<i64>>(&row, "next_lease").ok().flatten(),
    ]
    .into_iter()
    .flatten()
    .min();
    Ok(next.map(saturated))
}

/// The time `ms` milliseconds after the epoch, or the nearest time chrono holds when it is
/// out of range (a time written by hand): the claim that reads it still goes on.
fn saturated(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

#[cfg(test)]
mod tests {
    /// Times out of chrono's range are the nearest it holds.
    #[test]
    fn next_due_saturates() {
        use chrono::{DateTime, Utc};
        assert_eq!(super::saturated(i64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(super::saturated(i64::MIN), DateTime::<Utc>::MIN_UTC);
        assert_eq!(super::saturated(0), DateTime::<Utc>::UNIX_EPOCH);
    }

    /// `jobs_cancelling` holds the jobs cancelled while they ran by their error text, written
    /// out in the migration: it must be the one `cancel` writes, or claims would not read it.
    #[test]
    fn the_index_knows_the_cancelled_error() {
        let sql = include_str!("migrations/001_schema.sql");
        assert!(sql.contains(&format!("last_error = '{}'", dogs_core::CANCELLED_ERROR)));
        assert!(super::live_sql().contains(&format!("'{}'", dogs_core::CANCELLED_ERROR)));
    }
}
