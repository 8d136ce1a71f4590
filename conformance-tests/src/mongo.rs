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
}
