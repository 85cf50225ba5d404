//! The committed fuzz corpora (`fuzz/corpus/<target>`), replayed through
//! the fuzz targets' own entry points on the project's toolchain: every
//! input the fuzzers kept, and every crash found (`fuzz/regressions/`),
//! stays a test.

include!("../../fuzz/replay.rs");

#[test]
fn api_bodies_corpus() {
    replay("api_bodies", onecli_control::api::fuzz_bodies);
}
