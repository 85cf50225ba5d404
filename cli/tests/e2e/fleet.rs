//! `onecli control` with gateways apart (`onecli gateway --control-url`):
//! changes reach every gateway, and gateways keep enforcing the last policy
//! while the control service is down, across their own restarts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onecli_benches::origin::{Origin, Protocols};
use serde_json::{json, Value};

use crate::harness::{
    basic, connect_raw, echoed, free_port, http_get, request, tls_tunnel_to, HOSTS,
};
use crate::served::{json_call, raw_call};

/// The shared secret key, as operators would set it on every process.
const KEY_B64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const VALUE: &str = "sk-ant-api03-FLEET-SECRET-value";

struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn start(args: &[String], log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_onecli"))
            .args(args)
            .env("ONECLI_SECRET_KEY", KEY_B64)
            .env("ONECLI_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start onecli");
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn wait_for(port: u16, path: &str, want: u16, proc: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(http_get(port, path).await, Ok((s, _)) if s == want) {
        assert!(
            Instant::now() < deadline,
            "{path} on {port} never answered {want}; log:\n{}",
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

struct Fleet {
    dir: tempfile::TempDir,
    origin: Origin,
    api_port: u16,
    control: Option<Proc>,
    api_key: String,
    /// More `onecli control` arguments.
    control_extra: Vec<String>,
}

impl Fleet {
    async fn start() -> Fleet {
        Self::start_with(&[]).await
    }

    async fn start_with(control_extra: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let origin = Origin::start_tls(dir.path(), &HOSTS, Protocols::Both)
            .await
            .expect("origin");
        let api_port = free_port();
        let mut fleet = Fleet {
            dir,
            origin,
            api_port,
            control: None,
            api_key: String::new(),
            control_extra: control_extra.iter().map(|s| s.to_string()).collect(),
        };
        fleet.start_control().await;
        fleet.api_key = std::fs::read_to_string(fleet.control_dir().join("api-key"))
            .expect("api-key")
            .trim()
            .to_owned();
        fleet
    }

    fn control_dir(&self) -> PathBuf {
        self.dir.path().join("control")
    }

    async fn start_control(&mut self) {
        let mut args = vec![
            "control".to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{}", self.api_port),
            "--data-dir".to_owned(),
            self.control_dir().display().to_string(),
        ];
        args.extend(self.control_extra.iter().cloned());
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let proc = Proc::start(&args, self.dir.path().join(format!("control-{n}.log")));
        wait_for(self.api_port, "/v1/health", 200, &proc).await;
        self.control = Some(proc);
    }

    /// A gateway subscribed to the control service; `data_dir` keeps its
    /// last policy. The first gateway generates the CA the others share.
    fn gateway(&self, name: &str, port: u16, token_file: &Path) -> Proc {
        self.gateway_with(name, port, token_file, &[])
    }

    fn gateway_with(&self, name: &str, port: u16, token_file: &Path, extra: &[&str]) -> Proc {
        let ca = self.control_dir().join("gateway");
        let mut args: Vec<String> = vec![
            "gateway".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            self.dir.path().join(name).display().to_string(),
            "--control-url".into(),
            format!("http://127.0.0.1:{}", self.api_port),
            "--gateway-token-file".into(),
            token_file.display().to_string(),
            "--upstream-ca".into(),
            self.origin
                .ca_path
                .as_ref()
                .expect("tls")
                .display()
                .to_string(),
            "--ca-cert".into(),
            ca.join("ca.pem").display().to_string(),
            "--ca-key".into(),
            ca.join("ca.key").display().to_string(),
        ];
        for host in HOSTS.iter().filter(|h| **h != "localhost") {
            args.extend([
                "--resolve".into(),
                format!("{host}:{}:127.0.0.1", self.origin.port()),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        Proc::start(&args, self.dir.path().join(format!("{name}-{n}.log")))
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.api_key);
        json_call(self.api_port, method, path, body, Some(&auth)).await
    }
}

/// One CA for the fleet, in the control service's data dir (which serves
/// it to agents) and given to every gateway with --ca-cert/--ca-key.
fn shared_ca(fleet: &Fleet) {
    let dir = fleet.control_dir().join("gateway");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let pki = onecli_benches::origin::TestPki::new(&["unused.test"]).expect("pki");
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).expect("ca");
    std::fs::write(dir.join("ca.key"), &pki.ca_key_pem).expect("key");
}

async fn injected_at(port: u16, ca: &Path, token: &str, origin_port: u16) -> Option<Vec<String>> {
    let target = format!("api.test:{origin_port}");
    let (resp, _) = connect_raw(port, &target, Some(&basic(token))).await;
    if resp.status != 200 {
        return None;
    }
    let mut t = tls_tunnel_to(port, ca, token, "api.test", origin_port).await;
    let r = request(&mut t, "GET", "/v1/messages", "api.test", &[]).await;
    Some(echoed(&r.json(), "x-api-key"))
}

#[tokio::test(flavor = "multi_thread")]
async fn gateways_follow_one_control_service_and_survive_its_absence() {
    let mut fleet = Fleet::start().await;
    shared_ca(&fleet);
    let token_file = fleet.control_dir().join("gateway-token");
    let (a_port, b_port) = (free_port(), free_port());
    let a = fleet.gateway("gateway-a", a_port, &token_file);
    let mut b = fleet.gateway("gateway-b", b_port, &token_file);
    wait_for(a_port, "/readyz", 200, &a).await;
    wait_for(b_port, "/readyz", 200, &b).await;
    let ca = fleet.control_dir().join("gateway").join("ca.pem");

    let (status, agent) = fleet
        .api(
            "POST",
            "/v1/agents",
            Some(json!({ "name": "Fleet", "identifier": "fleet" })),
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    let (_, list) = fleet.api("GET", "/v1/agents", None).await;
    let token = list[0]["accessToken"].as_str().expect("token").to_owned();
    let secret =
        json!({ "name": "A", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" });
    assert_eq!(fleet.api("POST", "/v1/secrets", Some(secret)).await.0, 201);

    // Every gateway enforces the change shortly after the API answered.
    for port in [a_port, b_port] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if injected_at(port, &ca, &token, fleet.origin.port()).await
                == Some(vec![VALUE.to_owned()])
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gateway {port} never got the change"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The control service goes away: the gateways keep enforcing…
    fleet.control = None;
    assert_eq!(
        injected_at(a_port, &ca, &token, fleet.origin.port()).await,
        Some(vec![VALUE.to_owned()])
    );
    // …even across their own restart, from the policy they kept on disk.
    drop(std::mem::replace(
        &mut b,
        fleet.gateway("gateway-b", b_port, &token_file),
    ));
    wait_for(b_port, "/readyz", 200, &b).await;
    assert_eq!(
        injected_at(b_port, &ca, &token, fleet.origin.port()).await,
        Some(vec![VALUE.to_owned()])
    );
    let kept = std::fs::read(
        fleet
            .dir
            .path()
            .join("gateway-b")
            .join("gateway")
            .join("policy.sealed"),
    )
    .expect("kept policy");
    assert!(
        !kept.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
        "the kept policy is sealed"
    );

    // The control service returns, and changes flow again.
    fleet.start_control().await;
    let rule =
        json!({ "name": "stop", "hostPattern": "api.test", "action": "block", "enabled": true });
    assert_eq!(fleet.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut t = tls_tunnel_to(b_port, &ca, &token, "api.test", fleet.origin.port()).await;
        if request(&mut t, "GET", "/v1/messages", "api.test", &[])
            .await
            .status
            == 403
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gateway b never got the rule after control came back; log:\n{}",
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for log in [a.log(), b.log()] {
        assert!(
            !log.contains(VALUE) && !log.contains(&token),
            "a secret or token in a gateway log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_policy_a_gateway_is_not_ready_and_refuses_agents() {
    let fleet = Fleet::start().await;
    shared_ca(&fleet);
    let bad_token = fleet.dir.path().join("bad-token");
    std::fs::write(&bad_token, "ogw_not_a_real_token").expect("write");
    let port = free_port();
    let g = fleet.gateway("gateway-x", port, &bad_token);
    wait_for(port, "/healthz", 200, &g).await;
    assert_eq!(http_get(port, "/readyz").await.expect("readyz").0, 503);
    let (resp, _) = connect_raw(port, "api.test:443", Some(&basic("aoc_anything"))).await;
    assert_eq!(resp.status, 503, "{}", resp.head);
    assert_eq!(resp.json()["error"], "gateway_not_ready");
    // The control service refuses the token.
    let (status, _) = raw_call(
        fleet.api_port,
        "GET",
        "/v1/gateway/policy?after=0",
        None,
        Some("Bearer ogw_not_a_real_token"),
    )
    .await;
    assert_eq!(status, 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !g.log().contains("refused the gateway token") {
        assert!(
            Instant::now() < deadline,
            "the refusal was never logged:\n{}",
            g.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_apart_holds_approvals_and_reports_to_the_audit_log() {
    let fleet = Fleet::start().await;
    shared_ca(&fleet);
    let port = free_port();
    let gateway = fleet.gateway(
        "gateway-r",
        port,
        &fleet.control_dir().join("gateway-token"),
    );
    wait_for(port, "/readyz", 200, &gateway).await;
    let ca = fleet.control_dir().join("gateway").join("ca.pem");
    let (_, agent) = fleet
        .api(
            "POST",
            "/v1/agents",
            Some(json!({ "name": "Remote", "identifier": "remote" })),
        )
        .await;
    let (_, list) = fleet.api("GET", "/v1/agents", None).await;
    let token = list[0]["accessToken"].as_str().expect("token").to_owned();
    // The rule before the secret: policies install in order, so a response
    // that carries the credential proves the rule was in force.
    let rule = json!({ "name": "ask", "hostPattern": "api.test", "methods": ["POST"], "action": "manual_approval",
        "enabled": true, "agentId": agent["id"] });
    assert_eq!(fleet.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    let secret =
        json!({ "name": "A", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" });
    assert_eq!(fleet.api("POST", "/v1/secrets", Some(secret)).await.0, 201);

    // The SDK decides at the control service.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/approvals.mjs");
    let mut sdk = Command::new("node")
        .arg(script)
        .args([
            &format!("http://127.0.0.1:{}", fleet.api_port),
            &fleet.api_key,
            "approve",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");

    // Wait until the gateway holds the rule, then send a held request.
    let deadline = Instant::now() + Duration::from_secs(10);
    let resp = loop {
        let mut t = tls_tunnel_to(port, &ca, &token, "api.test", fleet.origin.port()).await;
        let resp = tokio::time::timeout(
            Duration::from_secs(30),
            crate::served::request_with_body(&mut t, "POST", "/v1/held", "api.test", b"{\"x\":1}"),
        )
        .await
        .expect("decided in time");
        if echoed(&resp.json(), "x-api-key").is_empty() && Instant::now() < deadline {
            // The secret has not reached the gateway yet: try again.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        break resp;
    };
    let _ = sdk.kill();
    let _ = sdk.wait();
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(echoed(&resp.json(), "x-api-key"), [VALUE]);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, logs) = fleet.api("GET", "/v1/logs?agent=remote", None).await;
        if logs.as_array().is_some_and(|l| {
            l.iter()
                .any(|r| r["outcome"] == "approved" && r["ruleName"] == "ask")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway's audit record never arrived: {logs}\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An SDK approval handler deciding `decision` with `key`; the requests it
/// was shown are its stdout, one JSON line each.
fn approver(fleet: &Fleet, key: &str, decision: &str) -> Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/approvals.mjs");
    Command::new("node")
        .arg(script)
        .args([
            &format!("http://127.0.0.1:{}", fleet.api_port),
            key,
            decision,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node")
}

/// The agent identifiers of the requests an approver was shown.
fn shown_to(mut approver: Child) -> Vec<String> {
    let _ = approver.kill();
    let out = approver.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|r| r["agent"]["externalId"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_projects_each_decide_their_own_held_requests_across_gateways() {
    let fleet = Fleet::start().await;
    shared_ca(&fleet);
    let token_file = fleet.control_dir().join("gateway-token");
    let ports = [free_port(), free_port(), free_port()];
    let gateways: Vec<Proc> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| fleet.gateway(&format!("gateway-{i}"), port, &token_file))
        .collect();
    for (port, gateway) in ports.iter().zip(&gateways) {
        wait_for(*port, "/readyz", 200, gateway).await;
    }
    let (status, _) = fleet
        .api(
            "POST",
            "/v1/projects",
            Some(json!({ "name": "Team B", "identifier": "team-b" })),
        )
        .await;
    assert_eq!(status, 201);
    let (_, b_key) = fleet
        .api(
            "POST",
            "/v1/api-keys",
            Some(json!({ "name": "b", "project": "team-b" })),
        )
        .await;
    let b_key = b_key["key"].as_str().expect("key").to_owned();
    let keys = [fleet.api_key.clone(), b_key];
    let mut tokens = Vec::new();
    for (key, identifier) in keys.iter().zip(["held-a", "held-b"]) {
        let auth = Some(format!("Bearer {key}"));
        let auth = auth.as_deref();
        let port = fleet.api_port;
        let body = json!({ "name": identifier, "identifier": identifier });
        let (_, agent) = json_call(port, "POST", "/v1/agents", Some(body), auth).await;
        let id = agent["id"].as_str().expect("id").to_owned();
        let rule = json!({ "name": "ask", "hostPattern": "api.test", "pathPattern": "/v1/held*", "methods": ["POST"],
            "action": "manual_approval", "enabled": true, "agentId": id });
        assert_eq!(
            json_call(port, "POST", "/v1/rules", Some(rule), auth)
                .await
                .0,
            201
        );
        // After the rule: a policy that injects it has the rule too.
        let secret =
            json!({ "name": "A", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" });
        assert_eq!(
            json_call(port, "POST", "/v1/secrets", Some(secret), auth)
                .await
                .0,
            201
        );
        let (_, agent) = json_call(port, "GET", &format!("/v1/agents/{id}"), None, auth).await;
        tokens.push(agent["accessToken"].as_str().expect("token").to_owned());
    }
    let ca = fleet.control_dir().join("gateway").join("ca.pem");
    for &port in &ports {
        for token in &tokens {
            let deadline = Instant::now() + Duration::from_secs(10);
            while injected_at(port, &ca, token, fleet.origin.port())
                .await
                .is_none_or(|v| v != [VALUE])
            {
                assert!(
                    Instant::now() < deadline,
                    "gateway {port} never got the policy"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }

    // Both installations' handlers run at once: A approves, B denies.
    let a_sdk = approver(&fleet, &keys[0], "approve");
    let b_sdk = approver(&fleet, &keys[1], "deny");
    let mut held = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        for (token, expect) in tokens.iter().zip([200u16, 403]) {
            let (ca, token, origin) = (ca.clone(), token.clone(), fleet.origin.port());
            held.push(tokio::spawn(async move {
                let mut t = tls_tunnel_to(port, &ca, &token, "api.test", origin).await;
                let body = format!("{{\"gateway\":{i}}}");
                let resp = tokio::time::timeout(
                    Duration::from_secs(30),
                    crate::served::request_with_body(
                        &mut t,
                        "POST",
                        "/v1/held",
                        "api.test",
                        body.as_bytes(),
                    ),
                )
                .await
                .expect("decided in time");
                (resp.status, expect, resp.head)
            }));
        }
    }
    for h in held {
        let (status, expect, head) = h.await.expect("task");
        assert_eq!(status, expect, "{head}");
    }
    // Each handler was shown only its own project's requests.
    let a_shown = shown_to(a_sdk);
    let b_shown = shown_to(b_sdk);
    assert_eq!(a_shown, ["held-a"; 3], "A's handler saw {a_shown:?}");
    assert_eq!(b_shown, ["held-b"; 3], "B's handler saw {b_shown:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_hub_unreachable_a_held_request_fails_closed() {
    let mut fleet = Fleet::start().await;
    shared_ca(&fleet);
    let port = free_port();
    let gateway = fleet.gateway(
        "gateway-u",
        port,
        &fleet.control_dir().join("gateway-token"),
    );
    wait_for(port, "/readyz", 200, &gateway).await;
    let ca = fleet.control_dir().join("gateway").join("ca.pem");
    let (_, _) = fleet
        .api(
            "POST",
            "/v1/agents",
            Some(json!({ "name": "U", "identifier": "u" })),
        )
        .await;
    let (_, list) = fleet.api("GET", "/v1/agents", None).await;
    let token = list[0]["accessToken"].as_str().expect("token").to_owned();
    let rule = json!({ "name": "ask", "hostPattern": "api.test", "methods": ["POST"], "action": "manual_approval", "enabled": true });
    assert_eq!(fleet.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    let secret =
        json!({ "name": "A", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" });
    assert_eq!(fleet.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    // Once a GET carries the credential, the rule (created first) is in force.
    let deadline = Instant::now() + Duration::from_secs(10);
    while injected_at(port, &ca, &token, fleet.origin.port()).await != Some(vec![VALUE.to_owned()])
    {
        assert!(
            Instant::now() < deadline,
            "the gateway never got the policy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fleet.control = None;
    let mut t = tls_tunnel_to(port, &ca, &token, "api.test", fleet.origin.port()).await;
    let resp =
        crate::served::request_with_body(&mut t, "POST", "/v1/held", "api.test", b"{}").await;
    assert_eq!(resp.status, 503, "{}", resp.head);
    assert_eq!(resp.json()["error"], "approval_unavailable");
}

/// A Prometheus query's result, once it has one.
async fn query(prometheus: u16, expr: &str) -> Option<Vec<Value>> {
    let path = format!(
        "/api/v1/query?query={}",
        crate::harness::percent_encode(expr)
    );
    let (status, body) = raw_call(prometheus, "GET", &path, None, None).await;
    let v: Value = serde_json::from_str(&body).ok()?;
    (status == 200 && v["status"] == "success")
        .then(|| v["data"]["result"].as_array().cloned())
        .flatten()
        .filter(|r| !r.is_empty())
}

/// Debian's Prometheus scrapes a control service and a gateway run apart
/// under a little traffic of every kind; every query of every panel of
/// deploy/grafana/onecli.json then returns data. Run by scripts/test-deploy,
/// which names the Prometheus binary.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Prometheus: scripts/test-deploy"]
async fn every_grafana_panel_returns_data() {
    let prometheus_bin = std::env::var("ONECLI_TEST_PROMETHEUS")
        .expect("ONECLI_TEST_PROMETHEUS is not set: run scripts/test-deploy");
    let (control_metrics, gateway_metrics) = (free_port(), free_port());
    let fleet =
        Fleet::start_with(&["--metrics-listen", &format!("127.0.0.1:{control_metrics}")]).await;
    shared_ca(&fleet);
    let token_file = fleet.control_dir().join("gateway-token");
    let port = free_port();
    let listen = format!("127.0.0.1:{gateway_metrics}");
    let gateway = fleet.gateway_with(
        "gateway-m",
        port,
        &token_file,
        &["--metrics-listen", &listen],
    );
    wait_for(port, "/readyz", 200, &gateway).await;
    let ca = fleet.control_dir().join("gateway").join("ca.pem");

    // Traffic of every kind: injected, rate-limited, blocked, approved.
    let (_, agent) = fleet
        .api(
            "POST",
            "/v1/agents",
            Some(json!({ "name": "M", "identifier": "m" })),
        )
        .await;
    let agent_id = agent["id"].as_str().expect("id").to_owned();
    let secret =
        json!({ "name": "A", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" });
    assert_eq!(fleet.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    for rule in [
        json!({ "name": "one a minute", "hostPattern": "api.test", "pathPattern": "/limited", "action": "rate_limit",
            "rateLimit": 1, "rateLimitWindow": "minute", "enabled": true }),
        json!({ "name": "never", "hostPattern": "api.test", "pathPattern": "/blocked", "action": "block", "enabled": true }),
        json!({ "name": "ask", "hostPattern": "api.test", "pathPattern": "/held", "methods": ["POST"],
            "action": "manual_approval", "enabled": true }),
    ] {
        assert_eq!(fleet.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    }
    let (_, agents) = fleet.api("GET", "/v1/agents", None).await;
    let token = agents
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == agent_id.as_str()))
        .and_then(|a| a["accessToken"].as_str())
        .expect("token")
        .to_owned();
    // The gateway holds the rules once /blocked is refused.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut t = tls_tunnel_to(port, &ca, &token, "api.test", fleet.origin.port()).await;
        if request(&mut t, "GET", "/blocked", "api.test", &[])
            .await
            .status
            == 403
        {
            break;
        }
        assert!(Instant::now() < deadline, "the rules never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut t = tls_tunnel_to(port, &ca, &token, "api.test", fleet.origin.port()).await;
    for path in [
        "/v1/messages",
        "/v1/messages",
        "/limited",
        "/limited",
        "/limited",
    ] {
        request(&mut t, "GET", path, "api.test", &[]).await;
    }
    let held = {
        let mut t = tls_tunnel_to(port, &ca, &token, "api.test", fleet.origin.port()).await;
        tokio::spawn(async move {
            crate::served::request_with_body(&mut t, "POST", "/held", "api.test", b"{}").await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let (_, pending) = fleet.api("GET", "/v1/approvals/pending?wait=0", None).await;
        if let Some(id) = pending["requests"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "never held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let decision = Some(json!({ "decision": "approve" }));
    let path = format!("/v1/approvals/{id}/decision");
    assert_eq!(fleet.api("POST", &path, decision).await.0, 200);
    assert_eq!(held.await.expect("held request").status, 200);

    // Prometheus, scraping both every second.
    let dir = fleet.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).expect("dir");
    // And `onecli serve`, whose one metrics port carries both services'
    // metrics (compose scrapes that): Prometheus must take the text whole.
    let serve_metrics = free_port();
    let serve_listen = format!("127.0.0.1:{serve_metrics}");
    let served = crate::served::Served::start_with(&["--metrics-listen", &serve_listen]).await;
    let (_, served_token) = served.agent("served").await;
    let secret =
        json!({ "name": "A", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" });
    assert_eq!(served.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    let mut t = served.tunnel(&served_token, "api.test").await;
    assert_eq!(
        request(&mut t, "GET", "/v1/messages", "api.test", &[])
            .await
            .status,
        200
    );
    let config = dir.join("prometheus.yml");
    let jobs = [
        ("onecli-control", control_metrics),
        ("onecli-gateway", gateway_metrics),
        ("onecli-serve", serve_metrics),
    ];
    let mut yaml = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
    for (job, port) in jobs {
        yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ));
    }
    std::fs::write(&config, yaml).expect("config");
    let prometheus_port = free_port();
    let log = dir.join("prometheus.log");
    let _prometheus = Proc {
        child: Command::new(&prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("prometheus"),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http_get(prometheus_port, "/-/ready").await, Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never got ready:\n{}",
            _prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dashboard: Value =
        serde_json::from_str(include_str!("../../../deploy/grafana/onecli.json"))
            .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| {
            t["expr"]
                .as_str()
                .map(|e| e.replace("$__rate_interval", "1m"))
        })
        .collect();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    // Every target scraped whole, `serve`'s two families included.
    let mut exprs = exprs;
    exprs.extend(
        [
            "up{job=\"onecli-control\"} == 1",
            "up{job=\"onecli-gateway\"} == 1",
            "up{job=\"onecli-serve\"} == 1",
            "onecli_control_policy_version{job=\"onecli-serve\"}",
            "onecli_gateway_injections_total{job=\"onecli-serve\"} > 0",
            "onecli_gateway_upstream_first_byte_duration_seconds_count{job=\"onecli-serve\"} > 0",
        ]
        .map(str::to_owned),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing = exprs.clone();
    while !missing.is_empty() {
        let mut still = Vec::new();
        for expr in &missing {
            if query(prometheus_port, expr).await.is_none() {
                still.push(expr.clone());
            }
        }
        missing = still;
        assert!(
            missing.is_empty() || Instant::now() < deadline,
            "no data for: {missing:#?}\n{}",
            _prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `POST path` with a JSON body, `None` when the connection fails (the
/// control service killed under it).
async fn try_post(port: u16, path: &str, body: &Value, api_key: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer {api_key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.ok()?;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
}

/// The control service is killed (SIGKILL) three times while writers
/// store secrets as fast as they can and the gateway follows every change:
/// each time it comes back with every write it acknowledged, the gateway
/// serves throughout from the last policy it holds whole, and changes
/// reach it again after each return.
#[tokio::test(flavor = "multi_thread")]
async fn the_control_service_killed_mid_write_and_mid_push_loses_nothing() {
    let mut fleet = Fleet::start().await;
    shared_ca(&fleet);
    let token_file = fleet.control_dir().join("gateway-token");
    let port = free_port();
    let gateway = fleet.gateway("gateway", port, &token_file);
    wait_for(port, "/readyz", 200, &gateway).await;
    let ca = fleet.control_dir().join("gateway").join("ca.pem");
    let (status, agent) = fleet
        .api(
            "POST",
            "/v1/agents",
            Some(json!({ "name": "Kill", "identifier": "kill" })),
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    let (_, list) = fleet.api("GET", "/v1/agents", None).await;
    let token = list[0]["accessToken"].as_str().expect("token").to_owned();
    let base =
        json!({ "name": "base", "type": "anthropic", "value": VALUE, "hostPattern": "api.test" });
    assert_eq!(fleet.api("POST", "/v1/secrets", Some(base)).await.0, 201);
    let to = Through {
        port,
        ca: ca.clone(),
        token: token.clone(),
        origin_port: fleet.origin.port(),
    };
    to.until_injected("x-api-key", VALUE).await;

    let mut acknowledged: Vec<String> = Vec::new();
    for (round, kill_after) in [40u64, 150, 400].into_iter().enumerate() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..3 {
            let (api_port, key, stop) = (fleet.api_port, fleet.api_key.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut ok = Vec::new();
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("r{round}-w{w}-{i}");
                    let body = json!({ "name": name, "type": "generic", "value": format!("V-{name}"),
                        "hostPattern": "api.test", "injectionConfig": { "headerName": format!("x-{name}") } });
                    match try_post(api_port, "/v1/secrets", &body, &key).await {
                        Some(201) => ok.push(name),
                        Some(status) => panic!("{name}: {status}"),
                        None => break,
                    }
                }
                ok
            }));
        }
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        fleet.control = None; // SIGKILL, writes and pushes in flight
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for writer in writers {
            acknowledged.extend(writer.await.expect("writer"));
        }
        // The gateway goes on with the last policy it received whole.
        assert_eq!(to.injected("x-api-key").await, [VALUE.to_owned()]);
        wait_for(port, "/readyz", 200, &gateway).await;

        fleet.start_control().await;
        let (status, list) = fleet.api("GET", "/v1/secrets", None).await;
        assert_eq!(status, 200, "{list}");
        let stored: std::collections::HashSet<&str> = list
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|s| s["name"].as_str())
            .collect();
        for name in &acknowledged {
            assert!(
                stored.contains(name.as_str()),
                "acknowledged {name} was lost"
            );
        }
        // Changes reach the gateway again: the newest acknowledged secret,
        // or a new one, is injected.
        let marker = format!("after-kill-{round}");
        let body = json!({ "name": marker, "type": "generic", "value": format!("V-{marker}"),
            "hostPattern": "api.test", "injectionConfig": { "headerName": "x-marker" } });
        assert_eq!(fleet.api("POST", "/v1/secrets", Some(body)).await.0, 201);
        to.until_injected("x-marker", &format!("V-{marker}")).await;
        let (status, _) = fleet
            .api(
                "DELETE",
                &format!("/v1/secrets/{}", id_of(&fleet, &marker).await),
                None,
            )
            .await;
        assert_eq!(status, 204);
    }
    assert!(
        acknowledged.len() > 3,
        "the writers stored too little to prove anything"
    );
    let last = acknowledged.last().expect("one").clone();
    to.until_injected(&format!("x-{last}"), &format!("V-{last}"))
        .await;
    let log = gateway.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains(VALUE) && !log.contains(&token));
}

async fn id_of(fleet: &Fleet, name: &str) -> String {
    let (_, list) = fleet.api("GET", "/v1/secrets", None).await;
    list.as_array()
        .expect("list")
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["id"].as_str())
        .expect("id")
        .to_owned()
}

/// Requests through one gateway as one agent.
struct Through {
    port: u16,
    ca: PathBuf,
    token: String,
    origin_port: u16,
}

impl Through {
    /// The values of `header` the origin saw on a request to api.test.
    async fn injected(&self, header: &str) -> Vec<String> {
        let mut t = tls_tunnel_to(
            self.port,
            &self.ca,
            &self.token,
            "api.test",
            self.origin_port,
        )
        .await;
        let r = request(&mut t, "GET", "/v1/messages", "api.test", &[]).await;
        echoed(&r.json(), header)
    }

    async fn until_injected(&self, header: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.injected(header).await != [want.to_owned()] {
            assert!(Instant::now() < deadline, "{header} never became {want}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
