//! Credential kinds beyond headers and query parameters, through the real
//! gateway with real clients: secrets in the URL path.

use serde_json::{json, Value};

use crate::harness::python;
use crate::served::{request_with_body, Served};

const BOT_TOKEN: &str = "123456789:TELEGRAM-bot_secret-token";
const KEY: &str = "path-key-0123456789";

/// Curl through the gateway as the agent, trusting the gateway's CA.
fn curl(s: &Served, token: &str, url: &str) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .args([
            "--proxy",
            &format!("http://x:{token}@127.0.0.1:{}", s.gateway_port),
        ])
        .arg("--cacert")
        .arg(s.gateway_ca())
        .arg(url)
        .output()
        .expect("curl");
    // The proxy's `200 Connection established` comes first: the last head
    // is the origin's.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (mut head, mut body) = ("", text.as_str());
    while body.starts_with("HTTP/") {
        (head, body) = body.split_once("\r\n\r\n").unwrap_or((body, ""));
    }
    (head.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn path_secrets_reach_the_upstream_path_and_never_come_back() {
    let s = Served::start().await;
    let (_, token) = s.agent("bot").await;
    let template = json!({ "name": "Telegram", "type": "generic", "value": BOT_TOKEN, "hostPattern": "api.test",
        "injectionConfig": { "pathTemplate": "/bot{value}" } });
    let (status, created) = s.api("POST", "/v1/secrets", Some(template)).await;
    assert_eq!(status, 201, "{created}");
    let (_, listed) = s.api("GET", "/v1/secrets", None).await;
    assert_eq!(
        listed[0]["injectionConfig"],
        json!({ "pathTemplate": "/bot{value}" })
    );
    // The regex form from the CLI.
    let home = crate::served::Home::new();
    let out = home
        .onecli(&s)
        .args(["secrets", "create", "--name", "Keyed", "--type", "generic"])
        .args(["--value", KEY, "--host", "other.test"])
        .args([
            "--path-regex",
            "^/v1/key/[^/]+",
            "--path-replacement",
            "/v1/key/{value}",
        ])
        .output()
        .expect("onecli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, listed) = s.api("GET", "/v1/secrets", None).await;
    assert_eq!(
        listed[1]["injectionConfig"],
        json!({ "pathRegex": "^/v1/key/[^/]+", "pathReplacement": "/v1/key/{value}" })
    );
    // Rules see the agent's path: this one blocks sending, by placeholder.
    let rule = json!({ "name": "read only", "hostPattern": "api.test", "pathPattern": "/botPLACEHOLDER/sendMessage",
        "action": "block", "enabled": true });
    assert_eq!(s.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    let port = s.origin.port();

    // curl: the placeholder segment goes out as the token, the rest as sent.
    let (head, body) = curl(
        &s,
        &token,
        &format!("https://api.test:{port}/botPLACEHOLDER/getMe?offset=2"),
    );
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/2 200"),
        "{head}"
    );
    let echo: Value = serde_json::from_str(&body).expect("echo");
    assert_eq!(echo["path"], format!("/bot{BOT_TOKEN}/getMe"), "{echo}");
    assert_eq!(echo["query"], "offset=2");

    // Python requests, and the regex form on another host.
    let script = r#"
import json, sys, requests
proxy, ca, url = sys.argv[1:4]
r = requests.get(url, proxies={"https": proxy}, verify=ca, timeout=20)
print(json.dumps({"status": r.status_code, "echo": r.json()}))
"#;
    let proxy = format!("http://x:{token}@127.0.0.1:{}", s.gateway_port);
    let ca = s.gateway_ca().display().to_string();
    let url = format!("https://other.test:{port}/v1/key/PLACEHOLDER/items");
    let out = python(script, &[&proxy, &ca, &url]);
    let answer: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["echo"]["path"], format!("/v1/key/{KEY}/items"));

    // A path the template does not fit goes out as sent, nothing injected.
    let mut tunnel = s.tunnel(&token, "api.test").await;
    let resp = request_with_body(&mut tunnel, "GET", "/v1/plain", "api.test", b"").await;
    assert_eq!(resp.json()["path"], "/v1/plain");

    // The rule judged the agent's spelling.
    let (head, _) = curl(
        &s,
        &token,
        &format!("https://api.test:{port}/botPLACEHOLDER/sendMessage"),
    );
    assert!(head.contains(" 403"), "{head}");

    // A redirect that reflects the path comes back without the token.
    let (head, _) = curl(
        &s,
        &token,
        &format!("https://api.test:{port}/botPLACEHOLDER/reflect"),
    );
    assert!(head.contains(" 301"), "{head}");
    assert!(!head.contains(BOT_TOKEN), "the token came back: {head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("location: /botonecli-redacted/reflect/"),
        "{head}"
    );

    // The audit log has the agent's path, never the token.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, logs) = s.api("GET", "/v1/logs?agent=bot", None).await;
        let text = logs.to_string();
        assert!(!text.contains(BOT_TOKEN) && !text.contains(KEY), "{text}");
        if text.contains("/botPLACEHOLDER/getMe") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit record: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = s.log();
    assert!(
        !log.contains(BOT_TOKEN) && !log.contains(KEY),
        "a path secret in the log"
    );

    // Values that cannot travel in a path are refused at creation, and the
    // answer does not repeat them.
    for bad in ["has/slash", "has?query", "has space", "has%2F"] {
        let body = json!({ "name": "Bad", "type": "generic", "value": bad, "hostPattern": "api.test",
            "injectionConfig": { "pathTemplate": "/bot{value}" } });
        let (status, answer) = s.api("POST", "/v1/secrets", Some(body)).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(!answer.to_string().contains(bad), "{answer}");
    }
    let both = json!({ "name": "Both", "type": "generic", "value": "v", "hostPattern": "api.test",
        "injectionConfig": { "pathTemplate": "/bot{value}", "headerName": "X-Key" } });
    assert_eq!(s.api("POST", "/v1/secrets", Some(both)).await.0, 400);
}
