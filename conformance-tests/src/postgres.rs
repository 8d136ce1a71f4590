//! The PostgreSQL backend of the suite: one schema per namespace.

use std::sync::Arc;

use async_trait::async_trait;
use dogs_core::{Error, JobStore, Result};
use dogs_postgres::sqlx::{self, Connection};
use dogs_postgres::{PostgresStore, PostgresStoreBuilder};

use crate::backend::Backend;

pub mod remove_all;

/// Where stores connect: a PostgreSQL server, or a PgBouncer in transaction pooling mode in
/// front of one.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL stores connect to.
    url: String,
    /// The server's own URL, when `url` is a pooler in front of it.
    direct_url: Option<String>,
}

impl Target {
    /// Stores connect to the server at `url`.
    pub fn direct(url: impl Into<String>) -> Self {
        Target {
            url: url.into(),
            direct_url: None,
        }
    }

    /// Stores connect through the PgBouncer (transaction pooling) at `pooler_url`, in front of
    /// the server at `direct_url`, which they listen on for wake-ups.
    pub fn through_pgbouncer(pooler_url: impl Into<String>, direct_url: impl Into<String>) -> Self {
        Target {
            url: pooler_url.into(),
            direct_url: Some(direct_url.into()),
        }
    }

    /// Whether stores connect through a pooler.
    pub fn pooled(&self) -> bool {
        self.direct_url.is_some()
    }

    /// The URL stores connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's own URL.
    pub fn server_url(&self) -> &str {
        self.direct_url.as_deref().unwrap_or(&self.url)
    }

    /// A builder for a store in `schema` at the target: through a pooler, in transaction
    /// pooling mode with wake-ups on a connection of its own to the server.
    pub fn builder(&self, schema: &str) -> PostgresStoreBuilder {
        let builder = PostgresStore::builder().url(&self.url).schema(schema);
        match &self.direct_url {
            None => builder,
            Some(direct_url) => builder.transaction_pooling(true).listen_url(direct_url),
        }
    }

    /// A small pool of connections to the server (never through the pooler), for what a case
    /// does behind the stores' back, again and again.
    pub async fn server_pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(self.server_url())
            .await
            .unwrap_or_else(|e| panic!("connecting to the server failed: {e}"))
    }

    /// A connection of its own to the server (never through the pooler), for what a case or
    /// the clean-up does behind the stores' back.
    pub async fn server(&self) -> Result<sqlx::PgConnection> {
        sqlx::PgConnection::connect(self.server_url())
            .await
            .map_err(|e| Error::unavailable("connecting to the server").with_source(e))
    }
}

/// Runs the suite on [`PostgresStore`]s, each namespace a schema of the server at the
/// [`Target`].
#[derive(Debug, Clone)]
pub struct PostgresBackend {
    target: Target,
}

impl PostgresBackend {
    /// The backend for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresBackend {
            target: Target::direct(url),
        }
    }

    /// The backend whose stores connect through the PgBouncer (transaction pooling) at
    /// `pooler_url`, with LISTEN on a connection of their own to the server at `direct_url`.
    pub fn through_pgbouncer(pooler_url: impl Into<String>, direct_url: impl Into<String>) -> Self {
        PostgresBackend {
            target: Target::through_pgbouncer(pooler_url, direct_url),
        }
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        if self.target.pooled() {
            "postgres_pgbouncer"
        } else {
            "postgres"
        }
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn JobStore>> {
        let store = self
            .target
            .builder(namespace)
            .max_connections(6)
            .connect()
            .await?;
        Ok(Arc::new(store))
    }

    async fn cleanup(&self, namespace: &str) -> Result<()> {
        let mut conn = self.target.server().await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{namespace}\" CASCADE"))
            .execute(&mut conn)
            .await
            .map_err(|e| Error::unavailable("dropping the test schema").with_source(e))?;
        Ok(())
    }
}

/// What only PostgreSQL offers, run with the suite on the same server: each case opens its own
/// [`PostgresStore`] in the case's namespace. Through a pooler, the cases that make sense there
/// run too ([`pooled_cases`](specific::pooled_cases)).
pub mod specific {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use dogs_core::prelude::*;
    use dogs_core::{ErrorKind, JobQuery, JobStore, NewJob};
    use dogs_postgres::sqlx::postgres::{PgListener, PgPool};
    use dogs_postgres::sqlx::{self, Row};
    use dogs_postgres::PostgresStore;
    use serde_json::json;

    use super::Target;
    use crate::harness::{Case, TestContext};
    use crate::support::*;

    /// The PostgreSQL-only cases, for the server at `url`.
    pub fn cases(url: &str) -> Vec<Case> {
        all_cases(Target::direct(url))
            .into_iter()
            .map(|(case, _)| case)
            .collect()
    }

    /// The PostgreSQL-only cases that make sense through a pooler, for the PgBouncer
    /// (transaction pooling) at `pooler_url` in front of the server at `direct_url`: all but the
    /// connection errors, and `SERIALIZABLE` by default, which needs a startup option the pooler
    /// refuses.
    pub fn pooled_cases(pooler_url: &str, direct_url: &str) -> Vec<Case> {
        all_cases(Target::through_pgbouncer(pooler_url, direct_url))
            .into_iter()
            .filter(|(_, through_pooler)| *through_pooler)
            .map(|(case, _)| case)
            .collect()
    }

    /// Every case, and whether it runs through a pooler.
    fn all_cases(target: Target) -> Vec<(Case, bool)> {
        let case = |name: &'static str, run: fn(TestContext, Target) -> CaseFuture| {
            let target = target.clone();
            Case::new(name, move |ctx| run(ctx, target.clone()))
        };
        let pooled = |case: Case| (case, true);
        let direct_only = |case: Case| (case, false);
        vec![
            pooled(case("postgres_transactional_scheduling", |c, t| {
                Box::pin(transactional_scheduling(c, t))
            })),
            pooled(case("postgres_claim_uses_index", |c, t| {
                Box::pin(claim_uses_index(c, t))
            })),
            pooled(case("postgres_concurrent_migrations", |c, t| {
                Box::pin(concurrent_migrations(c, t))
            })),
            pooled(case("postgres_bulk_notifies_once", |c, t| {
                Box::pin(bulk_notifies_once(c, t))
            })),
            pooled(case("postgres_listener_reconnects", |c, t| {
                Box::pin(listener_reconnects(c, t))
            })),
            direct_only(case("postgres_bad_connection", |c, t| {
                Box::pin(bad_connection(c, t))
            })),
            direct_only(case("postgres_serializable", |c, t| {
                Box::pin(serializable(c, t))
            })),
            pooled(case("postgres_claim_keeps_what_it_leased", |c, t| {
                Box::pin(claim_keeps_what_it_leased(c, t))
            })),
            pooled(case("postgres_tries_at_the_top", |c, t| {
                Box::pin(tries_at_the_top(c, t))
            })),
            pooled(case(
                "postgres_remove_all_keeps_what_is_not_dogs",
                |c, t| Box::pin(super::remove_all::keeps_what_is_not_dogs(c, t)),
            )),
        ]
    }

    type CaseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    /// A store of the case's namespace (its schema) at `target`.
    pub(crate) async fn open(ctx: &TestContext, target: &Target) -> PostgresStore {
        target
            .builder(ctx.namespace())
            .max_connections(4)
            .connect()
            .await
            .unwrap()
    }

    /// A job scheduled in a transaction exists if and only if the transaction commits.
    pub async fn transactional_scheduling(ctx: TestContext, target: Target) {
        let store = open(&ctx, &target).await;
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let job = EventJob::new("in-tx", move |_: u32, _ctx: JobContext| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        });
        let workers = start_workers(store.clone(), [job.definition()], fast_options())
            .await
            .unwrap();

        let mut tx = store.pool().begin().await.unwrap();
        let rolled_back = store
            .schedule_in(&mut tx, job.new_job(&1, ScheduleOptions::now()).unwrap())
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        assert!(
            store.get_job(rolled_back.id()).await.unwrap().is_none(),
            "rolled back: no job"
        );

        let mut tx = store.pool().begin().await.unwrap();
        let committed = store
            .schedule_in(&mut tx, job.new_job(&2, ScheduleOptions::now()).unwrap())
            .await
            .unwrap();
        assert!(
            store.get_job(committed.id()).await.unwrap().is_none(),
            "invisible to others until the commit"
        );
        tx.commit().await.unwrap();
        wait_until("the committed job to run", DEADLINE, || async {
            store.get_job(committed.id()).await.unwrap().is_none()
        })
        .await;
        workers.stop().await;
        assert_eq!(ran.load(Ordering::SeqCst), 1, "only the committed job ran");
    }

    /// With many finished, failed and future jobs present, the claim reads the index of due
    /// jobs and no table scan.
    pub async fn claim_uses_index(ctx: TestContext, target: Target) {
        let store = open(&ctx, &target).await;
        let s = format!("\"{}\"", ctx.namespace());
        let mut conn = target.server().await.unwrap();
        for sql in [
            format!(
                "INSERT INTO {s}.jobs (name, kind, params, run_at, state)
                 SELECT 'work', 'event', '{{}}', now() + interval '1 day' * g, 'scheduled'
                 FROM generate_series(1, 30000) g"
            ),
            format!(
                "INSERT INTO {s}.jobs (name, kind, params, run_at, state, last_error, expires_at)
                 SELECT 'work', 'event', '{{}}', now(), 'failed', 'x', now() + interval '1 day'
                 FROM generate_series(1, 20000) g"
            ),
            format!(
                "INSERT INTO {s}.jobs (name, kind, params, run_at, state)
                 SELECT 'work', 'event', '{{}}', now(), 'pending' FROM generate_series(1, 20000) g"
            ),
            format!("DELETE FROM {s}.jobs WHERE state = 'pending'"),
            format!(
                "INSERT INTO {s}.jobs (name, kind, params, run_at, state)
                 SELECT 'work', 'event', '{{}}', now() - interval '1 second', 'pending'
                 FROM generate_series(1, 50) g"
            ),
            format!("ANALYZE {s}.jobs"),
        ] {
            sqlx::query(&sql).execute(&mut conn).await.unwrap();
        }
        let plan = store.explain_claim(&["work", "other"], 32).await.unwrap();
        assert!(
            plan.contains("jobs_claim"),
            "the claim reads the claimable-rows index:\n{plan}"
        );
        assert!(!plan.contains("Seq Scan on jobs"), "no table scan:\n{plan}");
        let claimed = store
            .claim(&dogs_core::ClaimRequest::new(
                ["work"],
                Duration::from_secs(30),
                100,
            ))
            .await
            .unwrap()
            .jobs;
        assert_eq!(claimed.len(), 50, "exactly the due jobs");
    }

    /// Many processes migrating one schema at once: all succeed, each migration applies once.
    pub async fn concurrent_migrations(ctx: TestContext, target: Target) {
        let schema = ctx.namespace().to_owned();
        open(&ctx, &target).await;
        let mut conn = target.server().await.unwrap();
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&mut conn)
            .await
            .unwrap();
        let starts = (0..8).map(|_| {
            let builder = target.builder(&schema).max_connections(1);
            tokio::spawn(builder.connect())
        });
        for started in futures::future::join_all(starts).await {
            started
                .unwrap()
                .unwrap_or_else(|e| panic!("a concurrent migration failed: {e}"));
        }
        let versions: Vec<i32> =
            sqlx::query_scalar(&format!("SELECT version FROM \"{schema}\".migrations"))
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(versions, vec![1, 2, 3, 4, 5]);
        let store = open(&ctx, &target).await;
        store.migrate().await.unwrap();
        schedule_new(&store, NewJob::new("after", json!({}))).await;
    }

    /// A bulk insert of many due jobs sends one notification, not one per row.
    pub async fn bulk_notifies_once(ctx: TestContext, target: Target) {
        let store = open(&ctx, &target).await;
        let channel = format!("{}_wake", ctx.namespace());
        let mut listener = PgListener::connect(target.server_url()).await.unwrap();
        listener.listen(&channel).await.unwrap();
        let jobs = (0..200).map(|i| NewJob::new("bulk", json!(i))).collect();
        for outcome in store.schedule_many(jobs).await.unwrap() {
            outcome.unwrap();
        }
        sqlx::query("SELECT pg_notify($1, 'end')")
            .bind(&channel)
            .execute(&mut target.server().await.unwrap())
            .await
            .unwrap();
        let mut wake_ups = 0;
        loop {
            let note = tokio::time::timeout(DEADLINE, listener.recv())
                .await
                .unwrap()
                .unwrap();
            if note.payload() == "end" {
                break;
            }
            wake_ups += 1;
        }
        assert_eq!(wake_ups, 1, "one notification for the whole bulk insert");
        assert_eq!(
            store
                .list_jobs(&JobQuery::name("bulk").limit(500))
                .await
                .unwrap()
                .len(),
            200
        );
    }

    /// When the LISTEN connection is killed, the store reconnects and wake-ups work again.
    pub async fn listener_reconnects(ctx: TestContext, target: Target) {
        let store = open(&ctx, &target).await;
        let started = log::<u32>();
        let recorder = started.clone();
        let job = EventJob::new("wake", move |n: u32, _ctx: JobContext| {
            let recorder = recorder.clone();
            async move {
                push(&recorder, n);
                Ok(())
            }
        });
        let options = WorkerOptions {
            poll_interval: Duration::from_secs(60),
            ..fast_options()
        };
        let workers = start_workers(store.clone(), [job.definition()], options)
            .await
            .unwrap();
        let listen = format!("LISTEN \"{}_wake\"", ctx.namespace());
        let server = target.server_pool().await;
        let listeners = |server: PgPool, listen: String| async move {
            sqlx::query("SELECT pid FROM pg_stat_activity WHERE query LIKE $1 || '%'")
                .bind(listen)
                .fetch_all(&server)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<i32, _>("pid"))
                .collect::<Vec<i32>>()
        };
        let first = wait_for("the LISTEN connection", DEADLINE, || async {
            listeners(server.clone(), listen.clone())
                .await
                .first()
                .copied()
        })
        .await;
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(first)
            .execute(&server)
            .await
            .unwrap();
        wait_until("a new LISTEN connection", DEADLINE, || async {
            listeners(server.clone(), listen.clone())
                .await
                .iter()
                .any(|pid| *pid != first)
        })
        .await;
        let scheduled = tokio::time::Instant::now();
        schedule_job(&store, &job, &7, ScheduleOptions::now())
            .await
            .unwrap();
        wait_until("the job to start", Duration::from_secs(10), || async {
            read(&started) == vec![7]
        })
        .await;
        workers.stop().await;
        assert!(
            scheduled.elapsed() < Duration::from_secs(5),
            "woken, not polled"
        );
    }

    /// A URL that does not parse is `Config`; a server that cannot be reached is `Unavailable`,
    /// naming the address and never the password.
    pub async fn bad_connection(_ctx: TestContext, _target: Target) {
        let error = PostgresStore::connect("definitely not a url")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let error = PostgresStore::builder()
            .url("postgres://app:hunter2secret@127.0.0.1:1/app")
            .acquire_timeout(Duration::from_secs(2))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
        let shown = format!("{error} {error:?}");
        assert!(
            shown.contains("127.0.0.1:1"),
            "the address is named: {shown}"
        );
        assert!(
            !shown.contains("hunter2secret"),
            "the password is not: {shown}"
        );
        let error = PostgresStore::builder()
            .url("postgres://app@127.0.0.1/app")
            .schema("Robert'); DROP TABLE jobs;--")
            .connect()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let builder = PostgresStore::builder().url("postgres://app:hunter2secret@db/app");
        assert!(!format!("{builder:?}").contains("hunter2secret"));
        let error = PostgresStore::builder()
            .url("postgres://app@127.0.0.1:1/app")
            .transaction_pooling(true)
            .listen_url("definitely not a url")
            .connect()
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let builder = PostgresStore::builder()
            .url("postgres://app@pooler/app")
            .listen_url("postgres://app:hunter2secret@db/app");
        assert!(!format!("{builder:?}").contains("hunter2secret"));
    }

    /// On a database whose default isolation is serializable, racing claimers, finishes and
    /// schedules meet serialization failures; each is retried, none is dropped: every call
    /// succeeds and every job is claimed exactly once.
    pub async fn serializable(ctx: TestContext, target: Target) {
        let url = target.url();
        let separator = if url.contains('?') { '&' } else { '?' };
        let target = Target::direct(format!(
            "{url}{separator}options=-c%20default_transaction_isolation%3Dserializable"
        ));
        let store = open(&ctx, &target).await;
        let isolation: String = sqlx::query_scalar("SHOW transaction_isolation")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(isolation, "serializable");
        let total = 300u32;
        let claimed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let scheduler = {
            let store = store.clone();
            tokio::spawn(async move {
                for chunk in 0..(total / 30) {
                    let jobs = (0..30)
                        .map(|i| NewJob::new("serial", json!(chunk * 30 + i)))
                        .collect();
                    for outcome in store.schedule_many(jobs).await.unwrap() {
                        outcome.unwrap();
                    }
                    store
                        .schedule(NewJob::new("serial-unique", json!(chunk)).unique_identifier("u"))
                        .await
                        .unwrap();
                }
            })
        };
        let claimers: Vec<_> = (0..8)
            .map(|_| {
                let (store, claimed) = (store.clone(), claimed.clone());
                tokio::spawn(async move {
                    let request =
                        dogs_core::ClaimRequest::new(["serial"], Duration::from_secs(30), 5);
                    let deadline = tokio::time::Instant::now() + DEADLINE;
                    while tokio::time::Instant::now() < deadline {
                        let jobs = store.claim(&request).await.unwrap().jobs;
                        if jobs.is_empty() {
                            if claimed.lock().unwrap().len() >= total as usize {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                        let finishes = jobs
                            .iter()
                            .map(|job| dogs_core::Finish {
                                lease: job.lease.clone(),
                                completion: dogs_core::Completion::Remove,
                                execution: None,
                            })
                            .collect();
                        for outcome in store.finish_many(finishes).await.unwrap() {
                            outcome.unwrap();
                        }
                        claimed
                            .lock()
                            .unwrap()
                            .extend(jobs.into_iter().map(|j| j.job.params));
                    }
                })
            })
            .collect();
        scheduler.await.unwrap();
        for claimer in claimers {
            claimer.await.unwrap();
        }
        let mut seen: Vec<u64> = claimed
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..u64::from(total)).collect::<Vec<_>>(),
            "each job once"
        );
    }

    /// A claim whose write that fails an unreadable record meets an error still hands out the
    /// jobs it leased, instead of failing and leaving them leased until their leases end.
    pub async fn claim_keeps_what_it_leased(ctx: TestContext, target: Target) {
        let store = open(&ctx, &target).await;
        let s = format!("\"{}\"", ctx.namespace());
        for sql in [
            // A record written by hand: negative tries cannot be read.
            format!(
                "INSERT INTO {s}.jobs (name, kind, params, run_at, state, tries)
                 VALUES ('kept', 'event', '{{}}', now() - interval '1 second', 'pending', -5)"
            ),
            // Writing it as failed meets an error, as a store blip would.
            format!(
                "CREATE FUNCTION {s}.refuse_failing() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN RAISE EXCEPTION 'the store refuses the write'; END $$"
            ),
            format!(
                "CREATE TRIGGER refuse_failing BEFORE UPDATE ON {s}.jobs FOR EACH ROW
                 WHEN (NEW.state = 'failed') EXECUTE FUNCTION {s}.refuse_failing()"
            ),
        ] {
            sqlx::query(&sql)
                .execute(&mut target.server().await.unwrap())
                .await
                .unwrap();
        }
        let mut good = Vec::new();
        for i in 0..3 {
            good.push(schedule_new(&store, NewJob::new("kept", json!(i))).await);
        }
        let claimed = store
            .claim(&dogs_core::ClaimRequest::new(
                ["kept"],
                Duration::from_secs(30),
                10,
            ))
            .await
            .expect("the claim hands out what it leased");
        let mut ids: Vec<_> = claimed.jobs.iter().map(|c| c.job.id.clone()).collect();
        ids.sort();
        good.sort();
        assert_eq!(ids, good, "the readable jobs");
    }

    /// A record whose `tries` was written by hand at the top of `integer`'s range does not make
    /// every claim of its name fail with an overflow.
    pub async fn tries_at_the_top(ctx: TestContext, target: Target) {
        let store = open(&ctx, &target).await;
        let s = format!("\"{}\"", ctx.namespace());
        sqlx::query(&format!(
            "INSERT INTO {s}.jobs (name, kind, params, run_at, state, tries)
             VALUES ('top', 'event', '{{}}', now() - interval '1 second', 'pending', 2147483647)"
        ))
        .execute(&mut target.server().await.unwrap())
        .await
        .unwrap();
        let good = schedule_new(&store, NewJob::new("top", json!(1))).await;
        let claimed = store
            .claim(&dogs_core::ClaimRequest::new(
                ["top"],
                Duration::from_secs(30),
                10,
            ))
            .await
            .expect("the claim does not overflow");
        assert!(
            claimed.jobs.iter().any(|c| c.job.id == good),
            "the other job is claimed"
        );
    }
}
