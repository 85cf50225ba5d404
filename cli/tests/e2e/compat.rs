//! Drop-in for OneCLI users: OneCLI's CLI flags and output, `--dry-run`,
//! NanoClaw's setup sequence with the SDK it pins (0.5.0), NO_PROXY, and
//! the addresses handed out when the service binds a wildcard.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::approvals::{first_shown, held_agent, sdk_package, KEY};
use crate::quickstart::Netns;
use crate::served::{request_with_body, Home, Served};

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parsed the way scripts written for OneCLI parse it: stdout as JSON, no flag.
fn json_of(out: &Output) -> Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// Everything the control service holds that a change could touch.
async fn state(s: &Served) -> Value {
    let mut all = json!({});
    for what in ["agents", "secrets", "rules"] {
        let (status, list) = s.api("GET", &format!("/v1/{what}"), None).await;
        assert_eq!(status, 200);
        all[what] = list;
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn oneclis_flags_and_json_output_work_unchanged() {
    let s = Served::start().await;
    let home = Home::new();
    let run = |args: &[&str]| home.onecli(&s).args(args).output().expect("onecli");

    // Stdout is a pipe here, as in a script: JSON without asking.
    let github = json_of(&run(&[
        "secrets",
        "create",
        "--name",
        "GitHub",
        "--type",
        "generic",
        "--value",
        "ghp_COMPAT_secret_value",
        "--host-pattern",
        "api.github.com",
        "--path-pattern",
        "/repos/*",
        "--header-name",
        "Authorization",
        "--value-format",
        "Bearer {value}",
    ]));
    assert_eq!(
        (&github["hostPattern"], &github["pathPattern"]),
        (&json!("api.github.com"), &json!("/repos/*"))
    );
    let value_file = home.path().join("key.txt");
    std::fs::write(&value_file, "sk-ant-api03-COMPAT-from-file\n").expect("write");
    json_of(
        &home
            .onecli(&s)
            .args([
                "secrets",
                "create",
                "--name",
                "Anthropic",
                "--type",
                "anthropic",
                "--host-pattern",
                "api.anthropic.com",
                "--file",
            ])
            .arg(&value_file)
            .output()
            .expect("onecli"),
    );

    // Lists: OneCLI's {"hint","data"}; --fields, --quiet, --max.
    let listed = json_of(&run(&["secrets", "list"]));
    assert!(listed["hint"]
        .as_str()
        .is_some_and(|h| h.contains("/connections")));
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2));
    let picked = json_of(&run(&["secrets", "list", "--fields", "name,hostPattern"]));
    let mut names: Vec<Value> = picked.as_array().expect("a bare array").clone();
    names.sort_by_key(|v| v["name"].as_str().map(str::to_owned));
    assert_eq!(
        names,
        [
            json!({ "name": "Anthropic", "hostPattern": "api.anthropic.com" }),
            json!({ "name": "GitHub", "hostPattern": "api.github.com" }),
        ]
    );
    // The skill's polling command, as OneCLI's own skill spells it.
    let mut hosts: Vec<String> = ok(&run(&[
        "secrets",
        "list",
        "--fields",
        "hostPattern",
        "--quiet",
        "hostPattern",
    ]))
    .lines()
    .map(str::to_owned)
    .collect();
    hosts.sort();
    assert_eq!(hosts, ["api.anthropic.com", "api.github.com"]);
    assert_eq!(
        json_of(&run(&["secrets", "list", "--max", "1"]))["data"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // A misspelt field is an error, not an empty answer polled forever.
    let typo = run(&["secrets", "list", "--quiet", "hostPatern"]);
    assert_eq!(code(&typo), Some(1));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("hostPattern"));
    // Tables stay for people, and --table forces them.
    assert!(ok(&run(&["secrets", "list", "--table"])).starts_with("ID "));
    for out in [
        &run(&["secrets", "list"]),
        &run(&["secrets", "list", "--table"]),
    ] {
        assert!(!String::from_utf8_lossy(&out.stdout).contains("COMPAT"));
    }

    // Agents: get-default, set-secrets --secret-ids, --id everywhere.
    assert_eq!(code(&run(&["agents", "get-default"])), Some(7));
    assert_eq!(s.api("GET", "/v1/container-config", None).await.0, 200);
    assert_eq!(
        json_of(&run(&[
            "agents",
            "get-default",
            "--fields",
            "identifier,isDefault"
        ])),
        json!({ "identifier": "default", "isDefault": true })
    );
    let bot = json_of(&run(&[
        "agents",
        "create",
        "--name",
        "Bot",
        "--identifier",
        "bot",
    ]));
    let bot_id = bot["id"].as_str().expect("id").to_owned();
    let anthropic_id = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|s| s["name"] == "Anthropic")
        .and_then(|s| s["id"].as_str())
        .expect("id")
        .to_owned();
    let github_id = github["id"].as_str().expect("id");
    let set = json_of(&run(&[
        "agents",
        "set-secrets",
        "--id",
        &bot_id,
        "--secret-ids",
        &format!("{anthropic_id}, {github_id}"),
    ]));
    assert_eq!(set["secret_mode"], "selective");
    // No ids (an empty variable) is refused, not a silent cut-off.
    let empty = run(&["agents", "set-secrets", "--id", "bot", "--secret-ids", ""]);
    assert_eq!(code(&empty), Some(8));
    assert_eq!(code(&run(&["agents", "get", "--id", ""])), Some(2));
    let shown = json_of(&run(&[
        "agents",
        "get",
        "--id",
        "bot",
        "--fields",
        "secretMode",
    ]));
    assert_eq!(shown, json!({ "secretMode": "selective" }));
    let mut assigned: Vec<String> =
        serde_json::from_value(json_of(&run(&["agents", "secrets", "--id", "bot"]))).expect("ids");
    assigned.sort();
    let mut want = vec![anthropic_id.clone(), github_id.to_owned()];
    want.sort();
    assert_eq!(assigned, want);
    ok(&run(&[
        "agents", "rename", "--id", "bot", "--name", "Bot 2",
    ]));
    ok(&run(&[
        "agents",
        "set-secret-mode",
        "--id",
        "bot",
        "--mode",
        "all",
    ]));
    assert_eq!(
        json_of(&run(&[
            "agents",
            "get",
            "bot",
            "--fields",
            "name,secretMode"
        ])),
        json!({ "name": "Bot 2", "secretMode": "all" })
    );

    // Rules, with OneCLI's flag names.
    let rule = json_of(&run(&[
        "rules",
        "create",
        "--name",
        "five an hour",
        "--host-pattern",
        "api.github.com",
        "--path-pattern",
        "/repos/*",
        "--method",
        "GET",
        "--action",
        "rate_limit",
        "--rate-limit",
        "5",
        "--rate-limit-window",
        "hour",
        "--agent-id",
        &bot_id,
        "--enabled=false",
    ]));
    let rule_id = rule["id"].as_str().expect("id").to_owned();
    assert_eq!(
        json_of(&run(&[
            "rules",
            "get",
            "--id",
            &rule_id,
            "--fields",
            "agentId,enabled,methods,pathPattern,rateLimit,rateLimitWindow",
        ])),
        json!({ "agentId": bot_id, "enabled": false, "methods": ["GET"], "pathPattern": "/repos/*",
            "rateLimit": 5, "rateLimitWindow": "hour" })
    );
    ok(&run(&["rules", "update", "--id", &rule_id, "--enabled"]));
    assert_eq!(
        json_of(&run(&["rules", "get", &rule_id, "--fields", "enabled"])),
        json!({ "enabled": true })
    );
    let deleted = json_of(&run(&["rules", "delete", "--id", &rule_id]));
    assert_eq!(deleted, json!({ "status": "deleted", "id": rule_id }));

    // help: every command and its flags, for scripts and agents.
    let help = json_of(&run(&["help"]));
    let create = help["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .find(|c| c["name"] == "secrets create")
        .expect("secrets create described");
    assert!(
        create["args"]
            .as_array()
            .expect("args")
            .iter()
            .any(|a| a["name"] == "--host" && a["aliases"] == json!(["--host-pattern"])),
        "{create}"
    );
    assert!(ok(&run(&["help", "rules", "get", "--table"])).contains("--fields"));

    // Each command's help lists what it takes, no more.
    let list_help = ok(&run(&["agents", "list", "--help"]));
    assert!(list_help.contains("--fields") && list_help.contains("--api-key"));
    assert!(!list_help.contains("--log-format") && !list_help.contains("--verbose"));
    let serve_help = ok(&run(&["serve", "--help"]));
    assert!(serve_help.contains("--log-format") && serve_help.contains("--no-proxy"));
    assert!(!serve_help.contains("--api-key") && !serve_help.contains("--json"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_check_everything_and_change_nothing() {
    let s = Served::start().await;
    let home = Home::new();
    let run = |args: &[&str]| home.onecli(&s).args(args).output().expect("onecli");
    let (agent_id, token) = s.agent("kept").await;
    let secret = json_of(&run(&[
        "secrets",
        "create",
        "--name",
        "A",
        "--type",
        "anthropic",
        "--value",
        "sk-ant-api03-DRY-run-value",
        "--host",
        "api.test",
    ]));
    let secret_id = secret["id"].as_str().expect("id").to_owned();
    let rule = json_of(&run(&[
        "rules", "create", "--name", "r", "--host", "api.test", "--action", "block",
    ]));
    let rule_id = rule["id"].as_str().expect("id").to_owned();
    let before = state(&s).await;

    let creating = json_of(&run(&[
        "secrets",
        "create",
        "--name",
        "B",
        "--type",
        "openai",
        "--value",
        "sk-proj-DRY-never-shown",
        "--host",
        "api.openai.com",
        "--dry-run",
    ]));
    assert_eq!(
        (
            &creating["dry_run"],
            &creating["description"],
            &creating["payload"]["value"]
        ),
        (&json!(true), &json!("Would create secret"), &json!("***"))
    );
    assert_eq!(
        creating["result"]["name"], "B",
        "the service's would-be answer"
    );
    assert!(!creating.to_string().contains("DRY-never-shown"));
    for args in [
        vec![
            "secrets",
            "update",
            "--id",
            &secret_id,
            "--name",
            "A2",
            "--dry-run",
        ],
        vec!["secrets", "delete", "--id", &secret_id, "--dry-run"],
        vec![
            "rules",
            "create",
            "--name",
            "x",
            "--host",
            "*",
            "--action",
            "allow",
            "--dry-run",
        ],
        vec![
            "rules",
            "update",
            "--id",
            &rule_id,
            "--disabled",
            "--dry-run",
        ],
        vec!["rules", "delete", "--id", &rule_id, "--dry-run"],
        vec![
            "agents",
            "create",
            "--name",
            "New",
            "--identifier",
            "new",
            "--dry-run",
        ],
        vec![
            "agents",
            "rename",
            "--id",
            "kept",
            "--name",
            "Renamed",
            "--dry-run",
        ],
        vec![
            "agents",
            "set-secret-mode",
            "kept",
            "selective",
            "--dry-run",
        ],
        vec!["agents", "set-policy-mode", "kept", "deny", "--dry-run"],
        vec![
            "agents",
            "set-secrets",
            "--id",
            "kept",
            "--secret-ids",
            &secret_id,
            "--dry-run",
        ],
        vec!["agents", "regenerate-token", "--id", "kept", "--dry-run"],
        vec!["agents", "delete", "--id", &agent_id, "--dry-run"],
    ] {
        let out = json_of(&run(&args));
        assert_eq!(out["dry_run"], true, "{args:?}: {out}");
        assert!(
            out["description"]
                .as_str()
                .is_some_and(|d| d.starts_with("Would ")),
            "{args:?}: {out}"
        );
    }
    // People get a sentence.
    assert!(
        ok(&run(&["agents", "delete", "kept", "--dry-run", "--table"])).contains("nothing changed")
    );
    assert_eq!(state(&s).await, before, "a dry run changed the store");
    // The agent's token still works: regenerate and delete were not made.
    let mut tunnel = s.tunnel(&token, "api.test").await;
    let resp = crate::harness::request(&mut tunnel, "GET", "/ok", "api.test", &[]).await;
    assert_eq!(
        resp.status, 403,
        "the block rule still applies: {}",
        resp.head
    );

    // What the service would refuse is refused, as the change would be.
    let refused = |args: &[&str], exit: i32| {
        let out = run(args);
        assert_eq!(
            code(&out),
            Some(exit),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    refused(
        &[
            "agents",
            "create",
            "--name",
            "Dup",
            "--identifier",
            "kept",
            "--dry-run",
        ],
        8,
    );
    refused(&["agents", "delete", "--id", "ghost", "--dry-run"], 7);
    refused(
        &[
            "rules",
            "create",
            "--name",
            "x",
            "--host",
            "*",
            "--action",
            "rate_limit",
            "--dry-run",
        ],
        8,
    );
    refused(
        &[
            "secrets",
            "update",
            "--id",
            "no-such-secret",
            "--name",
            "x",
            "--dry-run",
        ],
        7,
    );
    refused(
        &[
            "approvals",
            "approve",
            "--id",
            "no-such-request",
            "--dry-run",
        ],
        7,
    );
    refused(
        &[
            "agents",
            "set-secrets",
            "kept",
            "no-such-secret",
            "--dry-run",
        ],
        8,
    );
    assert_eq!(state(&s).await, before);

    // A held request: a dry approval finds it and leaves it waiting.
    ok(&run(&["rules", "delete", &rule_id]));
    let token = held_agent(&s).await;
    let mut tunnel = s.tunnel(&token, "api.test").await;
    let held = tokio::spawn(async move {
        request_with_body(&mut tunnel, "POST", "/v1/held", "api.test", b"{}").await
    });
    let id = s.pending(1).await.remove(0);
    ok(&run(&["approvals", "approve", &id, "--dry-run"]));
    assert_eq!(
        s.pending(1).await,
        std::slice::from_ref(&id),
        "still waiting"
    );
    ok(&run(&["approvals", "deny", &id]));
    let resp = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("decided")
        .expect("task");
    assert_eq!(resp.status, 403);

    // The local ones: config and auth.
    let config = home.path().join(".onecli/config.json");
    ok(&run(&[
        "config",
        "set",
        "api-host",
        "http://example.test:1",
        "--dry-run",
    ]));
    assert!(!config.exists());
    ok(&run(&["auth", "login", "--dry-run"]));
    assert!(!home.path().join(".onecli/credentials/api-key").exists());
    // A dry run the service cannot do is refused, not made.
    let (status, _) = s.api("POST", "/v1/dry-run/dashboard/links", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_api_key_variable_counts_as_unset() {
    let s = Served::start().await;
    let home = Home::new();
    ok(&home
        .onecli(&s)
        .env_remove("ONECLI_API_KEY")
        .args(["auth", "login", "--api-key", &s.api_key])
        .output()
        .expect("login"));
    let out = home
        .onecli(&s)
        .env("ONECLI_API_KEY", "")
        .args(["agents", "list"])
        .output()
        .expect("list");
    assert!(json_of(&out)["data"].is_array());
    let out = home
        .onecli(&s)
        .env("ONECLI_API_KEY", " ")
        .env("ONECLI_API_HOST", "")
        .args([
            "config",
            "set",
            "api-host",
            &format!("http://127.0.0.1:{}", s.api_port),
        ])
        .output()
        .expect("config");
    ok(&out);
    let out = home
        .onecli(&s)
        .env("ONECLI_API_KEY", "")
        .env("ONECLI_API_HOST", "")
        .args(["auth", "status"])
        .output()
        .expect("status");
    assert_eq!(json_of(&out)["authenticated"], true);
}

/// NanoClaw's setup, step by step as its scripts run it: the CLI with a
/// HOME of its own and no variables, then the SDK it pins.
#[tokio::test(flavor = "multi_thread")]
async fn nanoclaws_setup_sequence_works() {
    let s = Served::start().await;
    let home = Home::new();
    let url = format!("http://127.0.0.1:{}", s.api_port);
    let cli = |args: &[&str]| {
        home.onecli(&s)
            .env_remove("ONECLI_API_HOST")
            .env_remove("ONECLI_API_KEY")
            .env_remove("ONECLI_GATEWAY")
            .args(args)
            .output()
            .expect("onecli")
    };
    let set = json_of(&cli(&["config", "set", "api-host", &url]));
    assert_eq!(
        set,
        json!({ "status": "ok", "key": "api-host", "value": url })
    );
    // NanoClaw reads it back as {data|value}.
    assert_eq!(json_of(&cli(&["config", "get", "api-host"]))["value"], url);
    ok(&cli(&["auth", "login", "--api-key", &s.api_key]));
    const ANTHROPIC: &str = "sk-ant-api03-NANOCLAW-setup-key";
    ok(&cli(&[
        "secrets",
        "create",
        "--name",
        "Anthropic",
        "--type",
        "anthropic",
        "--value",
        ANTHROPIC,
        "--host-pattern",
        "api.anthropic.com",
    ]));
    // Parsed as its scripts do: resp.get('data', resp), then the items.
    let listed = json_of(&cli(&["secrets", "list"]));
    let items = listed.get("data").unwrap_or(&listed);
    assert!(
        items.as_array().is_some_and(|a| a
            .iter()
            .any(|s| s["name"] == "Anthropic" && s["hostPattern"] == "api.anthropic.com")),
        "{listed}"
    );

    // The SDK, 0.5.0, for a group.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/nanoclaw.mjs");
    // The SDK writes the CA where os.tmpdir() says: a folder of this test's.
    let out = Command::new("node")
        .env("TMPDIR", home.path())
        .arg(script)
        .args([&url, &s.api_key, "main-group"])
        .output()
        .expect("node (scripts/setup installs it and the SDK)");
    let v: Value = serde_json::from_slice(&ok_node(&out)).expect("the script prints JSON");
    assert_eq!(v["ensureNew"]["created"], true);
    assert_eq!(v["ensureAgain"]["created"], false);
    assert_eq!(v["applied"], true);
    assert_eq!(
        v["ghost"],
        json!({ "requestError": true, "statusCode": 404 })
    );
    assert_eq!(v["applyGhost"], false, "0.5.0 degrades instead of throwing");
    assert_eq!(
        v["configDefault"]["env"]["ANTHROPIC_API_KEY"],
        "placeholder"
    );
    assert!(v["skill"]
        .as_str()
        .is_some_and(|m| m.contains("`api.anthropic.com` (Anthropic)")));
    let args: Vec<String> = serde_json::from_value(v["args"].clone()).expect("args");
    assert!(
        !args.iter().any(|a| a == "--add-host"),
        "addHostMapping: false"
    );
    let env: std::collections::HashMap<&str, &str> = args
        .windows(2)
        .filter(|w| w[0] == "-e")
        .filter_map(|w| w[1].split_once('='))
        .collect();
    assert_eq!(env.get("NO_PROXY"), Some(&"localhost,127.0.0.1,::1"));
    let mounts: Vec<(&str, &str)> = args
        .windows(2)
        .filter(|w| w[0] == "-v")
        .filter_map(|w| w[1].split_once(':'))
        .collect();
    let ca = mounts
        .iter()
        .find(|(_, inside)| inside.starts_with("/tmp/onecli-gateway-ca.pem"))
        .map(|(host, _)| *host)
        .expect("the CA mounted");

    // The container's view, with host.docker.internal being this host: a
    // real client through the proxy it was given, trusting the CA it was given.
    let proxy = env["HTTPS_PROXY"].replace(
        "host.docker.internal:10255",
        &format!("127.0.0.1:{}", s.gateway_port),
    );
    assert!(proxy.contains("aoc_"), "the group's own token");
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--proxy", &proxy, "--cacert", ca])
        .args(["-H", "x-api-key: placeholder"])
        .arg(format!(
            "https://api.anthropic.com:{}/v1/messages",
            s.origin.port()
        ))
        .output()
        .expect("curl");
    let echo: Value = serde_json::from_slice(&curl.stdout).unwrap_or_else(|_| {
        panic!(
            "{}{}",
            String::from_utf8_lossy(&curl.stdout),
            String::from_utf8_lossy(&curl.stderr)
        )
    });
    assert_eq!(crate::harness::echoed(&echo, "x-api-key"), [ANTHROPIC]);

    // Its approvals client, over /api, deciding a held request.
    let token = held_agent(&s).await;
    let mut sdk = sdk_package(&s, "approve", "sdk-0.5");
    let mut tunnel = s.tunnel(&token, "api.test").await;
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        request_with_body(&mut tunnel, "POST", "/v1/held", "api.test", b"{}"),
    )
    .await
    .expect("approved in time");
    assert_eq!(resp.status, 200, "{}", resp.head);
    assert_eq!(crate::harness::echoed(&resp.json(), "x-api-key"), [KEY]);
    let shown = first_shown(&mut sdk);
    assert_eq!(
        (shown["method"].as_str(), shown["path"].as_str()),
        (Some("POST"), Some("/v1/held"))
    );
    assert_eq!(shown["timeoutSeconds"], 180);
}

fn ok_node(out: &Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_reach_listed_hosts_and_loopback_directly() {
    let s = Served::start_with(&["--no-proxy", "mcp.internal,.corp.example"]).await;
    let home = Home::new();
    let (status, config) = s.api("GET", "/v1/container-config", None).await;
    assert_eq!(status, 200);
    let want = "localhost,127.0.0.1,::1,mcp.internal,.corp.example";
    assert_eq!(
        (
            config["env"]["NO_PROXY"].as_str(),
            config["env"]["no_proxy"].as_str()
        ),
        (Some(want), Some(want))
    );
    let plan = json_of(
        &home
            .onecli(&s)
            .args(["run", "--dry-run", "--", "true"])
            .output()
            .expect("run"),
    );
    assert_eq!(plan["env"]["NO_PROXY"], want);
    assert_eq!(plan["env"]["no_proxy"], want);

    // A local service (an MCP server, say) on loopback: curl run as the
    // agent reaches it directly, and the gateway never sees the request.
    let local = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    local.set_nonblocking(true).expect("nonblocking");
    let port = local.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut conn = loop {
            match local.accept() {
                Ok((conn, _)) => break conn,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return String::from("nothing arrived"),
            }
        };
        conn.set_nonblocking(false).expect("blocking");
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        let _ = conn
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nlocal");
        head
    });
    let out = home
        .onecli(&s)
        .args(["run", "--", "curl", "-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/mcp"))
        .output()
        .expect("onecli run curl");
    assert_eq!(ok(&out), "local");
    let head = server.join().expect("server");
    assert!(
        head.starts_with("GET /mcp "),
        "origin-form: not through a proxy: {head}"
    );

    // Hosts that would turn the gateway off are refused at start.
    for bad in ["*", "a b", "0.0.0.0/0", "::/0", ".com", "."] {
        let out = Command::new(env!("CARGO_BIN_EXE_onecli"))
            .args(["control", "--data-dir"])
            .arg(home.path().join("unused"))
            .args(["--listen", "127.0.0.1:1", "--no-proxy", bad])
            .stdin(Stdio::null())
            .output()
            .expect("onecli control");
        assert_eq!(code(&out), Some(3), "--no-proxy {bad:?}");
    }
    // An empty variable or a trailing comma is no host, not an error.
    let (status, config) = {
        let s = Served::start_with(&["--no-proxy", "mcp.internal, ,"]).await;
        s.api("GET", "/v1/container-config", None).await
    };
    assert_eq!(status, 200);
    assert_eq!(
        config["env"]["NO_PROXY"],
        "localhost,127.0.0.1,::1,mcp.internal"
    );
}

#[test]
fn wildcard_addresses_are_never_handed_out() {
    let home = tempfile::tempdir().expect("tempdir");
    // Refused at start: URLs naming a bind address, or carrying credentials.
    for (flag, value) in [
        ("--public-url", "http://0.0.0.0:10254"),
        ("--public-url", "http://[::]:10254"),
        ("--public-url", "http://user:pass@example.test"),
        ("--public-url", "example.test:10254"),
        ("--container-gateway", "0.0.0.0:10255"),
        ("--dashboard-url", "http://0.0.0.0:10254"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_onecli"))
            .args(["serve", "--data-dir"])
            .arg(home.path().join("data"))
            .args([
                "--listen",
                "127.0.0.1:1",
                "--gateway-listen",
                "127.0.0.1:1",
                flag,
                value,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("onecli serve");
        assert_eq!(
            code(&out),
            Some(3),
            "{flag} {value}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains(flag));
    }

    // Bound to every address with no public URL: it says so at start, and
    // hands out localhost, never 0.0.0.0. In a namespace of its own, so the
    // wildcard bind reaches nothing outside the test.
    let mut ns = Netns::new();
    let log_path = home.path().join("serve.log");
    let serve = ns
        .command(env!("CARGO_BIN_EXE_onecli"))
        .args(["serve", "--data-dir"])
        .arg(home.path().join("data"))
        .args([
            "--listen",
            "0.0.0.0:10254",
            "--gateway-listen",
            "0.0.0.0:10255",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("serve");
    ns.adopt(serve);
    let key_file = home.path().join("data/api-key");
    let get = |path: &str| -> Option<Value> {
        let key = std::fs::read_to_string(&key_file).ok()?;
        let out = ns
            .command("curl")
            .args(["-sf", "--max-time", "5", "-H"])
            .arg(format!("Authorization: Bearer {}", key.trim()))
            .arg(format!("http://127.0.0.1:10254{path}"))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        if let Some(v) = get("/api/gateway-url") {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "never ready: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(url, json!({ "url": "http://localhost:10254" }));
    let config = get("/v1/container-config").expect("container-config");
    assert!(!config.to_string().contains("0.0.0.0"), "{config}");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(log.contains("no --public-url"), "{log}");
}
