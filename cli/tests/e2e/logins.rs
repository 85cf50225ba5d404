//! ChatGPT (Codex) logins: the real login stays with OneCLI, the agent
//! holds a placeholder `auth.json`; the gateway answers the agent's refresh
//! itself, without a connection anywhere, and the control service refreshes
//! the real login at the token endpoint and the gateway injects the new
//! access token.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use onecli_benches::origin::TestPki;
use serde_json::{json, Value};

use crate::harness::{echoed, python, PyServer};
use crate::served::{Home, Served};

const ACCOUNT: &str = "acct-test-42";
const FIRST_REFRESH: &str = "rt-real-1";

fn jwt(claims: Value) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256"}"#),
        b64(claims.to_string().as_bytes()),
        b64(b"sig")
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Codex's auth.json, its access token expiring in `expires_in` seconds.
fn auth_json(access: &str, refresh: &str) -> String {
    let id = jwt(json!({ "email": "dev@example.com",
        "https://api.openai.com/auth": { "chatgpt_plan_type": "pro", "chatgpt_account_id": ACCOUNT } }));
    json!({ "OPENAI_API_KEY": null, "last_refresh": "2026-11-30T10:00:00Z",
        "tokens": { "id_token": id, "access_token": access, "refresh_token": refresh, "account_id": ACCOUNT } })
    .to_string()
}

/// What the agent's requests carry, as the origin echoed them.
async fn sent_headers(s: &Served, token: &str) -> (Vec<String>, Vec<String>) {
    let script = "import sys, requests\n\
        p = {'https': sys.argv[1]}\n\
        print(requests.get(sys.argv[2], proxies=p, verify=sys.argv[3], timeout=20,\n\
              headers={'Authorization': 'Bearer placeholder'}).text)";
    let out = python(
        script,
        &[
            &format!("http://x:{token}@127.0.0.1:{}", s.gateway_port),
            &format!("https://openai.test:{}/echo", s.origin.port()),
            &s.gateway_ca().display().to_string(),
        ],
    );
    let body: Value = serde_json::from_slice(&out.stdout).expect("echo");
    (
        echoed(&body, "authorization"),
        echoed(&body, "chatgpt-account-id"),
    )
}

/// Counts connections to a pinned `auth.openai.com`: none may come for a
/// refresh the gateway answers.
async fn connection_counter() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, count)
}

#[tokio::test(flavor = "multi_thread")]
async fn chatgpt_logins_are_refreshed_by_onecli_and_answered_locally() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(&["localhost"]).expect("pki");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &pki.cert_pem).expect("cert");
    std::fs::write(&key, &pki.key_pem).expect("key");
    let endpoint = PyServer::start(
        "token_endpoint.py",
        &[
            &cert.display().to_string(),
            &key.display().to_string(),
            FIRST_REFRESH,
        ],
    );
    let (auth_port, connections) = connection_counter().await;
    let token_url = format!("https://localhost:{}/oauth/token", endpoint.port);
    let pin = format!("auth.openai.com:{auth_port}:127.0.0.1");
    let s = Served::start_trusting(
        &[
            "--chatgpt-token-url",
            &token_url,
            "--login-refresh-every",
            "200ms",
            "--resolve",
            &pin,
        ],
        Some(&pki.ca_pem),
    )
    .await;
    let (_, token) = s.agent("codex").await;

    // A login an hour and more from expiry: injected as it is, not refreshed.
    let first_access = jwt(json!({ "exp": unix_now() + 7200, "n": 1 }));
    let login = json!({ "name": "ChatGPT", "type": "openai", "hostPattern": "openai.test",
        "value": auth_json(&first_access, FIRST_REFRESH) });
    let (status, created) = s.api("POST", "/v1/secrets", Some(login)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        created["preview"],
        format!("ChatGPT login, account {ACCOUNT}")
    );
    let (auth, account) = sent_headers(&s, &token).await;
    assert_eq!(auth, [format!("Bearer {first_access}")]);
    assert_eq!(account, [ACCOUNT]);

    // The agent's placeholder login: no real token in it.
    let (_, config) = s.api("GET", "/v1/container-config?agent=codex", None).await;
    assert!(config["env"].get("OPENAI_API_KEY").is_none(), "{config}");
    let placeholder = config["codexAuthJson"].as_str().expect("codexAuthJson");
    assert!(!placeholder.contains(&first_access) && !placeholder.contains(FIRST_REFRESH));
    let placeholder: Value = serde_json::from_str(placeholder).expect("auth.json");
    assert_eq!(
        placeholder["tokens"]["refresh_token"],
        "onecli-managed-refresh-token"
    );
    assert_eq!(placeholder["tokens"]["account_id"], ACCOUNT);

    // Codex refreshing its placeholder: answered by the gateway, nothing sent.
    let refresh = "import json, sys, requests\n\
        p = {'https': sys.argv[1]}\n\
        body = {'client_id': 'app_EMoamEEZ73f0CkXaXp7hrann', 'grant_type': 'refresh_token',\n\
                'refresh_token': sys.argv[4], 'scope': 'openid profile email'}\n\
        r = requests.post(sys.argv[2], json=body, proxies=p, verify=sys.argv[3], timeout=20)\n\
        print(json.dumps({'status': r.status_code, 'body': r.text}))";
    let ask = |refresh_token: &str| {
        let out = python(
            refresh,
            &[
                &format!("http://x:{token}@127.0.0.1:{}", s.gateway_port),
                &format!("https://auth.openai.com:{auth_port}/oauth/token"),
                &s.gateway_ca().display().to_string(),
                refresh_token,
            ],
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("refresh report")
    };
    let answered = ask("onecli-managed-refresh-token");
    assert_eq!(answered["status"], 200, "{answered}");
    let tokens: Value =
        serde_json::from_str(answered["body"].as_str().expect("body")).expect("json");
    assert_eq!(tokens["refresh_token"], "onecli-managed-refresh-token");
    assert_eq!(
        tokens["access_token"],
        placeholder["tokens"]["access_token"]
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection for it"
    );
    // Any other refresh goes on to the real endpoint (here, the counter).
    let forwarded = ask("someone-elses-refresh-token");
    assert_ne!(forwarded["status"], 200);
    assert!(connections.load(Ordering::SeqCst) >= 1, "the pin is live");

    // Within the hour of expiry: the control service refreshes it with the
    // real refresh token, and the gateway injects the new access token.
    let soon = jwt(json!({ "exp": unix_now() + 60, "n": 1 }));
    let (status, _) = s
        .api(
            "PATCH",
            &format!("/v1/secrets/{id}"),
            Some(json!({ "value": auth_json(&soon, FIRST_REFRESH) })),
        )
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let fresh = loop {
        let (auth, account) = sent_headers(&s, &token).await;
        let sent = auth.first().cloned().unwrap_or_default();
        if sent != format!("Bearer {soon}") && sent != format!("Bearer {first_access}") {
            assert_eq!(account, [ACCOUNT]);
            break sent;
        }
        assert!(Instant::now() < deadline, "not refreshed: {}", s.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let claims = fresh
        .strip_prefix("Bearer ")
        .and_then(|t| t.split('.').nth(1))
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .expect("a JWT from the endpoint");
    assert_eq!(claims["n"], 2, "the endpoint's new token");
    let calls = endpoint.seen();
    assert!(calls.iter().any(|c| c["ok"] == true), "{calls:?}");
    // Refreshed once: the new token has a day left.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(endpoint.seen().is_empty(), "refreshed only when due");

    // `onecli run -- codex` hands Codex the placeholder login.
    let home = Home::new();
    let stub = home.path().join("bin").join("codex");
    std::fs::write(
        &stub,
        "#!/bin/sh\necho \"$CODEX_HOME\"\ncat \"$CODEX_HOME/auth.json\"\n",
    )
    .expect("stub");
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = home
        .onecli(&s)
        .args(["run", "--agent", "codex", "--", "codex"])
        .output()
        .expect("onecli run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let (codex_home, written) = text.split_once('\n').expect("two parts");
    let written: Value = serde_json::from_str(written.trim()).expect("auth.json");
    assert_eq!(
        written["tokens"]["refresh_token"],
        "onecli-managed-refresh-token"
    );
    let mode = std::fs::metadata(std::path::Path::new(codex_home).join("auth.json"))
        .expect("auth.json")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // No real token anywhere it could be read.
    let (_, listed) = s.api("GET", "/v1/secrets", None).await;
    let log = s.log();
    for secret in [
        first_access.as_str(),
        soon.as_str(),
        fresh.trim_start_matches("Bearer "),
        FIRST_REFRESH,
        "rt-real-2",
    ] {
        assert!(!log.contains(secret), "a token leaked into the log");
        assert!(!listed.to_string().contains(secret), "a token in the API");
        assert!(!text.contains(secret), "a token handed to the agent");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_without_a_refresh_token_or_an_account_is_refused() {
    let s = Served::start().await;
    for value in [
        json!({ "tokens": { "access_token": "at", "account_id": ACCOUNT } }).to_string(),
        json!({ "tokens": { "access_token": "at", "refresh_token": "rt" } }).to_string(),
        "{not json at all".to_owned(),
    ] {
        let body = json!({ "name": "ChatGPT", "type": "openai", "hostPattern": "chatgpt.com", "value": value });
        let (status, answer) = s.api("POST", "/v1/secrets", Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(!answer.to_string().contains("not json at all"));
    }
}
