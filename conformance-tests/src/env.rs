//! The test environment convention: which servers the suite runs against, and when a backend that
//! cannot run is a failure rather than a skip.
//!
//! - `DOGS_POSTGRES_URL`, `DOGS_REDIS_URL`, `DOGS_MONGO_URL` point the tests at running servers.
//! - Where one is unset and a Docker engine is reachable, the suite starts the official image with
//!   testcontainers, for the length of the test binary's run.
//! - `DOGS_PGBOUNCER_URL` points the `postgres_pgbouncer` target at a PgBouncer in transaction
//!   pooling mode in front of the `DOGS_POSTGRES_URL` server (`scripts/test` starts one where
//!   PgBouncer is installed); no container is started for it.
//! - Otherwise the backend's tests are skipped with one line saying why; with
//!   `DOGS_REQUIRE=postgres,redis,mongo` (set by CI) a skipped backend is a failure.

use std::path::Path;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// A database server the suite can run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL.
    Postgres,
    /// Redis.
    Redis,
    /// MongoDB (a replica set, for change streams).
    Mongo,
}

impl Server {
    /// The variable that names a running server's URL.
    pub fn url_variable(self) -> &'static str {
        match self {
            Server::Postgres => "DOGS_POSTGRES_URL",
            Server::Redis => "DOGS_REDIS_URL",
            Server::Mongo => "DOGS_MONGO_URL",
        }
    }

    /// The backend's name, as written in `DOGS_REQUIRE`.
    pub fn backend_name(self) -> &'static str {
        match self {
            Server::Postgres => "postgres",
            Server::Redis => "redis",
            Server::Mongo => "mongo",
        }
    }

    fn image(self) -> (GenericImage, u16, Vec<(&'static str, &'static str)>) {
        match self {
            Server::Postgres => (
                // The image's first server (during initialisation) logs to stdout, the final
                // one to stderr: both must be ready.
                GenericImage::new("postgres", "17-alpine")
                    .with_wait_for(WaitFor::message_on_stdout(
                        "database system is ready to accept connections",
                    ))
                    .with_wait_for(WaitFor::message_on_stderr(
                        "database system is ready to accept connections",
                    )),
                5432,
                vec![("POSTGRES_HOST_AUTH_METHOD", "trust")],
            ),
            Server::Redis => (
                GenericImage::new("redis", "7-alpine")
                    .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections")),
                6379,
                vec![],
            ),
            Server::Mongo => (
                GenericImage::new("mongo", "7")
                    .with_wait_for(WaitFor::message_on_stdout("Waiting for connections")),
                27017,
                vec![],
            ),
        }
    }

    fn url(self, host: &str, port: u16) -> String {
        match self {
            Server::Postgres => format!("postgres://postgres@{host}:{port}/postgres"),
            Server::Redis => format!("redis://{host}:{port}"),
            Server::Mongo => format!("mongodb://{host}:{port}/?directConnection=true"),
        }
    }
}

/// The backends `DOGS_REQUIRE` names (comma or space separated, lower case).
pub fn required_backends() -> Vec<String> {
    std::env::var("DOGS_REQUIRE")
        .unwrap_or_default()
        .split([',', ' '])
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether `DOGS_REQUIRE` names `backend`.
pub fn is_required(backend: &str) -> bool {
    required_backends().iter().any(|b| b == backend)
}

/// Whether a Docker engine looks reachable: `DOCKER_HOST` is set or the default socket exists.
pub fn docker_reachable() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists()
}

/// A server the suite can use, and the container it runs in when the suite started it.
pub struct ServerHandle {
    /// The URL to connect to.
    pub url: String,
    container: Option<(tokio::runtime::Runtime, ContainerAsync<GenericImage>)>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("started_here", &self.container.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some((runtime, container)) = self.container.take() {
            if let Err(e) = runtime.block_on(container.rm()) {
                eprintln!("removing the test container failed: {e}");
            }
        }
    }
}

/// Finds the server for `server`: its URL variable, else a container started with
/// testcontainers where Docker is reachable. `Err` says why neither is possible.
pub fn find_server(server: Server) -> Result<ServerHandle, String> {
    if let Ok(url) = std::env::var(server.url_variable()) {
        if !url.trim().is_empty() {
            return Ok(ServerHandle {
                url,
                container: None,
            });
        }
    }
    if !docker_reachable() {
        return Err(format!(
            "{} is unset and no Docker engine is reachable",
            server.url_variable()
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime for testcontainers: {e}"))?;
    let (image, port, env) = server.image();
    let container = runtime.block_on(async {
        let mut request =
            testcontainers::ContainerRequest::from(image.with_exposed_port(port.tcp()));
        for (name, value) in env {
            request = request.with_env_var(name, value);
        }
        if server == Server::Mongo {
            // A one-member replica set, so change streams (wake-ups) work as in production.
            request = request.with_cmd(["--replSet", "rs0", "--bind_ip_all"]);
        }
        let container = request.start().await.map_err(|e| e.to_string())?;
        let host = container.get_host().await.map_err(|e| e.to_string())?;
        let mapped = container
            .get_host_port_ipv4(port)
            .await
            .map_err(|e| e.to_string())?;
        let url = server.url(&host.to_string(), mapped);
        if server == Server::Mongo {
            initiate_replica_set(&url).await?;
        }
        Ok::<_, String>((container, url))
    });
    match container {
        Ok((container, url)) => Ok(ServerHandle {
            url,
            container: Some((runtime, container)),
        }),
        Err(e) => Err(format!(
            "{} is unset and starting the {} image failed: {e}",
            server.url_variable(),
            server.backend_name()
        )),
    }
}

/// The variable that names a PgBouncer (transaction pooling) in front of the PostgreSQL server.
pub const PGBOUNCER_URL_VARIABLE: &str = "DOGS_PGBOUNCER_URL";

/// A PgBouncer in transaction pooling mode and the PostgreSQL server behind it.
#[derive(Debug, Clone)]
pub struct PooledServer {
    /// The pooler's URL (`DOGS_PGBOUNCER_URL`).
    pub pooler_url: String,
    /// The server's own URL (`DOGS_POSTGRES_URL`), for what needs a session of its own.
    pub direct_url: String,
}

/// Finds the PgBouncer of `DOGS_PGBOUNCER_URL` and the server of `DOGS_POSTGRES_URL` behind it.
/// `Err` says why they cannot be had: both must be set, since no container is started for them.
pub fn find_pgbouncer() -> Result<PooledServer, String> {
    let set = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|url| !url.trim().is_empty())
    };
    let Some(pooler_url) = set(PGBOUNCER_URL_VARIABLE) else {
        return Err(format!(
            "{PGBOUNCER_URL_VARIABLE} is unset (scripts/test starts PgBouncer where it is installed)"
        ));
    };
    let direct = Server::Postgres.url_variable();
    let Some(direct_url) = set(direct) else {
        return Err(format!(
            "{PGBOUNCER_URL_VARIABLE} is set but {direct}, the server behind it, is not"
        ));
    };
    Ok(PooledServer {
        pooler_url,
        direct_url,
    })
}

/// A namespace (schema, key prefix, database name) no other test uses: lower case letters,
/// digits and `_`, at most 48 characters, starting with `dogs_t_`.
pub fn namespace(test_name: &str) -> String {
    let mut name: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    name.insert_str(0, "dogs_t_");
    format!("{name}_{:08x}", fastrand::u32(..))
}

/// Makes a fresh `mongod --replSet rs0` a one-member replica set and waits until it is primary.
async fn initiate_replica_set(url: &str) -> Result<(), String> {
    use dogs_mongo::mongodb::bson::doc;
    let client = dogs_mongo::mongodb::Client::with_uri_str(url)
        .await
        .map_err(|e| e.to_string())?;
    let admin = client.database("admin");
    admin
        .run_command(doc! { "replSetInitiate": {
            "_id": "rs0",
            "members": [{ "_id": 0, "host": "localhost:27017" }],
        } })
        .await
        .map_err(|e| format!("replSetInitiate failed: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let hello = admin
            .run_command(doc! { "hello": 1 })
            .await
            .map_err(|e| e.to_string())?;
        if hello.get_bool("isWritablePrimary").unwrap_or(false) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err("the replica set did not elect a primary within 60 s".to_owned());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
