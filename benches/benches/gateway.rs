//! Hot-path pieces of the gateway itself: minting a leaf certificate for a
//! new host and finding a cached one, injecting a credential into a request
//! head, and swapping in a new policy snapshot.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use onecli_gateway::ca::CertificateAuthority;
use onecli_gateway::inject;
use onecli_gateway::leaf::LeafCertCache;
use onecli_gateway::metrics::GatewayMetrics;
use onecli_gateway::policy_source::PolicyHandle;
use onecli_policy::config::compile_policy_file;
use pingora_http::RequestHeader;

const POLICY: &str = r#"
[[agents]]
name = "bench"
identifier = "bench"
token = "aoc_00000000000000000000000000000000000000000000000000000000000000b1"
default = true
secret_mode = "all"
policy_mode = "allow"

[[secrets]]
id = "openai"
name = "openai"
type = "openai"
value = "sk-proj-bench-not-a-secret"
host_pattern = "api.openai.com"
"#;

fn leaves(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_generate(dir.path()).expect("CA");
    let cache = LeafCertCache::new(ca, 1 << 20, Box::new(|| {})).expect("leaf cache");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut n = 0u64;
    c.bench_function("leaf_mint_new_host", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(cache.get(&format!("h{n}.bench.test")))
                .expect("leaf")
        })
    });
    rt.block_on(cache.get("cached.bench.test")).expect("leaf");
    c.bench_function("leaf_cache_hit", |b| {
        b.iter(|| {
            rt.block_on(cache.get(black_box("cached.bench.test")))
                .expect("leaf")
        })
    });
}

fn injection(c: &mut Criterion) {
    let snapshot = compile_policy_file("bench.toml", POLICY, 1, &|_| None).expect("valid policy");
    let agent = snapshot.agents().first().expect("agent");
    let secrets: Vec<_> = snapshot
        .injections(agent, "api.openai.com", 443, true, "/v1/chat/completions")
        .collect();
    assert_eq!(secrets.len(), 1);
    c.bench_function("inject_authorization_header", |b| {
        b.iter_batched(
            || {
                let mut req =
                    RequestHeader::build("POST", b"/v1/chat/completions", None).expect("head");
                req.insert_header("authorization", "Bearer placeholder")
                    .expect("header");
                req
            },
            |mut req| {
                inject::apply(
                    &mut req,
                    secrets.iter().copied(),
                    "api.openai.com",
                    inject::Body::Unread,
                )
                .expect("injected");
                req
            },
            BatchSize::SmallInput,
        )
    });
}

fn swap(c: &mut Criterion) {
    let handle = PolicyHandle::new(Arc::new(GatewayMetrics::new().expect("metrics")));
    c.bench_function("policy_swap_small_snapshot", |b| {
        b.iter_batched(
            || compile_policy_file("bench.toml", POLICY, 1, &|_| None).expect("valid policy"),
            |snapshot| handle.install(snapshot),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, leaves, injection, swap);
criterion_main!(benches);
