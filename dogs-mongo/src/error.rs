//! How MongoDB driver errors become dogs errors: the kind says what a caller can do about it.

use dogs_core::{Error, ErrorKind};
use mongodb::error::{ErrorKind as MongoKind, WriteFailure};

/// MongoDB's duplicate key error.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// MongoDB's write conflict between transactions.
const WRITE_CONFLICT: i32 = 112;

/// The server codes of a failover, after which a call may succeed on the new primary: a member
/// that is not (or no longer) the primary, is electing, recovering or shutting down
/// (`NotWritablePrimary`, `PrimarySteppedDown`, `InterruptedDueToReplStateChange`, …), could
/// not reach another (`HostUnreachable`, `NetworkTimeout`, …), has no majority snapshot yet
/// (`ReadConcernMajorityNotAvailableYet`), or did not hear from a majority in time
/// (`WriteConcernFailed`, a `wtimeoutMS` that ran out: the write may still be applied).
const FAILOVER: [i32; 15] = [
    10107, 13435, 10058, 11600, 11602, 13436, 189, 91, 7, 6, 89, 9001, 262, 134, 64,
];

/// The server code of a command or write error, if it has one.
pub(crate) fn code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        MongoKind::Command(e) => Some(e.code),
        MongoKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        MongoKind::Write(WriteFailure::WriteConcernError(e)) => Some(e.code),
        _ => None,
    }
}

/// Maps a driver error met while doing `what` to a dogs error of the right kind.
///
/// Network errors, server selection time-outs, cleared pools, transient transaction errors and
/// the errors of a failover (the driver retried a retryable write once already) are
/// `Unavailable` (retrying later may succeed); a document over the server's size limit is
/// `TooLarge`; everything else is `Backend`.
pub(crate) fn mongo_error(what: &str, error: mongodb::error::Error) -> Error {
    // A transaction that met a transient error (a write conflict, a failover), or whose commit
    // outcome is unknown, can be run again.
    let transient = error.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR)
        || error.contains_label(mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT)
        || error.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR)
        || code(&error).is_some_and(|c| c == WRITE_CONFLICT || FAILOVER.contains(&c));
    let kind = match error.kind.as_ref() {
        _ if transient => ErrorKind::Unavailable,
        MongoKind::Io(_)
        | MongoKind::ServerSelection { .. }
        | MongoKind::ConnectionPoolCleared { .. }
        | MongoKind::DnsResolve { .. } => ErrorKind::Unavailable,
        // The driver refuses a document over the server's size limit before sending it.
        MongoKind::InvalidArgument { message, .. } if message.contains("must be within") => {
            ErrorKind::TooLarge
        }
        MongoKind::InvalidArgument { .. } => ErrorKind::InvalidInput,
        MongoKind::Authentication { .. } => ErrorKind::Config,
        MongoKind::BsonSerialization(_) => ErrorKind::Serialization,
        _ => match code(&error) {
            // BSONObjectTooLarge, and a document over the 16 MiB limit
            Some(10334 | 17419 | 2) if error.to_string().contains("too large") => {
                ErrorKind::TooLarge
            }
            _ if error.to_string().contains("too large") => ErrorKind::TooLarge,
            _ => ErrorKind::Backend,
        },
    };
    Error::new(kind, format!("MongoDB: {what} failed")).with_source(error)
}

/// A stored document that does not have the fields dogs writes.
pub(crate) fn corrupt(what: &str) -> Error {
    Error::new(ErrorKind::Corrupt, format!("MongoDB: {what}"))
}

/// Whether `error` is the server's duplicate key error.
pub(crate) fn is_duplicate(error: &Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(e) = cause.downcast_ref::<mongodb::error::Error>() {
            return code(e) == Some(DUPLICATE_KEY);
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mongodb::bson::doc;
    use mongodb::error::{CommandError, ErrorKind as MongoKind};

    use super::*;

    fn command_error(code: i32, name: &str) -> mongodb::error::Error {
        let error: CommandError = mongodb::bson::from_document(
            doc! { "code": code, "codeName": name, "errmsg": "from a test" },
        )
        .unwrap();
        MongoKind::Command(error).into()
    }

    #[test]
    fn the_errors_of_a_failover_are_unavailable() {
        for (code, name) in [
            (10107, "NotWritablePrimary"),
            (189, "PrimarySteppedDown"),
            (11602, "InterruptedDueToReplStateChange"),
            (134, "ReadConcernMajorityNotAvailableYet"),
            (64, "WriteConcernFailed"),
        ] {
            let error = mongo_error("testing", command_error(code, name));
            assert_eq!(error.kind(), ErrorKind::Unavailable, "{name}");
        }
        let error = mongo_error("testing", command_error(2, "BadValue"));
        assert_eq!(error.kind(), ErrorKind::Backend);
    }
}
