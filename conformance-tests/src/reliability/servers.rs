//! Servers of the suite's own, on their own ports and data folders, for the outage scenario:
//! PostgreSQL (a cluster made with `initdb`, run as the `postgres` user when the suite runs as
//! root, stopped with `pg_ctl stop -m immediate`), Redis (`appendonly yes`, `appendfsync always`,
//! killed with SIGKILL) and MongoDB (`mongod` as a one-member replica set where installed, else
//! the SecantusDB test server, syncing its log at every commit; killed with SIGKILL), each
//! restarted on the same data.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server the suite started, that it can stop and start again on the same data.
#[derive(Debug)]
pub struct OwnServer {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

#[derive(Debug, Clone)]
enum Kind {
    Postgres { bin: PathBuf, as_postgres: bool },
    Redis { bin: PathBuf },
    Mongod { bin: PathBuf },
    Secantus { bin: PathBuf },
}

/// The libfaketime library, for worker processes with a skewed clock.
pub fn libfaketime() -> String {
    for candidate in [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ] {
        if Path::new(candidate).exists() {
            return candidate.to_owned();
        }
    }
    panic!("libfaketime is not installed (Debian: apt-get install libfaketime)");
}

pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl OwnServer {
    /// Starts a server for `backend` in a folder under `dir`. `None`, with a line saying why,
    /// when the server program is not installed here (a failure when `DOGS_REQUIRE` names it).
    pub async fn start(backend: &str, dir: &Path) -> Option<OwnServer> {
        let kind = match backend {
            "postgres" => postgres_bin().map(|bin| Kind::Postgres {
                bin,
                as_postgres: is_root(),
            }),
            "redis" => which("redis-server").map(|bin| Kind::Redis { bin }),
            "mongo" => which("mongod").map(|bin| Kind::Mongod { bin }).or_else(|| {
                which("secantusd-rs")
                    .or_else(|| {
                        let home = std::env::var_os("HOME")?;
                        let bin = PathBuf::from(home).join(".cargo/bin/secantusd-rs");
                        bin.is_file().then_some(bin)
                    })
                    .map(|bin| Kind::Secantus { bin })
            }),
            _ => None,
        };
        let Some(kind) = kind else {
            let message =
                format!("{backend}: no server program here to run a server of the suite's own");
            assert!(!crate::env::is_required(backend), "{message}");
            println!("{message}; the outage scenario is skipped");
            return None;
        };
        let dir = dir.join("server");
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = OwnServer {
            kind,
            port: free_port(),
            dir,
            child: None,
        };
        server.init();
        server.launch().await;
        if let Kind::Mongod { .. } = server.kind {
            server.initiate_replica_set().await;
        }
        Some(server)
    }

    /// The URL of this server.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Postgres { .. } => {
                format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
            }
            Kind::Redis { .. } => format!("redis://127.0.0.1:{}", self.port),
            Kind::Mongod { .. } | Kind::Secantus { .. } => {
                format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
            }
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_user(&self, program: &Path) -> Command {
        match self.kind {
            Kind::Postgres {
                as_postgres: true, ..
            } => {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            }
            _ => Command::new(program),
        }
    }

    fn init(&mut self) {
        let data = self.data();
        std::fs::create_dir_all(&data).unwrap();
        if let Kind::Postgres { bin, as_postgres } = &self.kind {
            if *as_postgres {
                run(
                    Command::new("chown")
                        .args(["-R", "postgres:postgres"])
                        .arg(&self.dir),
                    "giving the data folder to postgres",
                );
            }
            let initdb = bin.join("initdb");
            run(
                self.as_user(&initdb).arg("-D").arg(&data).args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                ]),
                "initdb",
            );
        }
    }

    async fn launch(&mut self) {
        let data = self.data();
        let log = self.dir.join("server.log");
        let port = self.port.to_string();
        match &self.kind {
            Kind::Postgres { bin, .. } => {
                let options = format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
                    data.display()
                );
                run(
                    self.as_user(&bin.join("pg_ctl"))
                        .arg("-D")
                        .arg(&data)
                        .args(["-o", &options, "-l"])
                        .arg(&log)
                        .args(["-w", "start"]),
                    "pg_ctl start",
                );
            }
            Kind::Redis { bin } => {
                let child = Command::new(bin)
                    .args(["--port", &port, "--bind", "127.0.0.1", "--dir"])
                    .arg(&data)
                    .args([
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                        "--save",
                        "",
                    ])
                    .args(["--daemonize", "no", "--logfile"])
                    .arg(&log)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting redis-server: {e}"));
                self.child = Some(child);
            }
            Kind::Mongod { bin } => {
                let child = Command::new(bin)
                    .args([
                        "--port",
                        &port,
                        "--bind_ip",
                        "127.0.0.1",
                        "--replSet",
                        "rs0",
                    ])
                    .arg("--dbpath")
                    .arg(&data)
                    .arg("--logpath")
                    .arg(&log)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting mongod: {e}"));
                self.child = Some(child);
            }
            Kind::Secantus { bin } => {
                let child = Command::new(bin)
                    .args(["--host", "127.0.0.1", "--port", &port, "--storage-path"])
                    .arg(&data)
                    .args(["--cache-size", "256M", "--log-file-max", "1MB"])
                    // Without it the test server acknowledges a journaled write (`j: true`)
                    // before its log reaches the disk, and a SIGKILL loses it; mongod does not.
                    .arg("--sync-on-commit")
                    .stdout(Stdio::null())
                    .stderr(
                        std::fs::File::create(&log)
                            .map(Stdio::from)
                            .unwrap_or(Stdio::null()),
                    )
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting the MongoDB test server: {e}"));
                self.child = Some(child);
            }
        }
        let end = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < end,
                "the server did not listen within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn initiate_replica_set(&self) {
        use dogs_mongo::mongodb::bson::doc;
        let client = dogs_mongo::mongodb::Client::with_uri_str(self.url())
            .await
            .unwrap();
        let admin = client.database("admin");
        admin
            .run_command(doc! { "replSetInitiate": {
                "_id": "rs0",
                "members": [{ "_id": 0, "host": format!("127.0.0.1:{}", self.port) }],
            } })
            .await
            .unwrap();
        crate::support::wait_until("a primary", Duration::from_secs(60), || async {
            admin
                .run_command(doc! { "hello": 1 })
                .await
                .map(|hello| hello.get_bool("isWritablePrimary").unwrap_or(false))
                .unwrap_or(false)
        })
        .await;
    }

    /// Stops the server abruptly: `pg_ctl stop -m immediate`, or SIGKILL.
    pub fn stop(&mut self) {
        match &self.kind {
            Kind::Postgres { bin, .. } => run(
                self.as_user(&bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(self.data())
                    .args(["-m", "immediate", "-w", "stop"]),
                "pg_ctl stop",
            ),
            _ => {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }

    /// Starts the server again on the same port and data.
    pub async fn restart(&mut self) {
        self.launch().await;
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Kind::Postgres { bin, .. } = &self.kind {
            let _ = self
                .as_user(&bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        } else if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The folder of PostgreSQL's server programs: `initdb` on the PATH, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin() -> Option<PathBuf> {
    if let Some(initdb) = which("initdb") {
        return initdb.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
