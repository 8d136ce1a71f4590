//! How Redis errors become dogs errors: the kind says what a caller can do about it.

use dogs_core::{Error, ErrorKind};

/// Maps a Redis error met while doing `what` to a dogs error of the right kind.
///
/// Connection problems, time-outs and a cluster slot that is moving or failing over are
/// `Unavailable` (retrying later may succeed); everything else is `Backend`.
pub(crate) fn redis_error(what: &str, error: redis::RedisError) -> Error {
    let kind = if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
        || crate::connection::not_run(&error)
    {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Backend
    };
    Error::new(kind, format!("Redis: {what} failed")).with_source(error)
}

/// A reply that does not have the shape a script returns.
pub(crate) fn bad_reply(what: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("Redis: unexpected reply to {what}"),
    )
}

/// A reply value that does not parse as what it should be.
pub(crate) fn parse_error(
    what: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::new(ErrorKind::Corrupt, format!("Redis: {what} cannot be read")).with_source(error)
}
