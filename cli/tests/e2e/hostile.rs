//! A hostile agent against `onecli serve` (issue: rules bypassed by
//! re-spelling a request). Every spelling of a restricted request is caught
//! over HTTP/1.1 and HTTP/2 (SPEC §6.0), ambiguous ones are refused with
//! 400, grants match only the spelling they name, and what is forwarded is
//! the canonical form that was judged.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::echoed;
use crate::served::Served;

const KEY: &str = "SECRET-respelled-key";

struct Agent<'a> {
    s: &'a Served,
    token: String,
}

impl Agent<'_> {
    /// curl through the gateway, the path sent as written; (status, body).
    fn send(&self, http2: bool, method: &str, host: &str, path: &str) -> (u16, Value) {
        self.send_with(http2, method, host, path, &[])
    }

    fn send_with(
        &self,
        http2: bool,
        method: &str,
        host: &str,
        path: &str,
        headers: &[&str],
    ) -> (u16, Value) {
        let mut cmd = Command::new("curl");
        for header in headers {
            cmd.args(["-H", header]);
        }
        cmd.args(["-sS", "--max-time", "20", "--path-as-is"])
            .args(["-x", &format!("http://127.0.0.1:{}", self.s.gateway_port)])
            .args(["--proxy-user", &format!("x:{}", self.token)])
            .arg("--cacert")
            .arg(self.s.gateway_ca())
            .arg(if http2 { "--http2" } else { "--http1.1" })
            .args(["-w", "\n%{http_code}"]);
        if method == "HEAD" {
            cmd.arg("--head");
        } else {
            cmd.args(["-X", method]);
        }
        cmd.arg(format!("https://{host}:{}{path}", self.s.origin.port()));
        let out = cmd.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status = status.trim().parse().unwrap_or(0);
        assert_ne!(
            status,
            0,
            "{method} {path}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let body = serde_json::from_str(body).unwrap_or(Value::Null);
        (status, body)
    }

    /// Both protocols, the same answer: (status, error code or the origin's path).
    fn both(&self, method: &str, host: &str, path: &str) -> (u16, String) {
        let answers: Vec<(u16, String)> = [false, true]
            .iter()
            .map(|&h2| {
                let (status, body) = self.send(h2, method, host, path);
                if status == 200 {
                    assert_eq!(
                        echoed(&body, "x-key"),
                        [KEY],
                        "{method} {path}: not injected"
                    );
                    (status, body["path"].as_str().unwrap_or_default().to_owned())
                } else {
                    assert!(!body.to_string().contains(KEY), "{body}");
                    (
                        status,
                        body["error"].as_str().unwrap_or_default().to_owned(),
                    )
                }
            })
            .collect();
        assert_eq!(answers[0], answers[1], "{method} {path}: h1 and h2 differ");
        answers[0].clone()
    }
}

async fn served_with_rules() -> (Served, String) {
    let s = Served::start_with(&["--approval-timeout", "1s"]).await;
    let secret = json!({ "name": "k", "type": "generic", "value": KEY, "hostPattern": "*.test",
        "injectionConfig": { "headerName": "X-Key", "valueFormat": "{value}" } });
    assert_eq!(s.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    let (deny, _) = s.agent("denied").await;
    let rules = [
        json!({ "name": "admin", "hostPattern": "api.test", "pathPattern": "/admin/*", "action": "block" }),
        json!({ "name": "no deletes", "hostPattern": "api.test", "methods": ["DELETE"], "action": "block" }),
        json!({ "name": "no reads", "hostPattern": "other.test", "methods": ["GET"], "action": "block" }),
        json!({ "name": "ask", "hostPattern": "api.test", "pathPattern": "/approve/*", "action": "manual_approval" }),
        json!({ "name": "hourly", "hostPattern": "api.test", "pathPattern": "/limited", "action": "rate_limit", "rateLimit": 1, "rateLimitWindow": "hour" }),
        json!({ "name": "public", "agentId": deny, "hostPattern": "api.test", "pathPattern": "/public/*", "methods": ["GET"], "action": "allow" }),
    ];
    for mut rule in rules {
        rule["enabled"] = json!(true);
        let (status, body) = s.api("POST", "/v1/rules", Some(rule)).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, _) = s
        .api(
            "PATCH",
            &format!("/v1/agents/{deny}/policy-mode"),
            Some(json!({ "mode": "deny" })),
        )
        .await;
    assert_eq!(status, 200);
    (s, deny)
}

#[tokio::test(flavor = "multi_thread")]
async fn respelled_requests_meet_the_same_rules_over_h1_and_h2() {
    let (s, _) = served_with_rules().await;
    let (_, token) = s.agent("hostile").await;
    let agent = Agent { s: &s, token };
    let blocked = || (403, "blocked_by_policy".to_owned());
    let bad = || (400, "bad_request".to_owned());

    for path in [
        "/admin/x",
        "/%61dmin/x",
        "/%41DMIN/x",
        "//admin/x",
        "/ADMIN/x",
        "/admin;foo/x",
        "/admin/",
        "/admin",
        "/./admin/x",
    ] {
        let want = if path.contains("/./") {
            bad()
        } else {
            blocked()
        };
        assert_eq!(agent.both("GET", "api.test", path), want, "{path}");
    }
    for path in [
        "/admin%2fx",
        "/admin%2Fx",
        "/admin%5cx",
        "/admin\\x",
        "/%2561dmin/x",
        "/x/..%2fadmin",
        "/x/%2e%2e/admin",
        "/x/..;/admin",
        "/admin%00/x",
    ] {
        assert_eq!(agent.both("GET", "api.test", path), bad(), "{path}");
    }
    for method in ["DELETE", "delete", "Delete"] {
        assert_eq!(agent.both(method, "api.test", "/x"), blocked(), "{method}");
    }
    // A POST that frameworks would run as a DELETE is one.
    for header in [
        "X-HTTP-Method-Override: DELETE",
        "X-HTTP-Method: delete",
        "X-Method-Override: DELETE",
    ] {
        for h2 in [false, true] {
            let (status, body) = agent.send_with(h2, "POST", "api.test", "/x", &[header]);
            assert_eq!(
                (status, body["error"].as_str()),
                (403, Some("blocked_by_policy")),
                "{header}"
            );
        }
    }
    // A block on GET also holds HEAD (no body to read the code from).
    for h2 in [false, true] {
        assert_eq!(agent.send(h2, "HEAD", "other.test", "/x").0, 403);
        assert_eq!(agent.send(h2, "get", "other.test", "/x").0, 403);
    }
    // Approval: every spelling is held (and, unanswered, denied after 1 s).
    for path in ["/approve/x", "/%61pprove/x", "/APPROVE/x"] {
        assert_eq!(
            agent.both("GET", "api.test", path),
            (403, "manual_approval_denied".to_owned()),
            "{path}"
        );
    }
    // One an hour: the first passes, no spelling gets a second.
    assert_eq!(agent.send(false, "GET", "api.test", "/limited").0, 200);
    for path in [
        "/limited",
        "/%6cimited",
        "/limited/",
        "/LIMITED",
        "//limited;x",
    ] {
        assert_eq!(
            agent.both("GET", "api.test", path),
            (429, "rate_limited".to_owned()),
            "{path}"
        );
    }
    // Absolute-form requests (no tunnel) are judged the same way.
    for (path, want) in [("/%61dmin/x", 403), ("//ADMIN/x", 403), ("/admin%2fx", 400)] {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--path-as-is",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["-x", &format!("http://127.0.0.1:{}", s.gateway_port)])
            .args(["--proxy-user", &format!("x:{}", agent.token)])
            .arg(format!("http://api.test:{}{path}", s.origin.port()))
            .output()
            .expect("curl");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want.to_string(),
            "{path}"
        );
    }
    // What is forwarded is the canonical form that was judged.
    assert_eq!(
        agent.both("GET", "api.test", "/%7Euser/%61ny%2dthing?q=%61"),
        (200, "/~user/any-thing".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_mode_grant_opens_only_the_spelling_it_names() {
    let (s, _) = served_with_rules().await;
    let (_, list) = s.api("GET", "/v1/agents", None).await;
    let token = list
        .as_array()
        .and_then(|a| a.iter().find(|a| a["identifier"] == "denied"))
        .and_then(|a| a["accessToken"].as_str())
        .expect("denied agent")
        .to_owned();
    let agent = Agent { s: &s, token };
    assert_eq!(
        agent.both("GET", "api.test", "/public/x"),
        (200, "/public/x".to_owned())
    );
    for path in [
        "/public/..%2fprivate",
        "/public/..%5cprivate",
        "/public/../private",
    ] {
        assert_eq!(
            agent.both("GET", "api.test", path),
            (400, "bad_request".to_owned()),
            "{path}"
        );
    }
    for (method, path) in [
        ("GET", "/PUBLIC/x"),
        ("GET", "//public/x"),
        ("GET", "/public;x/y"),
        ("POST", "/public/x"),
        ("get", "/public/x"),
    ] {
        assert_eq!(
            agent.both(method, "api.test", path),
            (403, "blocked_by_default_policy".to_owned()),
            "{method} {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_and_track_are_refused_and_never_injected() {
    let (s, _) = served_with_rules().await;
    let (_, token) = s.agent("tracer").await;
    let agent = Agent { s: &s, token };
    for method in ["TRACE", "trace", "TRACK"] {
        assert_eq!(
            agent.both(method, "api.test", "/x"),
            (405, "method_not_allowed".to_owned()),
            "{method}"
        );
    }
}

/// curl (with `args`) through the gateway on `gateway_port`; the response head.
fn head_via(
    gateway_port: u16,
    ca: &std::path::Path,
    token: &str,
    args: &[&str],
    url: &str,
) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-D", "-", "-o", "/dev/null"])
        .args(args)
        .args(["-x", &format!("http://127.0.0.1:{gateway_port}")])
        .args(["--proxy-user", &format!("x:{token}")])
        .arg("--cacert")
        .arg(ca)
        .arg(url)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn reflected_query_credentials_never_come_back_on_any_path() {
    const QUERY_SECRET: &str = "SECRET-reflected-query";
    let s = Served::start().await;
    let secret = json!({ "name": "q", "type": "generic", "value": QUERY_SECRET,
        "hostPattern": "api.test", "injectionConfig": { "paramName": "key", "paramFormat": "{value}" } });
    assert_eq!(s.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    let rule = json!({ "name": "held", "hostPattern": "api.test", "pathPattern": "/redirect",
        "methods": ["POST"], "action": "manual_approval", "enabled": true });
    assert_eq!(s.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    let (_, token) = s.agent("reflected").await;
    let check = |head: &str| {
        assert!(head.starts_with("HTTP/") && head.contains(" 302"), "{head}");
        assert!(
            !head.contains(QUERY_SECRET),
            "the credential came back: {head}"
        );
        let links = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("link:"))
            .count();
        assert_eq!(links, 2, "{head}");
        assert_eq!(head.matches("key=onecli-redacted").count(), 5, "{head}");
    };
    // Through Pingora's path.
    let (gateway_port, ca) = (s.gateway_port, s.gateway_ca());
    let url = format!("https://api.test:{}/redirect?q=1", s.origin.port());
    check(&head_via(gateway_port, &ca, &token, &[], &url));
    // Through `direct`: a request a human approved.
    let tok = token.clone();
    let held = std::thread::spawn(move || {
        head_via(gateway_port, &ca, &tok, &["-X", "POST", "-d", "held"], &url)
    });
    let id = s.pending(1).await.remove(0);
    let decision = json!({ "decision": "approve" });
    let (status, _) = s
        .api(
            "POST",
            &format!("/v1/approvals/{id}/decision"),
            Some(decision),
        )
        .await;
    assert_eq!(status, 200);
    check(&held.join().expect("curl thread"));
}
