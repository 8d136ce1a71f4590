//! The Lua scripts, one per operation, each with the shared helpers in front.

use redis::Script;

const COMMON: &str = include_str!("lua/common.lua");

/// Every script of the store, loaded once per store.
pub(crate) struct Scripts {
    pub(crate) schedule: Script,
    pub(crate) register: Script,
    pub(crate) claim: Script,
    pub(crate) extend: Script,
    pub(crate) complete: Script,
    pub(crate) record: Script,
    pub(crate) cancel: Script,
    pub(crate) prune: Script,
    pub(crate) migrate: Script,
    pub(crate) progress: Script,
    pub(crate) retry: Script,
    pub(crate) settings: Script,
    pub(crate) counts: Script,
    pub(crate) list: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            schedule: script(include_str!("lua/schedule.lua")),
            register: script(include_str!("lua/register.lua")),
            claim: script(include_str!("lua/claim.lua")),
            extend: script(include_str!("lua/extend.lua")),
            complete: script(include_str!("lua/complete.lua")),
            record: script(include_str!("lua/record.lua")),
            cancel: script(include_str!("lua/cancel.lua")),
            prune: script(include_str!("lua/prune.lua")),
            migrate: script(include_str!("lua/migrate.lua")),
            progress: script(include_str!("lua/progress.lua")),
            retry: script(include_str!("lua/retry.lua")),
            settings: script(include_str!("lua/settings.lua")),
            counts: script(include_str!("lua/counts.lua")),
            list: script(include_str!("lua/list.lua")),
        }
    }
}
