//! Decision time for rules and injections, and snapshot build/encode/decode,
//! at sizes from a laptop to a fleet (BENCH.md).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use onecli_policy::model::{
    AgentDoc, InjectionDoc, PolicyDoc, PolicyMode, RateWindow, RuleAction, RuleDoc, SecretDoc,
    SecretKind, SecretMode,
};
use onecli_policy::{token_sha256, wire, CanonicalRequest, Snapshot};

const AGENTS: usize = 10_000;

/// `rules` rules spread over `AGENTS` agents (one in ten for all agents),
/// `secrets` secrets over as many hosts.
fn doc(rules: usize, secrets: usize) -> PolicyDoc {
    let agents = (0..AGENTS)
        .map(|i| AgentDoc {
            project: onecli_policy::model::default_project(),
            id: format!("agent-{i}"),
            name: format!("Agent {i}"),
            identifier: format!("agent-{i}"),
            token_sha256: token_sha256(&format!("token-{i}")),
            is_default: i == 0,
            secret_mode: SecretMode::All,
            secret_ids: vec![],
            policy_mode: if i % 2 == 0 {
                PolicyMode::Allow
            } else {
                PolicyMode::Deny
            },
        })
        .collect();
    let actions = [
        RuleAction::Block,
        RuleAction::Allow,
        RuleAction::RateLimit {
            limit: 100,
            window: RateWindow::Hour,
        },
        RuleAction::ManualApproval,
    ];
    let rules = (0..rules)
        .map(|i| RuleDoc {
            project: onecli_policy::model::default_project(),
            id: format!("rule-{i}"),
            name: format!("rule {i}"),
            host_pattern: if i % 7 == 0 {
                format!("*.svc{}.test", i % 100)
            } else {
                format!("api{}.test", i % 5_000)
            },
            path_pattern: ["*", "/v1/*", "/v1/*/messages", "/admin*"][i % 4].into(),
            methods: if i % 3 == 0 {
                vec!["DELETE".into()]
            } else {
                vec![]
            },
            agent_id: (i % 10 != 0).then(|| format!("agent-{}", i % AGENTS)),
            action: actions[i % actions.len()].clone(),
            enabled: true,
        })
        .collect();
    let secrets = (0..secrets)
        .map(|i| SecretDoc {
            project: onecli_policy::model::default_project(),
            id: format!("secret-{i}"),
            name: format!("secret {i}"),
            kind: SecretKind::Generic,
            value: format!("value-{i}").into(),
            host_pattern: format!("api{i}.test"),
            path_pattern: "*".into(),
            injection: Some(InjectionDoc::Header {
                name: "authorization".into(),
                format: "Bearer {value}".into(),
            }),
            allow_plaintext: false,
        })
        .collect();
    PolicyDoc {
        version: 1,
        agents,
        secrets,
        rules,
        passthrough_hosts: vec![],
    }
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("rule_decision");
    for rules in [10, 10_000, 100_000] {
        let snapshot = Snapshot::compile(doc(rules, 100)).expect("valid");
        let agents: Vec<_> = (0..64)
            .map(|i| {
                snapshot
                    .agent_by_token_hash(&token_sha256(&format!("token-{}", i * 97)))
                    .expect("agent")
            })
            .collect();
        let hosts: Vec<String> = (0..64).map(|i| format!("api{}.test", i * 31)).collect();
        let mut n = 0usize;
        let none: [&[u8]; 0] = [];
        let canonical = CanonicalRequest::new("POST", "/v1/abc/messages", none).expect("canonical");
        group.bench_function(format!("{rules}_rules_10k_agents"), |b| {
            b.iter(|| {
                n = n.wrapping_add(1);
                let req = canonical.facts(&hosts[n % 64], 443);
                black_box(snapshot.evaluate(agents[n % 64], req));
            })
        });
    }
    group.finish();
}

fn injections(c: &mut Criterion) {
    let snapshot = Snapshot::compile(doc(10, 10_000)).expect("valid");
    let agent = snapshot
        .agent_by_token_hash(&token_sha256("token-0"))
        .expect("agent");
    c.bench_function("injection_lookup_10k_secrets", |b| {
        b.iter(|| {
            black_box(
                snapshot
                    .injections(agent, black_box("api4242.test"), 443, true, "/v1/x")
                    .count(),
            )
        })
    });
    c.bench_function("token_lookup_10k_agents", |b| {
        b.iter(|| {
            black_box(
                snapshot
                    .agent_by_token_hash(&token_sha256(black_box("token-4242")))
                    .is_some(),
            )
        })
    });
}

fn snapshots(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_100k_rules_10k_secrets");
    group.sample_size(10);
    let doc = doc(100_000, 10_000);
    let bytes = wire::encode(&doc).expect("encodes");
    group.bench_function("compile", |b| {
        b.iter_batched(
            || doc.clone(),
            |d| Snapshot::compile(d).expect("valid"),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("encode", |b| {
        b.iter(|| wire::encode(black_box(&doc)).expect("encodes"))
    });
    group.bench_function("decode", |b| {
        b.iter(|| wire::decode(black_box(&bytes)).expect("decodes"))
    });
    // Swapping such a snapshot in is measured under load, with requests in
    // flight, by the swap_under_load bench: the install call itself does no
    // more than for a small policy, and the old snapshot is freed by the
    // gateway's retirement thread.
    group.finish();
}

criterion_group!(benches, decisions, injections, snapshots);
criterion_main!(benches);
