//! Calling user code that is not a handler (`on_error`, `on_stale`, `on_max_tries`,
//! `get_next_run`): a panic in it is caught and logged, and the caller goes on as if the hook
//! were absent.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The message of a caught panic.
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned())
}

/// Calls the hook `name`; `None`, with the panic logged, when it panics.
pub(crate) fn guarded<R>(name: &str, hook: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(hook)) {
        Ok(value) => Some(value),
        Err(panic) => {
            tracing::error!(
                hook = name,
                panic = %panic_text(&*panic),
                "a hook panicked; going on as if it were absent"
            );
            None
        }
    }
}
