//! The management commands (SPEC §7) against `onecli serve`: human output,
//! `--json` shapes and exit codes.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{echoed, tls_tunnel_to};
use crate::served::{request_with_body, Home, Served};

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&ok(out))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn fails(out: &Output, code: i32, error_code: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let error: Value = serde_json::from_slice(&out.stderr).expect("a JSON error on stderr");
    assert_eq!(error["code"], error_code);
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_commands() {
    let s = Served::start().await;
    let home = Home::new();
    let run = |args: &[&str]| home.onecli(&s).args(args).output().expect("onecli");
    let created = json_of(&run(&["--json", "agents", "create", "Claude Code"]));
    assert_eq!(created["identifier"], "claude-code");
    let table = ok(&run(&["agents", "list", "--table"]));
    assert!(
        table.starts_with("ID ") && table.contains("claude-code"),
        "{table}"
    );
    assert!(!table.contains("aoc_"), "tokens stay out of the table");
    let list = json_of(&run(&["--json", "agents", "list"]))["data"].clone();
    let token = list[0]["accessToken"].as_str().expect("token").to_owned();
    ok(&run(&["agents", "rename", "claude-code", "Claude"]));
    let secret = json_of(&run(&[
        "--json",
        "secrets",
        "create",
        "--name",
        "A",
        "--type",
        "openai",
        "--host",
        "api.openai.com",
        "--value",
        "sk-proj-MANAGE",
    ]));
    let secret_id = secret["id"].as_str().expect("id");
    ok(&run(&[
        "agents",
        "set-secret-mode",
        "claude-code",
        "selective",
    ]));
    ok(&run(&["agents", "set-secrets", "claude-code", secret_id]));
    assert_eq!(
        json_of(&run(&["--json", "agents", "secrets", "claude-code"])),
        json!([secret_id])
    );
    ok(&run(&["agents", "set-policy-mode", "claude-code", "deny"]));
    let fresh = json_of(&run(&[
        "--json",
        "agents",
        "regenerate-token",
        "claude-code",
    ]));
    assert_ne!(fresh["accessToken"].as_str(), Some(token.as_str()));
    let list = json_of(&run(&["--json", "agents", "list"]))["data"].clone();
    assert_eq!(
        (
            list[0]["name"].as_str(),
            list[0]["secretMode"].as_str(),
            list[0]["policyMode"].as_str()
        ),
        (Some("Claude"), Some("selective"), Some("deny"))
    );
    fails(
        &run(&[
            "--json",
            "agents",
            "create",
            "Again",
            "--identifier",
            "claude-code",
        ]),
        8,
        "refused",
    );
    ok(&run(&["agents", "delete", "claude-code"]));
    fails(
        &run(&["--json", "agents", "delete", "claude-code"]),
        7,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_commands_never_echo_the_value() {
    let s = Served::start().await;
    let home = Home::new();
    let mut cmd = home.onecli(&s);
    cmd.args([
        "secrets",
        "create",
        "--table",
        "--name",
        "GitHub",
        "--type",
        "generic",
        "--host",
        "api.github.com",
        "--header",
        "Authorization",
        "--format",
        "Bearer {value}",
    ]);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        b"ghp_FROM_STDIN_value\n",
    )
    .expect("write");
    let out = child.wait_with_output().expect("wait");
    let text = ok(&out);
    assert!(text.contains("shown as ••••••••alue"), "{text}");
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("FROM_STDIN"), "the value was echoed");
    let list = json_of(
        &home
            .onecli(&s)
            .args(["--json", "secrets", "list"])
            .output()
            .expect("list"),
    )["data"]
        .clone();
    let id = list[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        list[0]["injectionConfig"],
        json!({ "headerName": "Authorization", "valueFormat": "Bearer {value}" })
    );
    let file = home.path().join("value.txt");
    std::fs::write(&file, "ghp_FROM_FILE_value2\n").expect("write");
    ok(&home
        .onecli(&s)
        .args(["secrets", "update", &id, "--value-file"])
        .arg(&file)
        .output()
        .expect("update"));
    let list = json_of(
        &home
            .onecli(&s)
            .args(["--json", "secrets", "list"])
            .output()
            .expect("list"),
    )["data"]
        .clone();
    assert_eq!(list[0]["preview"], "••••••••lue2");
    ok(&home
        .onecli(&s)
        .args(["secrets", "delete", &id])
        .output()
        .expect("delete"));
    assert_eq!(
        json_of(
            &home
                .onecli(&s)
                .args(["--json", "secrets", "list"])
                .output()
                .expect("list")
        )["data"],
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_commands() {
    let s = Served::start().await;
    let home = Home::new();
    let run = |args: &[&str]| home.onecli(&s).args(args).output().expect("onecli");
    let (agent_id, _) = s.agent("ruled").await;
    let rule = json_of(&run(&[
        "--json",
        "rules",
        "create",
        "--name",
        "no writes",
        "--host",
        "*.test",
        "--action",
        "block",
        "--method",
        "post",
        "--method",
        "DELETE",
        "--agent",
        &agent_id,
    ]));
    assert_eq!(rule["methods"], json!(["POST", "DELETE"]));
    assert_eq!(rule["agentId"], agent_id.as_str());
    let limited = json_of(&run(&[
        "--json",
        "rules",
        "create",
        "--name",
        "hourly",
        "--host",
        "*",
        "--action",
        "rate_limit",
        "--limit",
        "100",
        "--window",
        "hour",
    ]));
    assert_eq!(
        (
            limited["rateLimit"].as_u64(),
            limited["rateLimitWindow"].as_str()
        ),
        (Some(100), Some("hour"))
    );
    fails(
        &run(&[
            "--json",
            "rules",
            "create",
            "--name",
            "x",
            "--host",
            "*",
            "--action",
            "rate_limit",
        ]),
        8,
        "refused",
    );
    let id = rule["id"].as_str().expect("id");
    let updated = json_of(&run(&["--json", "rules", "update", id, "--disabled"]));
    assert_eq!(updated["enabled"], false);
    assert!(ok(&run(&["rules", "list"])).contains("no writes"));
    ok(&run(&["rules", "delete", id]));
    assert_eq!(
        json_of(&run(&["--json", "rules", "list"]))["data"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_watch_decides_from_the_keyboard() {
    let s = Served::start().await;
    let home = Home::new();
    let (agent_id, token) = s.agent("held").await;
    let secret = json!({ "name": "A", "type": "anthropic", "value": "sk-ant-api03-WATCH", "hostPattern": "api.test" });
    assert_eq!(s.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    let rule = json!({ "name": "ask", "hostPattern": "api.test", "methods": ["POST"], "action": "manual_approval", "enabled": true, "agentId": agent_id });
    assert_eq!(s.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    let (gw, ca, port) = (s.gateway_port, s.gateway_ca(), s.origin.port());
    let agent = tokio::spawn(async move {
        let mut t = tls_tunnel_to(gw, &ca, &token, "api.test", port).await;
        request_with_body(
            &mut t,
            "POST",
            "/v1/held",
            "api.test",
            b"{\"send\":\"mail\"}",
        )
        .await
    });
    // The watcher, in a real terminal, answers "y".
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pty_watch.py");
    let mut watch = home.onecli(&s);
    watch.args(["approvals", "watch"]);
    let mut py = Command::new("python3");
    py.arg(script)
        .arg("y")
        .arg(watch.get_program())
        .args(watch.get_args());
    for (k, v) in watch.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    let screen = tokio::task::spawn_blocking(move || py.output().expect("python"));
    let resp = tokio::time::timeout(Duration::from_secs(40), agent)
        .await
        .expect("decided in time")
        .expect("agent task");
    let screen = screen.await.expect("watch");
    let text = String::from_utf8_lossy(&screen.stdout);
    assert!(
        text.contains("POST https://api.test:") && text.contains("approve?"),
        "{text}"
    );
    assert!(text.contains("approved "), "{text}");
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(echoed(&resp.json(), "x-api-key"), ["sk-ant-api03-WATCH"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_auth_config_doctor_and_the_rest() {
    let s = Served::start().await;
    let home = Home::new();
    let run = |args: &[&str]| home.onecli(&s).args(args).output().expect("onecli");
    // Doctor passes once `onecli run` has written the CA.
    ok(&run(&["run", "--", "true"]));
    let doctor = json_of(&run(&["--json", "doctor"]));
    assert_eq!(doctor["ok"], true, "{doctor}");
    // A CA file that is not the gateway's current CA is a fault.
    let ca_file = home.path().join(".onecli/gateway-ca.pem");
    let current = std::fs::read_to_string(&ca_file).expect("ca");
    std::fs::write(
        &ca_file,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("stale ca");
    let stale = run(&["--json", "doctor"]);
    assert_eq!(stale.status.code(), Some(1));
    let stale: Value = serde_json::from_slice(&stale.stdout).expect("doctor --json");
    let check = stale["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == "CA written"))
        .expect("CA check");
    assert_eq!(check["ok"], false, "{stale}");
    assert!(
        check["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not the gateway's CA")),
        "{stale}"
    );
    std::fs::write(&ca_file, current).expect("ca back");
    // A request, then the audit log shows it.
    let (_, token) = s.agent("logged").await;
    let mut t = s.tunnel(&token, "api.test").await;
    let _ = crate::harness::request(&mut t, "GET", "/v1/x?q=1", "api.test", &[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logs = json_of(&run(&["--json", "logs", "--agent", "logged"]))["data"].clone();
        if logs
            .as_array()
            .is_some_and(|l| l.iter().any(|r| r["path"] == "/v1/x"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log record: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // auth: login keeps a key (0600), status checks it, logout forgets it.
    let login = home
        .onecli(&s)
        .env_remove("ONECLI_API_KEY")
        .args(["auth", "login", "--api-key", &s.api_key])
        .output()
        .expect("login");
    ok(&login);
    let creds = home.path().join(".onecli/credentials/api-key");
    assert_eq!(
        std::fs::metadata(&creds)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .ok(),
        Some(0o600)
    );
    let status = json_of(
        &home
            .onecli(&s)
            .env_remove("ONECLI_API_KEY")
            .args(["--json", "auth", "status"])
            .output()
            .expect("status"),
    );
    assert_eq!(
        (status["valid"].as_bool(), status["keySource"].as_str()),
        (Some(true), Some("~/.onecli/credentials/api-key"))
    );
    ok(&home
        .onecli(&s)
        .env_remove("ONECLI_API_KEY")
        .args(["auth", "logout"])
        .output()
        .expect("logout"));
    assert!(!creds.exists());
    fails(
        &home
            .onecli(&s)
            .args(["--json", "auth", "login", "--api-key", "oc_wrong"])
            .output()
            .expect("login"),
        6,
        "unauthorized",
    );
    // config
    ok(&run(&["config", "set", "agent", "logged"]));
    assert_eq!(
        ok(&run(&["config", "get", "agent", "--table"])).trim(),
        "logged"
    );
    fails(
        &run(&["--json", "config", "get", "api-host"]),
        7,
        "not_found",
    );
    // completions, version
    assert!(ok(&run(&["completions", "bash"])).contains("_onecli"));
    assert_eq!(
        json_of(&run(&["--json", "version"]))["version"],
        env!("CARGO_PKG_VERSION")
    );
    // A closed pipe ends the output quietly.
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} completions bash | head -1",
            env!("CARGO_BIN_EXE_onecli")
        ))
        .output()
        .expect("sh");
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_list_approve_and_deny() {
    let s = Served::start().await;
    let home = Home::new();
    let run = |args: &[&str]| home.onecli(&s).args(args).output().expect("onecli");
    let (agent_id, token) = s.agent("held").await;
    let rule = json!({ "name": "ask", "hostPattern": "api.test", "methods": ["POST"], "action": "manual_approval", "enabled": true, "agentId": agent_id });
    assert_eq!(s.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    for (decision, want) in [("approve", 200), ("deny", 403)] {
        let (gw, ca, port, token) = (
            s.gateway_port,
            s.gateway_ca(),
            s.origin.port(),
            token.clone(),
        );
        let agent = tokio::spawn(async move {
            let mut t = tls_tunnel_to(gw, &ca, &token, "api.test", port).await;
            request_with_body(&mut t, "POST", "/v1/held", "api.test", b"{}").await
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let id = loop {
            let listed = json_of(&run(&["--json", "approvals", "list"]));
            if let Some(id) = listed["data"][0]["id"].as_str() {
                break id.to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "never listed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let decided = json_of(&run(&["--json", "approvals", decision, &id]));
        assert_eq!(decided["decision"], decision);
        let resp = tokio::time::timeout(Duration::from_secs(20), agent)
            .await
            .expect("in time")
            .expect("task");
        assert_eq!(resp.status, want, "{decision}");
        fails(
            &run(&["--json", "approvals", decision, &id]),
            7,
            "not_found",
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_serves_key_is_found_and_logs_follow_streams_new_records() {
    let s = Served::start().await;
    let home = Home::new();
    // `onecli serve` on its default data dir leaves its key at
    // ~/.onecli/data/api-key: with nothing configured, the CLI uses it.
    let data = home.path().join(".onecli/data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("api-key"), &s.api_key).expect("key");
    let listed = home
        .onecli(&s)
        .env_remove("ONECLI_API_KEY")
        .args(["--json", "agents", "list"])
        .output()
        .expect("agents list");
    assert!(json_of(&listed)["data"].is_array());

    let (_, token) = s.agent("followed").await;
    let mut follow = home
        .onecli(&s)
        .args(["--json", "logs", "--follow", "--agent", "followed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("logs --follow");
    let stdout = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The backlog (empty for a new agent) comes first; the request after it
    // can only show up as a followed record.
    let backlog = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("logs --follow printed its backlog");
    assert_eq!(backlog.trim(), "[]");
    let mut t = s.tunnel(&token, "api.test").await;
    let _ = crate::harness::request(&mut t, "GET", "/v1/followed", "api.test", &[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let streamed = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("/v1/followed") => break Some(line),
            Ok(_) => continue,
            Err(_) => break None,
        }
    };
    let _ = follow.kill();
    let _ = follow.wait();
    let line = streamed.expect("logs --follow printed the new record");
    let record: Value = serde_json::from_str(&line).expect("one JSON record per line");
    assert_eq!(record["path"], "/v1/followed");
    assert!(!line.contains(&token), "the proxy token is not logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn projects_and_api_keys_commands() {
    let s = Served::start().await;
    let home = Home::new();
    let run = |args: &[&str]| home.onecli(&s).args(args).output().expect("onecli");
    let dry = json_of(&run(&[
        "projects",
        "create",
        "--name",
        "Team B",
        "--identifier",
        "team-b",
        "--dry-run",
    ]));
    assert_eq!(dry["dry_run"], true);
    assert!(
        json_of(&run(&["projects", "list"]))["data"]
            .as_array()
            .is_some_and(|p| p.len() == 1),
        "a dry run made nothing"
    );
    let created = json_of(&run(&[
        "projects",
        "create",
        "--name",
        "Team B",
        "--identifier",
        "team-b",
    ]));
    assert_eq!(created["identifier"], "team-b");
    let key = json_of(&run(&[
        "api-keys",
        "create",
        "--name",
        "ci",
        "--for-project",
        "team-b",
    ]));
    assert_eq!(key["project"], "team-b");
    let key = key["key"].as_str().expect("shown once").to_owned();
    let listed = ok(&run(&["api-keys", "list"]));
    assert!(
        listed.contains("team-b") && !listed.contains(&key),
        "{listed}"
    );

    // --project (an admin key in a project) and a project's own key.
    ok(&run(&[
        "agents",
        "create",
        "Builder",
        "--project",
        "team-b",
    ]));
    let as_project = |args: &[&str]| {
        home.onecli(&s)
            .args(args)
            .env("ONECLI_API_KEY", &key)
            .output()
            .expect("onecli")
    };
    let mine = json_of(&as_project(&["agents", "list", "--fields", "identifier"]));
    assert_eq!(mine, json!([{ "identifier": "builder" }]));
    let default = json_of(&run(&["agents", "list", "--fields", "identifier"]));
    assert!(!default.to_string().contains("builder"), "{default}");
    fails(
        &as_project(&[
            "--json",
            "projects",
            "create",
            "--name",
            "x",
            "--identifier",
            "x",
        ]),
        6,
        "unauthorized",
    );
    fails(
        &as_project(&["--json", "agents", "list", "--project", "default"]),
        7,
        "not_found",
    );
    fails(
        &run(&["--json", "agents", "list", "--project", "bad\r\nX-Evil: 1"]),
        3,
        "invalid_config",
    );

    // A project goes when empty; its key with it.
    fails(
        &run(&["--json", "projects", "delete", "team-b"]),
        8,
        "refused",
    );
    ok(&as_project(&["agents", "delete", "builder"]));
    let gone = json_of(&run(&["projects", "delete", "team-b"]));
    assert_eq!(gone["status"], "deleted");
    fails(
        &as_project(&["--json", "agents", "list"]),
        6,
        "unauthorized",
    );
}
