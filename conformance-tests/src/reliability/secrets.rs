//! Secrets: a connection URL's password never appears in errors, logs or `Debug` output.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Env;

const PASSWORD: &str = "Sup3r-s3cret-pa55";

/// Collects log output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// URLs with a password: one to a port nothing listens on, one to the real server (where the
/// server accepts or refuses it).
fn urls(env: &Env) -> Vec<String> {
    let with_password = |url: &str| -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://dogs_user:{PASSWORD}@{rest}")
    };
    let dead = match env.backend() {
        "postgres" => "postgres://127.0.0.1:1/db".to_owned(),
        "redis" => "redis://127.0.0.1:1".to_owned(),
        _ => "mongodb://127.0.0.1:1/?directConnection=true".to_owned(),
    };
    vec![with_password(&dead), with_password(&env.settings.url)]
}

/// Connecting with a password: the error, its `Debug`, the log lines and the builder's `Debug`
/// never show the password, and the error names the address.
pub async fn secrets(env: Env) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut shown = Vec::new();
    for (i, url) in urls(&env).into_iter().enumerate() {
        let outcome = match env.backend() {
            "postgres" => {
                let builder = dogs_postgres::PostgresStore::builder()
                    .url(&url)
                    .schema(env.namespace.as_str())
                    .acquire_timeout(Duration::from_secs(2));
                shown.push(format!("{builder:?}"));
                builder.connect().await.map(|s| format!("{s:?}"))
            }
            "redis" => {
                let builder = dogs_redis::RedisStore::builder()
                    .url(&url)
                    .prefix(env.namespace.as_str())
                    .response_timeout(Duration::from_secs(2));
                shown.push(format!("{builder:?}"));
                builder.connect().await.map(|s| format!("{s:?}"))
            }
            _ => {
                let builder = dogs_mongo::MongoStore::builder()
                    .url(&url)
                    .database(env.namespace.as_str())
                    .timeout(Duration::from_secs(2));
                shown.push(format!("{builder:?}"));
                builder.connect().await.map(|s| format!("{s:?}"))
            }
        };
        match outcome {
            Ok(store) => shown.push(store),
            Err(e) => {
                if i == 0 {
                    assert_eq!(
                        e.kind(),
                        dogs_core::ErrorKind::Unavailable,
                        "nothing listens: {e}"
                    );
                }
                assert!(
                    e.to_string().contains("127.0.0.1"),
                    "the error names the address: {e}"
                );
                shown.push(e.to_string());
                shown.push(format!("{e:?}"));
                let mut source = std::error::Error::source(&e);
                while let Some(inner) = source {
                    shown.push(inner.to_string());
                    source = inner.source();
                }
            }
        }
    }
    shown.push(String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned());
    for text in shown {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
}
