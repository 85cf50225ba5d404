//! Projects (one gateway, many teams): the REST API, the gateway, the
//! audit log and the approvals feed each keep a project's objects to it.
//! Against `onecli serve`, with real keys, tunnels and the official SDK.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::approvals::{first_shown, sdk_package, sdk_with_key};
use crate::harness::echoed;
use crate::served::{raw_call_with, request_with_body, Served};

const SECRET_A: &str = "default-project-SECRET-value";
const SECRET_B: &str = "team-b-project-SECRET-value";

/// One call with `key`, and `X-Project-Id` when given.
async fn call(
    s: &Served,
    key: &str,
    project: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(project) = project {
        headers.push(("X-Project-Id", project));
    }
    let (status, text) = raw_call_with(
        s.api_port,
        method,
        path,
        body.map(|b| b.to_string()),
        &headers,
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A project and a key for it; returns (project id, key).
async fn project_with_key(s: &Served, identifier: &str) -> (String, String) {
    let (status, project) = s
        .api(
            "POST",
            "/v1/projects",
            Some(json!({ "name": format!("Team {identifier}"), "identifier": identifier })),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    let mut fields: Vec<&str> = project
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    assert_eq!(fields, ["createdAt", "id", "identifier", "name"]);
    let (status, key) = s
        .api(
            "POST",
            "/v1/api-keys",
            Some(json!({ "name": "ci", "project": identifier })),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    assert_eq!(key["project"], identifier);
    let secret = key["key"].as_str().expect("key shown once").to_owned();
    assert!(secret.starts_with("oc_"));
    (project["id"].as_str().expect("id").to_owned(), secret)
}

/// Creates an agent with `key` and returns (id, token).
async fn agent(s: &Served, key: &str, identifier: &str) -> (String, String) {
    let body = json!({ "name": identifier, "identifier": identifier });
    let (status, created) = call(s, key, None, "POST", "/v1/agents", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (_, agent) = call(s, key, None, "GET", &format!("/v1/agents/{id}"), None).await;
    let token = agent["accessToken"].as_str().expect("token").to_owned();
    (id, token)
}

fn generic(value: &str, host: &str) -> Value {
    json!({ "name": host, "type": "generic", "value": value, "hostPattern": host,
        "injectionConfig": { "headerName": "X-Key", "valueFormat": "{value}" } })
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_key_sees_and_changes_only_its_project() {
    let s = Served::start().await;
    let admin = s.api_key.clone();
    let (b_id, b_key) = project_with_key(&s, "team-b").await;

    // The same identifier in both projects: two agents.
    let (a_agent, a_token) = agent(&s, &admin, "claude").await;
    let (b_agent, b_token) = agent(&s, &b_key, "claude").await;
    let (_, a_secret) = call(
        &s,
        &admin,
        None,
        "POST",
        "/v1/secrets",
        Some(generic(SECRET_A, "api.test")),
    )
    .await;
    let (_, b_secret) = call(
        &s,
        &b_key,
        None,
        "POST",
        "/v1/secrets",
        Some(generic(SECRET_B, "api.test")),
    )
    .await;
    let (status, _) = call(
        &s,
        &admin,
        None,
        "POST",
        "/v1/secrets",
        Some(generic(SECRET_A, "other.test")),
    )
    .await;
    assert_eq!(status, 201);
    let a_secret = a_secret["id"].as_str().expect("id").to_owned();
    let b_secret = b_secret["id"].as_str().expect("id").to_owned();
    let rule = json!({ "name": "no deletes", "hostPattern": "api.test", "methods": ["DELETE"], "action": "block", "enabled": true });
    let (_, a_rule) = call(&s, &admin, None, "POST", "/v1/rules", Some(rule)).await;
    let a_rule = a_rule["id"].as_str().expect("id").to_owned();

    // Lists hold only the project's own objects.
    let (_, agents) = call(&s, &b_key, None, "GET", "/v1/agents", None).await;
    assert_eq!(ids(&agents), [b_agent.as_str()]);
    let (_, secrets) = call(&s, &b_key, None, "GET", "/v1/secrets", None).await;
    assert_eq!(ids(&secrets), [b_secret.as_str()]);
    let (_, rules) = call(&s, &b_key, None, "GET", "/v1/rules", None).await;
    assert_eq!(ids(&rules), Vec::<String>::new());
    let (_, agents) = call(&s, &admin, None, "GET", "/v1/agents", None).await;
    assert!(!ids(&agents).contains(&b_agent));

    // Another project's objects answer 404, whatever is tried on them.
    for (method, path, body) in [
        ("GET", format!("/v1/agents/{a_agent}"), None),
        ("GET", "/v1/agents/claude".to_owned(), None),
        ("DELETE", format!("/v1/secrets/{a_secret}"), None),
        (
            "PATCH",
            format!("/v1/secrets/{a_secret}"),
            Some(json!({ "value": "stolen" })),
        ),
        (
            "PATCH",
            format!("/v1/rules/{a_rule}"),
            Some(json!({ "enabled": false })),
        ),
        ("DELETE", format!("/v1/rules/{a_rule}"), None),
        (
            "POST",
            format!("/v1/agents/{a_agent}/regenerate-token"),
            None,
        ),
    ] {
        let (status, answer) = call(&s, &b_key, None, method, &path, body).await;
        if path == "/v1/agents/claude" {
            // Its own agent of that identifier, not the other.
            assert_eq!(answer["id"], b_agent.as_str(), "{method} {path}");
            continue;
        }
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    // Nor can it hand its agent the other project's secret.
    let (status, _) = call(
        &s,
        &b_key,
        None,
        "PUT",
        &format!("/v1/agents/{b_agent}/secrets"),
        Some(json!({ "secretIds": [a_secret] })),
    )
    .await;
    assert_eq!(status, 400);
    // A project key asking for another project, or for admin work: refused.
    let (status, _) = call(&s, &b_key, Some("default"), "GET", "/v1/agents", None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&s, &b_key, Some("team-b"), "GET", "/v1/agents", None).await;
    assert_eq!(status, 200, "its own project, named");
    for (method, path, body) in [
        (
            "POST",
            "/v1/projects",
            Some(json!({ "name": "x", "identifier": "x" })),
        ),
        ("GET", "/v1/api-keys", None),
        ("POST", "/v1/api-keys", Some(json!({ "name": "escalate" }))),
    ] {
        let (status, _) = call(&s, &b_key, None, method, path, body).await;
        assert_eq!(status, 403, "{method} {path}");
    }
    let (_, projects) = call(&s, &b_key, None, "GET", "/v1/projects", None).await;
    assert_eq!(ids(&projects), [b_id.as_str()]);

    // An admin key reaches a project by X-Project-Id (id or identifier).
    let (_, agents) = call(&s, &admin, Some("team-b"), "GET", "/v1/agents", None).await;
    assert_eq!(ids(&agents), [b_agent.as_str()]);
    let (_, agents) = call(&s, &admin, Some(&b_id), "GET", "/v1/agents", None).await;
    assert_eq!(ids(&agents), [b_agent.as_str()]);
    let (status, _) = call(&s, &admin, Some("no-such-team"), "GET", "/v1/agents", None).await;
    assert_eq!(
        status, 404,
        "with several projects, an unknown one is an error"
    );

    // Keys are listed without the key.
    let (_, keys) = s.api("GET", "/v1/api-keys", None).await;
    let text = keys.to_string();
    assert!(!text.contains(&b_key) && !text.contains(&admin), "{text}");
    assert!(keys
        .as_array()
        .expect("list")
        .iter()
        .any(|k| k["project"] == "team-b"));

    // Through the gateway: each agent gets its own project's secret, and
    // a host only the other project configured does not exist for it.
    for (token, expected) in [(&a_token, SECRET_A), (&b_token, SECRET_B)] {
        let mut tunnel = s.tunnel(token, "api.test").await;
        let resp = request_with_body(&mut tunnel, "GET", "/v1/x", "api.test", b"").await;
        assert_eq!(resp.status, 200, "{}", resp.head);
        assert_eq!(echoed(&resp.json(), "x-key"), [expected]);
    }
    let mut tunnel = s.tunnel(&b_token, "api.test").await;
    let resp = request_with_body(&mut tunnel, "DELETE", "/v1/x", "api.test", b"").await;
    assert_eq!(resp.status, 200, "project one's block is not project two's");
    let mut tunnel = s.tunnel(&a_token, "api.test").await;
    let resp = request_with_body(&mut tunnel, "DELETE", "/v1/x", "api.test", b"").await;
    assert_eq!(resp.status, 403, "{}", resp.head);
    let mut tunnel = s.tunnel(&b_token, "other.test").await;
    let resp = request_with_body(&mut tunnel, "GET", "/", "other.test", b"").await;
    assert!(echoed(&resp.json(), "x-key").is_empty(), "{}", resp.head);

    // The audit log: each project reads its own agents' records.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, mine) = call(&s, &b_key, None, "GET", "/v1/logs", None).await;
        let records = mine.as_array().expect("records").clone();
        assert!(
            records.iter().all(|r| r["agentId"] == b_agent.as_str()),
            "{mine}"
        );
        let (_, theirs) = call(&s, &admin, None, "GET", "/v1/logs", None).await;
        assert!(theirs
            .as_array()
            .expect("records")
            .iter()
            .all(|r| r["agentId"] != b_agent.as_str()));
        if records.len() >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "audit records of team-b: {mine}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Container config: each project's own default agent.
    let (_, a_config) = call(&s, &admin, None, "GET", "/v1/container-config", None).await;
    let (_, b_config) = call(&s, &b_key, None, "GET", "/v1/container-config", None).await;
    assert_ne!(
        a_config["env"]["HTTPS_PROXY"],
        b_config["env"]["HTTPS_PROXY"]
    );
    let (_, agents) = call(&s, &b_key, None, "GET", "/v1/agents", None).await;
    assert_eq!(
        agents.as_array().expect("list").len(),
        2,
        "team-b's default agent"
    );

    // A project goes only when empty, and takes its keys.
    let (status, _) = s.api("DELETE", &format!("/v1/projects/{b_id}"), None).await;
    assert_eq!(status, 409);
    for a in ids(&agents) {
        let (status, _) = call(&s, &b_key, None, "DELETE", &format!("/v1/agents/{a}"), None).await;
        assert_eq!(status, 204);
    }
    let (status, _) = call(
        &s,
        &b_key,
        None,
        "DELETE",
        &format!("/v1/secrets/{b_secret}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = s.api("DELETE", "/v1/projects/team-b", None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&s, &b_key, None, "GET", "/v1/agents", None).await;
    assert_eq!(status, 401, "its keys went with it");
    // No secret value in any answer or log.
    let log = s.log();
    for secret in [SECRET_A, SECRET_B, b_key.as_str()] {
        assert!(!log.contains(secret), "a secret in the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_with_a_project_key_works_unchanged() {
    let s = Served::start().await;
    let (_, key) = project_with_key(&s, "nanoclaw-two").await;
    // The script sends projectId "project-1" with the key, as the SDK's
    // users may: with a project key that names another project, 404. So
    // run NanoClaw's sequence (0.5.0), which sends none.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/nanoclaw.mjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .args([
            &format!("http://127.0.0.1:{}", s.api_port),
            &key,
            "group-one",
        ])
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ensureNew"]["created"], true, "{v}");
    assert_eq!(v["ensureAgain"]["created"], false);
    assert_eq!(v["applied"], true);
    // The agent is the project's, not the default project's.
    let (_, mine) = call(&s, &key, None, "GET", "/v1/agents/group-one", None).await;
    assert_eq!(mine["identifier"], "group-one");
    let (status, _) = s.api("GET", "/v1/agents/group-one", None).await;
    assert_eq!(status, 404, "not in the default project");
    let token = mine["accessToken"].as_str().expect("token");
    assert!(
        v["args"].to_string().contains(token),
        "its container gets its token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_project_decides_only_its_own_held_requests() {
    let s = Served::start().await;
    let admin = s.api_key.clone();
    let (_, b_key) = project_with_key(&s, "team-b").await;
    let mut tokens = Vec::new();
    for (key, identifier) in [(&admin, "held-a"), (&b_key, "held-b")] {
        let (id, token) = agent(&s, key, identifier).await;
        let rule = json!({ "name": "ask", "hostPattern": "api.test", "pathPattern": "/v1/held*", "methods": ["POST"],
            "action": "manual_approval", "enabled": true, "agentId": id });
        assert_eq!(
            call(&s, key, None, "POST", "/v1/rules", Some(rule)).await.0,
            201
        );
        tokens.push(token);
    }
    // Team B's SDK denies whatever it is shown; it runs first.
    let mut b_sdk = sdk_with_key(&s, &b_key, "deny", "@onecli-sh/sdk");
    let a_token = tokens[0].clone();
    let (gateway_port, ca, origin_port) = (s.gateway_port, s.gateway_ca(), s.origin.port());
    let a_request = tokio::spawn(async move {
        let mut tunnel =
            crate::harness::tls_tunnel_to(gateway_port, &ca, &a_token, "api.test", origin_port)
                .await;
        request_with_body(&mut tunnel, "POST", "/v1/held", "api.test", b"{}").await
    });
    // A's request waits in A's feed and in no other.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, listed) = call(
            &s,
            &admin,
            None,
            "GET",
            "/v1/approvals/pending?wait=0",
            None,
        )
        .await;
        if listed["requests"].as_array().is_some_and(|r| r.len() == 1) {
            assert_eq!(listed["requests"][0]["agent"]["externalId"], "held-a");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A's request never waited: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, b_view) = call(
        &s,
        &b_key,
        None,
        "GET",
        "/v1/approvals/pending?wait=0",
        None,
    )
    .await;
    assert_eq!(b_view["requests"], json!([]));
    let (_, listed) = call(
        &s,
        &admin,
        None,
        "GET",
        "/v1/approvals/pending?wait=0",
        None,
    )
    .await;
    let a_id = listed["requests"][0]["id"].as_str().expect("id").to_owned();
    let (status, _) = call(
        &s,
        &b_key,
        None,
        "POST",
        &format!("/v1/approvals/{a_id}/decision"),
        Some(json!({ "decision": "deny" })),
    )
    .await;
    assert_eq!(status, 404, "another project's request");

    // Team A's SDK approves; B's request goes to B's SDK, which denies it.
    let _a_sdk = sdk_package(&s, "approve", "@onecli-sh/sdk");
    let resp = tokio::time::timeout(Duration::from_secs(30), a_request)
        .await
        .expect("decided in time")
        .expect("task");
    assert_eq!(resp.status, 200, "A's own SDK approved it: {}", resp.head);
    let mut tunnel = s.tunnel(&tokens[1], "api.test").await;
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        request_with_body(&mut tunnel, "POST", "/v1/held", "api.test", b"{}"),
    )
    .await
    .expect("decided in time");
    assert_eq!(resp.status, 403, "{}", resp.head);
    // The first request B's SDK was ever shown is B's own.
    assert_eq!(first_shown(&mut b_sdk)["agent"]["externalId"], "held-b");
}
