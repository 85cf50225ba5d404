//! The committed fuzz corpora (`fuzz/corpus/<target>`), replayed through
//! the fuzz targets' own entry points on the project's toolchain: every
//! input the fuzzers kept, and every crash found (`fuzz/regressions/`),
//! stays a test.

include!("../../fuzz/replay.rs");

#[test]
fn patterns_corpus() {
    replay("patterns", onecli_policy::fuzzing::patterns);
}

#[test]
fn policy_file_corpus() {
    replay("policy_file", onecli_policy::fuzzing::policy_file);
}

#[test]
fn wire_and_seal_corpus() {
    replay("wire_and_seal", onecli_policy::fuzzing::wire_and_seal);
}

#[test]
fn credentials_corpus() {
    replay("credentials", onecli_policy::fuzzing::credentials);
}
