//! The committed fuzz corpora (`fuzz/corpus/<target>`), replayed through
//! the fuzz targets' own entry points on the project's toolchain: every
//! input the fuzzers kept, and every crash found (`fuzz/regressions/`),
//! stays a test.

use std::path::PathBuf;

fn replay(target: &str, entry: fn(&[u8])) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for file in files {
            let path = file.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            let outcome = std::panic::catch_unwind(|| entry(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no committed corpus for {target}");
}

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
