//! The conformance suite on SQLite, and what only SQLite does: each case on a database file of
//! its own, in a directory of this run under the system's temporary directory.

use conformance_tests::sqlite::{specific, RunDirGuard, SqliteBackend};

fn main() {
    let mut cases = conformance_tests::cases();
    cases.extend(specific::cases());
    conformance_tests::run_suite("sqlite", cases, || {
        Ok((SqliteBackend::new()?, RunDirGuard::new()))
    })
}
