//! The one error type of dogs, with a kind to match on.

use std::fmt;

/// What went wrong, as a kind to match on.
///
/// Tests and callers branch on the kind, never on the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The lease token is no longer current: the lease ran out and the job was claimed again, or the
    /// job was released, finished or removed. Nothing was changed.
    LockLost,
    /// The job or record does not exist.
    NotFound,
    /// The write conflicts with what is stored (for example a recurrent job name used by an event job).
    Conflict,
    /// Invalid job definitions or worker options, or a store configuration that cannot be used.
    Config,
    /// An argument of the call is invalid (an empty job name, a NUL byte in an identifier, ...).
    InvalidInput,
    /// Params or a result could not be serialized or deserialized.
    Serialization,
    /// The params are larger than the store accepts.
    TooLarge,
    /// The store cannot be reached or did not answer in time. Retrying later may succeed.
    Unavailable,
    /// A stored record could not be read (written by another version, or by hand).
    Corrupt,
    /// The workers are shutting down.
    Shutdown,
    /// A wait reached its deadline before what it waited for happened (the testing helpers).
    TimedOut,
    /// Any other failure reported by the store.
    Backend,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ErrorKind::LockLost => "lock lost",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Config => "invalid configuration",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Serialization => "serialization failed",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Unavailable => "store unavailable",
            ErrorKind::Corrupt => "unreadable record",
            ErrorKind::Shutdown => "shutting down",
            ErrorKind::Backend => "store error",
        };
        f.write_str(text)
    }
}

/// The error of every fallible dogs call: a [`ErrorKind`], a message for people, and the cause.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with [`Error`] as its error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind, to match on.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A [`ErrorKind::LockLost`] error for the job `id`.
    pub fn lock_lost(id: impl fmt::Display) -> Self {
        Error::new(
            ErrorKind::LockLost,
            format!("job {id}: the lease token is no longer current"),
        )
    }

    /// A [`ErrorKind::NotFound`] error.
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, what)
    }

    /// A [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// A [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// A [`ErrorKind::Serialization`] error with its cause.
    pub fn serialization(message: impl Into<String>, source: serde_json::Error) -> Self {
        Error::new(ErrorKind::Serialization, message).with_source(source)
    }

    /// A [`ErrorKind::Unavailable`] error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unavailable, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", &source.to_string());
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// A connection URL with its password replaced by `***`, for messages and logs; text that is not
/// a URL becomes `(not a URL)`, so nothing of it leaks either.
///
/// Conservative whatever characters the password holds (`/`, `?`, `#`, `@`, `:` unescaped):
/// everything before the last `@` is credentials, of which only a plain user name is shown, and
/// a parameter that may carry a secret (`password=`, `sslpassword=`, a key holding `secret`,
/// `token` or `authMechanismProperties`) hides the rest of the URL. When the two overlap, only
/// the scheme is shown.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    let parameter = secret_parameter(rest);
    let at = rest.rfind('@');
    if let (Some(parameter), Some(at)) = (parameter, at) {
        if parameter <= at {
            return format!("{scheme}://***");
        }
    }
    let (credentials, tail) = match at {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let shown_credentials = credentials.map(|credentials| {
        let (user, has_password) = match credentials.split_once(':') {
            Some((user, _)) => (user, true),
            None => (credentials, false),
        };
        let plain = user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~%+!$&'()*,;=".contains(c));
        match (plain, has_password) {
            (true, true) => format!("{user}:***@"),
            (true, false) => format!("{user}@"),
            (false, _) => "***@".to_owned(),
        }
    });
    let tail = match secret_parameter(tail) {
        Some(i) => format!("{}***", &tail[..i]),
        None => tail.to_owned(),
    };
    format!("{scheme}://{}{tail}", shown_credentials.unwrap_or_default())
}

/// Where the value of the first parameter of `text` that may carry a secret starts.
fn secret_parameter(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    ["password", "secret", "token", "authmechanismproperties"]
        .iter()
        .filter_map(|marker| {
            let found = lower.find(marker)?;
            let equals = lower[found..].find('=')?;
            Some(found + equals + 1)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/app?sslmode=require"),
            "postgres://app:***@db:5432/app?sslmode=require"
        );
        assert_eq!(
            redact_url("redis://:s3cret@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(redact_url("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(redact_url("postgres://db"), "postgres://db");
        assert_eq!(redact_url("nonsense s3cret"), "(not a URL)");
    }

    #[test]
    fn redact_url_hides_passwords_with_url_characters() {
        for password in ["pa/ss", "pa?ss", "pa#ss", "p@ss", "a:b@c/d?e#f", "@/?#:"] {
            let url = format!("postgres://app:{password}@db:5432/app");
            let shown = redact_url(&url);
            assert!(!shown.contains(password), "{url} shown as {shown}");
            assert!(shown.contains("db:5432"), "{url} shown as {shown}");
        }
        let shown = redact_url("postgres://db/app?user=app&password=s3cret&sslmode=require");
        assert!(!shown.contains("s3cret"), "{shown}");
        let shown = redact_url(
            "mongodb://db/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:s3cret",
        );
        assert!(!shown.contains("s3cret") && shown.contains("db"), "{shown}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

        /// No password, of any characters, appears in a redacted URL, whichever form carries it.
        #[test]
        fn redact_url_never_shows_a_password(password in "\\PC{8,40}", form in 0usize..5) {
            let url = match form {
                0 => format!("postgres://app:{password}@db.internal:5432/app?sslmode=require"),
                1 => format!("redis://:{password}@cache.internal:6379/0"),
                2 => format!("mongodb://app:{password}@a.internal:27017,b.internal:27017/?replicaSet=rs0"),
                3 => format!("rediss://default:{password}@cache.internal"),
                _ => format!("postgres://db.internal/app?user=app&password={password}"),
            };
            let without = url.replace(&password, "");
            proptest::prop_assume!(!without.contains(&password));
            let shown = redact_url(&url);
            proptest::prop_assert!(!shown.contains(&password), "{} shown as {}", url, shown);
            // The address is kept, unless the password makes the URL ambiguous.
            let lower = password.to_ascii_lowercase();
            let ambiguous = ["password", "secret", "token", "authmechanismproperties"]
                .iter()
                .any(|marker| lower.contains(marker))
                || (form == 4 && password.contains('@'));
            if !ambiguous {
                proptest::prop_assert!(shown.contains(".internal"), "the host of {} is kept: {}", url, shown);
            }
        }
    }
}
