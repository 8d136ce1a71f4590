//! The conformance suite on the in-memory store.

use conformance_tests::memory::MemoryBackend;

fn main() {
    conformance_tests::run_suite("memory", conformance_tests::cases(), || {
        Ok::<_, String>((MemoryBackend::default(), ()))
    })
}
