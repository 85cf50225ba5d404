//! The web dashboard (SPEC §4.5) over real sockets: sign-in by key and by
//! one-time link, sessions, CSRF, the Host and Origin guards, and the
//! connect flow from a real `credential_not_found` to an injected retry.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::harness::{echoed, read_response, request, Response};
use crate::served::{Home, Served};

const VALUE: &str = "SECRET-dashboard-value-1234";

/// One HTTP/1.1 exchange with the dashboard.
async fn call(
    s: &Served,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> Response {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", s.api_port))
        .await
        .expect("connect");
    let body = form
        .map(|fields| {
            fields
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        })
        .unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: localhost:{}\r\n", s.api_port));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if form.is_some() {
        head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(body.as_bytes()).await.expect("body");
    read_response(&mut stream).await.expect("response")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The session cookie a sign-in set.
fn session_of(r: &Response) -> String {
    let set = r.header("set-cookie").expect("a cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    let pair = set.split(';').next().expect("pair");
    assert!(pair.starts_with("onecli_session=ods_"), "{set}");
    pair.to_owned()
}

/// The CSRF token a page's forms carry.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("end")].to_owned()
}

async fn sign_in(s: &Served) -> String {
    let r = call(
        s,
        "POST",
        "/sign-in",
        &[],
        Some(&[("key", &s.api_key), ("next", "/")]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.head);
    session_of(&r)
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_answers_without_a_session_and_sign_in_works_once_per_link() {
    let s = Served::start().await;
    let (_, token) = s.agent("worker").await;
    // No session: every page sends to sign-in, remembering where to return.
    for path in [
        "/",
        "/agents",
        "/connections",
        "/rules",
        "/connections/custom?create=generic&host=a.test",
    ] {
        let r = call(&s, "GET", path, &[], None).await;
        assert_eq!(r.status, 303, "{path}");
        let to = r.header("location").expect("location");
        assert!(to.starts_with("/sign-in?next="), "{to}");
        assert!(!text(&r).contains("worker"));
    }
    let r = call(&s, "POST", "/connections", &[], Some(&[("name", "x")])).await;
    assert_eq!(r.status, 401);
    // The sign-in page itself, with its guards.
    let r = call(&s, "GET", "/sign-in", &[], None).await;
    assert_eq!(r.status, 200);
    let csp = r.header("content-security-policy").expect("csp");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // A wrong key is refused; the right one opens a session.
    let r = call(
        &s,
        "POST",
        "/sign-in",
        &[],
        Some(&[("key", "oc_wrong"), ("next", "/")]),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    let cookie = sign_in(&s).await;
    let r = call(&s, "GET", "/agents", &[("Cookie", &cookie)], None).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let html = text(&r);
    assert!(html.contains("worker"));
    assert!(
        !html.contains(&token) && !html.contains(&s.api_key),
        "a token in the page"
    );
    // Sign-out ends the session for good.
    let csrf = csrf_of(&html);
    let r = call(
        &s,
        "POST",
        "/sign-out",
        &[("Cookie", &cookie)],
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(r.status, 303);
    let r = call(&s, "GET", "/agents", &[("Cookie", &cookie)], None).await;
    assert_eq!(r.status, 303, "the old session still works");

    // The one-time link from `onecli dashboard --print`.
    let home = Home::new();
    let out = home
        .onecli(&s)
        .args(["dashboard", "--print"])
        .output()
        .expect("onecli dashboard");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let prefix = format!("http://localhost:{}", s.api_port);
    let path = url
        .strip_prefix(&prefix)
        .expect("a link to this service")
        .to_owned();
    assert!(path.starts_with("/sign-in/link?token=odl_"), "{url}");
    assert!(!url.contains(&s.api_key));
    let r = call(&s, "GET", &path, &[], None).await;
    assert_eq!(r.status, 303);
    let cookie = session_of(&r);
    assert_eq!(
        call(&s, "GET", "/", &[("Cookie", &cookie)], None)
            .await
            .status,
        200
    );
    let r = call(&s, "GET", &path, &[], None).await;
    assert_eq!(r.status, 401, "a link works once");
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_hosts_cross_site_forms_and_guessing_are_refused() {
    let s = Served::start().await;
    let cookie = sign_in(&s).await;
    // DNS rebinding: the right address, another name.
    let r = call(
        &s,
        "GET",
        "/",
        &[("Host", "evil.test"), ("Cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(r.status, 421);
    let r = call(
        &s,
        "GET",
        "/",
        &[
            ("Host", &format!("127.0.0.1:{}", s.api_port)),
            ("Cookie", &cookie),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    // A form posted from another site, or without the session's token.
    let html = text(
        &call(
            &s,
            "GET",
            "/connections/custom",
            &[("Cookie", &cookie)],
            None,
        )
        .await,
    );
    let csrf = csrf_of(&html);
    let fields = [
        ("csrf", csrf.as_str()),
        ("type", "openai"),
        ("name", "X"),
        ("host", "x.test"),
        ("value", VALUE),
    ];
    let r = call(
        &s,
        "POST",
        "/connections",
        &[("Cookie", &cookie), ("Origin", "http://evil.test")],
        Some(&fields),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(
        &s,
        "POST",
        "/connections",
        &[("Cookie", &cookie)],
        Some(&fields[1..]),
    )
    .await;
    assert_eq!(r.status, 403);
    let (_, secrets) = s.api("GET", "/v1/secrets", None).await;
    assert_eq!(secrets, json!([]), "a refused form changed something");
    // Guessing keys is throttled, even the right one then.
    for _ in 0..10 {
        call(&s, "POST", "/sign-in", &[], Some(&[("key", "oc_guess")])).await;
    }
    let r = call(&s, "POST", "/sign-in", &[], Some(&[("key", &s.api_key)])).await;
    assert_eq!(r.status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connect_link_of_a_refusal_leads_to_an_injected_retry() {
    let s = Served::start().await;
    let (_, token) = s.agent("claude").await;
    let mut tunnel = s.tunnel(&token, "api.test").await;
    // The agent meets a 401 with no credential configured.
    let refused = request(&mut tunnel, "GET", "/unauthorized", "api.test", &[]).await;
    assert_eq!(refused.status, 401);
    let guidance: Value = refused.json();
    assert_eq!(guidance["error"], "credential_not_found");
    let secret_url = guidance["secret_url"].as_str().expect("secret_url");
    // The human opens it as the agent shows it.
    let link = format!("{secret_url}&source=agent&agent_name=claude");
    let path = link
        .strip_prefix(&format!("http://localhost:{}", s.api_port))
        .expect("a link into this dashboard")
        .to_owned();
    let r = call(&s, "GET", &path, &[], None).await;
    assert_eq!(r.status, 303);
    let back = r.header("location").expect("location").to_owned();
    let cookie = sign_in_to(&s, &back).await;
    let r = call(&s, "GET", &path, &[("Cookie", &cookie)], None).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let html = text(&r);
    assert!(html.contains("value=\"api.test\""), "the host is prefilled");
    assert!(
        html.contains("<strong>claude</strong>"),
        "says which agent asked"
    );
    let csrf = csrf_of(&html);
    let r = call(
        &s,
        "POST",
        "/connections",
        &[("Cookie", &cookie)],
        Some(&[
            ("csrf", &csrf),
            ("type", "generic"),
            ("name", "API test"),
            ("host", "api.test"),
            ("path", "/*"),
            ("inject", "header"),
            ("header", "X-Api-Key"),
            ("format", "{value}"),
            ("value", VALUE),
            ("agent_name", "claude"),
        ]),
    )
    .await;
    assert_eq!(r.status, 303, "{} {}", r.head, text(&r));
    let to = r.header("location").expect("location").to_owned();
    let r = call(&s, "GET", &to, &[("Cookie", &cookie)], None).await;
    let html = text(&r);
    assert!(html.contains("can retry"), "{html}");
    assert!(!html.contains(VALUE), "the value came back in the page");
    assert!(html.contains("••••••••1234"));
    // The retry, on the same open connection, carries the credential.
    let retry = request(&mut tunnel, "GET", "/v1/echo", "api.test", &[]).await;
    assert_eq!(retry.status, 200);
    assert_eq!(echoed(&retry.json(), "x-api-key"), [VALUE]);
    // The overview counts the last hour's requests by outcome.
    let overview = text(&call(&s, "GET", "/", &[("Cookie", &cookie)], None).await);
    assert!(
        overview.contains("/activity?outcome=guidance"),
        "{overview}"
    );
    // Every URL handed out resolves to a page.
    for path in ["/rules", "/agents?manage=claude", "/connections", "/"] {
        let r = call(&s, "GET", path, &[("Cookie", &cookie)], None).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(!text(&r).contains(VALUE), "{path}");
    }
}

/// Signs in through the form the redirect led to, and follows `next`.
async fn sign_in_to(s: &Served, sign_in_path: &str) -> String {
    let next = sign_in_path
        .split_once("next=")
        .map(|(_, n)| n)
        .expect("next");
    let next = percent_decode(next);
    let r = call(
        s,
        "POST",
        "/sign-in",
        &[],
        Some(&[("key", &s.api_key), ("next", &next)]),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some(next.as_str()));
    session_of(&r)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_work_in_a_real_browser() {
    let s = Served::start().await;
    let (_, token) = s.agent("claude").await;
    let mut tunnel = s.tunnel(&token, "api.test").await;
    let refused = request(&mut tunnel, "GET", "/unauthorized", "api.test", &[]).await;
    let secret_url = refused.json()["secret_url"]
        .as_str()
        .expect("secret_url")
        .to_owned();
    let connect_path = format!(
        "{}&source=agent&agent_name=claude",
        secret_url
            .strip_prefix(&format!("http://localhost:{}", s.api_port))
            .expect("into this dashboard")
    );
    let home = Home::new();
    let out = home
        .onecli(&s)
        .args(["dashboard", "--print"])
        .output()
        .expect("onecli dashboard");
    let link = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let rule = json!({ "name": "ask", "hostPattern": "api.test", "pathPattern": "/held",
        "methods": ["POST"], "action": "manual_approval", "enabled": true });
    assert_eq!(s.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    let mut node = tokio::process::Command::new("node")
        .arg("dashboard.mjs")
        .args([&link, &connect_path, VALUE])
        .arg(&shots)
        .arg(&s.api_key)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut lines = tokio::io::BufReader::new(node.stdout.take().expect("stdout")).lines();
    let mut held = None;
    let mut last = String::new();
    while let Some(line) =
        tokio::time::timeout(std::time::Duration::from_secs(120), lines.next_line())
            .await
            .expect("the browser test finished in time")
            .expect("read")
    {
        if line.contains(r#""waiting":"approvals""#) {
            // The page is open: now a request is held.
            let mut held_tunnel = s.tunnel(&token, "api.test").await;
            held = Some(tokio::spawn(async move {
                crate::served::request_with_body(
                    &mut held_tunnel,
                    "POST",
                    "/held",
                    "api.test",
                    b"{}",
                )
                .await
            }));
        }
        if line.contains(r#""waiting":"activity""#) {
            // Live mode is on: a new request shows up in the table.
            let probe = request(&mut tunnel, "GET", "/live-probe", "api.test", &[]).await;
            assert_eq!(probe.status, 200);
        }
        last = line;
    }
    let out = node.wait_with_output().await.expect("node");
    assert!(
        out.status.success(),
        "{last}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(last.trim()).expect("report");
    assert_eq!(
        report["pages"].as_array().map(Vec::len),
        Some(9),
        "{report}"
    );
    let held = held
        .expect("the browser reached the approvals")
        .await
        .expect("task");
    assert_eq!(held.status, 200, "approved in the browser, forwarded");
    // The rule made in the browser is enforced; its agent exists.
    let blocked = request(&mut tunnel, "GET", "/blocked/x", "api.test", &[]).await;
    assert_eq!(blocked.status, 403);
    assert_eq!(blocked.json()["error"], "blocked_by_policy");
    let (_, agents) = s.api("GET", "/v1/agents", None).await;
    assert!(agents
        .as_array()
        .is_some_and(|a| a.iter().any(|a| a["identifier"] == "ui-agent")));
    // The activity view shows the block beside the approval.
    let cookie = sign_in(&s).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page = text(&call(&s, "GET", "/activity", &[("Cookie", &cookie)], None).await);
        if page.contains("api.test/blocked/x") && page.contains(">approved<") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // What the browser saved reaches the origin, on the open connection.
    let retry = request(&mut tunnel, "GET", "/v1/echo", "api.test", &[]).await;
    assert_eq!(echoed(&retry.json(), "x-api-key"), [VALUE]);
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_rules_and_connections_are_managed_from_the_forms() {
    let s = Served::start().await;
    let cookie = sign_in(&s).await;
    let html = text(&call(&s, "GET", "/agents", &[("Cookie", &cookie)], None).await);
    let csrf = csrf_of(&html);
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        let (s, cookie, csrf) = (&s, cookie.clone(), csrf.clone());
        async move {
            let mut all: Vec<(&str, String)> = vec![("csrf", csrf)];
            all.extend(fields);
            let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
            call(s, "POST", &path, &[("Cookie", &cookie)], Some(&pairs)).await
        }
    };
    // An agent: created, listed only as a mask, put in deny mode.
    let r = post(
        "/agents".into(),
        vec![("name", "Ops".into()), ("identifier", "ops".into())],
    )
    .await;
    assert_eq!(r.status, 303);
    let (_, agents) = s.api("GET", "/v1/agents", None).await;
    let ops = agents
        .as_array()
        .and_then(|a| a.iter().find(|a| a["identifier"] == "ops"))
        .expect("created")
        .clone();
    let id = ops["id"].as_str().expect("id").to_owned();
    let token = ops["accessToken"].as_str().expect("token").to_owned();
    let page = text(&call(&s, "GET", "/agents", &[("Cookie", &cookie)], None).await);
    assert!(!page.contains(&token), "a token in the page");
    let revealed = call(
        &s,
        "GET",
        &format!("/agents/{id}/token"),
        &[("Cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<Value>(&revealed.body).expect("json")["token"],
        token
    );
    let path = format!("/agents/{id}/policy-mode");
    assert_eq!(post(path, vec![("mode", "deny".into())]).await.status, 303);
    assert_eq!(
        s.api("GET", &format!("/v1/agents/{id}"), None).await.1["policyMode"],
        "deny"
    );
    // A new token needs the box ticked.
    let path = format!("/agents/{id}/regenerate");
    let r = post(path.clone(), vec![]).await;
    assert!(r
        .header("location")
        .is_some_and(|l| l.starts_with("/agents?error=")));
    assert_eq!(
        post(path, vec![("confirm", "yes".into())]).await.status,
        303
    );
    let (_, after) = s.api("GET", &format!("/v1/agents/{id}"), None).await;
    assert_ne!(after["accessToken"], token.as_str());

    // A rule: created, disabled, deleted.
    let r = post(
        "/rules".into(),
        vec![
            ("name", "three a minute".into()),
            ("action", "rate_limit".into()),
            ("host", "api.test".into()),
            ("methods", "post, put".into()),
            ("agent", id.clone()),
            ("limit", "3".into()),
            ("window", "minute".into()),
        ],
    )
    .await;
    assert_eq!(r.header("location"), Some("/rules"));
    let (_, rules) = s.api("GET", "/v1/rules", None).await;
    let rule = &rules[0];
    assert_eq!(
        (rule["rateLimit"].as_u64(), rule["rateLimitWindow"].as_str()),
        (Some(3), Some("minute"))
    );
    assert_eq!(rule["methods"], json!(["POST", "PUT"]));
    assert_eq!(rule["agentId"], id.as_str());
    let rule_id = rule["id"].as_str().expect("id").to_owned();
    // Edited in its form: prefilled, saved in place.
    let edit = text(
        &call(
            &s,
            "GET",
            &format!("/rules/{rule_id}/edit"),
            &[("Cookie", &cookie)],
            None,
        )
        .await,
    );
    assert!(
        edit.contains("value=\"three a minute\"") && edit.contains("value=\"POST, PUT\""),
        "{edit}"
    );
    post(
        format!("/rules/{rule_id}"),
        vec![
            ("name", "five an hour".into()),
            ("action", "rate_limit".into()),
            ("host", "api.test".into()),
            ("limit", "5".into()),
            ("window", "hour".into()),
        ],
    )
    .await;
    let (_, edited) = s.api("GET", &format!("/v1/rules/{rule_id}"), None).await;
    assert_eq!(
        (edited["name"].as_str(), edited["rateLimit"].as_u64()),
        (Some("five an hour"), Some(5))
    );
    assert_eq!(edited["methods"], json!([]));
    let path = format!("/rules/{rule_id}/toggle");
    post(path, vec![("enabled", "false".into())]).await;
    assert_eq!(
        s.api("GET", &format!("/v1/rules/{rule_id}"), None).await.1["enabled"],
        false
    );
    let r = post(
        "/rules".into(),
        vec![
            ("name", "bad".into()),
            ("action", "rate_limit".into()),
            ("host", "a.test".into()),
        ],
    )
    .await;
    assert!(
        r.header("location")
            .is_some_and(|l| l.starts_with("/rules?error=")),
        "{}",
        r.head
    );
    let path = format!("/rules/{rule_id}/delete");
    post(path, vec![]).await;
    assert_eq!(s.api("GET", "/v1/rules", None).await.1, json!([]));

    // Where an agent's own rule shadows an all-agents one, the list says so.
    for agent in [None, Some(id.clone())] {
        let rule = json!({ "name": "no deletes", "hostPattern": "x.test", "methods": ["DELETE"],
            "action": "block", "enabled": true, "agentId": agent });
        assert_eq!(s.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    }
    let listed = text(&call(&s, "GET", "/rules", &[("Cookie", &cookie)], None).await);
    assert!(
        listed.contains("not for Ops: their own rule decides"),
        "{listed}"
    );
    for rule in s
        .api("GET", "/v1/rules", None)
        .await
        .1
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        s.api(
            "DELETE",
            &format!("/v1/rules/{}", rule["id"].as_str().unwrap_or_default()),
            None,
        )
        .await;
    }
    // A connection: deleted from its list.
    let secret =
        json!({ "name": "Gone", "type": "openai", "value": VALUE, "hostPattern": "gone.test" });
    let (_, created) = s.api("POST", "/v1/secrets", Some(secret)).await;
    let path = format!(
        "/connections/{}/delete",
        created["id"].as_str().expect("id")
    );
    assert_eq!(post(path, vec![]).await.status, 303);
    assert_eq!(s.api("GET", "/v1/secrets", None).await.1, json!([]));
    // Renamed, and limited to one connection.
    let kept =
        json!({ "name": "Kept", "type": "openai", "value": VALUE, "hostPattern": "kept.test" });
    let (_, kept) = s.api("POST", "/v1/secrets", Some(kept)).await;
    let kept_id = kept["id"].as_str().expect("id").to_owned();
    post(
        format!("/agents/{id}/rename"),
        vec![("name", "Operations".into())],
    )
    .await;
    post(
        format!("/agents/{id}/secrets"),
        vec![("mode", "selective".into()), ("secret", kept_id.clone())],
    )
    .await;
    let (_, agent) = s.api("GET", &format!("/v1/agents/{id}"), None).await;
    assert_eq!(agent["name"], "Operations");
    assert_eq!(agent["secretMode"], "selective");
    let (_, assigned) = s
        .api("GET", &format!("/v1/agents/{id}/secrets"), None)
        .await;
    assert_eq!(assigned, json!([kept_id]));
    // A connection edited: the form shows no value, an empty one keeps it.
    let edit = text(
        &call(
            &s,
            "GET",
            &format!("/connections/{kept_id}/edit"),
            &[("Cookie", &cookie)],
            None,
        )
        .await,
    );
    assert!(
        edit.contains("value=\"kept.test\"") && !edit.contains(VALUE),
        "{edit}"
    );
    let fields = |value: &str| {
        vec![
            ("type", "openai".to_owned()),
            ("name", "Kept".to_owned()),
            ("host", "kept2.test".to_owned()),
            ("path", "*".to_owned()),
            ("value", value.to_owned()),
        ]
    };
    assert_eq!(
        post(format!("/connections/{kept_id}"), fields(""))
            .await
            .status,
        303
    );
    let (_, after) = s.api("GET", &format!("/v1/secrets/{kept_id}"), None).await;
    assert_eq!(
        (after["hostPattern"].as_str(), after["preview"].as_str()),
        (Some("kept2.test"), Some("••••••••1234"))
    );
    post(
        format!("/connections/{kept_id}"),
        fields("SECRET-rotated-in-the-form-9876"),
    )
    .await;
    let (_, after) = s.api("GET", &format!("/v1/secrets/{kept_id}"), None).await;
    assert_eq!(after["preview"], "••••••••9876");
    // The agent, deleted last.
    let path = format!("/agents/{id}/delete");
    post(path, vec![]).await;
    assert_eq!(s.api("GET", &format!("/v1/agents/{id}"), None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_make_keys_shown_once_and_revoke_them() {
    let s = Served::start().await;
    let cookie = sign_in(&s).await;
    let html = text(&call(&s, "GET", "/settings", &[("Cookie", &cookie)], None).await);
    let csrf = csrf_of(&html);
    assert!(!html.contains("oc_"), "a key in the settings page");
    let r = call(
        &s,
        "POST",
        "/settings/api-keys",
        &[("Cookie", &cookie)],
        Some(&[("csrf", &csrf), ("name", "CI")]),
    )
    .await;
    assert_eq!(r.status, 200);
    let html = text(&r);
    let at = html.find("oc_").expect("the new key, once");
    let key = html[at..at + 67].to_owned();
    assert!(key[3..].bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    let listed = text(&call(&s, "GET", "/settings", &[("Cookie", &cookie)], None).await);
    assert!(!listed.contains(&key), "shown again");
    // The new key signs in; revoked, it does not, and sessions end.
    let r = call(&s, "POST", "/sign-in", &[], Some(&[("key", &key)])).await;
    assert_eq!(r.status, 303);
    let second = session_of(&r);
    let id_at = listed.find("/settings/api-keys/").expect("a revoke form");
    let revoke: String = listed[id_at..].chars().take_while(|c| *c != '"').collect();
    let ci_revoke = listed
        .match_indices("/settings/api-keys/")
        .map(|(i, _)| {
            listed[i..]
                .chars()
                .take_while(|c| *c != '"')
                .collect::<String>()
        })
        .last()
        .expect("the CI key's form");
    assert_ne!(revoke, ci_revoke, "two keys listed");
    let r = call(
        &s,
        "POST",
        &ci_revoke,
        &[("Cookie", &cookie)],
        Some(&[("csrf", &csrf)]),
    )
    .await;
    // The revoked key's sessions end; the admin's own goes on.
    assert_eq!(r.header("location"), Some("/settings"));
    assert_eq!(
        call(&s, "GET", "/", &[("Cookie", &second)], None)
            .await
            .status,
        303
    );
    assert_eq!(
        call(&s, "GET", "/", &[("Cookie", &cookie)], None)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&s, "POST", "/sign-in", &[], Some(&[("key", &key)]))
            .await
            .status,
        401
    );
    // The last key stays.
    let cookie = sign_in(&s).await;
    let html = text(&call(&s, "GET", "/settings", &[("Cookie", &cookie)], None).await);
    let csrf = csrf_of(&html);
    let r = call(
        &s,
        "POST",
        &revoke,
        &[("Cookie", &cookie)],
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert!(
        r.header("location")
            .is_some_and(|l| l.starts_with("/settings?error=")),
        "{}",
        r.head
    );
    assert_eq!(
        s.api("GET", "/v1/agents", None).await.0,
        200,
        "the admin key still works"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_stay_in_their_project_and_admins_switch() {
    let s = Served::start().await;
    s.agent("default-only").await;
    let (status, project) = s
        .api(
            "POST",
            "/v1/projects",
            Some(json!({ "name": "Team Two", "identifier": "team-two" })),
        )
        .await;
    assert_eq!(status, 201);
    let (_, key) = s
        .api(
            "POST",
            "/v1/api-keys",
            Some(json!({ "name": "two", "project": "team-two" })),
        )
        .await;
    let key = key["key"].as_str().expect("key").to_owned();
    let auth = format!("Bearer {key}");
    let body = json!({ "name": "Two's agent", "identifier": "two-only" }).to_string();
    let (status, _) =
        crate::served::raw_call(s.api_port, "POST", "/v1/agents", Some(body), Some(&auth)).await;
    assert_eq!(status, 201);

    // A project key's session: its agents only, no switcher, no keys.
    let r = call(
        &s,
        "POST",
        "/sign-in",
        &[],
        Some(&[("key", &key), ("next", "/")]),
    )
    .await;
    let two = session_of(&r);
    let html = text(&call(&s, "GET", "/agents", &[("Cookie", &two)], None).await);
    assert!(
        html.contains("two-only") && !html.contains("default-only"),
        "{html}"
    );
    assert!(html.contains("Project: Team Two") && !html.contains("action=\"/project\""));
    let csrf = csrf_of(&html);
    let settings = text(&call(&s, "GET", "/settings", &[("Cookie", &two)], None).await);
    assert!(
        !settings.contains("/settings/api-keys/"),
        "keys listed to a project"
    );
    let r = call(
        &s,
        "POST",
        "/settings/api-keys",
        &[("Cookie", &two)],
        Some(&[("csrf", &csrf), ("name", "escalate")]),
    )
    .await;
    assert!(!text(&r).contains("oc_"), "a project session made a key");
    let r = call(
        &s,
        "POST",
        "/project",
        &[("Cookie", &two)],
        Some(&[("csrf", &csrf), ("project", "default")]),
    )
    .await;
    assert_eq!(r.status, 303);
    let html = text(&call(&s, "GET", "/agents", &[("Cookie", &two)], None).await);
    assert!(
        !html.contains("default-only"),
        "a project session switched out"
    );

    // An admin's session shows the default project, then switches.
    let admin = sign_in(&s).await;
    let html = text(&call(&s, "GET", "/agents", &[("Cookie", &admin)], None).await);
    assert!(html.contains("default-only") && !html.contains("two-only"));
    assert!(html.contains("action=\"/project\""), "the switcher");
    let csrf = csrf_of(&html);
    let id = project["id"].as_str().expect("id");
    let r = call(
        &s,
        "POST",
        "/project",
        &[("Cookie", &admin)],
        Some(&[("csrf", &csrf), ("project", id)]),
    )
    .await;
    assert_eq!(r.status, 303);
    let html = text(&call(&s, "GET", "/agents", &[("Cookie", &admin)], None).await);
    assert!(
        html.contains("two-only") && !html.contains("default-only"),
        "{html}"
    );

    // The gateway's link for team two's agent names its project: an admin
    // showing the default project follows it into team two; a session of
    // another project's key refuses it.
    let (_, list) =
        crate::served::raw_call(s.api_port, "GET", "/v1/agents", None, Some(&auth)).await;
    let list: Value = serde_json::from_str(&list).expect("json");
    let token = list[0]["accessToken"].as_str().expect("token").to_owned();
    let mut tunnel = s.tunnel(&token, "new.test").await;
    let resp = request(&mut tunnel, "GET", "/unauthorized", "new.test", &[]).await;
    let link = resp.json()["secret_url"]
        .as_str()
        .expect("a link")
        .to_owned();
    assert!(link.ends_with(&format!("&project={id}")), "{link}");
    let path = &link[link.find("/connections").expect("path")..];
    let r = call(
        &s,
        "POST",
        "/project",
        &[("Cookie", &admin)],
        Some(&[("csrf", &csrf), ("project", "default")]),
    )
    .await;
    assert_eq!(r.status, 303);
    let r = call(&s, "GET", path, &[("Cookie", &admin)], None).await;
    assert_eq!(r.status, 200);
    let html = text(&call(&s, "GET", "/agents", &[("Cookie", &admin)], None).await);
    assert!(html.contains("two-only"), "the admin followed the link");
    let r = call(
        &s,
        "GET",
        "/agents?manage=default-only&project=default",
        &[("Cookie", &two)],
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(!text(&r).contains("default-only"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aws_key_is_connected_from_the_form() {
    let s = Served::start().await;
    let cookie = sign_in(&s).await;
    let html = text(&call(&s, "GET", "/connections", &[("Cookie", &cookie)], None).await);
    let csrf = csrf_of(&html);
    let form = text(
        &call(
            &s,
            "GET",
            "/connections/custom?create=aws&host=s3.us-east-1.amazonaws.com",
            &[("Cookie", &cookie)],
            None,
        )
        .await,
    );
    assert!(form.contains("name=\"access_key_id\"") && form.contains("name=\"session_token\""));
    let fields = [
        ("csrf", csrf.as_str()),
        ("type", "aws"),
        ("name", "AWS"),
        ("host", "*.amazonaws.com"),
        ("access_key_id", "AKIAFORMKEY000000000"),
        ("session_token", "form-session-token"),
        ("value", "form/secret+access+key0000wxyz"),
    ];
    let r = call(
        &s,
        "POST",
        "/connections",
        &[("Cookie", &cookie)],
        Some(&fields),
    )
    .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let (_, listed) = s.api("GET", "/v1/secrets", None).await;
    let aws = &listed[0];
    assert_eq!(aws["type"], "aws");
    assert_eq!(
        aws["injectionConfig"],
        json!({ "accessKeyId": "AKIAFORMKEY000000000" })
    );
    assert_eq!(aws["preview"], "••••••••wxyz");
    // The edit form shows the key id, never the secret key or the token.
    let id = aws["id"].as_str().expect("id");
    let edit = text(
        &call(
            &s,
            "GET",
            &format!("/connections/{id}/edit"),
            &[("Cookie", &cookie)],
            None,
        )
        .await,
    );
    assert!(edit.contains("AKIAFORMKEY000000000"));
    assert!(!edit.contains("form-session-token") && !edit.contains("form/secret"));
}
