//! `onecli run` (SPEC §7, COMPAT.md §`onecli run`) against `onecli serve`,
//! with HOME in a temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::served::{Home, Served};

const KEY: &str = "sk-ant-api03-RUN-SECRET-key";

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("exists").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_the_plan_and_writes_nothing() {
    let s = Served::start().await;
    let home = Home::new();
    home.stub("claude");
    let out = ok(&home
        .onecli(&s)
        .args(["run", "--dry-run", "--", "claude", "--resume"])
        .output()
        .expect("run"));
    let plan: Value = serde_json::from_str(&out).expect("json plan");
    assert_eq!(plan["dry_run"], true);
    assert_eq!(
        plan["binary"],
        home.path().join("bin/claude").display().to_string()
    );
    assert_eq!(plan["args"], json!(["--resume"]));
    assert_eq!(plan["agent"], "default");
    assert_eq!(plan["gateway"], format!("127.0.0.1:{}", s.gateway_port));
    assert_eq!(
        plan["env"]["HTTPS_PROXY"],
        format!("http://x:aoc_****@127.0.0.1:{}", s.gateway_port)
    );
    assert_eq!(plan["env"]["ANTHROPIC_API_KEY"], "placeholder");
    let purposes: Vec<&str> = plan["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["purpose"].as_str())
        .collect();
    assert_eq!(purposes, ["ca", "ca-bundle", "skill"]);
    assert!(
        !out.contains("aoc_0") && !out.contains(&s.api_key),
        "a token in the plan"
    );
    assert!(
        !home.path().join(".onecli").exists() && !home.path().join(".claude").exists(),
        "dry run wrote files"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_gets_the_environment_and_files() {
    let s = Served::start().await;
    let home = Home::new();
    let out = ok(&home
        .onecli(&s)
        .args(["run", "--", "sh", "-c", "env"])
        .output()
        .expect("run"));
    let env: std::collections::HashMap<&str, &str> =
        out.lines().filter_map(|l| l.split_once('=')).collect();
    let (_, default) = s.api("GET", "/v1/agents/default", None).await;
    let token = default["accessToken"].as_str().expect("token");
    let proxy = format!("http://x:{token}@127.0.0.1:{}", s.gateway_port);
    for var in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        assert_eq!(env.get(var), Some(&proxy.as_str()), "{var}");
    }
    let onecli = home.path().join(".onecli");
    let (ca, bundle) = (onecli.join("gateway-ca.pem"), onecli.join("ca-bundle.pem"));
    assert_eq!(
        env.get("NODE_EXTRA_CA_CERTS"),
        Some(&ca.to_str().expect("utf8"))
    );
    for var in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "DENO_CERT",
        "AWS_CA_BUNDLE",
        "CARGO_HTTP_CAINFO",
    ] {
        assert_eq!(env.get(var), Some(&bundle.to_str().expect("utf8")), "{var}");
    }
    assert_eq!(env.get("NO_PROXY"), Some(&"localhost,127.0.0.1,::1"));
    assert_eq!(env.get("no_proxy"), Some(&"localhost,127.0.0.1,::1"));
    assert_eq!(env.get("ONECLI_AGENT_NAME"), Some(&"default"));
    assert_eq!(
        env.get("ONECLI_URL"),
        Some(&format!("http://127.0.0.1:{}", s.api_port).as_str())
    );
    assert_eq!(
        env.get("ANTHROPIC_API_KEY"),
        None,
        "placeholders only for agents that need them"
    );
    assert_eq!((mode(&onecli), mode(&ca)), (0o700, 0o600));
    // The bundle holds every system root plus the gateway CA.
    let ca_pem = std::fs::read_to_string(&ca).expect("ca");
    assert_eq!(
        ca_pem,
        std::fs::read_to_string(s.gateway_ca()).expect("gateway ca")
    );
    let bundle_pem = std::fs::read_to_string(&bundle).expect("bundle");
    let system =
        std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").expect("system bundle");
    let count = |pem: &str| pem.matches("-----BEGIN CERTIFICATE-----").count();
    assert_eq!(count(&bundle_pem), count(&system) + 1);
    assert!(bundle_pem.contains(ca_pem.trim()));
    // Variables the user set for these keys are replaced; the rest inherited.
    let out = ok(&home
        .onecli(&s)
        .env("HTTPS_PROXY", "http://elsewhere:1")
        .env("MY_VAR", "kept")
        .args(["run", "--", "sh", "-c", "echo $HTTPS_PROXY $MY_VAR"])
        .output()
        .expect("run"));
    assert_eq!(out.trim(), format!("{proxy} kept"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_owns_the_exit_code_and_the_signals() {
    let s = Served::start().await;
    let home = Home::new();
    let out = home
        .onecli(&s)
        .args(["run", "--", "sh", "-c", "exit 7"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(7));
    // exec: the PID onecli started with is the command's.
    let mut child = home
        .onecli(&s)
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo $$; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("pid line");
    assert_eq!(
        line.trim().parse::<u32>().ok(),
        Some(child.id()),
        "the command runs in onecli's process"
    );
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the signal never reached the command"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(42));
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_failures_with_distinct_exit_codes() {
    let s = Served::start().await;
    let home = Home::new();
    let code = |cmd: &mut Command| cmd.output().expect("run").status.code();
    assert_eq!(
        code(home.onecli(&s).args(["run", "--", "no-such-command-here"])),
        Some(9)
    );
    assert_eq!(
        code(
            home.onecli(&s)
                .env("ONECLI_API_HOST", "http://127.0.0.1:9")
                .args(["run", "--", "true"])
        ),
        Some(5)
    );
    assert_eq!(
        code(
            home.onecli(&s)
                .env("ONECLI_API_KEY", "oc_wrong")
                .args(["run", "--", "true"])
        ),
        Some(6)
    );
    assert_eq!(
        code(
            home.onecli(&s)
                .env_remove("ONECLI_API_KEY")
                .args(["run", "--", "true"])
        ),
        Some(6)
    );
    let out = home
        .onecli(&s)
        .args(["--json", "run", "--agent", "ghost", "--", "true"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(7));
    let error: Value = serde_json::from_slice(&out.stderr).expect("json error");
    assert_eq!(error["code"], "not_found");
    assert!(error["error"].as_str().is_some_and(|e| e.contains("ghost")));
}

#[tokio::test(flavor = "multi_thread")]
async fn known_agents_get_their_skill_file() {
    let s = Served::start().await;
    let secret = json!({ "name": "Anthropic", "type": "anthropic", "value": KEY, "hostPattern": "api.anthropic.com" });
    assert_eq!(s.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    let home = Home::new();
    let cases = [
        ("claude", ".claude/skills"),
        ("cursor", ".cursor/skills"),
        ("agent", ".cursor/skills"),
        ("codex", ".agents/skills"),
        ("hermes", ".hermes/skills"),
        ("opencode", ".opencode/skills"),
    ];
    for (name, dir) in cases {
        home.stub(name);
        ok(&home
            .onecli(&s)
            .args(["run", "--", name])
            .output()
            .expect("run"));
        let skill: PathBuf = home
            .path()
            .join(dir)
            .join("onecli-gateway")
            .join("SKILL.md");
        let text = std::fs::read_to_string(&skill)
            .unwrap_or_else(|_| panic!("{name}: no skill at {}", skill.display()));
        assert!(text.starts_with("---\nname: onecli-gateway\n"), "{name}");
        assert!(
            text.contains("`api.anthropic.com` (Anthropic)"),
            "{name}: {text}"
        );
        assert!(!text.contains(KEY));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_and_python_reach_the_origin_with_the_credential() {
    let s = Served::start().await;
    let secret =
        json!({ "name": "A", "type": "anthropic", "value": KEY, "hostPattern": "api.test" });
    assert_eq!(s.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    let home = Home::new();
    let url = format!("https://api.test:{}/v1/messages", s.origin.port());
    let out = ok(&home
        .onecli(&s)
        .args(["run", "--", "curl", "-sS", &url])
        .output()
        .expect("run"));
    let body: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(crate::harness::echoed(&body, "x-api-key"), [KEY]);
    let script = "import sys, requests; print(requests.get(sys.argv[1], timeout=20).text)";
    let out = ok(&home
        .onecli(&s)
        .args(["run", "--", "python3", "-c", script, &url])
        .output()
        .expect("run"));
    let body: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(crate::harness::echoed(&body, "x-api-key"), [KEY]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operators_keys_never_reach_the_agent() {
    let s = Served::start().await;
    let home = Home::new();
    // The CLI itself is given the admin key this way (Home::onecli).
    let out = ok(&home
        .onecli(&s)
        .env(
            "ONECLI_SECRET_KEY",
            "c2VjcmV0LWtleS1vZi10aGUtb3BlcmF0b3ItMzJieXRl",
        )
        .env("ONECLI_GATEWAY_TOKEN_FILE", "/srv/onecli/gateway-token")
        .env("ONECLI_SECRET_KEY_FILE", "/run/secrets/onecli")
        .env("ONECLI_LOG", "kept")
        // A real provider key in the operator's shell is not inherited.
        .env("ANTHROPIC_API_KEY", "sk-ant-api03-OPERATORS-REAL-KEY")
        .env("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-OPERATORS-REAL-KEY")
        .args(["run", "--", "sh", "-c", "env"])
        .output()
        .expect("run"));
    for name in [
        "ONECLI_API_KEY",
        "ONECLI_SECRET_KEY",
        "ONECLI_GATEWAY_TOKEN_FILE",
        "ONECLI_SECRET_KEY_FILE",
    ] {
        assert!(
            !out.lines().any(|l| l.starts_with(&format!("{name}="))),
            "{name} reached the agent"
        );
    }
    assert!(!out.contains(&s.api_key), "the admin key reached the agent");
    assert!(
        !out.contains("OPERATORS-REAL-KEY"),
        "a provider key reached the agent"
    );
    assert!(
        out.lines().any(|l| l == "ANTHROPIC_API_KEY=placeholder"),
        "{out}"
    );
    assert!(out.lines().any(|l| l == "ONECLI_LOG=kept"));
    // The dry run says what it takes away, never the values.
    let plan = ok(&home
        .onecli(&s)
        .args(["run", "--dry-run", "--", "sh"])
        .output()
        .expect("dry run"));
    let plan: Value = serde_json::from_str(&plan).expect("json");
    assert!(plan["removed"]
        .as_array()
        .is_some_and(|r| r.iter().any(|n| n == "ONECLI_API_KEY")));
    assert!(!plan.to_string().contains(&s.api_key));
}
