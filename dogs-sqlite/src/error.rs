//! How sqlx errors become dogs errors: the kind says what a caller can do about it.

use dogs_core::{Error, ErrorKind};

/// SQLite's primary result codes the store tells apart (the low byte of an extended code).
mod code {
    pub(super) const PERM: i64 = 3;
    pub(super) const BUSY: i64 = 5;
    pub(super) const LOCKED: i64 = 6;
    pub(super) const NOMEM: i64 = 7;
    pub(super) const READONLY: i64 = 8;
    pub(super) const IOERR: i64 = 10;
    pub(super) const FULL: i64 = 13;
    pub(super) const CANTOPEN: i64 = 14;
    pub(super) const PROTOCOL: i64 = 15;
    pub(super) const TOOBIG: i64 = 18;
    pub(super) const CONSTRAINT: i64 = 19;
    pub(super) const MISMATCH: i64 = 20;
    pub(super) const RANGE: i64 = 25;
    pub(super) const NOTADB: i64 = 26;
}

/// The primary SQLite result code of `error`, when it is a database error.
fn primary_code(error: &sqlx::Error) -> Option<i64> {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .map(|code| code & 0xff),
        _ => None,
    }
}

/// Whether `error` says the database is locked by another connection (`SQLITE_BUSY`, or
/// `SQLITE_LOCKED` from a shared cache): waiting and trying again may succeed.
pub(crate) fn is_busy(error: &sqlx::Error) -> bool {
    matches!(primary_code(error), Some(code::BUSY | code::LOCKED))
}

/// Whether a dogs error was caused by a locked database (see [`is_busy`]).
pub(crate) fn is_busy_error(error: &Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(sqlx) = cause.downcast_ref::<sqlx::Error>() {
            return is_busy(sqlx);
        }
        source = cause.source();
    }
    false
}

/// Maps a sqlx error met while doing `what` to a dogs error of the right kind.
///
/// A locked database, a file that cannot be opened, read or written (permissions, a full disk,
/// not a database) and a closed or exhausted pool are `Unavailable` (trying later may succeed);
/// a value past SQLite's limits is `TooLarge`; a constraint the store's own checks should have
/// kept is `Conflict`; everything else is `Backend`.
pub(crate) fn db_error(what: &str, error: sqlx::Error) -> Error {
    let kind = match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => ErrorKind::Unavailable,
        sqlx::Error::Configuration(_) => ErrorKind::Config,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => ErrorKind::Corrupt,
        sqlx::Error::Database(_) => match primary_code(&error) {
            Some(
                code::BUSY
                | code::LOCKED
                | code::PERM
                | code::NOMEM
                | code::READONLY
                | code::IOERR
                | code::FULL
                | code::CANTOPEN
                | code::PROTOCOL
                | code::NOTADB,
            ) => ErrorKind::Unavailable,
            Some(code::TOOBIG) => ErrorKind::TooLarge,
            Some(code::CONSTRAINT) => ErrorKind::Conflict,
            Some(code::MISMATCH | code::RANGE) => ErrorKind::InvalidInput,
            _ => ErrorKind::Backend,
        },
        _ => ErrorKind::Backend,
    };
    Error::new(kind, format!("SQLite: {what} failed")).with_source(error)
}
