//! The gateway issue's acceptance tests (SPEC §3).

use std::time::{Duration, Instant};

use onecli_benches::origin::{big_body, fnv1a, BIG_BODY};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "proxy-authorization"];

#[tokio::test(flavor = "multi_thread")]
async fn each_injection_kind_arrives_and_nothing_else_does() {
    let env = Env::start().await;
    let cases: [(&str, &str, &str, &str); 4] = [
        ("api.test", "/v1/messages", "x-api-key", ANTHROPIC_KEY),
        (
            "oauth.test",
            "/v1/messages",
            "authorization",
            "Bearer sk-ant-oat01-SECRET-oauth-token",
        ),
        (
            "openai.test",
            "/v1/chat",
            "authorization",
            "Bearer sk-proj-SECRET-openai",
        ),
        (
            "generic.test",
            "/repos/a/b",
            "authorization",
            "token ghp_SECRET_github",
        ),
    ];
    for (host, path, header, want) in cases {
        let (status, body) = env.curl(TOKEN_ALL, &[], &env.url(host, path));
        assert_eq!(status, 200, "{host}: {body}");
        let body = json(&body);
        assert_eq!(echoed(&body, header), [want], "{host}");
        for other in CREDENTIAL_HEADERS.iter().filter(|h| **h != header) {
            assert!(
                echoed(&body, other).is_empty(),
                "{host}: {other} should not arrive: {body}"
            );
        }
    }
    // A Claude login (OAuth token) also needs Anthropic's OAuth beta flag,
    // listed beside the agent's own.
    let (status, body) = env.curl(
        TOKEN_ALL,
        &["-H", "anthropic-beta: prompt-caching-2024-07-31"],
        &env.url("oauth.test", "/v1/messages"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        echoed(&json(&body), "anthropic-beta"),
        ["prompt-caching-2024-07-31,oauth-2025-04-20"]
    );
    let (_, body) = env.curl(TOKEN_ALL, &[], &env.url("api.test", "/v1/messages"));
    assert!(
        echoed(&json(&body), "anthropic-beta").is_empty(),
        "API keys need no flag"
    );
    // Query-parameter injection replaces what the agent sent and keeps the rest.
    let (status, body) = env.curl(
        TOKEN_ALL,
        &[],
        &env.url("query.test", "/maps?q=1&key=agent-guess"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["query"], format!("q=1&key={QUERY_KEY}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agents_own_credentials_are_replaced_not_merged() {
    let env = Env::start().await;
    let (_, body) = env.curl(
        TOKEN_ALL,
        &["-H", "Authorization: Bearer agent-placeholder"],
        &env.url("openai.test", "/v1/chat"),
    );
    assert_eq!(
        echoed(&json(&body), "authorization"),
        [format!("Bearer {OPENAI_KEY}")]
    );
    let (_, body) = env.curl(
        TOKEN_ALL,
        &[
            "-H",
            "Authorization: Bearer agent",
            "-H",
            "x-api-key: placeholder",
        ],
        &env.url("api.test", "/v1/messages"),
    );
    let body = json(&body);
    assert_eq!(echoed(&body, "x-api-key"), [ANTHROPIC_KEY]);
    assert!(
        echoed(&body, "authorization").is_empty(),
        "anthropic API keys drop authorization: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_injected_on_other_hosts_paths_or_for_unassigned_agents() {
    let env = Env::start().await;
    let probes = [
        (TOKEN_ALL, env.url("other.test", "/v1/messages")),
        (TOKEN_ALL, env.url("generic.test", "/user")),
        (TOKEN_ALL, env.url("generic.test", "/reposx")),
        // The selective agent is assigned only the GitHub secret.
        (TOKEN_PICKY, env.url("api.test", "/v1/messages")),
    ];
    for (token, url) in probes {
        let (status, body) = env.curl(token, &[], &url);
        assert_eq!(status, 200, "{url}: {body}");
        let body = json(&body);
        for h in CREDENTIAL_HEADERS {
            assert!(echoed(&body, h).is_empty(), "{url}: {h} arrived: {body}");
        }
    }
    let (_, body) = env.curl(TOKEN_PICKY, &[], &env.url("generic.test", "/repos/x"));
    assert_eq!(
        echoed(&json(&body), "authorization"),
        [format!("token {GITHUB_TOKEN}")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_requests_gets_the_credential_through_the_gateway() {
    let env = Env::start().await;
    let proxy = format!("http://x:{TOKEN_ALL}@127.0.0.1:{}", env.gateway.port);
    let script = r#"
import json, sys, requests
url, proxy, ca = sys.argv[1:4]
r = requests.get(url, proxies={"https": proxy}, verify=ca, headers={"Authorization": "Bearer agent"}, timeout=20)
print(json.dumps({"status": r.status_code, "body": r.json()}))
"#;
    let out = python(
        script,
        &[
            &env.url("api.test", "/v1/messages"),
            &proxy,
            &env.gateway_ca().display().to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["status"], 200);
    assert_eq!(echoed(&v["body"], "x-api-key"), [ANTHROPIC_KEY]);
    assert!(echoed(&v["body"], "authorization").is_empty());
    assert!(echoed(&v["body"], "proxy-authorization").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_authentication_is_required_and_never_forwarded() {
    let env = Env::start().await;
    let target = format!("api.test:{}", env.origin.port());
    let wrong = format!("aoc_{}", "f".repeat(64));
    for auth in [
        None,
        Some(basic(&wrong)),
        Some(format!("Bearer {TOKEN_ALL}")),
        Some("Basic !!!".to_owned()),
    ] {
        let (resp, mut s) = connect_raw(env.gateway.port, &target, auth.as_deref()).await;
        assert_eq!(resp.status, 407, "{auth:?}: {}", resp.head);
        assert_eq!(
            resp.header("proxy-authenticate"),
            Some("Basic realm=\"OneCLI Gateway\"")
        );
        assert_eq!(resp.json()["error"], "proxy_authentication_required");
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed in time");
        assert_eq!(n.expect("read"), 0, "connection closed after 407");
    }
    // Lowercase scheme, and the token as the user name with an empty password.
    use base64::Engine;
    let user_only = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN_ALL}:"))
    );
    for auth in [basic(TOKEN_ALL).replacen("Basic", "basic", 1), user_only] {
        let (resp, _) = connect_raw(env.gateway.port, &target, Some(&auth)).await;
        assert_eq!(resp.status, 200, "{auth}: {}", resp.head);
    }
    let (status, _) = env.curl(&wrong, &[], &env.url("api.test", "/"));
    assert_ne!(status, 200);
    // Absolute-form requests authenticate themselves too.
    let url = format!("http://plain.test:{}/echo", env.plain.port());
    let (status, body) = env.curl(&wrong, &[], &url);
    assert_eq!(status, 407, "{body}");
    let (status, body) = env.curl(TOKEN_ALL, &[], &url);
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(echoed(&body, "x-api-key"), [PLAIN_KEY]);
    assert!(echoed(&body, "proxy-authorization").is_empty(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leaf_verifies_against_the_ca_which_survives_a_restart() {
    let mut env = Env::start().await;
    let (status, _) = env.curl(TOKEN_ALL, &[], &env.url("api.test", "/"));
    assert_eq!(status, 200);
    // Without our CA the client refuses the leaf.
    let out = run(env.curl_cmd(TOKEN_ALL, None).arg(env.url("api.test", "/")));
    assert!(
        !out.status.success(),
        "curl trusted a leaf without the gateway CA"
    );
    let before = std::fs::read(env.gateway_ca()).expect("ca");
    env.restart_gateway(&[]).await;
    assert_eq!(
        std::fs::read(env.gateway_ca()).expect("ca"),
        before,
        "CA regenerated on restart"
    );
    let (status, body) = env.curl(TOKEN_ALL, &[], &env.url("api.test", "/"));
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_downstream_and_upstream() {
    let env = Env::start().await;
    let ca = env.gateway_ca();
    let out = run(env
        .curl_cmd(TOKEN_ALL, Some(&ca))
        .args(["--http2", "-o", "/dev/null", "-w", "%{http_version}"])
        .arg(env.url("api.test", "/")));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2", "downstream h2");
    let (_, body) = env.curl(TOKEN_ALL, &["--http1.1"], &env.url("api.test", "/"));
    assert_eq!(
        json(&body)["version"],
        "HTTP/2.0",
        "upstream h2 when the origin offers it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_only_origins_are_reached_over_http1() {
    let env = Env::start_with(Options {
        origin_http1_only: true,
        ..Options::default()
    })
    .await;
    let (status, body) = env.curl(TOKEN_ALL, &["--http2"], &env.url("api.test", "/"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["version"], "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mebibyte_both_ways() {
    let env = Env::start().await;
    let out_file = env.dir.path().join("big.bin");
    let (status, _) = env.curl(
        TOKEN_ALL,
        &["-o", out_file.to_str().expect("utf8")],
        &env.url("api.test", "/big"),
    );
    assert_eq!(status, 200);
    let got = std::fs::read(&out_file).expect("download");
    assert_eq!(got.len(), BIG_BODY);
    assert!(got == big_body(), "download corrupted");
    let upload = env.dir.path().join("up.bin");
    std::fs::write(&upload, big_body()).expect("write");
    for version in ["--http1.1", "--http2"] {
        let (status, body) = env.curl(
            TOKEN_ALL,
            &[version, "--data-binary", &format!("@{}", upload.display())],
            &env.url("api.test", "/upload"),
        );
        assert_eq!(status, 200, "{body}");
        let body = json(&body);
        assert_eq!(body["body_len"], BIG_BODY, "{version}");
        assert_eq!(body["body_fnv1a"], fnv1a(&big_body()), "{version}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_sent_events_stream_without_buffering() {
    let env = Env::start().await;
    let script = r#"
import json, sys, time, requests
url, proxy, ca = sys.argv[1:4]
start = time.monotonic()
r = requests.get(url, proxies={"https": proxy}, verify=ca, stream=True, timeout=20)
first = None
data = b""
for chunk in r.iter_content(chunk_size=None):
    if first is None:
        first = time.monotonic() - start
    data += chunk
print(json.dumps({"first": first, "total": time.monotonic() - start, "events": data.decode().count("data: ")}))
"#;
    let proxy = format!("http://x:{TOKEN_ALL}@127.0.0.1:{}", env.gateway.port);
    let out = python(
        script,
        &[
            &env.url("api.test", "/sse?events=3&gap_ms=1500"),
            &proxy,
            &env.gateway_ca().display().to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let (first, total) = (
        v["first"].as_f64().expect("first"),
        v["total"].as_f64().expect("total"),
    );
    assert_eq!(v["events"], 3);
    assert!(total >= 3.0, "the stream lasts two gaps: {v}");
    assert!(
        first + 1.5 <= total,
        "the first event arrived before the stream ended, not with it: {v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_upstream_yields_504_within_the_timeout() {
    let env = Env::start_with(Options {
        extra_args: vec!["--read-timeout".into(), "1s".into()],
        ..Options::default()
    })
    .await;
    let start = Instant::now();
    let (status, body) = env.curl(TOKEN_ALL, &[], &env.url("api.test", "/hang"));
    assert_eq!(status, 504, "{body}");
    assert_eq!(json(&body)["error"], "upstream_timeout");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_upstreams_and_redirects() {
    let env = Env::start().await;
    let (status, body) = env.curl(TOKEN_ALL, &[], &env.url("dead.test", "/"));
    assert_eq!(status, 502, "{body}");
    assert_eq!(json(&body)["error"], "bad_gateway");
    let (status, _) = env.curl(
        TOKEN_ALL,
        &["-D", "/dev/stdout"],
        &env.url("api.test", "/redirect"),
    );
    assert_eq!(status, 302, "redirects are passed back, not followed");
    // A redirect reflecting an injected query credential does not hand it to the agent.
    let (status, head) = env.curl(
        TOKEN_ALL,
        &["-D", "/dev/stdout", "-o", "/dev/null"],
        &env.url("query.test", "/redirect?q=1"),
    );
    assert_eq!(status, 302, "{head}");
    let location = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location:"))
        .expect("location");
    assert!(!location.contains(QUERY_KEY), "{location}");
    assert!(location.contains("key=onecli-redacted"), "{location}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_egress_guard_refuses_internal_addresses() {
    let env = Env::start().await;
    // 127.0.0.1 literal and localhost (by DNS) are not pinned: refused.
    for host in ["127.0.0.1", "localhost"] {
        let (status, body) = env.curl(TOKEN_ALL, &[], &env.url(host, "/"));
        assert_eq!(status, 403, "{host}: {body}");
        assert_eq!(json(&body)["error"], "egress_blocked");
    }
    // Nor is the gateway itself (absolute-form, no tunnel).
    let (status, _) = env.curl(
        TOKEN_ALL,
        &[],
        &format!("http://127.0.0.1:{}/healthz", env.gateway.port),
    );
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_allow_list_makes_the_gateway_its_own_upstream() {
    let env = Env::start_with(Options {
        extra_args: vec!["--allow-egress".into(), "0.0.0.0/0".into()],
        ..Options::default()
    })
    .await;
    for host in ["0.0.0.0", "127.0.0.1", "127.0.0.2"] {
        let url = format!("http://{host}:{}/healthz", env.gateway.port);
        let (status, body) = env.curl(TOKEN_ALL, &[], &url);
        assert_eq!(status, 403, "{url}: {body}");
        assert_eq!(json(&body)["error"], "egress_blocked", "{url}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pass_through_hosts_show_the_origins_own_certificate() {
    let env = Env::start().await;
    let origin_ca = env.origin.ca_path.clone().expect("origin CA");
    let out = run(env
        .curl_cmd(TOKEN_ALL, Some(&origin_ca))
        .arg(env.url("pinned.test", "/echo")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = json(&String::from_utf8_lossy(&out.stdout));
    for h in CREDENTIAL_HEADERS {
        assert!(echoed(&body, h).is_empty(), "{h} in a pass-through tunnel");
    }
    // The gateway's CA does not verify it: it really is the origin's certificate.
    let (status, _) = env.curl(TOKEN_ALL, &[], &env.url("pinned.test", "/"));
    assert_eq!(status, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mismatched_host_in_a_tunnel_is_misdirected() {
    let env = Env::start().await;
    let (status, body) = env.curl(
        TOKEN_ALL,
        &["--http1.1", "-H", "Host: other.test"],
        &env.url("api.test", "/"),
    );
    assert_eq!(status, 421, "{body}");
    assert_eq!(json(&body)["error"], "misdirected_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_edit_applies_to_an_open_keep_alive_connection() {
    let env = Env::start().await;
    let mut tunnel = tls_tunnel(&env, TOKEN_ALL, "generic.test").await;
    let first = request(&mut tunnel, "GET", "/repos/x", "generic.test", &[]).await;
    assert_eq!(
        echoed(&first.json(), "authorization"),
        [format!("token {GITHUB_TOKEN}")]
    );

    std::fs::write(&env.gateway.policy_path, env.policy("ghp_SECRET_rotated"))
        .expect("edit policy");
    let saved = Instant::now();
    loop {
        let resp = request(&mut tunnel, "GET", "/repos/x", "generic.test", &[]).await;
        if echoed(&resp.json(), "authorization") == ["token ghp_SECRET_rotated"] {
            break;
        }
        assert!(
            saved.elapsed() < Duration::from_secs(5),
            "new policy not applied on the open connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("policy applied {:?} after the save", saved.elapsed());

    // A broken edit is rejected and the last good policy stays.
    std::fs::write(&env.gateway.policy_path, "[[secrets]]\nname = ").expect("break policy");
    let deadline = Instant::now() + Duration::from_secs(10);
    while env
        .gateway
        .metric("onecli_gateway_policy_rejected_total")
        .await
        != Some(1.0)
    {
        assert!(Instant::now() < deadline, "broken policy never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = request(&mut tunnel, "GET", "/repos/x", "generic.test", &[]).await;
    assert_eq!(
        echoed(&resp.json(), "authorization"),
        ["token ghp_SECRET_rotated"]
    );
    assert!(
        env.gateway.log().contains("policy rejected"),
        "rejection is logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_first_requests_mint_one_certificate() {
    let env = Env::start().await;
    let env = std::sync::Arc::new(env);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let env = env.clone();
            tokio::spawn(async move {
                let mut t = tls_tunnel(&env, TOKEN_ALL, "new.test").await;
                request(&mut t, "GET", "/small", "new.test", &[])
                    .await
                    .status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    assert_eq!(
        env.gateway
            .metric("onecli_gateway_leaf_certs_minted_total")
            .await,
        Some(1.0)
    );
    assert_eq!(
        env.gateway.metric("onecli_gateway_leaf_certs_cached").await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversize_heads_get_400_and_a_closed_connection() {
    let env = Env::start().await;
    let oversize = format!(
        "GET http://plain.test/ HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let auth = basic(TOKEN_ALL);
    let cases = [
        format!("CONNECT nohost HTTP/1.1\r\nProxy-Authorization: {auth}\r\n\r\n"),
        format!("CONNECT a.test:99999 HTTP/1.1\r\nProxy-Authorization: {auth}\r\n\r\n"),
        "GARBAGE\r\n\r\n".to_owned(),
        "\x16\x03\x01\x00\x05hello\r\n\r\n".to_owned(),
        oversize,
    ];
    for case in cases {
        let mut s = tokio::net::TcpStream::connect(sockaddr(env.gateway.port))
            .await
            .expect("connect");
        let _ = s.write_all(case.as_bytes()).await;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("closed in time");
        // A reset after the answer is fine: the client sent more than we read.
        let _ = read;
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.starts_with("HTTP/1.1 400 "),
            "{:?}: {text}",
            &case[..case.len().min(40)]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_upgrades_carry_the_credential_on_the_handshake() {
    let env = Env::start().await;
    let headers = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    // The loopback origin answers within microseconds, the case Pingora's own
    // upgrade path loses (cloudflare/pingora#946): repeat it.
    for round in 0..20 {
        let mut tunnel = tls_tunnel(&env, TOKEN_ALL, "api.test").await;
        let resp = request(&mut tunnel, "GET", "/ws", "api.test", &headers).await;
        assert_eq!(resp.status, 101, "{}", resp.head);
        assert_eq!(resp.header("x-seen-x-api-key"), Some(ANTHROPIC_KEY));
        assert_eq!(resp.header("x-seen-proxy-authorization"), None);
        let message = format!("round {round:02} over the upgraded stream");
        tunnel.write_all(message.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; message.len()];
        let echoed = tokio::time::timeout(Duration::from_secs(5), tunnel.read_exact(&mut buf))
            .await
            .expect("echo in time");
        if let Err(error) = echoed {
            panic!(
                "round {round}: no echo ({error}); gateway log:\n{}",
                env.gateway.log()
            );
        }
        assert_eq!(buf, message.as_bytes());
    }
    // An upstream that declines the upgrade is answered as it answered.
    let mut tunnel = tls_tunnel(&env, TOKEN_ALL, "api.test").await;
    let resp = request(&mut tunnel, "GET", "/unauthorized", "api.test", &headers).await;
    assert_eq!(resp.status, 401, "{}", resp.head);
    assert_eq!(resp.json()["error"]["type"], "authentication_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_inside_connect_is_served_as_http() {
    let env = Env::start().await;
    // curl -p opens a CONNECT tunnel even for http:// URLs.
    let url = format!("http://plain.test:{}/echo", env.plain.port());
    let (status, body) = env.curl(TOKEN_ALL, &["-p"], &url);
    assert_eq!(status, 200, "{body}");
    assert_eq!(echoed(&json(&body), "x-api-key"), [PLAIN_KEY]);
    assert_eq!(
        env.gateway
            .metric("onecli_gateway_tunnels_total{mode=\"plain\"}")
            .await,
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_travel_in_cleartext_without_the_secrets_consent() {
    let env = Env::start().await;
    // Neither a secret naming no port nor one naming the port consents:
    // over plain HTTP (absolute-form or inside CONNECT) they stay home.
    for host in ["plain2.test", "plain3.test"] {
        for args in [&[][..], &["-p"][..]] {
            let (status, body) = env.curl(
                TOKEN_ALL,
                args,
                &format!("http://{host}:{}/echo", env.plain.port()),
            );
            assert_eq!(status, 200, "{body}");
            assert!(
                echoed(&json(&body), "x-api-key").is_empty(),
                "{host} {args:?}: {body}"
            );
        }
    }
    // Plaintext inside a CONNECT to 443 is not HTTPS: the tunnel is closed.
    let (resp, mut s) =
        connect_raw(env.gateway.port, "api.test:443", Some(&basic(TOKEN_ALL))).await;
    assert_eq!(resp.status, 200);
    s.write_all(b"GET /v1/messages HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    assert!(
        read.is_err() || rest.is_empty(),
        "answered plaintext on 443: {}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_cannot_escape_a_secrets_path_scope() {
    let env = Env::start().await;
    for path in ["/repos/../user", "/repos/%2e%2e/user", "/repos/./x"] {
        let (status, body) = env.curl(TOKEN_ALL, &["--path-as-is"], &env.url("generic.test", path));
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(json(&body)["error"], "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pass_through_upstreams_are_checked_before_the_tunnel_opens() {
    let env = Env::start().await;
    let target = format!("127.0.0.2:{}", env.origin.port());
    let (resp, _) = connect_raw(env.gateway.port, &target, Some(&basic(TOKEN_ALL))).await;
    assert_eq!(resp.status, 403, "{}", resp.head);
    assert_eq!(resp.json()["error"], "egress_blocked");
    // Rules judge a pass-through tunnel once, at CONNECT: a deny-mode agent
    // without an allow rule for the host does not get one.
    let target = format!("pinned.test:{}", env.origin.port());
    let (resp, _) = connect_raw(env.gateway.port, &target, Some(&basic(TOKEN_RULED))).await;
    assert_eq!(resp.status, 403, "{}", resp.head);
    assert_eq!(resp.json()["error"], "blocked_by_default_policy");
}

#[tokio::test(flavor = "multi_thread")]
async fn own_api_health_readiness_and_metrics() {
    let env = Env::start().await;
    let (status, body) = http_get(env.gateway.port, "/healthz")
        .await
        .expect("healthz");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["status"], "ok");
    assert!(json(&body)["version"].is_string());
    let (status, body) = http_get(env.gateway.port, "/other").await.expect("other");
    assert_eq!(status, 400);
    assert_eq!(json(&body)["error"], "not_a_proxy_request");
    let _ = env.curl(TOKEN_ALL, &[], &env.url("api.test", "/"));
    let want = [
        "onecli_gateway_requests_total{outcome=\"forwarded\",status=\"2xx\"} 1",
        "onecli_gateway_injections_total 1",
        "onecli_gateway_tunnels_total{mode=\"intercept\"} 1",
        "onecli_gateway_leaf_certs_minted_total 1",
        "onecli_gateway_policy_version 1",
        "\nonecli_gateway_tunnels_open ",
        "onecli_gateway_upstream_connect_duration_seconds_count 1",
        "onecli_gateway_upstream_tls_duration_seconds_count 1",
        "onecli_gateway_upstream_first_byte_duration_seconds_count 1",
        "\nonecli_gateway_policy_age_seconds ",
    ];
    // A request is counted once its log phase has run, just after curl
    // has its answer: poll.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = env.gateway.metrics().await;
        let missing: Vec<&&str> = want.iter().filter(|n| !metrics.contains(**n)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missing {missing:?} in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_or_token_reaches_the_logs() {
    let env = Env::start().await;
    for (host, path) in [
        ("api.test", "/v1/messages?x=1"),
        ("query.test", "/maps"),
        ("generic.test", "/repos/a"),
        ("dead.test", "/"),
    ] {
        let _ = env.curl(TOKEN_ALL, &[], &env.url(host, path));
    }
    let _ = env.curl(
        TOKEN_ALL,
        &["-p"],
        &format!("http://plain.test:{}/", env.plain.port()),
    );
    let log = env.gateway.log();
    assert!(log.contains("request"), "debug logging was on: {log}");
    for needle in ALL_SECRETS.iter().chain(ALL_TOKENS.iter()) {
        let leaks: Vec<String> = log
            .lines()
            .filter(|l| l.contains(needle))
            .map(|l| l.replace(needle, "<LEAKED>"))
            .collect();
        assert!(
            leaks.is_empty(),
            "a secret or token leaked into the gateway log:\n{}",
            leaks.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_shuts_down_in_seconds() {
    let mut env = Env::start().await;
    let _ = env.curl(TOKEN_ALL, &[], &env.url("api.test", "/"));
    let pid = env.gateway.pid() as i32;
    assert_eq!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map(|s| s.success())
            .ok(),
        Some(true)
    );
    let start = Instant::now();
    while env.gateway.try_wait().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "still running {:?} after SIGTERM",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("graceful shutdown took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_ca_signs_the_leaves() {
    let mut env = Env::start().await;
    // Keep the generated CA aside, wipe the data dir, and hand the CA back by flag.
    let byo = env.dir.path().join("byo");
    std::fs::create_dir_all(&byo).expect("mkdir");
    let gw_dir = env.gateway.data_dir.join("gateway");
    std::fs::copy(gw_dir.join("ca.pem"), byo.join("ca.pem")).expect("copy cert");
    std::fs::copy(gw_dir.join("ca.key"), byo.join("ca.key")).expect("copy key");
    std::fs::remove_dir_all(&env.gateway.data_dir).expect("wipe data dir");
    let args = [
        "--ca-cert".to_owned(),
        byo.join("ca.pem").display().to_string(),
        "--ca-key".to_owned(),
        byo.join("ca.key").display().to_string(),
    ];
    env.restart_gateway(&args).await;
    assert!(
        !gw_dir.join("ca.pem").exists(),
        "no CA is generated when one is configured"
    );
    let out = run(env
        .curl_cmd(TOKEN_ALL, Some(&byo.join("ca.pem")))
        .arg(env.url("api.test", "/v1/messages")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        echoed(&json(&String::from_utf8_lossy(&out.stdout)), "x-api-key"),
        [ANTHROPIC_KEY]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_policy_at_start_fails_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("bad.toml");
    std::fs::write(
        &policy,
        "[[secrets]]\nname = \"x\"\ntype = \"openai\"\nvalue = \"v\"\nhost_pattern = \"a b\"\n",
    )
    .expect("write");
    let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_onecli"))
        .args([
            "gateway",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--policy")
        .arg(&policy));
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:1: secrets[0].host_pattern"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_https_is_fetched_over_verified_tls() {
    let env = Env::start().await;
    let mut s = tokio::net::TcpStream::connect(sockaddr(env.gateway.port))
        .await
        .expect("connect");
    let url = env.url("api.test", "/v1/messages?x=1");
    let auth = basic(TOKEN_ALL);
    let resp = request(
        &mut s,
        "GET",
        &url,
        &format!("api.test:{}", env.origin.port()),
        &[("Proxy-Authorization", &auth)],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let body = resp.json();
    assert_eq!(body["path"], "/v1/messages");
    assert_eq!(body["query"], "x=1");
    assert_eq!(echoed(&body, "x-api-key"), [ANTHROPIC_KEY]);
    assert!(echoed(&body, "proxy-authorization").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_policy() {
    let env = Env::start().await;
    let path = &env.gateway.policy_path;
    // Same length, same inode, same mtime: only the signal can reveal the
    // change. The file poller may still catch the instant between the write
    // and the mtime restore; then that round proves nothing and another
    // value is tried.
    for round in 0..5 {
        let before = if round == 0 {
            GITHUB_TOKEN.to_owned()
        } else {
            format!("ghp_SECRET_hupd{:02}", round - 1)
        };
        let value = format!("ghp_SECRET_hupd{round:02}");
        assert_eq!(value.len(), GITHUB_TOKEN.len());
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .expect("mtime");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open");
        std::io::Write::write_all(&mut &file, env.policy(&value).as_bytes()).expect("rewrite");
        file.set_modified(modified).expect("restore mtime");
        drop(file);
        let (_, body) = env.curl(TOKEN_ALL, &[], &env.url("generic.test", "/repos/x"));
        if echoed(&json(&body), "authorization") != [format!("token {before}")] {
            continue;
        }
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &env.gateway.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, body) = env.curl(TOKEN_ALL, &[], &env.url("generic.test", "/repos/x"));
            if echoed(&json(&body), "authorization") == [format!("token {value}")] {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SIGHUP did not reload the policy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("the file poller raced every round");
}

/// curl's `-D -` output: the head, then the body.
fn head_and_body(out: &str) -> (&str, Value) {
    let (head, body) = out.rsplit_once("\r\n\r\n").expect("head and body");
    (head, json(body))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_block_limit_allow_and_deny_by_default() {
    let env = Env::start().await;
    let (status, _) = env.curl(TOKEN_RULED, &[], &env.url("api.test", "/v1/messages"));
    assert_eq!(status, 200, "an allow rule opens api.test in deny mode");

    let (status, out) = env.curl(
        TOKEN_RULED,
        &["-X", "DELETE", "-D", "-"],
        &env.url("api.test", "/v1/files/1?x=1"),
    );
    assert_eq!(status, 403);
    let (head, body) = head_and_body(&out);
    assert_eq!(body["error"], "blocked_by_policy");
    assert_eq!(body["rule_name"], "ruled: no deletes");
    assert_eq!(body["method"], "DELETE");
    assert_eq!(body["path"], "/v1/files/1", "no query in the body");
    assert_eq!(body["dashboard_url"], "http://localhost:10254/rules");
    assert_eq!(header(head, "x-should-retry"), Some("false"));

    let (status, out) = env.curl(TOKEN_RULED, &["-D", "-"], &env.url("other.test", "/x"));
    assert_eq!(status, 403);
    let (_, body) = head_and_body(&out);
    assert_eq!(body["error"], "blocked_by_default_policy");
    assert_eq!(body["host"], "other.test");
    // The same rules judge absolute-form requests.
    let (status, out) = env.curl(
        TOKEN_RULED,
        &[],
        &format!("http://plain.test:{}/echo", env.plain.port()),
    );
    assert_eq!(status, 403, "{out}");

    for _ in 0..3 {
        let (status, body) = env.curl(TOKEN_RULED, &[], &env.url("openai.test", "/v1/chat"));
        assert_eq!(status, 200, "{body}");
    }
    let (status, out) = env.curl(
        TOKEN_RULED,
        &["-D", "-"],
        &env.url("openai.test", "/v1/chat"),
    );
    assert_eq!(status, 429);
    let (head, body) = head_and_body(&out);
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(
        (body["limit"].as_u64(), body["window"].as_str()),
        (Some(3), Some("minute"))
    );
    let retry: u64 = header(head, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(
        (1..=20).contains(&retry),
        "one slot frees every 20 s: {retry}"
    );
    assert_eq!(
        env.gateway
            .metric("onecli_gateway_rate_limited_total")
            .await,
        Some(1.0)
    );
    // Other agents have their own counters (and no such rule).
    let (status, _) = env.curl(TOKEN_ALL, &[], &env.url("openai.test", "/v1/chat"));
    assert_eq!(status, 200);

    let (status, out) = env.curl(
        TOKEN_RULED,
        &["-D", "-"],
        &env.url("oauth.test", "/v1/messages"),
    );
    assert_eq!(status, 503, "approval fails closed without a hub");
    let (head, body) = head_and_body(&out);
    assert_eq!(body["error"], "approval_unavailable");
    assert_eq!(header(head, "x-should-retry"), Some("false"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_added_while_a_connection_is_open_blocks_its_next_request() {
    let env = Env::start().await;
    let mut tunnel = tls_tunnel(&env, TOKEN_ALL, "generic.test").await;
    assert_eq!(
        request(&mut tunnel, "GET", "/repos/x", "generic.test", &[])
            .await
            .status,
        200
    );
    let blocked = format!(
        "{}\n[[rules]]\nname = \"freeze repos\"\nhost_pattern = \"generic.test\"\npath_pattern = \"/repos/*\"\naction = \"block\"\n",
        env.policy(GITHUB_TOKEN)
    );
    std::fs::write(&env.gateway.policy_path, blocked).expect("edit policy");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = request(&mut tunnel, "GET", "/repos/x", "generic.test", &[]).await;
        if resp.status == 403 {
            assert_eq!(resp.json()["rule_name"], "freeze repos");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new rule never applied to the open connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_websocket_upgrade_never_reaches_the_upstream() {
    let env = Env::start().await;
    let mut tunnel = tls_tunnel(&env, TOKEN_RULED, "other.test").await;
    let headers = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let resp = request(&mut tunnel, "GET", "/ws", "other.test", &headers).await;
    assert_eq!(resp.status, 403, "{}", resp.head);
    assert_eq!(resp.json()["error"], "blocked_by_default_policy");
}

#[tokio::test(flavor = "multi_thread")]
async fn uncredentialed_refusals_become_guidance() {
    let env = Env::start().await;
    // No secret for other.test: credential_not_found, status kept.
    let (status, out) = env.curl(
        TOKEN_ALL,
        &["-D", "-"],
        &env.url("other.test", "/unauthorized"),
    );
    assert_eq!(status, 401);
    let (head, body) = head_and_body(&out);
    assert_eq!(body["error"], "credential_not_found", "{body}");
    assert_eq!(body["hostname"], "other.test");
    assert_eq!(body["path"], "/unauthorized");
    assert_eq!(
        body["secret_url"],
        "http://localhost:10254/connections/custom?create=generic&host=other.test&path=%2F%2A"
    );
    assert_eq!(header(head, "x-should-retry"), Some("false"));
    assert_eq!(header(head, "content-type"), Some("application/json"));

    // A secret exists for api.test, but not for the picky agent.
    let (status, out) = env.curl(TOKEN_PICKY, &[], &env.url("api.test", "/unauthorized"));
    assert_eq!(status, 401);
    assert_eq!(json(&out)["error"], "access_restricted", "{out}");
    assert_eq!(
        json(&out)["manage_url"],
        "http://localhost:10254/agents?manage=picky"
    );

    // A credentialed 401 is the service's own answer: passed through.
    let (status, out) = env.curl(
        TOKEN_ALL,
        &["--http1.1"],
        &env.url("api.test", "/unauthorized"),
    );
    assert_eq!(status, 401);
    assert_eq!(json(&out)["error"]["type"], "authentication_error");

    // A 400 about the key becomes guidance; any other 400 stays.
    let (status, out) = env.curl(
        TOKEN_ALL,
        &["--http1.1"],
        &env.url("other.test", "/bad-key"),
    );
    assert_eq!(status, 400);
    assert_eq!(json(&out)["error"], "credential_not_found", "{out}");
    let (status, out) = env.curl(TOKEN_ALL, &[], &env.url("other.test", "/bad-request"));
    assert_eq!(status, 400);
    assert_eq!(json(&out)["error"]["message"], "messages: field required");
}

/// Dribbles a request head one byte every 250 ms until the gateway closes
/// the connection; how long that took.
async fn dribble_until_closed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    head_start: &str,
) -> Duration {
    let started = Instant::now();
    s.write_all(head_start.as_bytes())
        .await
        .expect("head start");
    let mut byte = [0u8; 1];
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a dribbled head was still read after 15 s"
        );
        if s.write_all(b"x").await.is_err() || s.flush().await.is_err() {
            return started.elapsed();
        }
        match tokio::time::timeout(Duration::from_millis(250), s.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => panic!("the gateway answered a head that never ended"),
            Err(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dribbled_request_head_is_cut_off_in_tunnels_and_between_requests() {
    let env = Env::start_with(Options {
        extra_args: vec!["--client-timeout".into(), "2s".into()],
        ..Options::default()
    })
    .await;
    // Inside an intercepted tunnel: a request, an idle spell longer than
    // the limit (idle is no head), another request, then a dribbled head.
    let mut t = tls_tunnel(&env, TOKEN_ALL, "api.test").await;
    assert_eq!(
        request(&mut t, "GET", "/a", "api.test", &[]).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        request(&mut t, "GET", "/b", "api.test", &[]).await.status,
        200
    );
    let took = dribble_until_closed(&mut t, "GET /c HTTP/1.1\r\nHost: api.test\r\nX-Slow: ").await;
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
    // On a plain proxy connection (absolute-form), after a first request.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", env.gateway.port))
        .await
        .expect("connect");
    let authority = format!("plain.test:{}", env.plain.port());
    let target = format!("http://{authority}/echo");
    let auth = basic(TOKEN_ALL);
    let first = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nProxy-Authorization: {auth}\r\n\r\n"
    );
    s.write_all(first.as_bytes()).await.expect("first");
    let resp = read_response(&mut s).await.expect("response");
    assert_eq!(
        resp.status,
        200,
        "{} {}",
        resp.head,
        String::from_utf8_lossy(&resp.body)
    );
    let took = dribble_until_closed(
        &mut s,
        &format!("GET {target} HTTP/1.1\r\nProxy-Authorization: {auth}\r\nX-Slow: "),
    )
    .await;
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
}
