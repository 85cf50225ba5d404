//! Hot-path micro-benchmarks: pattern matching and injection lookup, and
//! the canonical form every request is put in first (SPEC §6.0).

use criterion::{criterion_group, criterion_main, Criterion};
use onecli_policy::{CanonicalRequest, HostPattern, PathPattern};
use std::hint::black_box;

fn matchers(c: &mut Criterion) {
    let exact = HostPattern::parse("api.anthropic.com").expect("valid");
    let wildcard = HostPattern::parse("*.googleapis.com").expect("valid");
    let segments = PathPattern::parse("/v1/*/messages").expect("valid");
    c.bench_function("host_exact", |b| {
        b.iter(|| exact.matches(black_box("api.anthropic.com"), 443))
    });
    c.bench_function("host_wildcard", |b| {
        b.iter(|| wildcard.matches(black_box("storage.googleapis.com"), 443))
    });
    c.bench_function("path_segments", |b| {
        b.iter(|| segments.matches(black_box("/v1/abc/messages?x=1")))
    });
    // A typical API call, and one spelled with escapes; no override headers.
    let none = || std::iter::empty::<&[u8]>();
    c.bench_function("canonical_plain", |b| {
        b.iter(|| CanonicalRequest::new("POST", black_box("/v1/messages?beta=true"), none()))
    });
    c.bench_function("canonical_escaped", |b| {
        b.iter(|| {
            CanonicalRequest::new(
                "GET",
                black_box("/repos/%61cme/widgets/issues/%31%32"),
                none(),
            )
        })
    });
}

criterion_group!(benches, matchers);
criterion_main!(benches);
