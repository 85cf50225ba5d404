//! The committed fuzz corpora (`fuzz/corpus/<target>`), replayed through
//! the fuzz targets' own entry points on the project's toolchain: every
//! input the fuzzers kept, and every crash found (`fuzz/regressions/`),
//! stays a test.

include!("../../fuzz/replay.rs");

#[test]
fn request_head_corpus() {
    replay("request_head", onecli_gateway::fuzzing::request_head);
}

#[test]
fn proxy_authorization_corpus() {
    replay(
        "proxy_authorization",
        onecli_gateway::fuzzing::proxy_authorization,
    );
}

#[test]
fn guidance_rewrite_corpus() {
    replay(
        "guidance_rewrite",
        onecli_gateway::fuzzing::guidance_rewrite,
    );
}

#[test]
fn sigv4_corpus() {
    replay("sigv4", onecli_gateway::fuzzing::sigv4);
}
