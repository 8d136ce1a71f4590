//! How sqlx errors become dogs errors: the kind says what a caller can do about it.

use dogs_core::{Error, ErrorKind};

/// Maps a sqlx error met while doing `what` to a dogs error of the right kind.
///
/// Connection problems, pool time-outs and server shutdowns are `Unavailable` (retrying later may
/// succeed); a value over a PostgreSQL limit is `TooLarge`; everything else is `Backend`.
pub(crate) fn db_error(what: &str, error: sqlx::Error) -> Error {
    let kind = match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => ErrorKind::Unavailable,
        sqlx::Error::Configuration(_) => ErrorKind::Config,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // connection_exception, admin_shutdown, crash_shutdown, cannot_connect_now,
            // too_many_connections
            Some(code)
                if code.starts_with("08")
                    || matches!(code, "57P01" | "57P02" | "57P03" | "53300") =>
            {
                ErrorKind::Unavailable
            }
            // program_limit_exceeded, string_data_right_truncation
            Some(code) if code.starts_with("54") || code == "22001" => ErrorKind::TooLarge,
            // untranslatable_character, character_not_in_repertoire, invalid text
            Some("22P05" | "22021" | "22P02") => ErrorKind::InvalidInput,
            // datetime_field_overflow, interval_field_overflow: a time past what it holds
            Some("22008" | "22015") => ErrorKind::InvalidInput,
            _ => ErrorKind::Backend,
        },
        _ => ErrorKind::Backend,
    };
    Error::new(kind, format!("PostgreSQL: {what} failed")).with_source(error)
}

/// Whether `error` comes from a serialization failure or a deadlock: the statement can run
/// again and succeed.
pub(crate) fn is_serialization_failure(error: &Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(sqlx::Error::Database(db)) = cause.downcast_ref::<sqlx::Error>() {
            return matches!(db.code().as_deref(), Some("40001" | "40P01"));
        }
        source = cause.source();
    }
    false
}
