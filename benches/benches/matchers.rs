//! Hot-path micro-benchmarks: pattern matching and injection lookup.

use criterion::{criterion_group, criterion_main, Criterion};
use onecli_policy::{HostPattern, PathPattern};
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
}

criterion_group!(benches, matchers);
criterion_main!(benches);
