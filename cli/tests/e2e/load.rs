//! The benchmark load driver (`onecli-load`, BENCH.md) against the real
//! gateway: what the comparison measures has to be what it claims.

use std::time::{Duration, Instant};

use onecli_benches::load::{self, LoadConfig};

use crate::harness::*;

fn through_gateway(env: &Env, token: &str, path: &str) -> LoadConfig {
    LoadConfig {
        host: "openai.test".to_owned(),
        port: env.origin.port(),
        path: path.to_owned(),
        connect_to: sockaddr(env.gateway.port),
        via_proxy: true,
        proxy_auth: Some(format!("x:{token}")),
        ca_file: env.gateway_ca(),
        http2: false,
        new_tunnel: false,
        keep_tunnels: false,
        concurrency: 4,
        requests: Some(200),
        duration: None,
        rate: None,
        headers: Vec::new(),
        curves: None,
        hosts: 1,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_driver_loads_the_gateway_on_kept_alive_connections_and_new_tunnels() {
    let env = Env::start().await;
    let config = through_gateway(&env, TOKEN_ALL, "/small");

    let injected = load::echoed_header(&config, "authorization")
        .await
        .expect("echo through the gateway");
    assert_eq!(injected, Some(format!("Bearer {OPENAI_KEY}")));

    let report = load::run(config.clone()).await.expect("keep-alive run");
    assert_eq!((report.requests, report.errors), (200, 0), "{report:?}");
    assert_eq!(report.statuses.get(&200), Some(&200));
    assert_eq!(report.connections, 4);
    assert_eq!(report.body_bytes, 200 * 1024);
    assert_eq!(report.latency.len(), 200);

    let report = load::run(LoadConfig {
        http2: true,
        new_tunnel: true,
        concurrency: 2,
        requests: Some(20),
        ..config.clone()
    })
    .await
    .expect("new-tunnel run");
    assert_eq!((report.requests, report.errors), (20, 0), "{report:?}");
    assert_eq!(report.connections, 20);
    assert_eq!(report.connect.len(), 20);

    // The same load straight to the origin, the baseline of every ratio.
    let direct = load::run(LoadConfig {
        connect_to: sockaddr(env.origin.port()),
        via_proxy: false,
        proxy_auth: None,
        ca_file: env.origin.ca_path.clone().expect("TLS origin"),
        requests: Some(50),
        ..config
    })
    .await
    .expect("direct run");
    assert_eq!((direct.requests, direct.errors), (50, 0), "{direct:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_driver_counts_refused_tunnels_as_errors_and_keeps_to_its_rate() {
    let env = Env::start().await;
    let refused = load::run(LoadConfig {
        requests: Some(8),
        ..through_gateway(&env, "not-a-token", "/small")
    })
    .await
    .expect("run");
    assert_eq!((refused.requests, refused.errors), (0, 8), "{refused:?}");
    assert!(
        refused.error_kinds.keys().all(|k| k.contains("407")),
        "{refused:?}"
    );

    // 40 requests per second for half a second: exactly the 20 due before
    // the deadline, whatever the machine's speed.
    let paced = load::run(LoadConfig {
        requests: None,
        duration: Some(std::time::Duration::from_millis(500)),
        rate: Some(40.0),
        ..through_gateway(&env, TOKEN_ALL, "/small")
    })
    .await
    .expect("paced run");
    assert_eq!((paced.requests, paced.errors), (20, 0), "{paced:?}");
}

/// Polls the gateway's metric `name` until it reads `want`.
async fn metric_becomes(env: &Env, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = env.gateway.metric(name).await;
        if got == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {got:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_driver_holds_idle_tunnels_spreads_over_hosts_and_picks_key_exchange() {
    let env = Env::start().await;
    let minted = "onecli_gateway_leaf_certs_minted_total";
    let before = env.gateway.metric(minted).await.unwrap_or(0.0);

    // Six tunnels over three host names, each kept open after its request:
    // the gateway sees them all open at once, and a leaf for each name.
    let (report, held) = load::run_holding(LoadConfig {
        host: "api.test".to_owned(),
        new_tunnel: true,
        keep_tunnels: true,
        hosts: 3,
        concurrency: 2,
        requests: Some(6),
        curves: Some("X25519".to_owned()),
        ..through_gateway(&env, TOKEN_ALL, "/small")
    })
    .await
    .expect("holding run");
    assert_eq!((report.requests, report.errors), (6, 0), "{report:?}");
    assert_eq!(held.len(), 6);
    metric_becomes(&env, "onecli_gateway_tunnels_open", 6.0).await;
    assert_eq!(env.gateway.metric(minted).await, Some(before + 3.0));
    drop(held);
    metric_becomes(&env, "onecli_gateway_tunnels_open", 0.0).await;

    // Kept-alive connections are held too, one per worker.
    let (_, held) = load::run_holding(LoadConfig {
        concurrency: 3,
        requests: Some(3),
        ..through_gateway(&env, TOKEN_ALL, "/small")
    })
    .await
    .expect("kept-alive run");
    assert!((1..=3).contains(&held.len()), "{}", held.len());

    let error = load::run(LoadConfig {
        curves: Some("no-such-group".to_owned()),
        ..through_gateway(&env, TOKEN_ALL, "/small")
    })
    .await
    .expect_err("an unknown group is refused");
    assert!(format!("{error:#}").contains("no-such-group"), "{error:#}");
}
