//! The MongoDB backend of the suite: one database per namespace.

use std::sync::Arc;

use async_trait::async_trait;
use dogs_core::{Error, JobStore, Result};
use dogs_mongo::mongodb;
use dogs_mongo::MongoStore;

use crate::backend::Backend;

/// Runs the suite on [`MongoStore`]s, each namespace a database of the server at `url`.
#[derive(Debug, Clone)]
pub struct MongoBackend {
    url: String,
}

impl MongoBackend {
    /// The backend for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        MongoBackend { url: url.into() }
    }
}

#[async_trait]
impl Backend for MongoBackend {
    fn name(&self) -> &'static str {
        "mongo"
    }

    async fn open(&self, namespace: &str) -> Result<Arc<dyn JobStore>> {
        let store = MongoStore::builder()
            .url(&self.url)
            .database(namespace)
            .connect()
            .await?;
        Ok(Arc::new(store))
    }

    async fn cleanup(&self, namespace: &str) -> Result<()> {
        let fail = |e: mongodb::error::Error| {
            Error::unavailable("dropping the test database").with_source(e)
        };
        let client = mongodb::Client::with_uri_str(&self.url)
            .await
            .map_err(fail)?;
        client.database(namespace).drop().await.map_err(fail)?;
        Ok(())
    }
}

/// What only MongoDB needs shown, run with the suite on the same server.
pub mod specific {
    use std::time::Duration;

    use dogs_core::{Completion, ErrorKind, ExecutionQuery, JobState, JobStore, NewJob, RunAt};
    use dogs_mongo::mongodb::bson::Document;
    use dogs_mongo::MongoStore;
    use serde_json::json;

    use crate::harness::{Case, TestContext};
    use crate::support::*;

    type CaseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    /// The MongoDB-only cases, for the server at `url`.
    pub fn cases(url: &str) -> Vec<Case> {
        let case = |name: &'static str, run: fn(TestContext, String) -> CaseFuture| {
            let url = url.to_owned();
            Case::new(name, move |ctx| run(ctx, url.clone()))
        };
        vec![
            case("mongo_claim_uses_index", |c, u| {
                Box::pin(claim_uses_index(c, u))
            }),
            case("mongo_indexes_idempotent", |c, u| {
                Box::pin(indexes_idempotent(c, u))
            }),
            case("mongo_bad_connection", |c, u| {
                Box::pin(bad_connection(c, u))
            }),
            case("mongo_outcome_and_record_together", |c, u| {
                Box::pin(outcome_and_record_together(c, u))
            }),
            case("mongo_failing_keeps_the_job", |c, u| {
                Box::pin(failing_keeps_the_job(c, u))
            }),
            case("mongo_claim_reads_the_primary", |c, u| {
                Box::pin(claim_reads_the_primary(c, u))
            }),
            case("mongo_secondary_read_preference_claims", |c, u| {
                Box::pin(secondary_read_preference_claims(c, u))
            }),
        ]
    }

    async fn open(ctx: &TestContext, url: &str) -> MongoStore {
        MongoStore::builder()
            .url(url)
            .database(ctx.namespace())
            .connect()
            .await
            .unwrap()
    }

    /// Every index name that appears in an explain output's winning plan.
    fn index_names(plan: &Document, found: &mut Vec<String>) {
        for (key, value) in plan {
            if key == "indexName" {
                if let Some(name) = value.as_str() {
                    found.push(name.to_owned());
                }
            }
            if let Some(inner) = value.as_document() {
                index_names(inner, found);
            }
            if let Some(items) = value.as_array() {
                for item in items.iter().filter_map(|i| i.as_document()) {
                    index_names(item, found);
                }
            }
        }
    }

    /// With many finished, failed and future jobs present, the claim's query reads the claim
    /// index.
    pub async fn claim_uses_index(ctx: TestContext, url: String) {
        let store = open(&ctx, &url).await;
        let future: Vec<NewJob> = (0..5000)
            .map(|i| NewJob::new("work", json!(i)).run_at(RunAt::In(Duration::from_secs(3600 + i))))
            .collect();
        for outcome in store.schedule_many(future).await.unwrap() {
            outcome.unwrap();
        }
        let finished: Vec<NewJob> = (0..2000).map(|i| NewJob::new("work", json!(i))).collect();
        for outcome in store.schedule_many(finished).await.unwrap() {
            outcome.unwrap();
        }
        let request = dogs_core::ClaimRequest::new(["work"], Duration::from_secs(30), 1000);
        loop {
            let claimed = store.claim(&request).await.unwrap().jobs;
            if claimed.is_empty() {
                break;
            }
            for (i, job) in claimed.into_iter().enumerate() {
                let completion = if i % 2 == 0 {
                    dogs_core::Completion::Remove
                } else {
                    dogs_core::Completion::Fail {
                        error: "x".into(),
                        retain_for: Duration::from_secs(3600),
                    }
                };
                store.complete(&job.lease, completion).await.unwrap();
            }
        }
        for i in 0..20 {
            store.schedule(NewJob::new("work", json!(i))).await.unwrap();
        }
        let explained = store.explain_claim(&["work", "other"], 32).await.unwrap();
        let planner = explained.get_document("queryPlanner").unwrap();
        let winning = planner.get_document("winningPlan").unwrap();
        let mut names = Vec::new();
        index_names(winning, &mut names);
        assert!(
            names.iter().any(|n| n == "claim"),
            "the claim reads the claim index: {winning}"
        );
        let claimed = store.claim(&request).await.unwrap().jobs;
        assert_eq!(claimed.len(), 20, "exactly the due jobs");
    }

    /// Opening a store again (as every process does at start) keeps the indexes as they are.
    pub async fn indexes_idempotent(ctx: TestContext, url: String) {
        let first = open(&ctx, &url).await;
        let again = open(&ctx, &url).await;
        let names: Vec<String> = again
            .database()
            .collection::<Document>("dogs_jobs")
            .list_index_names()
            .await
            .unwrap();
        for expected in [
            "claim",
            "scheduled_by_name",
            "leases_by_name",
            "unique",
            "recurrent",
            "failed_ttl",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "index {expected} exists: {names:?}"
            );
        }
        let names: Vec<String> = again
            .database()
            .collection::<Document>("dogs_executions")
            .list_index_names()
            .await
            .unwrap();
        for expected in ["history", "ttl"] {
            assert!(
                names.iter().any(|n| n == expected),
                "index {expected} exists: {names:?}"
            );
        }
        first
            .schedule(NewJob::new("after", json!({})))
            .await
            .unwrap();
    }

    /// A URL that does not parse is `Config`; a server that cannot be reached is `Unavailable`,
    /// naming the address and never the password.
    pub async fn bad_connection(_ctx: TestContext, _url: String) {
        let error = MongoStore::connect("definitely not a url")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        let error = MongoStore::builder()
            .url("mongodb://app:hunter2secret@127.0.0.1:1/app")
            .timeout(Duration::from_secs(1))
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
        let builder = MongoStore::builder().url("mongodb://app:hunter2secret@db/app");
        assert!(!format!("{builder:?}").contains("hunter2secret"));
    }

    /// Text of 17 MB: more than a MongoDB document holds.
    fn too_large() -> String {
        "x".repeat(17 * 1024 * 1024)
    }

    /// An outcome and its execution record are saved together or not at all: a record the
    /// server refuses (a result past the document limit) leaves the job as it was, leased,
    /// instead of removed without its record.
    pub async fn outcome_and_record_together(ctx: TestContext, url: String) {
        let store = open(&ctx, &url).await;
        let id = schedule_new(&store, NewJob::new("together", json!({}))).await;
        let claimed = claim_one(&store, "together", Duration::from_secs(30)).await;
        let now = store_now(&store).await;
        let record = dogs_core::Execution {
            job_id: id.clone(),
            execution_id: "huge".into(),
            name: "together".into(),
            kind: dogs_core::JobKind::Event,
            priority: 1,
            tries: 1,
            unique_identifier: None,
            params: json!({}),
            started_at: now,
            ended_at: now,
            duration: Duration::ZERO,
            status: dogs_core::ExecutionStatus::Success,
            error: None,
            result: Some(json!(too_large())),
            worker_id: "test".into(),
            expires_at: now + chrono::Duration::hours(1),
        };
        let saved = store
            .finish(&claimed.lease, Completion::Remove, Some(&record))
            .await;
        let job = store.get_job(&id).await.unwrap();
        let records = store
            .executions(&ExecutionQuery::name("together"))
            .await
            .unwrap();
        match saved {
            Ok(()) => panic!("a record past the document limit was stored"),
            Err(e) => {
                let job = job.expect("the job is not removed without its record");
                assert_eq!(job.state, JobState::Running, "and keeps its lease");
                assert!(records.is_empty());
                assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
            }
        }
        store
            .complete(&claimed.lease, Completion::Remove)
            .await
            .expect("the lease is still current");
    }

    /// Failing a job is one write: an error (an error text past the document limit) leaves
    /// the job as it was, instead of deleted and never written back.
    pub async fn failing_keeps_the_job(ctx: TestContext, url: String) {
        let store = open(&ctx, &url).await;
        let id = schedule_new(
            &store,
            NewJob::new("failing", json!({"keep": "me"})).unique_identifier("u"),
        )
        .await;
        let claimed = claim_one(&store, "failing", Duration::from_secs(30)).await;
        let failed = store
            .complete(
                &claimed.lease,
                Completion::Fail {
                    error: too_large(),
                    retain_for: Duration::from_secs(3600),
                },
            )
            .await;
        let job = store
            .get_job(&id)
            .await
            .unwrap()
            .expect("the job is not lost");
        assert_eq!(
            (job.state, job.params),
            (JobState::Running, json!({"keep": "me"}))
        );
        assert_eq!(
            failed.map_err(|e| e.kind()).err(),
            Some(ErrorKind::TooLarge)
        );
        store
            .complete(
                &claimed.lease,
                Completion::Fail {
                    error: "short".into(),
                    retain_for: Duration::from_secs(3600),
                },
            )
            .await
            .unwrap();
        let job = store.get_job(&id).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Failed);
        // Failed, it frees its unique identifier.
        let again = store
            .schedule(NewJob::new("failing", json!({})).unique_identifier("u"))
            .await
            .unwrap();
        assert!(!again.is_duplicate());
    }

    /// A store whose URL sends reads to secondaries (`readPreference=secondary`, here with no
    /// secondary at all, as a lagging one would answer nothing) still claims: every read of a
    /// claim goes to the primary.
    pub async fn claim_reads_the_primary(ctx: TestContext, url: String) {
        use dogs_mongo::mongodb::bson::doc;
        let client = dogs_mongo::mongodb::Client::with_uri_str(&url)
            .await
            .unwrap();
        let hello = client
            .database("admin")
            .run_command(doc! { "hello": 1 })
            .await
            .unwrap();
        let (Ok(set), Ok(me)) = (hello.get_str("setName"), hello.get_str("me")) else {
            panic!("the test server is not a replica set: {hello}");
        };
        if !url.contains(me) {
            // A container's member advertises an address this machine cannot reach, so the
            // set cannot be discovered from here.
            println!("mongo_claim_reads_the_primary: skipped: the member advertises {me}, not the URL's address");
            return;
        }
        let discovering = format!(
            "mongodb://{me}/?replicaSet={set}&readPreference=secondary&serverSelectionTimeoutMS=3000"
        );
        let store = MongoStore::builder()
            .url(&discovering)
            .database(ctx.namespace())
            .timeout(Duration::from_secs(3))
            .connect()
            .await
            .unwrap();
        let id = schedule_new(&store, NewJob::new("primary", json!({}))).await;
        let claimed = claim(&store, "primary", Duration::from_secs(30), 5).await;
        assert_eq!(
            claimed.iter().map(|c| c.job.id.clone()).collect::<Vec<_>>(),
            vec![id],
            "the claim found and read back its job on the primary"
        );
    }

    /// `url` with the options `extra` (`a=1&b=2`) added to its query.
    fn with_options(url: &str, extra: &str) -> String {
        if url.contains('?') {
            format!("{url}&{extra}")
        } else if url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/'))
        {
            format!("{url}?{extra}")
        } else {
            format!("{url}/?{extra}")
        }
    }

    /// What a URL may ask for that the store's claims and outcomes do not follow: reads from
    /// secondaries, and writes acknowledged by one member without its journal.
    const WEAKER_OPTIONS: [&str; 3] = [
        "readPreference=secondary",
        "readPreference=secondaryPreferred",
        "readPreference=secondary&w=1&journal=false&readConcernLevel=local",
    ];

    /// The URL of the replica set the server at `url` belongs to, discovered from the address
    /// its member advertises (`mongodb://me/?replicaSet=…`); `None` when `url` does not name
    /// that address (a container's member advertises one this machine cannot reach).
    async fn discovered_set(url: &str) -> Option<String> {
        use dogs_mongo::mongodb::bson::doc;
        let client = dogs_mongo::mongodb::Client::with_uri_str(url).await.ok()?;
        let hello = client
            .database("admin")
            .run_command(doc! { "hello": 1 })
            .await
            .ok()?;
        let (set, me) = (hello.get_str("setName").ok()?, hello.get_str("me").ok()?);
        url.contains(me)
            .then(|| format!("mongodb://{me}/?replicaSet={set}&serverSelectionTimeoutMS=3000"))
    }

    /// Whether `command` asks for a read from a secondary.
    fn reads_a_secondary(command: &Document) -> bool {
        command
            .get_document("$readPreference")
            .ok()
            .and_then(|p| p.get_str("mode").ok())
            .is_some_and(|mode| mode.starts_with("secondary"))
    }

    /// The read concern level `command` carries, if any.
    fn read_concern_of(command: &Document) -> Option<String> {
        let concern = command.get_document("readConcern").ok()?;
        concern.get_str("level").ok().map(str::to_owned)
    }

    /// The write concern `command` carries, as `(w, j)`.
    fn write_concern_of(command: &Document) -> Option<(String, Option<bool>)> {
        let concern = command.get_document("writeConcern").ok()?;
        let w = concern.get("w").map(ToString::to_string)?;
        Some((w, concern.get_bool("j").ok()))
    }

    /// A URL that asks for reads from secondaries (`readPreference=secondary` or
    /// `secondaryPreferred`), and for writes acknowledged by one member without its journal
    /// (`w=1&journal=false`), changes nothing the store's correctness depends on: scheduling,
    /// exclusive claims by two handles racing over the same jobs, completing and a worker
    /// draining jobs all work; and on the wire every read of a claim asks for the primary with
    /// read concern `majority`, and every write of a claim and an outcome for `w: "majority"`
    /// with the journal.
    pub async fn secondary_read_preference_claims(ctx: TestContext, url: String) {
        use std::collections::BTreeSet;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};

        use dogs_core::prelude::*;
        use dogs_core::ClaimRequest;
        use dogs_mongo::mongodb::event::command::CommandEvent;
        use dogs_mongo::mongodb::event::EventHandler;
        use dogs_mongo::mongodb::options::ClientOptions;

        // On the test URL (a direct connection, where the driver sends every read to the one
        // server, with the read preference asked), and, where this machine reaches the member
        // at the address it advertises, with the set discovered, where a read that follows
        // `readPreference=secondary` finds no server at all when the set has no secondary.
        let mut urls: Vec<String> = WEAKER_OPTIONS
            .iter()
            .map(|extra| with_options(&url, extra))
            .collect();
        if let Some(set) = discovered_set(&url).await {
            urls.push(format!("{set}&{}", WEAKER_OPTIONS[2]));
        }
        for (i, store_url) in urls.iter().enumerate() {
            let store_url = store_url.as_str();
            let name = format!("secondary-{i}");
            let open = || {
                MongoStore::builder()
                    .url(store_url)
                    .database(ctx.namespace())
                    .timeout(Duration::from_secs(3))
                    .connect()
            };
            let first = open().await.unwrap();
            let second = open().await.unwrap();
            let mut ids = BTreeSet::new();
            for n in 0..40 {
                ids.insert(schedule_new(&first, NewJob::new(&name, json!(n))).await);
            }
            let drain = |store: MongoStore, name: String| async move {
                let request = ClaimRequest::new([name.as_str()], Duration::from_secs(60), 3);
                let mut won = Vec::new();
                loop {
                    let claimed = store
                        .claim(&request)
                        .await
                        .unwrap_or_else(|e| panic!("{store_url}: a claim failed: {e}"));
                    if claimed.jobs.is_empty() {
                        return won;
                    }
                    won.extend(claimed.jobs);
                }
            };
            let (a, b) = tokio::join!(
                drain(first.clone(), name.clone()),
                drain(second.clone(), name.clone())
            );
            let won_a: BTreeSet<_> = a.iter().map(|c| c.job.id.clone()).collect();
            let won_b: BTreeSet<_> = b.iter().map(|c| c.job.id.clone()).collect();
            assert_eq!(won_a.len() + won_b.len(), a.len() + b.len(), "{store_url}");
            assert!(
                won_a.is_disjoint(&won_b),
                "{store_url}: two handles claimed the same job"
            );
            assert_eq!(
                won_a.union(&won_b).cloned().collect::<BTreeSet<_>>(),
                ids,
                "{store_url}: every job was claimed once"
            );
            for (store, claimed) in [(&first, a), (&second, b)] {
                for job in claimed {
                    store
                        .complete(&job.lease, Completion::Remove)
                        .await
                        .unwrap_or_else(|e| panic!("{store_url}: completing failed: {e}"));
                }
            }
            for id in &ids {
                let job = first.get_job(id).await.unwrap();
                assert!(
                    job.is_none(),
                    "{store_url}: a completed job is gone: {job:?}"
                );
            }

            let ran = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&ran);
            let job = EventJob::new(format!("drained-{i}"), move |_: u32, _ctx: JobContext| {
                let counter = Arc::clone(&counter);
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            });
            let workers = start_workers(first.clone(), [job.definition()], fast_options())
                .await
                .unwrap_or_else(|e| panic!("{store_url}: start_workers failed: {e}"));
            let mut drained = Vec::new();
            for n in 0..20_u32 {
                let scheduled = schedule_job(&second, &job, &n, ScheduleOptions::default())
                    .await
                    .unwrap();
                drained.push(scheduled.id().clone());
            }
            wait_until(&format!("{store_url}: 20 executions"), DEADLINE, || async {
                ran.load(Ordering::SeqCst) >= 20
            })
            .await;
            for id in &drained {
                wait_until(&format!("{store_url}: job {id} gone"), DEADLINE, || async {
                    second.get_job(id).await.unwrap().is_none()
                })
                .await;
            }
            workers.stop().await;
            assert_eq!(
                ran.load(Ordering::SeqCst),
                20,
                "{store_url}: each job ran once"
            );
        }

        // The same weaker options on a client handed to the builder, with every command the
        // client sends kept, to see what the store asks the server for.
        let sent: Arc<Mutex<Vec<(String, Document)>>> = Arc::default();
        let kept = Arc::clone(&sent);
        let mut options = ClientOptions::parse(with_options(&url, WEAKER_OPTIONS[2]))
            .await
            .unwrap();
        options.command_event_handler = Some(EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                kept.lock()
                    .unwrap()
                    .push((started.command_name, started.command));
            }
        }));
        let client = dogs_mongo::mongodb::Client::with_options(options).unwrap();
        let store = MongoStore::builder()
            .database_handle(client.database(ctx.namespace()))
            .connect()
            .await
            .unwrap();
        schedule_new(&store, NewJob::new("watched", json!(1))).await;
        schedule_new(&store, NewJob::new("watched", json!(2))).await;
        let scheduling: Vec<_> = std::mem::take(&mut *sent.lock().unwrap());
        let claimed = claim(&store, "watched", Duration::from_secs(60), 2).await;
        assert_eq!(claimed.len(), 2);
        let claiming: Vec<_> = std::mem::take(&mut *sent.lock().unwrap());
        store
            .complete(&claimed[0].lease, Completion::Remove)
            .await
            .unwrap();
        store
            .complete(
                &claimed[1].lease,
                Completion::Fail {
                    error: "failed".into(),
                    retain_for: Duration::from_secs(60),
                },
            )
            .await
            .unwrap();
        let finishing: Vec<_> = std::mem::take(&mut *sent.lock().unwrap());

        let majority = Some(("\"majority\"".to_owned(), Some(true)));
        let mut problems = Vec::new();
        for (phase, commands) in [
            ("scheduling", &scheduling),
            ("claiming", &claiming),
            ("finishing", &finishing),
        ] {
            for (command_name, command) in commands {
                let in_transaction =
                    command.contains_key("txnNumber") && command.contains_key("autocommit");
                let is_read = matches!(command_name.as_str(), "find" | "aggregate" | "count");
                let is_write = matches!(
                    command_name.as_str(),
                    "insert" | "update" | "delete" | "findAndModify"
                );
                if is_read && reads_a_secondary(command) {
                    problems.push(format!("{phase}: a read from a secondary: {command}"));
                }
                if is_read && read_concern_of(command).as_deref() != Some("majority") {
                    problems.push(format!(
                        "{phase}: a read without read concern majority: {command}"
                    ));
                }
                if is_write && !in_transaction && write_concern_of(command) != majority {
                    problems.push(format!(
                        "{phase}: a write without w: majority, j: true: {command}"
                    ));
                }
                if command_name == "commitTransaction" && write_concern_of(command) != majority {
                    problems.push(format!(
                        "{phase}: a commit without w: majority, j: true: {command}"
                    ));
                }
                if in_transaction && command.contains_key("startTransaction") {
                    if reads_a_secondary(command) {
                        problems.push(format!("{phase}: a transaction on a secondary: {command}"));
                    }
                    if read_concern_of(command).as_deref() != Some("majority") {
                        problems.push(format!(
                            "{phase}: a transaction without read concern majority: {command}"
                        ));
                    }
                }
            }
        }
        let seen =
            |commands: &[(String, Document)], name: &str| commands.iter().any(|(n, _)| n == name);
        assert!(seen(&claiming, "find") && seen(&claiming, "update"));
        assert!(
            seen(&finishing, "commitTransaction")
                || seen(&finishing, "delete")
                || seen(&finishing, "update")
        );
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
