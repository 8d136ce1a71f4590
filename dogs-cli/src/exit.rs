//! What a command's failure means to the shell: an exit code per kind of failure, and the one
//! line that goes to stderr.

use std::fmt;
use std::process::ExitCode;

use dogs_core::ErrorKind;

/// The exit codes of `dogs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// 0: the command did what it was asked.
    Done,
    /// 1: the store failed: it cannot be reached, its URL does not parse or names no store
    /// `dogs` knows, its schema is not migrated, or it answered with an error.
    Store,
    /// 2: the command line is wrong (clap's own code for usage errors), or the store refused an
    /// argument (an empty job name, ...), or the dashboard would open actions to the network.
    Usage,
    /// 3: there is nothing to act on: the job id is unknown, or a cancel or retry found nothing.
    NotFound,
    /// 4: the store refused the action as it conflicts with what is stored (a retry of a
    /// running job, a cancel of a running recurrent job).
    Conflict,
}

impl Exit {
    /// The number the process exits with.
    pub fn code(self) -> u8 {
        match self {
            Exit::Done => 0,
            Exit::Store => 1,
            Exit::Usage => 2,
            Exit::NotFound => 3,
            Exit::Conflict => 4,
        }
    }

    /// The exit code of a failed store call of this kind.
    pub fn of_kind(kind: ErrorKind) -> Exit {
        match kind {
            ErrorKind::NotFound => Exit::NotFound,
            ErrorKind::Conflict => Exit::Conflict,
            ErrorKind::InvalidInput | ErrorKind::TooLarge => Exit::Usage,
            _ => Exit::Store,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// The shortest secret [`CliError::line`] hides from a message.
pub const MIN_SECRET: usize = 4;

/// A failed command: how the process exits and the line it prints to stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// How the process exits.
    pub exit: Exit,
    /// What went wrong, for people: one line.
    pub message: String,
}

impl CliError {
    /// A failure with this exit code and message.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
        }
    }

    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(Exit::Usage, message)
    }

    /// Nothing to act on (exit code 3).
    pub fn not_found(message: impl Into<String>) -> Self {
        CliError::new(Exit::NotFound, message)
    }

    /// The message on one line, with every text of `secrets` of at least [`MIN_SECRET`]
    /// characters replaced by `***`.
    ///
    /// The stores' messages already show URLs without their passwords; this is a second guard,
    /// against a cause (a driver's message) that quotes one. Shorter texts are left alone, as
    /// they would also hide every such run of letters in the message.
    pub fn line(&self, secrets: &[String]) -> String {
        let mut line = self.message.replace(['\n', '\r'], " ");
        for secret in secrets.iter().filter(|s| s.chars().count() >= MIN_SECRET) {
            line = line.replace(secret.as_str(), "***");
        }
        line
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<dogs_core::Error> for CliError {
    fn from(error: dogs_core::Error) -> Self {
        let mut message = error.to_string();
        if let Some(hint) = crate::open::postgres_hint(&error) {
            message.push_str("; ");
            message.push_str(hint);
        }
        CliError::new(Exit::of_kind(error.kind()), message)
    }
}

/// `Result` with [`CliError`] as its error.
pub type CliResult<T> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_exit_codes() {
        assert_eq!(Exit::of_kind(ErrorKind::NotFound).code(), 3);
        assert_eq!(Exit::of_kind(ErrorKind::Conflict).code(), 4);
        assert_eq!(Exit::of_kind(ErrorKind::Unavailable).code(), 1);
        assert_eq!(Exit::of_kind(ErrorKind::Config).code(), 1);
        assert_eq!(Exit::of_kind(ErrorKind::InvalidInput).code(), 2);
    }

    #[test]
    fn a_line_hides_secrets_and_newlines() {
        let error = CliError::usage("bad\npassword hunter2 here");
        assert_eq!(
            error.line(&["hunter2".to_owned(), String::new(), "e".to_owned()]),
            "bad password *** here"
        );
    }
}
