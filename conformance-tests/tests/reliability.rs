//! The reliability suite: faults, load and bad input on every backend, with real worker
//! processes. Runs alone with `cargo test -p conformance-tests --test reliability`.

fn main() {
    conformance_tests::reliability::run(env!("CARGO_BIN_EXE_dogs-test-worker"))
}
