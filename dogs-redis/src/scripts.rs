//! The Lua scripts, one per operation, each with the shared helpers in front, and how one is
//! called: `EVALSHA`, loading the script when the server does not have it, and, when the store
//! waits for replicas, `WAIT` in the same pipeline (so on the same connection) after a script
//! that writes.

use redis::{FromRedisValue, Script, ServerErrorKind, ToRedisArgs, Value};

use dogs_core::{Error, Result};

use crate::error::{parse_error, redis_error};
use crate::store::RedisStore;

const COMMON: &str = include_str!("lua/common.lua");

/// One script of the store.
pub(crate) struct StoreScript {
    script: Script,
    /// Its whole text, sent with `EVAL` when the server does not have it.
    code: String,
    /// Whether a store that waits for replicas first checks that they are there, so that a call
    /// it would refuse writes nothing (a claim refused after it leased its jobs would leave them
    /// leased, a try counted, until their leases end).
    checks_first: bool,
    /// Whether a store that waits for replicas waits after it: every script that writes but
    /// the layout migration, which can run again.
    waits: bool,
}

/// Every script of the store, loaded once per store.
pub(crate) struct Scripts {
    pub(crate) schedule: StoreScript,
    pub(crate) register: StoreScript,
    pub(crate) claim: StoreScript,
    pub(crate) extend: StoreScript,
    pub(crate) complete: StoreScript,
    pub(crate) record: StoreScript,
    pub(crate) cancel: StoreScript,
    pub(crate) prune: StoreScript,
    pub(crate) migrate: StoreScript,
    pub(crate) progress: StoreScript,
    pub(crate) retry: StoreScript,
    pub(crate) settings: StoreScript,
    pub(crate) counts: StoreScript,
    pub(crate) list: StoreScript,
}

impl Scripts {
    /// The scripts. On a cluster, wake-ups are published on a shard channel (`SPUBLISH`, kept
    /// within the prefix's shard) instead of a channel every node forwards (`PUBLISH`).
    pub(crate) fn new(cluster: bool) -> Self {
        let publish = if cluster { "SPUBLISH" } else { "PUBLISH" };
        let script = |body: &str, waits: bool| {
            let code = format!("local PUBLISH = '{publish}'\n{COMMON}\n{body}");
            StoreScript {
                script: Script::new(&code),
                code,
                waits,
                checks_first: false,
            }
        };
        Scripts {
            schedule: script(include_str!("lua/schedule.lua"), true),
            register: script(include_str!("lua/register.lua"), true),
            claim: StoreScript {
                checks_first: true,
                ..script(include_str!("lua/claim.lua"), true)
            },
            extend: script(include_str!("lua/extend.lua"), true),
            complete: script(include_str!("lua/complete.lua"), true),
            record: script(include_str!("lua/record.lua"), true),
            cancel: script(include_str!("lua/cancel.lua"), true),
            prune: script(include_str!("lua/prune.lua"), true),
            // Moving keys to the current layout can run again: it does not wait.
            migrate: script(include_str!("lua/migrate.lua"), false),
            progress: script(include_str!("lua/progress.lua"), true),
            retry: script(include_str!("lua/retry.lua"), true),
            settings: script(include_str!("lua/settings.lua"), true),
            counts: script(include_str!("lua/counts.lua"), false),
            list: script(include_str!("lua/list.lua"), false),
        }
    }
}

impl StoreScript {
    /// A call of this script with its one key (every script takes the prefix's `seq` key, so
    /// the call goes to the node that owns the prefix's slot).
    pub(crate) fn key(&self, key: impl ToRedisArgs) -> Call<'_> {
        Call {
            script: self,
            keys: key.to_redis_args(),
            args: Vec::new(),
        }
    }
}

/// A script call being built: its keys and arguments.
pub(crate) struct Call<'a> {
    script: &'a StoreScript,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call<'_> {
    /// Adds an argument.
    pub(crate) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// Runs the script on `store`'s connection; `what` names the operation in errors. A store
    /// that waits for replicas sends `WAIT` right after a script that writes, in the same
    /// pipeline, and fails with `Unavailable` when fewer replicas than asked confirmed the write
    /// in time: the write is on the master, but a failover may lose it.
    pub(crate) async fn run<T: FromRedisValue>(&self, store: &RedisStore, what: &str) -> Result<T> {
        let wait = store.inner.wait.filter(|_| self.script.waits);
        let mut conn = store.conn();
        if let Some(wait) = wait.filter(|_| self.script.checks_first) {
            let confirmed: Value = wait
                .command()
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error(what, e))?;
            wait.check(what, confirmed)?;
        }
        let command = |eval: bool| {
            let mut cmd = if eval {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(&self.script.code);
                cmd
            } else {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(self.script.script.get_hash());
                cmd
            };
            cmd.arg(self.keys.len()).arg(&self.keys).arg(&self.args);
            cmd
        };
        // The script's hash first; its whole text when the server does not have it (`EVAL`
        // also caches it), sent to the same node by the same routing as every other command.
        let mut eval = false;
        loop {
            let cmd = command(eval);
            let (reply, confirmed) = match wait {
                None => (cmd.query_async::<Value>(&mut conn).await, None),
                Some(wait) => {
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors()
                        .add_command(cmd)
                        .add_command(wait.command());
                    match pipe.query_async::<(Value, Value)>(&mut conn).await {
                        Ok((reply, confirmed)) => (Ok(reply), Some(confirmed)),
                        Err(e) => (Err(e), None),
                    }
                }
            };
            let reply = match reply {
                Ok(Value::ServerError(e)) => Err(redis::RedisError::from(e)),
                other => other,
            };
            match reply {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) && !eval =>
                {
                    eval = true;
                }
                Err(e) => return Err(redis_error(what, e)),
                Ok(value) => {
                    if let (Some(wait), Some(confirmed)) = (wait, confirmed) {
                        wait.check(what, confirmed)?;
                    }
                    return redis::from_redis_value(value).map_err(|e| parse_error(what, e));
                }
            }
        }
    }
}

/// How many replicas must confirm each write, and how long to wait for them
/// ([`RedisStoreBuilder::wait_for_replicas`](crate::RedisStoreBuilder::wait_for_replicas)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplicaWait {
    pub(crate) replicas: u32,
    pub(crate) timeout: std::time::Duration,
}

impl ReplicaWait {
    /// `WAIT replicas timeout` (the timeout in whole milliseconds, at least 1: 0 would wait
    /// forever).
    fn command(self) -> redis::Cmd {
        let millis = u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.replicas).arg(millis);
        cmd
    }

    /// `WAIT`'s answer: the number of replicas that confirmed.
    fn check(self, what: &str, confirmed: Value) -> Result<()> {
        let confirmed = match confirmed {
            Value::Int(n) => n,
            Value::ServerError(e) => return Err(redis_error(what, e.into())),
            _ => return Err(crate::error::bad_reply(what)),
        };
        if confirmed >= i64::from(self.replicas) {
            return Ok(());
        }
        Err(Error::unavailable(format!(
            "Redis: {what}: {confirmed} of {} replica(s) confirmed the write within {:?}; it is on \
             the master, and a failover before it reaches a replica would lose it",
            self.replicas, self.timeout
        )))
    }
}
