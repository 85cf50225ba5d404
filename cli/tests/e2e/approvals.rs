//! Human approval (SPEC §4.4, §6 step 2) through the official SDK's
//! `configureManualApproval`, against `onecli serve`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onecli_benches::origin::{fnv1a, BIG_BODY};
use serde_json::{json, Value};

use crate::harness::echoed;
use crate::served::{raw_call, request_with_body, Served};

pub const KEY: &str = "sk-ant-api03-APPROVAL-SECRET-key";

/// An agent whose POSTs to api.test/v1/held wait for a human; returns its token.
pub async fn held_agent(s: &Served) -> String {
    let (agent_id, token) = s.agent("held").await;
    let secret =
        json!({ "name": "A", "type": "anthropic", "value": KEY, "hostPattern": "api.test" });
    assert_eq!(s.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    let rule = json!({ "name": "ask first", "hostPattern": "api.test", "pathPattern": "/v1/held*", "methods": ["POST"],
        "action": "manual_approval", "enabled": true, "agentId": agent_id });
    assert_eq!(s.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    token
}

pub struct Sdk(Child);

impl Drop for Sdk {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The SDK answering every approval with `decision`; its stdout carries one
/// JSON line per request it was shown.
fn sdk(s: &Served, decision: &str) -> Sdk {
    sdk_package(s, decision, "@onecli-sh/sdk")
}

/// The same with another SDK package (`sdk-0.5`: 0.5.0, NanoClaw's pin).
pub fn sdk_package(s: &Served, decision: &str, package: &str) -> Sdk {
    sdk_with_key(s, &s.api_key, decision, package)
}

/// The official SDK deciding with `key` (a project's key, say).
pub fn sdk_with_key(s: &Served, key: &str, decision: &str, package: &str) -> Sdk {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/approvals.mjs");
    let child = Command::new("node")
        .arg(script)
        .args([
            &format!("http://127.0.0.1:{}", s.api_port),
            key,
            decision,
            package,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    Sdk(child)
}

pub fn first_shown(sdk: &mut Sdk) -> Value {
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
    let mut tunnel = s.tunnel(&token, "api.test").await;
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
    let mut tunnel = s.tunnel(&token, "api.test").await;
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
    let mut tunnel = s.tunnel(&token, "api.test").await;
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
    let mut tunnel = s.tunnel(&token, "api.test").await;
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

/// A held POST to api.test/v1/held, answered in the background.
async fn send_held(s: &Served, token: &str) -> tokio::task::JoinHandle<crate::harness::Response> {
    let mut tunnel = s.tunnel(token, "api.test").await;
    tokio::spawn(async move {
        request_with_body(&mut tunnel, "POST", "/v1/held", "api.test", b"{}").await
    })
}

async fn decide(s: &Served, id: &str, decision: &str) {
    let path = format!("/v1/approvals/{id}/decision");
    let (status, body) = s
        .api("POST", &path, Some(json!({ "decision": decision })))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_request_is_judged_again_by_the_policy_of_its_release() {
    let s = Served::start().await;
    let token = held_agent(&s).await;
    // A secret deleted while the request waited is not injected.
    let held = send_held(&s, &token).await;
    let id = s.pending(1).await.remove(0);
    let (_, secrets) = s.api("GET", "/v1/secrets", None).await;
    let secret_id = secrets[0]["id"].as_str().expect("secret id").to_owned();
    assert_eq!(
        s.api("DELETE", &format!("/v1/secrets/{secret_id}"), None)
            .await
            .0,
        204
    );
    decide(&s, &id, "approve").await;
    let resp = held.await.expect("answered");
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert!(
        echoed(&resp.json(), "x-api-key").is_empty(),
        "a deleted secret was injected"
    );

    // A block rule added while it waited refuses it.
    let held = send_held(&s, &token).await;
    let id = s.pending(1).await.remove(0);
    let block = json!({ "name": "stop", "hostPattern": "api.test", "pathPattern": "/v1/*",
        "action": "block", "enabled": true });
    assert_eq!(s.api("POST", "/v1/rules", Some(block)).await.0, 201);
    decide(&s, &id, "approve").await;
    let resp = held.await.expect("answered");
    assert_eq!(
        (resp.status, resp.json()["error"].clone()),
        (403, json!("blocked_by_policy"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_or_re_tokened_agents_held_requests_are_denied_and_leave_the_list() {
    let s = Served::start().await;
    let token = held_agent(&s).await;
    let held = send_held(&s, &token).await;
    s.pending(1).await;
    let (_, agents) = s.api("GET", "/v1/agents", None).await;
    let agent_id = agents
        .as_array()
        .and_then(|a| a.iter().find(|a| a["identifier"] == "held"))
        .and_then(|a| a["id"].as_str())
        .expect("agent")
        .to_owned();
    let path = format!("/v1/agents/{agent_id}/regenerate-token");
    assert_eq!(s.api("POST", &path, None).await.0, 200);
    let resp = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("answered at once")
        .expect("task");
    assert_eq!(
        (resp.status, resp.json()["error"].clone()),
        (403, json!("manual_approval_denied"))
    );
    s.pending(0).await;

    let (_, list) = s.api("GET", "/v1/agents", None).await;
    let token = list
        .as_array()
        .and_then(|a| a.iter().find(|a| a["identifier"] == "held"))
        .and_then(|a| a["accessToken"].as_str())
        .expect("new token")
        .to_owned();
    let held = send_held(&s, &token).await;
    s.pending(1).await;
    assert_eq!(
        s.api("DELETE", &format!("/v1/agents/{agent_id}"), None)
            .await
            .0,
        204
    );
    let resp = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("answered at once")
        .expect("task");
    assert_eq!(resp.status, 403, "{}", resp.head);
    s.pending(0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_agent_cannot_take_every_approval_slot() {
    let s = Served::start().await;
    let greedy = held_agent(&s).await;
    let (other_id, other) = s.agent("other").await;
    let rule = json!({ "name": "other asks", "hostPattern": "api.test", "pathPattern": "/v1/held*",
        "methods": ["POST"], "action": "manual_approval", "enabled": true, "agentId": other_id });
    assert_eq!(s.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    let mut waiting = Vec::new();
    for n in 1..=8 {
        waiting.push(send_held(&s, &greedy).await);
        s.pending(n).await;
    }
    // The ninth from the same agent is refused at once.
    let resp = tokio::time::timeout(Duration::from_secs(10), send_held(&s, &greedy).await)
        .await
        .expect("answered at once")
        .expect("task");
    assert_eq!(
        (resp.status, resp.json()["error"].clone()),
        (503, json!("approvals_busy"))
    );
    // Another agent still gets a slot.
    waiting.push(send_held(&s, &other).await);
    let ids = s.pending(9).await;
    for id in ids {
        decide(&s, &id, "deny").await;
    }
    for held in waiting {
        assert_eq!(held.await.expect("task").status, 403);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dribbled_held_body_loses_its_slot() {
    use tokio::io::AsyncWriteExt;
    let s = Served::start_with(&["--held-body-timeout", "1s"]).await;
    let token = held_agent(&s).await;
    let mut tunnel = s.tunnel(&token, "api.test").await;
    let head = "POST /v1/held HTTP/1.1\r\nHost: api.test\r\nContent-Length: 100\r\n\r\n{";
    tunnel.write_all(head.as_bytes()).await.expect("head");
    tunnel.flush().await.expect("flush");
    let started = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(15),
        crate::harness::read_response(&mut tunnel),
    )
    .await
    .expect("answered in time")
    .expect("response");
    assert_eq!(
        (resp.status, resp.json()["error"].clone()),
        (408, json!("request_timeout"))
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    s.pending(0).await;
}
