//! The control issue's acceptance tests (SPEC §4, COMPAT.md) against the
//! real `onecli serve`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{echoed, request, tls_tunnel_to};
use crate::served::{raw_call, Served};

const VALUE: &str = "sk-ant-api03-CONTROL-SECRET-value-1234";

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_but_health_and_the_ca_needs_the_api_key() {
    let s = Served::start().await;
    let unauthorized = json!({ "error": { "message": "Invalid API key or token.", "type": "authentication_error" } });
    for auth in [None, Some("Bearer oc_wrong"), Some("Basic abc")] {
        for path in [
            "/v1/agents",
            "/api/agents",
            "/v1/secrets",
            "/v1/rules",
            "/v1/container-config",
            "/v1/skill/gateway",
        ] {
            let (status, body) = s.call("GET", path, None, auth).await;
            assert_eq!(
                (status, &body),
                (401, &unauthorized),
                "{path} with {auth:?}"
            );
        }
    }
    let (status, health) = s.call("GET", "/v1/health", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(keys(&health), ["status", "timestamp", "version"]);
    let (status, pem) = raw_call(s.api_port, "GET", "/v1/gateway/ca", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(pem, std::fs::read_to_string(s.gateway_ca()).expect("ca"));
    // Every /v1 route answers at /api too.
    assert_eq!(s.api("GET", "/api/agents", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_api_follows_compat() {
    let s = Served::start().await;
    assert_eq!(s.api("GET", "/v1/agents/default", None).await.0, 404);
    let (status, created) = s
        .api(
            "POST",
            "/v1/agents",
            Some(json!({ "name": "Claude", "identifier": "claude" })),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(keys(&created), ["createdAt", "id", "identifier", "name"]);
    let (status, conflict) = s
        .api(
            "POST",
            "/v1/agents",
            Some(json!({ "name": "Again", "identifier": "claude" })),
        )
        .await;
    assert_eq!(status, 409, "{conflict}");
    for bad in [
        json!({ "name": "x", "identifier": "Bad_Id" }),
        json!({ "name": "x", "identifier": "ok", "extra": 1 }),
        json!({ "identifier": "ok" }),
    ] {
        let (status, body) = s.api("POST", "/v1/agents", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    let id = created["id"].as_str().expect("id");
    let (_, list) = s.api("GET", "/v1/agents", None).await;
    let agent = &list[0];
    assert_eq!(agent["identifier"], "claude");
    assert!(onecli_policy::is_valid_agent_token(
        agent["accessToken"].as_str().expect("token")
    ));
    for field in [
        "id",
        "name",
        "identifier",
        "accessToken",
        "isDefault",
        "secretMode",
        "createdAt",
    ] {
        assert!(agent.get(field).is_some(), "{field} missing from {agent}");
    }
    assert_eq!(
        s.api(
            "PATCH",
            &format!("/v1/agents/{id}"),
            Some(json!({ "name": "Claude Code" }))
        )
        .await,
        (200, json!({ "success": true }))
    );
    let (_, fresh) = s
        .api("POST", &format!("/v1/agents/{id}/regenerate-token"), None)
        .await;
    assert_ne!(fresh["accessToken"], agent["accessToken"]);
    assert_eq!(
        s.api(
            "PATCH",
            &format!("/v1/agents/{id}/secret-mode"),
            Some(json!({ "mode": "selective" }))
        )
        .await
        .0,
        200
    );
    let (_, secret) = s
        .api("POST", "/v1/secrets", Some(json!({ "name": "A", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" })))
        .await;
    let secret_id = secret["id"].as_str().expect("id");
    assert_eq!(
        s.api(
            "PUT",
            &format!("/v1/agents/{id}/secrets"),
            Some(json!({ "secretIds": [secret_id] }))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.api("GET", &format!("/v1/agents/{id}/secrets"), None)
            .await,
        (200, json!([secret_id]))
    );
    assert_eq!(
        s.api(
            "PUT",
            &format!("/v1/agents/{id}/secrets"),
            Some(json!({ "secretIds": ["nope"] }))
        )
        .await
        .0,
        400
    );
    let (_, list) = s.api("GET", "/v1/agents", None).await;
    assert_eq!(
        (list[0]["name"].as_str(), list[0]["secretMode"].as_str()),
        (Some("Claude Code"), Some("selective"))
    );
    assert_eq!(
        s.api("DELETE", &format!("/v1/agents/{id}"), None).await.0,
        204
    );
    assert_eq!(s.api("GET", &format!("/v1/agents/{id}"), None).await.0, 404);
    assert_eq!(
        s.api("DELETE", &format!("/v1/agents/{id}"), None).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_values_are_write_only() {
    let s = Served::start().await;
    let mut responses = Vec::new();
    let (status, created) = s
        .raw("POST", "/v1/secrets", Some(json!({ "name": "Anthropic", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" }).to_string()))
        .await;
    assert_eq!(status, 201, "{created}");
    responses.push(created.clone());
    let created: Value = serde_json::from_str(&created).expect("json");
    assert_eq!(
        keys(&created),
        [
            "allowPlaintext",
            "createdAt",
            "hostPattern",
            "id",
            "name",
            "pathPattern",
            "preview",
            "type"
        ]
    );
    assert_eq!(created["preview"], "••••••••1234");
    assert_eq!(created["allowPlaintext"], false, "TLS only unless asked");
    // Nothing at all of a value shorter than 16.
    let short = json!({ "name": "Short", "type": "openai", "value": "fifteen-chars-x", "hostPattern": "short.test" });
    let (status, short) = s.api("POST", "/v1/secrets", Some(short)).await;
    assert_eq!((status, short["preview"].as_str()), (201, Some("••••••••")));
    let id = created["id"].as_str().expect("id");
    let (status, _) = s
        .api(
            "PATCH",
            &format!("/v1/secrets/{id}"),
            Some(json!({ "allowPlaintext": true })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        s.api("GET", &format!("/v1/secrets/{id}"), None).await.1["allowPlaintext"],
        true
    );
    let (status, _) = s
        .api(
            "PATCH",
            &format!("/v1/secrets/{id}"),
            Some(json!({ "allowPlaintext": false })),
        )
        .await;
    assert_eq!(status, 200);
    let generic = json!({
        "name": "GitHub", "type": "generic", "value": "ghp_CONTROL_SECRET", "hostPattern": "generic.test",
        "injectionConfig": { "headerName": "Authorization", "valueFormat": "token {value}" },
    });
    let (status, body) = s
        .raw("POST", "/v1/secrets", Some(generic.to_string()))
        .await;
    assert_eq!(status, 201, "{body}");
    responses.push(body);
    for path in [
        "/v1/secrets".to_owned(),
        format!("/v1/secrets/{id}"),
        "/v1/agents".to_owned(),
    ] {
        let (status, body) = s.raw("GET", &path, None).await;
        assert_eq!(status, 200);
        responses.push(body);
    }
    let (status, body) = s
        .raw(
            "PATCH",
            &format!("/v1/secrets/{id}"),
            Some(json!({ "value": "sk-ant-api03-CONTROL-SECRET-rotated" }).to_string()),
        )
        .await;
    assert_eq!((status, body.as_str()), (200, r#"{"success":true}"#));
    let (_, list) = s.api("GET", "/v1/secrets", None).await;
    let generic_view = list
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["name"] == "GitHub")
        .expect("github");
    assert_eq!(
        generic_view["injectionConfig"],
        json!({ "headerName": "Authorization", "valueFormat": "token {value}" })
    );
    for bad in [
        json!({ "name": "x", "type": "openai", "value": "v", "hostPattern": "a b" }),
        json!({ "name": "x", "type": "openai", "value": "v", "hostPattern": "h", "color": "red" }),
        json!({ "name": "x", "type": "generic", "value": "v", "hostPattern": "h" }),
        json!({ "name": "x", "type": "nope", "value": "v", "hostPattern": "h" }),
    ] {
        let (status, body) = s.raw("POST", "/v1/secrets", Some(bad.to_string())).await;
        assert_eq!(status, 400, "{bad}: {body}");
        responses.push(body);
    }
    for r in &responses {
        assert!(
            !r.contains("CONTROL-SECRET") && !r.contains("CONTROL_SECRET"),
            "a secret value in a response: {r}"
        );
    }
    assert_eq!(
        s.api("DELETE", &format!("/v1/secrets/{id}"), None).await.0,
        204
    );
    assert_eq!(
        s.api("GET", &format!("/v1/secrets/{id}"), None).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_api_with_methods() {
    let s = Served::start().await;
    let (agent_id, _) = s.agent("reader").await;
    let body = json!({
        "name": "no writes", "hostPattern": "*.test", "methods": ["post", "DELETE"], "action": "block",
        "enabled": true, "agentId": agent_id,
    });
    let (status, rule) = s.api("POST", "/v1/rules", Some(body)).await;
    assert_eq!(status, 201, "{rule}");
    assert_eq!(rule["methods"], json!(["POST", "DELETE"]));
    assert_eq!(rule["method"], "POST");
    let id = rule["id"].as_str().expect("id");
    let limited = json!({ "name": "hourly", "hostPattern": "*", "action": "rate_limit", "rateLimit": 100, "rateLimitWindow": "hour", "enabled": true });
    let (status, rl) = s.api("POST", "/v1/rules", Some(limited)).await;
    assert_eq!(status, 201, "{rl}");
    assert_eq!(
        (rl["rateLimit"].as_u64(), rl["rateLimitWindow"].as_str()),
        (Some(100), Some("hour"))
    );
    let (status, _) = s
        .api(
            "POST",
            "/v1/rules",
            Some(
                json!({ "name": "x", "hostPattern": "*", "action": "rate_limit", "enabled": true }),
            ),
        )
        .await;
    assert_eq!(status, 400, "rate_limit without a limit");
    let (status, patched) = s
        .api(
            "PATCH",
            &format!("/v1/rules/{id}"),
            Some(json!({ "enabled": false, "method": "PUT" })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        (patched["enabled"].as_bool(), patched["methods"].clone()),
        (Some(false), json!(["PUT"]))
    );
    assert_eq!(
        s.api("GET", "/v1/rules", None)
            .await
            .1
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        s.api("DELETE", &format!("/v1/rules/{id}"), None).await.0,
        204
    );
    assert_eq!(s.api("GET", &format!("/v1/rules/{id}"), None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_changes_are_enforced_on_an_open_keep_alive_connection() {
    let s = Served::start().await;
    let (_, token) = s.agent("worker").await;
    let (_, secret) = s
        .api("POST", "/v1/secrets", Some(json!({ "name": "A", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" })))
        .await;
    let mut tunnel = s.tunnel(&token, "api.test").await;
    let first = request(&mut tunnel, "GET", "/v1/messages", "api.test", &[]).await;
    assert_eq!(echoed(&first.json(), "x-api-key"), [VALUE]);

    assert_eq!(
        s.api(
            "DELETE",
            &format!("/v1/secrets/{}", secret["id"].as_str().expect("id")),
            None
        )
        .await
        .0,
        204
    );
    // The API answers after the gateway swapped the policy: no waiting.
    let second = request(&mut tunnel, "GET", "/v1/messages", "api.test", &[]).await;
    assert!(
        echoed(&second.json(), "x-api-key").is_empty(),
        "deleted secret still injected"
    );

    let rule =
        json!({ "name": "stop", "hostPattern": "api.test", "action": "block", "enabled": true });
    assert_eq!(s.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    let third = request(&mut tunnel, "GET", "/v1/messages", "api.test", &[]).await;
    assert_eq!(third.status, 403);
    assert_eq!(third.json()["error"], "blocked_by_policy");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_survives_kill_9_and_a_restart_keeps_everything() {
    let mut s = Served::start().await;
    let (agent_id, token) = s.agent("durable").await;
    let (status, _) = s
        .api("POST", "/v1/secrets", Some(json!({ "name": "A", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" })))
        .await;
    assert_eq!(status, 201);
    // SIGKILL right after the acknowledgement.
    s.restart(true).await;
    let (_, agents) = s.api("GET", "/v1/agents", None).await;
    assert!(agents
        .as_array()
        .expect("list")
        .iter()
        .any(|a| a["id"] == agent_id.as_str()));
    let mut tunnel = s.tunnel(&token, "api.test").await;
    let resp = request(&mut tunnel, "GET", "/v1/messages", "api.test", &[]).await;
    assert_eq!(
        echoed(&resp.json(), "x-api-key"),
        [VALUE],
        "secret and agent survived"
    );
    // And a graceful restart, with the same admin key still valid.
    s.restart(false).await;
    assert_eq!(
        s.api("GET", "/v1/secrets", None)
            .await
            .1
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn container_config_and_skill_follow_compat() {
    let s = Served::start().await;
    let (status, config) = s.api("GET", "/v1/container-config", None).await;
    assert_eq!(status, 200, "{config}");
    let (_, default) = s.api("GET", "/v1/agents/default", None).await;
    assert_eq!(
        (default["name"].as_str(), default["identifier"].as_str()),
        (Some("Default Agent"), Some("default"))
    );
    let token = default["accessToken"].as_str().expect("token");
    let proxy = format!("http://x:{token}@host.docker.internal:10255");
    let env = &config["env"];
    for key in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        assert_eq!(env[key], proxy.as_str(), "{key}");
    }
    assert_eq!(env["NODE_EXTRA_CA_CERTS"], "/tmp/onecli-gateway-ca.pem");
    assert_eq!(env["NODE_USE_ENV_PROXY"], "1");
    assert_eq!(env["GIT_TERMINAL_PROMPT"], "0");
    assert_eq!(env["GIT_HTTP_PROXY_AUTHMETHOD"], "basic");
    assert_eq!(env["ANTHROPIC_API_KEY"], "placeholder");
    assert!(env.get("OPENAI_API_KEY").is_none());
    assert_eq!(
        config["caCertificateContainerPath"],
        "/tmp/onecli-gateway-ca.pem"
    );
    assert_eq!(
        config["caCertificate"].as_str(),
        std::fs::read_to_string(s.gateway_ca()).ok().as_deref()
    );

    let oauth = json!({ "name": "Claude", "type": "anthropic", "value": "sk-ant-oat01-CONTROL-SECRET", "hostPattern": "api.anthropic.com" });
    assert_eq!(s.api("POST", "/v1/secrets", Some(oauth)).await.0, 201);
    let openai = json!({ "name": "OpenAI", "type": "openai", "value": "sk-proj-CONTROL-SECRET", "hostPattern": "api.openai.com" });
    assert_eq!(s.api("POST", "/v1/secrets", Some(openai)).await.0, 201);
    let (_, config) = s
        .api("GET", "/v1/container-config?agent=default", None)
        .await;
    assert_eq!(config["env"]["CLAUDE_CODE_OAUTH_TOKEN"], "placeholder");
    assert!(config["env"].get("ANTHROPIC_API_KEY").is_none());
    assert_eq!(config["env"]["OPENAI_API_KEY"], "placeholder");
    // The skill tells the agent its Claude login is a placeholder to keep.
    let (status, skill) = s.raw("GET", "/v1/skill/gateway", None).await;
    assert_eq!(status, 200);
    assert!(skill.contains("CLAUDE_CODE_OAUTH_TOKEN"), "{skill}");
    assert!(!skill.contains("sk-ant-oat01-CONTROL-SECRET"));

    let (status, missing) = s.api("GET", "/v1/container-config?agent=ghost", None).await;
    assert_eq!(status, 404);
    assert_eq!(
        (
            missing["code"].as_str(),
            missing["agentIdentifier"].as_str()
        ),
        (Some("AGENT_NOT_FOUND"), Some("ghost"))
    );
    assert!(missing["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("No agent with identifier \"ghost\" exists")));

    let (status, skill) = s
        .raw("GET", "/v1/skill/gateway?agent_framework=claude", None)
        .await;
    assert_eq!(status, 200);
    assert!(skill.starts_with("---\nname: onecli-gateway\n"), "{skill}");
    assert!(
        skill.contains("`api.openai.com` (OpenAI)")
            && skill.contains("`api.anthropic.com` (Claude)"),
        "{skill}"
    );
    assert!(!skill.contains("CONTROL-SECRET"));
    assert_eq!(
        s.api("GET", "/v1/gateway-url", None).await.1["url"],
        format!("http://localhost:{}", s.api_port)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_value_or_token_in_logs_or_data_files() {
    let s = Served::start().await;
    let (_, token) = s.agent("quiet").await;
    let secret =
        json!({ "name": "A", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" });
    assert_eq!(s.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    let mut tunnel = s.tunnel(&token, "api.test").await;
    let _ = request(&mut tunnel, "GET", "/v1/messages?x=1", "api.test", &[]).await;
    let _ = s.api("GET", "/v1/container-config?agent=quiet", None).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.log().contains("request") {
        assert!(Instant::now() < deadline, "the request was never logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = s.log();
    for needle in [VALUE, token.as_str(), s.api_key.as_str()] {
        assert!(!log.contains(needle), "a secret or token in the log");
    }
    for entry in std::fs::read_dir(s.data_dir()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() && path.file_name().is_some_and(|n| n != "api-key") {
            let bytes = std::fs::read(&path).expect("read");
            for needle in [VALUE.as_bytes(), token.as_bytes(), &token.as_bytes()[4..24]] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "plaintext in {}",
                    path.display()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_node_sdk_works_unchanged() {
    let s = Served::start().await;
    let secret = json!({ "name": "GitHub", "type": "generic", "value": "ghp_CONTROL_SECRET", "hostPattern": "api.github.com",
        "injectionConfig": { "headerName": "Authorization", "valueFormat": "Bearer {value}" } });
    assert_eq!(s.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/sdk.mjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .args([&format!("http://127.0.0.1:{}", s.api_port), &s.api_key])
        .output()
        .expect("node (scripts/setup installs it and the SDK)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");

    assert_eq!(
        keys(&v["created"]),
        ["createdAt", "id", "identifier", "name"]
    );
    assert_eq!(
        v["ensureExisting"],
        json!({ "name": "SDK Agent", "identifier": "sdk-agent", "created": false })
    );
    assert_eq!(v["ensureNew"]["created"], true);
    assert_eq!(
        v["configDefault"]["env"]["ANTHROPIC_API_KEY"],
        "placeholder"
    );
    let (_, agents) = s.api("GET", "/v1/agents", None).await;
    let token = agents
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["identifier"] == "sdk-agent")
        .and_then(|a| a["accessToken"].as_str())
        .expect("token")
        .to_owned();
    assert_eq!(
        v["configAgent"]["env"]["HTTPS_PROXY"],
        format!("http://x:{token}@host.docker.internal:10255")
    );

    assert_eq!(v["applied"], true);
    let args: Vec<&str> = v["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.windows(2).any(|w| w
            == [
                "-e",
                &format!("HTTPS_PROXY=http://x:{token}@host.docker.internal:10255")[..]
            ]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w[0] == "-v" && w[1].ends_with(":/tmp/onecli-gateway-ca.pem:ro")),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--add-host", "host.docker.internal:host-gateway"]),
        "{args:?}"
    );

    assert_eq!(
        v["ghost"],
        json!({ "requestError": true, "statusCode": 404 })
    );
    assert_eq!(
        v["applyGhost"],
        json!({ "requestError": true, "statusCode": 404 })
    );
    assert_eq!(v["applyUnreachable"], false, "network errors return false");
    assert!(
        v["skill"]
            .as_str()
            .is_some_and(|m| m.contains("`api.github.com` (GitHub)")),
        "{}",
        v["skill"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_decision_reaches_the_audit_log() {
    let s = Served::start().await;
    let (agent_id, token) = s.agent("audited").await;
    let (_, secret) = s
        .api("POST", "/v1/secrets", Some(json!({ "name": "A", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" })))
        .await;
    let rule = json!({ "name": "no deletes", "hostPattern": "api.test", "methods": ["DELETE"], "action": "block", "enabled": true });
    let (_, rule) = s.api("POST", "/v1/rules", Some(rule)).await;
    let mut tunnel = s.tunnel(&token, "api.test").await;
    assert_eq!(
        request(
            &mut tunnel,
            "GET",
            "/v1/messages?secret_param=hidden",
            "api.test",
            &[]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        request(&mut tunnel, "DELETE", "/v1/files/1", "api.test", &[])
            .await
            .status,
        403
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let (status, logs) = s.api("GET", "/v1/logs?agent=audited", None).await;
        assert_eq!(status, 200);
        if logs.as_array().is_some_and(|l| l.len() >= 2) {
            break logs;
        }
        assert!(
            Instant::now() < deadline,
            "audit records never arrived: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (blocked, forwarded) = (&logs[0], &logs[1]);
    assert_eq!(
        (blocked["method"].as_str(), blocked["status"].as_u64()),
        (Some("DELETE"), Some(403))
    );
    assert_eq!(blocked["outcome"], "blocked_by_policy");
    assert_eq!(
        (blocked["ruleId"].clone(), blocked["ruleName"].as_str()),
        (rule["id"].clone(), Some("no deletes"))
    );
    assert_eq!(forwarded["path"], "/v1/messages", "no query string");
    assert_eq!(forwarded["injected"], json!([secret["id"]]));
    assert_eq!(
        (forwarded["agent"].as_str(), forwarded["agentId"].as_str()),
        (Some("audited"), Some(agent_id.as_str()))
    );
    assert_eq!(forwarded["host"], "api.test");
    assert!(
        forwarded["unixMs"].as_u64().is_some()
            && forwarded["time"].as_str().is_some_and(|t| t.ends_with('Z'))
    );

    let (_, one) = s.api("GET", "/v1/logs?limit=1", None).await;
    assert_eq!(one.as_array().map(Vec::len), Some(1));
    let (_, none) = s
        .api("GET", "/v1/logs?since=2999-01-01T00:00:00Z", None)
        .await;
    assert_eq!(none, json!([]));
    assert_eq!(s.api("GET", "/v1/logs?since=yesterday", None).await.0, 400);
    let (_, text) = s.raw("GET", "/v1/logs", None).await;
    assert!(
        !text.contains(VALUE) && !text.contains(&token) && !text.contains("hidden"),
        "a value, token or query in the audit log"
    );
}

/// SPEC §6's three agents, configured through the API and exercised through
/// the gateway: read mail but not delete it; GitHub but not Slack; read-only
/// everywhere at 100 requests an hour.
#[tokio::test(flavor = "multi_thread")]
async fn the_three_agents_operators_describe() {
    let s = Served::start().await;
    let (email, email_token) = s.agent("email").await;
    let (code, code_token) = s.agent("code").await;
    let (research, research_token) = s.agent("research").await;
    assert_eq!(
        s.api(
            "PATCH",
            &format!("/v1/agents/{code}/policy-mode"),
            Some(json!({ "mode": "deny" }))
        )
        .await
        .0,
        200
    );
    let rules = [
        json!({ "name": "no mail deletes", "agentId": email, "hostPattern": "gmail.googleapis.com", "methods": ["DELETE"], "action": "block", "enabled": true }),
        json!({ "name": "no trash", "agentId": email, "hostPattern": "gmail.googleapis.com", "pathPattern": "/gmail/v1/users/*/messages/*/trash", "action": "block", "enabled": true }),
        json!({ "name": "github api", "agentId": code, "hostPattern": "api.github.com", "action": "allow", "enabled": true }),
        json!({ "name": "read only", "agentId": research, "hostPattern": "*", "methods": ["POST", "PUT", "PATCH", "DELETE"], "action": "block", "enabled": true }),
        json!({ "name": "100 an hour", "agentId": research, "hostPattern": "*", "action": "rate_limit", "rateLimit": 100, "rateLimitWindow": "hour", "enabled": true }),
    ];
    for rule in rules {
        assert_eq!(
            s.api("POST", "/v1/rules", Some(rule.clone())).await.0,
            201,
            "{rule}"
        );
    }
    let status = |token: String, method: &'static str, host: &'static str, path: &'static str| {
        let (gw, ca, port) = (s.gateway_port, s.gateway_ca(), s.origin.port());
        async move {
            let mut t = tls_tunnel_to(gw, &ca, &token, host, port).await;
            request(&mut t, method, path, host, &[]).await.status
        }
    };
    assert_eq!(
        status(
            email_token.clone(),
            "GET",
            "gmail.googleapis.com",
            "/gmail/v1/users/me/messages"
        )
        .await,
        200
    );
    assert_eq!(
        status(
            email_token.clone(),
            "DELETE",
            "gmail.googleapis.com",
            "/gmail/v1/users/me/messages/1"
        )
        .await,
        403
    );
    assert_eq!(
        status(
            email_token,
            "POST",
            "gmail.googleapis.com",
            "/gmail/v1/users/me/messages/1/trash"
        )
        .await,
        403
    );
    assert_eq!(
        status(
            code_token.clone(),
            "POST",
            "api.github.com",
            "/repos/a/b/issues"
        )
        .await,
        200
    );
    assert_eq!(
        status(code_token, "POST", "slack.com", "/api/chat.postMessage").await,
        403
    );
    assert_eq!(
        status(
            research_token.clone(),
            "POST",
            "en.wikipedia.org",
            "/w/api.php"
        )
        .await,
        403
    );
    let mut t = s.tunnel(&research_token, "en.wikipedia.org").await;
    for n in 0..100 {
        assert_eq!(
            request(&mut t, "GET", "/wiki/Rust", "en.wikipedia.org", &[])
                .await
                .status,
            200,
            "request {n}"
        );
    }
    let limited = request(&mut t, "GET", "/wiki/Rust", "en.wikipedia.org", &[]).await;
    assert_eq!(limited.status, 429);
    // One slot frees every 3600/100 s, less the time the 100 requests took
    // (exactness is proven with a fake clock in the rate limiter's tests).
    let retry: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((30..=36).contains(&retry), "{retry}");
}

/// HTTP's rules for authentication and body size, as clients expect them.
#[tokio::test(flavor = "multi_thread")]
async fn auth_schemes_and_oversized_bodies_get_http_s_answers() {
    let s = crate::served::Served::start().await;
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-i", "--max-time", "20"])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let url = format!("http://127.0.0.1:{}/v1/agents", s.api_port);
    // 401 names the scheme it wants.
    let head = curl(&[&url]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"onecli\""),
        "{head}"
    );
    // The scheme is case-insensitive.
    let head = curl(&["-H", &format!("Authorization: BEARER {}", s.api_key), &url]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A body over the limit is 413, and changes nothing.
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let file = s.dir.path().join("big.json");
    std::fs::write(&file, big).expect("body");
    let head = curl(&[
        "-H",
        &format!("Authorization: Bearer {}", s.api_key),
        "-H",
        "content-type: application/json",
        "-H",
        "Expect:",
        "--data-binary",
        &format!("@{}", file.display()),
        &url,
    ]);
    assert!(
        head.starts_with("HTTP/1.1 413"),
        "{}",
        &head[..head.len().min(300)]
    );
    let (_, agents) = s.api("GET", "/v1/agents", None).await;
    assert!(agents.as_array().is_some_and(|a| a
        .iter()
        .all(|a| a["name"].as_str().is_none_or(|n| n.len() < 100))));
}

/// The data directory and the store are the owner's only; one open to
/// other users is reported at start.
#[tokio::test(flavor = "multi_thread")]
async fn the_data_directory_and_store_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let s = Served::start().await;
    let data = s.data_dir();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("onecli.redb")), 0o600);
    assert_eq!(mode(&data.join("gateway")), 0o700);
    assert_eq!(mode(&data.join("secret.key")) & 0o077, 0);
    assert!(!s.log().contains("open to other users"));
    drop(s);

    // A directory made open by someone else: reported, and the store file
    // inside is made private again.
    let mut s = Served::start().await;
    let data = s.data_dir();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(
        data.join("onecli.redb"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    s.restart(false).await;
    assert_eq!(mode(&s.data_dir().join("onecli.redb")), 0o600);
    let log = s.log();
    assert!(
        log.contains("open to other users") && log.contains("0755"),
        "{log}"
    );
}
