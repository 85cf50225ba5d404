//! The benchmark load driver (`onecli-load`, BENCH.md) against the real
//! gateway: what the comparison measures has to be what it claims.

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
        concurrency: 4,
        requests: Some(200),
        duration: None,
        rate: None,
        headers: Vec::new(),
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
