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
/// never show the password, and the error names the address; then the same with random
/// passwords of any characters, `/`, `?`, `#`, `@` and `:` among them, unescaped.
pub async fn secrets(env: Env) {
    fixed_password(&env).await;
    random_passwords(&env).await;
}

/// Everything a failed connection shows: the builder's `Debug`, the error, its `Debug`, its
/// sources.
async fn connect_and_show(
    env: &Env,
    url: &str,
    timeout: Duration,
) -> (Vec<String>, Option<dogs_core::Error>) {
    let mut shown = Vec::new();
    let outcome = match env.backend() {
        "postgres" => {
            let builder = dogs_postgres::PostgresStore::builder()
                .url(url)
                .schema(env.namespace.as_str())
                .acquire_timeout(timeout);
            shown.push(format!("{builder:?}"));
            builder.connect().await.map(|s| format!("{s:?}"))
        }
        "redis" => {
            let builder = dogs_redis::RedisStore::builder()
                .url(url)
                .prefix(env.namespace.as_str())
                .response_timeout(timeout);
            shown.push(format!("{builder:?}"));
            builder.connect().await.map(|s| format!("{s:?}"))
        }
        _ => {
            let builder = dogs_mongo::MongoStore::builder()
                .url(url)
                .database(env.namespace.as_str())
                .timeout(timeout);
            shown.push(format!("{builder:?}"));
            builder.connect().await.map(|s| format!("{s:?}"))
        }
    };
    match outcome {
        Ok(store) => {
            shown.push(store);
            (shown, None)
        }
        Err(e) => {
            shown.push(e.to_string());
            shown.push(format!("{e:?}"));
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                shown.push(inner.to_string());
                source = inner.source();
            }
            (shown, Some(e))
        }
    }
}

/// 32 random passwords of 8 to 24 characters, any printable ones, in a URL to a port where
/// nothing listens: nothing shown and no log line holds one.
async fn random_passwords(env: &Env) {
    use proptest::strategy::{Strategy, ValueTree};
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dead = match env.backend() {
        "postgres" => "postgres://dogs_user:{}@127.0.0.1:1/db",
        "redis" => "redis://dogs_user:{}@127.0.0.1:1",
        _ => "mongodb://dogs_user:{}@127.0.0.1:1/?directConnection=true",
    };
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = "[ -~]{8,24}|\\PC{8,24}";
    let mut passwords = Vec::new();
    for _ in 0..32 {
        let password = strategy
            .new_tree(&mut runner)
            .map(|tree| tree.current())
            .unwrap_or_else(|e| panic!("no password: {e}"));
        let url = dead.replace("{}", &password);
        if url.replace(&password, "").contains(&password) {
            continue;
        }
        let (shown, _) = connect_and_show(env, &url, Duration::from_millis(300)).await;
        for text in shown {
            assert!(
                !text.contains(&password),
                "the password {password:?} leaked: {text}"
            );
        }
        passwords.push(password);
    }
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    for password in &passwords {
        assert!(
            !logs.contains(password.as_str()),
            "the password {password:?} leaked into the logs"
        );
    }
}

async fn fixed_password(env: &Env) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut shown = Vec::new();
    for (i, url) in urls(env).into_iter().enumerate() {
        let (mut texts, error) = connect_and_show(env, &url, Duration::from_secs(2)).await;
        if let Some(e) = error {
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
        }
        shown.append(&mut texts);
    }
    shown.push(String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned());
    for text in shown {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
}
