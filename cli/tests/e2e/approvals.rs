//! Human approval (SPEC §4.4, §6 step 2) through the official SDK's
//! `configureManualApproval`, against `onecli serve`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onecli_benches::origin::{fnv1a, BIG_BODY};
use serde_json::{json, Value};

use crate::harness::{echoed, tls_tunnel_to};
use crate::served::{raw_call, request_with_body, Served};

const KEY: &str = "sk-ant-api03-APPROVAL-SECRET-key";

/// An agent whose POSTs to api.test/v1/held wait for a human; returns its token.
async fn held_agent(s: &Served) -> String {
    let (agent_id, token) = s.agent("held").await;
    let secret =
        json!({ "name": "A", "type": "anthropic", "value": KEY, "hostPattern": "api.test" });
    assert_eq!(s.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    let rule = json!({ "name": "ask first", "hostPattern": "api.test", "pathPattern": "/v1/held*", "methods": ["POST"],
        "action": "manual_approval", "enabled": true, "agentId": agent_id });
    assert_eq!(s.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    token
}

struct Sdk(Child);

impl Drop for Sdk {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The SDK answering every approval with `decision`; its stdout carries one
/// JSON line per request it was shown.
fn sdk(s: &Served, decision: &str) -> Sdk {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/approvals.mjs");
    let child = Command::new("node")
        .arg(script)
        .args([
            &format!("http://127.0.0.1:{}", s.api_port),
            &s.api_key,
            decision,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    Sdk(child)
}

fn first_shown(sdk: &mut Sdk) -> Value {
    let stdout = sdk.0.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a line")
        .expect("read");
    serde_json::from_str(&line).expect("json")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approved_request_goes_through_with_its_whole_body() {
    let s = Served::start().await;
    let token = held_agent(&s).await;
    let mut sdk = sdk(&s, "approve");
    let mut tunnel = tls_tunnel_to(
        s.gateway_port,
        &s.gateway_ca(),
        &token,
        "api.test",
        s.origin.port(),
    )
    .await;
    // A 1 MiB text body, so the preview can be compared byte for byte.
    let body: Vec<u8> = (0..BIG_BODY).map(|i| b'a' + (i % 26) as u8).collect();
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        request_with_body(&mut tunnel, "POST", "/v1/held?x=1", "api.test", &body),
    )
    .await
    .expect("approved in time");
    assert_eq!(resp.status, 200, "{}", resp.head);
    let echo = resp.json();
    assert_eq!(echo["body_len"], BIG_BODY);
    assert_eq!(echo["body_fnv1a"], fnv1a(&body), "forwarded byte-identical");
    assert_eq!(echoed(&echo, "x-api-key"), [KEY], "injected after approval");
    assert!(echoed(&echo, "authorization").is_empty());

    let shown = first_shown(&mut sdk);
    assert_eq!(shown["method"], "POST");
    assert_eq!(shown["host"], "api.test");
    assert_eq!(shown["path"], "/v1/held");
    assert_eq!(
        shown["url"],
        format!("https://api.test:{}/v1/held?x=1", s.origin.port())
    );
    assert_eq!(shown["agent"]["externalId"], "held");
    assert_eq!(
        shown["bodyPreview"].as_str().map(str::as_bytes),
        Some(&body[..16 * 1024])
    );
    let headers = shown["headers"].as_object().expect("headers");
    assert_eq!(
        headers.get("content-type").and_then(Value::as_str),
        Some("application/octet-stream")
    );
    for hidden in ["authorization", "x-api-key", "proxy-authorization"] {
        assert!(
            !headers.contains_key(hidden),
            "{hidden} shown to the reviewer"
        );
    }
    let text = shown.to_string();
    assert!(
        !text.contains(KEY) && !text.contains(&token),
        "a credential shown to the reviewer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_request_is_refused_and_never_sent() {
    let s = Served::start().await;
    let token = held_agent(&s).await;
    let _sdk = sdk(&s, "deny");
    let mut tunnel = tls_tunnel_to(
        s.gateway_port,
        &s.gateway_ca(),
        &token,
        "api.test",
        s.origin.port(),
    )
    .await;
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        request_with_body(&mut tunnel, "POST", "/v1/held", "api.test", b"{}"),
    )
    .await
    .expect("decided in time");
    assert_eq!(resp.status, 403, "{}", resp.head);
    let body = resp.json();
    assert_eq!(body["error"], "manual_approval_denied");
    assert!(body["approval_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(resp.header("x-should-retry"), Some("false"));
    // Deciding again: the SDK treats 410 as done.
    let path = format!(
        "/v1/approvals/{}/decision",
        body["approval_id"].as_str().expect("id")
    );
    assert_eq!(
        s.api("POST", &path, Some(json!({ "decision": "approve" })))
            .await,
        (410, json!({ "error": "approval_expired" }))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_deciding_times_out_into_a_denial() {
    let s = Served::start_with(&["--approval-timeout", "1s"]).await;
    let token = held_agent(&s).await;
    let mut tunnel = tls_tunnel_to(
        s.gateway_port,
        &s.gateway_ca(),
        &token,
        "api.test",
        s.origin.port(),
    )
    .await;
    let start = Instant::now();
    let resp = request_with_body(&mut tunnel, "POST", "/v1/held", "api.test", b"{}").await;
    assert_eq!(resp.status, 403);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    let id = resp.json()["approval_id"].as_str().expect("id").to_owned();
    let decision = Some(json!({ "decision": "approve" }));
    assert_eq!(
        s.api(
            "POST",
            &format!("/v1/approvals/{id}/decision"),
            decision.clone()
        )
        .await
        .0,
        410
    );
    assert_eq!(
        s.api("POST", "/v1/approvals/no-such-id/decision", decision)
            .await,
        (404, json!({ "error": "approval_not_found" }))
    );
    let (status, listed) = s.api("GET", "/v1/approvals/pending?wait=0", None).await;
    assert_eq!((status, listed["requests"].clone()), (200, json!([])));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_hangs_up_leaves_the_pending_list() {
    let s = Served::start().await;
    let token = held_agent(&s).await;
    let mut tunnel = tls_tunnel_to(
        s.gateway_port,
        &s.gateway_ca(),
        &token,
        "api.test",
        s.origin.port(),
    )
    .await;
    let held = tokio::spawn(async move {
        let _ = request_with_body(
            &mut tunnel,
            "POST",
            "/v1/held",
            "api.test",
            b"{\"hello\":1}",
        )
        .await;
    });
    // Listed while the agent waits (the poll returns as soon as there is one).
    let (_, listed) = s.api("GET", "/v1/approvals/pending", None).await;
    let id = listed["requests"][0]["id"]
        .as_str()
        .expect("listed")
        .to_owned();
    assert_eq!(listed["requests"][0]["bodyPreview"], "{\"hello\":1}");
    // The agent hangs up.
    held.abort();
    let _ = held.await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, listed) = s.api("GET", "/v1/approvals/pending?wait=0", None).await;
        if listed["requests"] == json!([]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still pending after the agent left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = raw_call(
        s.api_port,
        "POST",
        &format!("/v1/approvals/{id}/decision"),
        Some(r#"{"decision":"approve"}"#.into()),
        Some(&format!("Bearer {}", s.api_key)),
    )
    .await;
    assert_eq!(status, 410);
}
