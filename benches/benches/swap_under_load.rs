//! Request latency through a real gateway while policy snapshots of 100k
//! rules, 10k secrets and 10k agents are swapped in twice a second, against
//! the same load without swaps, measured in one run in alternating phases
//! and reported as a ratio of p99s (benches/RESULTS.md).
//!
//! Freeing such a snapshot takes about 100 ms; it used to fall on whichever
//! request let go of the old snapshot last. Both phases do the same work
//! besides the load: a snapshot is compiled every 500 ms and the previous
//! one freed; only in the swapping phase is it installed (and the old one
//! retired to the gateway's retirement thread), so the ratio shows what the
//! swap itself costs requests.
//!
//! `cargo bench -p onecli-benches --bench swap_under_load`
//! (`-- --rounds 4 --phase 5 --rate 2000 --connections 16`)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use onecli_benches::load::{self, LoadConfig};
use onecli_benches::origin::{Origin, Protocols};
use onecli_gateway::config::ResolveOverride;
use onecli_gateway::policy_source::PolicyHandle;
use onecli_gateway::{build_server, ControlHooks, GatewayConfig, PolicySource};
use onecli_policy::model::{
    default_project, AgentDoc, InjectionDoc, PolicyDoc, PolicyMode, RateWindow, RuleAction,
    RuleDoc, SecretDoc, SecretKind, SecretMode,
};
use onecli_policy::{token_sha256, Snapshot};

const HOST: &str = "bench.test";
const TOKEN: &str = "aoc_swap_bench_agent_0";
const SWAP_EVERY: Duration = Duration::from_millis(500);

struct Settings {
    rounds: usize,
    phase: Duration,
    rate: f64,
    connections: usize,
}

impl Settings {
    /// `--rounds N --phase SECONDS --rate RPS --connections N`; anything
    /// else (cargo's `--bench`) is ignored.
    fn from_args() -> anyhow::Result<Settings> {
        let mut settings = Settings {
            rounds: 4,
            phase: Duration::from_secs(5),
            rate: 2000.0,
            connections: 16,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        for pair in args.windows(2) {
            let value = &pair[1];
            match pair[0].as_str() {
                "--rounds" => settings.rounds = value.parse().context("--rounds")?,
                "--phase" => {
                    settings.phase = Duration::from_secs(value.parse().context("--phase")?)
                }
                "--rate" => settings.rate = value.parse().context("--rate")?,
                "--connections" => settings.connections = value.parse().context("--connections")?,
                _ => {}
            }
        }
        Ok(settings)
    }
}

/// 100k rules, 10k secrets and 10k agents, none about `HOST`, plus the
/// bench agent and its secret for `HOST`: the load is allowed and injected.
fn large_policy() -> PolicyDoc {
    const AGENTS: usize = 10_000;
    let mut agents: Vec<AgentDoc> = (0..AGENTS)
        .map(|i| agent(format!("agent-{i}"), &format!("token-{i}"), i % 2 == 1))
        .collect();
    agents.push(agent("bench".into(), TOKEN, false));
    let actions = [
        RuleAction::Block,
        RuleAction::Allow,
        RuleAction::ManualApproval,
        RuleAction::RateLimit {
            limit: 60,
            window: RateWindow::Minute,
        },
    ];
    let rules = (0..100_000)
        .map(|i| RuleDoc {
            id: format!("rule-{i}"),
            project: default_project(),
            name: format!("rule {i}"),
            host_pattern: match i % 5 {
                0 => format!("*.zone{}.test", i % 300),
                _ => format!("svc{}.test", i % 4_000),
            },
            path_pattern: ["*", "/v1/*", "/admin*"][i % 3].into(),
            methods: if i % 4 == 0 {
                vec!["POST".into()]
            } else {
                vec![]
            },
            agent_id: (i % 8 != 0).then(|| format!("agent-{}", i % AGENTS)),
            action: actions[i % actions.len()].clone(),
            enabled: true,
        })
        .collect();
    let mut secrets: Vec<SecretDoc> = (0..10_000)
        .map(|i| secret(format!("secret-{i}"), format!("svc{i}.test")))
        .collect();
    secrets.push(secret("bench-secret".into(), HOST.into()));
    PolicyDoc {
        version: 1,
        agents,
        secrets,
        rules,
        passthrough_hosts: vec![],
    }
}

fn agent(id: String, token: &str, deny: bool) -> AgentDoc {
    AgentDoc {
        identifier: id.clone(),
        name: id.clone(),
        id,
        project: default_project(),
        token_sha256: token_sha256(token),
        is_default: false,
        secret_mode: SecretMode::All,
        secret_ids: vec![],
        policy_mode: if deny {
            PolicyMode::Deny
        } else {
            PolicyMode::Allow
        },
    }
}

fn secret(id: String, host: String) -> SecretDoc {
    SecretDoc {
        name: id.clone(),
        value: format!("bench-value-of-{id}").into(),
        id,
        project: default_project(),
        kind: SecretKind::Generic,
        host_pattern: host,
        path_pattern: "*".into(),
        injection: Some(InjectionDoc::Header {
            name: "authorization".into(),
            format: "Bearer {value}".into(),
        }),
        allow_plaintext: false,
    }
}

/// Compiles a snapshot every [`SWAP_EVERY`] until `stop`; installs it when
/// `installing`, else frees it here. Returns how long each install call
/// took.
fn swapper(
    handle: Arc<PolicyHandle>,
    doc: PolicyDoc,
    installing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    installs: Arc<Mutex<Vec<Duration>>>,
) {
    let start = Instant::now();
    for (tick, version) in (1u32..).zip(doc.version + 1..) {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let snapshot = Snapshot::compile(PolicyDoc {
            version,
            ..doc.clone()
        })
        .expect("valid policy");
        if installing.load(Ordering::Acquire) {
            let started = Instant::now();
            handle.install(snapshot);
            let took = started.elapsed();
            installs.lock().expect("not poisoned").push(took);
        } else {
            drop(snapshot);
        }
        let next = start + SWAP_EVERY * tick;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

fn row(name: &str, h: &Histogram<u64>) -> String {
    format!(
        "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
        h.len(),
        micros(h.value_at_quantile(0.5)),
        micros(h.value_at_quantile(0.99)),
        micros(h.value_at_quantile(0.999)),
        micros(h.max()),
    )
}

fn main() -> anyhow::Result<()> {
    let settings = Settings::from_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(run(settings))?;
    // The gateway's server thread never returns.
    std::process::exit(0)
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let origin = Origin::start_tls(dir.path(), &[HOST], Protocols::Http1Only).await?;
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let mut config = GatewayConfig::new(listen, dir.path().join("data"));
    config.upstream_ca = origin.ca_path.clone();
    config.resolve = vec![ResolveOverride {
        host: HOST.into(),
        port: origin.port(),
        addr: [127, 0, 0, 1].into(),
    }];
    config.threads = 2;
    let gateway = build_server(config, PolicySource::External, ControlHooks::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let handle = gateway.policy.clone();
    eprintln!("compiling the 100k-rule policy…");
    let doc = large_policy();
    handle.install(Snapshot::compile(doc.clone()).expect("valid policy"));
    let server = gateway.server;
    std::thread::Builder::new()
        .name("gateway".into())
        .spawn(move || server.run_forever())?;

    let load = |duration: Duration| LoadConfig {
        host: HOST.into(),
        port: origin.port(),
        path: "/small".into(),
        connect_to: listen,
        via_proxy: true,
        proxy_auth: Some(format!("x:{TOKEN}")),
        ca_file: dir.path().join("data").join("gateway").join("ca.pem"),
        http2: false,
        new_tunnel: false,
        keep_tunnels: false,
        concurrency: settings.connections,
        requests: None,
        duration: Some(duration),
        rate: Some(settings.rate),
        headers: vec![],
        curves: None,
        hosts: 1,
    };
    // Ready once a request goes through (the CA is written by then).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = LoadConfig {
            requests: Some(1),
            rate: None,
            concurrency: 1,
            ..load(Duration::from_secs(5))
        };
        match load::run(probe).await {
            Ok(report) if report.statuses.get(&200) == Some(&1) => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(report) => anyhow::bail!("the gateway never forwarded: {}", report.to_text()),
            Err(error) => return Err(error.context("the gateway never answered")),
        }
    }
    let warm_up = load::run(load(Duration::from_secs(2))).await?;
    anyhow::ensure!(warm_up.errors == 0, "warm-up: {}", warm_up.to_text());

    let installing = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let installs = Arc::new(Mutex::new(Vec::new()));
    let swapping = {
        let (handle, installing, stop, installs) = (
            handle.clone(),
            installing.clone(),
            stop.clone(),
            installs.clone(),
        );
        std::thread::Builder::new()
            .name("swapper".into())
            .spawn(move || swapper(handle, doc, installing, stop, installs))?
    };
    let new_histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3);
    let (mut quiet, mut swaps) = (new_histogram()?, new_histogram()?);
    let mut statuses = std::collections::BTreeMap::new();
    for round in 0..settings.rounds {
        // Alternate which phase goes first, so that drift favours neither.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for swapping_now in order {
            installing.store(swapping_now, Ordering::Release);
            let report = load::run(load(settings.phase)).await?;
            for (status, n) in &report.statuses {
                *statuses.entry((swapping_now, *status)).or_insert(0u64) += n;
            }
            anyhow::ensure!(report.errors == 0, "{}", report.to_text());
            let into = if swapping_now { &mut swaps } else { &mut quiet };
            into.add(&report.latency)?;
            eprintln!(
                "round {round} {}: p99 {:.0} µs",
                if swapping_now { "swapping" } else { "quiet" },
                micros(report.latency.value_at_quantile(0.99))
            );
        }
    }
    stop.store(true, Ordering::Release);
    swapping
        .join()
        .map_err(|_| anyhow::anyhow!("the swapper panicked"))?;

    let mut installs = installs.lock().expect("not poisoned").clone();
    installs.sort();
    println!(
        "{} rounds of {:?} per phase, {} req/s on {} kept-alive connections, gateway --threads 2",
        settings.rounds, settings.phase, settings.rate, settings.connections
    );
    println!("statuses (swapping?, status): {statuses:?}");
    println!("| phase | requests | p50 µs | p99 µs | p99.9 µs | max µs |");
    println!("|---|---|---|---|---|---|");
    println!("{}", row("no swaps", &quiet));
    println!("{}", row("100k snapshot swapped every 500 ms", &swaps));
    println!(
        "p99 ratio, swapping / quiet: {:.2}",
        swaps.value_at_quantile(0.99) as f64 / quiet.value_at_quantile(0.99).max(1) as f64
    );
    if let (Some(first), Some(last)) = (installs.first(), installs.last()) {
        println!(
            "{} installs; the install call: min {:.0} µs, median {:.0} µs, max {:.0} µs",
            installs.len(),
            first.as_secs_f64() * 1e6,
            installs[installs.len() / 2].as_secs_f64() * 1e6,
            last.as_secs_f64() * 1e6,
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
