//! Failover under load on a Redis Cluster of the suite's own: 3 masters and 3 replicas on free
//! loopback ports, each node a child process (so it can be killed with SIGKILL) in a folder of
//! its own, failing a node over after 2 s without an answer.
//!
//! Three worker processes drain and schedule while the replication link of the prefix's shard
//! breaks (its replica cannot resync for 1 s) and then the shard's master is killed: the replica
//! is promoted, the killed node comes back as its replica, and workers and schedulers go on.
//! Redis replicates asynchronously, so without a precaution the writes the master acknowledged
//! in that second are gone; with `wait_for_replicas(1, …)` no acknowledged write is lost and no
//! job runs twice.

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dogs_redis::redis;

use super::process::{log_summary, WorkerProcess, WorkerSpec};
use super::{Env, StoreSettings};
use crate::redis_cluster::{replication, slot_owners, CutOff};
use crate::support::wait_until;

/// A Redis Cluster the suite started.
pub struct OwnCluster {
    bin: PathBuf,
    dir: PathBuf,
    nodes: HashMap<u16, Child>,
}

fn free_cluster_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        // The cluster bus listens on port + 10000.
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

async fn node(port: u16) -> redis::aio::MultiplexedConnection {
    crate::redis_cluster::node_connection(&format!("127.0.0.1:{port}")).await
}

async fn role(port: u16) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.ok()?;
    redis::from_redis_value(role.first()?.clone()).ok()
}

impl OwnCluster {
    /// Starts six nodes in folders under `dir` and makes them a cluster. `None`, with a line
    /// saying why, when `redis-server` is not installed (a failure when `DOGS_REQUIRE` names
    /// `redis`).
    pub async fn start(dir: &Path) -> Option<OwnCluster> {
        let Some(bin) = super::servers::which("redis-server") else {
            let message = "redis: no redis-server here to run a cluster of the suite's own";
            assert!(!crate::env::is_required("redis"), "{message}");
            println!("{message}; the failover scenario is skipped");
            return None;
        };
        let mut cluster = OwnCluster {
            bin,
            dir: dir.to_owned(),
            nodes: HashMap::new(),
        };
        let ports: Vec<u16> = (0..6).map(|_| free_cluster_port()).collect();
        for &port in &ports {
            cluster.launch(port);
        }
        for &port in &ports {
            wait_until(
                "a cluster node answers",
                Duration::from_secs(30),
                || async move { TcpStream::connect(("127.0.0.1", port)).is_ok() },
            )
            .await;
        }
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "creating the cluster failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        for &port in &ports {
            wait_until(
                "the cluster is up",
                Duration::from_secs(60),
                || async move {
                    let mut conn = node(port).await;
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    info.contains("cluster_state:ok")
                },
            )
            .await;
        }
        Some(cluster)
    }

    fn launch(&mut self, port: u16) {
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(&self.bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            .arg("--cluster-config-file")
            .arg(dir.join("nodes.conf"))
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.nodes.insert(port, child);
    }

    /// The cluster's `redis+cluster://` URL.
    pub fn url(&self) -> String {
        let mut ports: Vec<u16> = self.nodes.keys().copied().collect();
        ports.sort_unstable();
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// Kills node `port` with SIGKILL.
    pub fn kill(&mut self, port: u16) {
        if let Some(mut child) = self.nodes.remove(&port) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `port` again on its folder: it rejoins the cluster (as a replica, once its
    /// shard has a new master).
    pub fn restart(&mut self, port: u16) {
        self.launch(port);
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for (_, mut child) in self.nodes.drain() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address}"))
}

/// What one run of the failover measured.
struct Figures {
    acknowledged: usize,
    /// Acknowledged in the second the replica was cut off.
    in_window: usize,
    refused: usize,
    lost: usize,
    ran_twice: usize,
    promoted_after: Duration,
}

/// The failover scenario: once without a precaution, once waiting for a replica.
pub async fn failover(env: Env) {
    let Some(plain) = run(&env, 0).await else {
        return;
    };
    let Some(waiting) = run(&env, 1).await else {
        return;
    };
    for (what, figures) in [
        ("no precaution", &plain),
        ("wait_for_replicas(1)", &waiting),
    ] {
        println!(
            "failover, {what}: {} schedules acknowledged ({} in the second the replica was cut \
             off), {} refused; {} acknowledged jobs lost, {} ran twice; replica promoted {:.1} s \
             after the kill",
            figures.acknowledged,
            figures.in_window,
            figures.refused,
            figures.lost,
            figures.ran_twice,
            figures.promoted_after.as_secs_f64()
        );
    }
    // The fault bites: without a precaution, what the master acknowledged while its replica
    // was cut off is gone.
    assert!(
        plain.in_window > 0,
        "jobs were acknowledged while the replica was cut off"
    );
    assert!(
        plain.lost > 0,
        "without a precaution the failover loses acknowledged jobs"
    );
    assert_eq!(
        waiting.lost, 0,
        "no acknowledged job is lost with wait_for_replicas"
    );
    assert_eq!(
        waiting.ran_twice, 0,
        "no job runs twice with wait_for_replicas"
    );
}

async fn run(env: &Env, wait_replicas: u32) -> Option<Figures> {
    let label = format!("wait{wait_replicas}");
    let mut cluster = OwnCluster::start(&env.dir.join(&label)).await?;
    let timeout = Duration::from_secs(3);
    let env = Env {
        settings: StoreSettings {
            url: cluster.url(),
            timeout,
            wait_for_replicas: wait_replicas,
            ..env.settings.clone()
        },
        ..env.clone()
    };
    let store = env.store().await;
    let slot_key = format!("{{{}}}:seq", env.namespace);
    let mut owners = slot_owners(&env.settings.url, &slot_key).await;
    let end = Instant::now() + Duration::from_secs(60);
    while owners.1.is_empty() {
        assert!(Instant::now() < end, "the shard has no replica after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        owners = slot_owners(&env.settings.url, &slot_key).await;
    }
    let (master, replica) = (port_of(&owners.0), port_of(&owners.1[0]));
    wait_until(
        "the replica is in sync",
        Duration::from_secs(60),
        || async move {
            let mut conn = node(replica).await;
            replication(&mut conn)
                .await
                .contains("master_link_status:up")
        },
    )
    .await;
    let stop_scheduling = env.path(&format!("{label}.stop"));
    let spec = |name: &str| WorkerSpec {
        slots: 16,
        // Longer than a failover: an outcome not yet confirmed is saved again on the new master
        // before the lease ends there.
        lock: Duration::from_secs(15),
        poll: Duration::from_millis(200),
        timeout,
        wait_replicas,
        // Due 2 s later: the jobs scheduled just before the kill are still waiting when it
        // comes, so a lost write shows as a job that never runs.
        schedule: Some((
            Duration::from_millis(4),
            Duration::from_secs(2),
            stop_scheduling.clone(),
        )),
        ..WorkerSpec::new(&format!("{label}-{name}"), "work")
    };
    let mut workers: Vec<WorkerProcess> = ["a", "b", "c"]
        .iter()
        .map(|name| WorkerProcess::start(&env, &spec(name)))
        .collect();
    let acknowledged = |workers: &[WorkerProcess]| {
        workers
            .iter()
            .map(|w| w.words("scheduled").len())
            .sum::<usize>()
    };
    wait_until(
        "jobs are scheduled and run",
        Duration::from_secs(60),
        || {
            let n = acknowledged(&workers);
            async move { n >= 300 }
        },
    )
    .await;

    // The shard's replication link breaks: the replica cannot resync (its master password is
    // wrong, and the master shows no replica), while the master goes on accepting writes for a
    // second under load.
    let cut = CutOff::new(
        &format!("127.0.0.1:{master}"),
        &format!("127.0.0.1:{replica}"),
    )
    .await;
    let before_kill = acknowledged(&workers);
    let window_end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < window_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let in_window = acknowledged(&workers) - before_kill;
    cluster.kill(master);
    let killed_at = Instant::now();
    drop(cut);
    wait_until(
        "the replica is promoted",
        Duration::from_secs(60),
        || async move { role(replica).await.as_deref() == Some("master") },
    )
    .await;
    let promoted_after = killed_at.elapsed();
    cluster.restart(master);
    wait_until(
        "the killed node is back as a replica",
        Duration::from_secs(60),
        || async move { role(master).await.as_deref() == Some("slave") },
    )
    .await;
    // Schedulers and workers go on after the failover.
    let after_failover = acknowledged(&workers);
    wait_until(
        "scheduling goes on after the failover",
        Duration::from_secs(60),
        || {
            let n = acknowledged(&workers);
            async move { n >= after_failover + 300 }
        },
    )
    .await;
    std::fs::write(&stop_scheduling, b"").unwrap();

    // Drain: every job in the store has run; then count what never ran, or ran twice.
    wait_until("the store drains", Duration::from_secs(120), || {
        let store = store.clone();
        async move { super::scenarios::remaining(&*store, "work").await == 0 }
    })
    .await;
    let mut ran: HashMap<String, usize> = HashMap::new();
    let mut scheduled = Vec::new();
    let mut refused = 0;
    for worker in &workers {
        for key in worker.words("ran") {
            *ran.entry(key).or_insert(0) += 1;
        }
        scheduled.extend(worker.words("scheduled"));
        refused += worker.words("refused").len();
    }
    let lost = scheduled
        .iter()
        .filter(|key| !ran.contains_key(*key))
        .count();
    let ran_twice = ran.values().filter(|&&n| n > 1).count();
    for worker in &mut workers {
        assert!(
            worker.is_running(),
            "worker {} is still running",
            worker.label
        );
        let (panics, problems) = log_summary(&worker.log());
        assert_eq!(
            panics,
            0,
            "worker {} panicked: {}",
            worker.label,
            worker.log()
        );
        assert!(
            problems < 400,
            "worker {} logged {problems} warnings and errors: logging is bounded",
            worker.label
        );
    }
    for worker in workers {
        worker.stop(Duration::from_secs(30)).await;
    }
    Some(Figures {
        acknowledged: scheduled.len(),
        in_window,
        refused,
        lost,
        ran_twice,
        promoted_after,
    })
}
