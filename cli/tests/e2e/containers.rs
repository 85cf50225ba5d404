//! The container image (`deploy/Dockerfile`) run with Podman as users run it
//! with Docker, and the NanoClaw topology: an agent container started with
//! exactly the arguments the official SDK returns, behind the gateway
//! container. `scripts/test-deploy` builds the images and names them in
//! the environment, then runs these; they are ignored otherwise.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{echoed, free_port, http_get};
use crate::served::raw_call;

const ANTHROPIC: &str = "sk-ant-api03-CONTAINER-test-key";
const GITHUB: &str = "ghp_CONTAINER_durable_value";

fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: run scripts/test-deploy"))
}

/// `podman` with the runtime and limits these machines need (CONTAINERS.md).
fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(["--runtime", "runc"])
        .args(args)
        .output()
        .expect("podman (scripts/test-deploy installs it)")
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
];

/// What a test made, removed when it ends however it ends.
struct Made {
    containers: Vec<String>,
    volumes: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = podman(&["rm", "-f", "-t", "0", c]);
        }
        for v in &self.volumes {
            let _ = podman(&["volume", "rm", "-f", v]);
        }
        for n in &self.networks {
            let _ = podman(&["network", "rm", "-f", n]);
        }
    }
}

/// Polls the control API and the gateway from the host until both answer.
async fn wait_ready(api: u16, gateway: u16, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = http_get(api, "/v1/health").await.map(|r| r.0).ok();
        let ready = http_get(gateway, "/readyz").await.map(|r| r.0).ok();
        if health == Some(200) && ready == Some(200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the container never got ready ({health:?}, {ready:?}): {}",
            String::from_utf8_lossy(&podman(&["logs", name]).stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn api(port: u16, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let (status, text) =
        raw_call(port, method, path, body.map(|b| b.to_string()), Some(&auth)).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The lists a restart must keep.
async fn state(port: u16, key: &str) -> Value {
    let (_, ca) = raw_call(port, "GET", "/v1/gateway/ca", None, None).await;
    json!({
        "ca": ca,
        "agents": api(port, key, "GET", "/v1/agents", None).await.1,
        "secrets": api(port, key, "GET", "/v1/secrets", None).await.1,
    })
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the images: scripts/test-deploy"]
async fn the_image_and_the_nanoclaw_topology() {
    let image = need("ONECLI_TEST_IMAGE");
    let clients = need("ONECLI_TEST_CLIENTS_IMAGE");
    let origin_bin = need("ONECLI_TEST_ORIGIN");
    let tag = format!("onecli-ci-{}", std::process::id());
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut made = Made {
        containers: Vec::new(),
        volumes: Vec::new(),
        networks: Vec::new(),
    };

    // A network of the test's own, with a TLS origin answering for
    // api.anthropic.com and api.test in it.
    podman_ok(&["network", "create", &tag]);
    made.networks.push(tag.clone());
    let origin = format!("{tag}-origin");
    let origin_dir = tmp.path().join("origin");
    std::fs::create_dir_all(&origin_dir).expect("origin dir");
    let bin_mount = format!("{origin_bin}:/usr/local/bin/onecli-origin:ro");
    let dir_mount = format!("{}:/out", origin_dir.display());
    let mut args = vec!["run", "-d", "--name", &origin, "--network", &tag];
    args.extend([
        "--network-alias",
        "api.anthropic.com",
        "--network-alias",
        "api.test",
    ]);
    args.extend(LIMITS);
    args.extend(["-v", &bin_mount, "-v", &dir_mount, &clients]);
    args.extend(["onecli-origin", "--dir", "/out", "--listen", "0.0.0.0:8443"]);
    args.extend(["api.anthropic.com", "api.test"]);
    podman_ok(&args);
    made.containers.push(origin.clone());
    let origin_ca = origin_dir.join("origin-ca.pem");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !podman_ok(&["logs", &origin]).contains("0.0.0.0:8443") {
        assert!(Instant::now() < deadline, "the origin never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The gateway is pinned to the origin's address: name resolution on a
    // fresh Podman network was seen to lag, and it is not what is tested.
    let ip_of = |name: &str| {
        podman_ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{tag}\").IPAddress}}}}"),
            name,
        ])
    };
    let origin_ip = ip_of(&origin);
    let pins: Vec<String> = ["api.anthropic.com", "api.test"]
        .iter()
        .map(|h| format!("{h}:8443:{origin_ip}"))
        .collect();

    // The image as users run it: published ports, a named volume.
    let (api_port, gw_port) = (free_port(), free_port());
    let volume = format!("{tag}-data");
    made.volumes.push(volume.clone());
    let publish_api = format!("127.0.0.1:{api_port}:10254");
    let publish_gw = format!("127.0.0.1:{gw_port}:10255");
    let data = format!("{volume}:/app/data");
    let ca_mount = format!("{}:/origin-ca.pem:ro", origin_ca.display());
    let public = format!("ONECLI_PUBLIC_URL=http://127.0.0.1:{api_port}");
    let mut args = vec!["run", "-d", "--name", &tag, "--network", &tag];
    args.extend(LIMITS);
    args.extend([
        "-p",
        &publish_api,
        "-p",
        &publish_gw,
        "-v",
        &data,
        "-v",
        &ca_mount,
    ]);
    args.extend(["-e", &public, &image]);
    // Appended to the entrypoint's `onecli serve`: trust the test origin,
    // and reach it at its private address (pinned addresses pass the
    // egress guard).
    args.extend(["--upstream-ca", "/origin-ca.pem"]);
    for pin in &pins {
        args.extend(["--resolve", pin]);
    }
    podman_ok(&args);
    made.containers.push(tag.clone());
    wait_ready(api_port, gw_port, &tag).await;
    assert_eq!(podman(&["healthcheck", "run", &tag]).status.code(), Some(0));
    let status = podman_ok(&["exec", &tag, "cat", "/proc/1/status"]);
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .expect("Uid");
    assert_eq!(uid, "10001", "onecli runs as a non-root user");
    let key = podman_ok(&["exec", &tag, "cat", "/app/data/api-key"]);
    let anthropic = json!({ "name": "Anthropic", "type": "anthropic", "value": ANTHROPIC, "hostPattern": "api.anthropic.com" });
    assert_eq!(
        api(api_port, &key, "POST", "/v1/secrets", Some(anthropic))
            .await
            .0,
        201
    );

    // The SDK's arguments for an agent container, run as they are: only
    // Docker's host-gateway (which Podman 4.3 rejects) becomes the gateway
    // container's address, as host.docker.internal is on a Docker host.
    let sdk_tmp = tmp.path().join("sdk");
    std::fs::create_dir_all(&sdk_tmp).expect("sdk tmp");
    let node_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node");
    let out = Command::new("node")
        .env("TMPDIR", &sdk_tmp)
        .arg(format!("{node_dir}/container-args.mjs"))
        .args([
            &format!("http://127.0.0.1:{api_port}"),
            &key,
            "nanoclaw-main",
        ])
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sdk_args: Vec<String> = serde_json::from_slice(&out.stdout).expect("args");
    let joined = sdk_args.join(" ");
    assert!(
        joined.contains("--add-host host.docker.internal:host-gateway"),
        "{joined}"
    );
    assert!(
        !joined.contains(&key) && !joined.contains(ANTHROPIC),
        "a credential in the agent's arguments"
    );
    let gateway_ip = ip_of(&tag);
    let host_mapping = format!("host.docker.internal:{gateway_ip}");
    let sdk_args: Vec<String> = sdk_args
        .into_iter()
        .map(|a| {
            if a == "host.docker.internal:host-gateway" {
                host_mapping.clone()
            } else {
                a
            }
        })
        .collect();

    // The agent: curl, Python and Node, with the proxy and CA it was given.
    let url = "https://api.anthropic.com:8443/v1/messages";
    let script = format!(
        "set -e; echo '== curl'; curl -sS --max-time 20 -H 'x-api-key: placeholder' {url}; echo; \
         echo '== python'; python3 -c \"import urllib.request as u; \
         print(u.urlopen(u.Request('{url}', headers={{'x-api-key': 'placeholder'}}), timeout=20).read().decode())\"; \
         echo '== node'; node /opt/node/agent-clients.mjs {url}; echo '== env'; env"
    );
    let node_bin = which("node");
    let node_mount = format!("{}:/usr/local/bin/node:ro", node_bin.display());
    let modules = format!("{node_dir}/node_modules:/opt/node/node_modules:ro");
    let clients_js = format!("{node_dir}/agent-clients.mjs:/opt/node/agent-clients.mjs:ro");
    let agent = format!("{tag}-agent");
    let mut args: Vec<&str> = vec!["run", "--rm", "--name", &agent, "--network", &tag];
    args.extend(LIMITS);
    args.extend(sdk_args.iter().map(String::as_str));
    args.extend([
        "-v",
        &node_mount,
        "-v",
        &modules,
        "-v",
        &clients_js,
        &clients,
        "sh",
        "-c",
        &script,
    ]);
    made.containers.push(agent.clone());
    let out = Command::new("timeout")
        .arg("120")
        .args(["podman", "--runtime", "runc"])
        .args(&args)
        .output()
        .expect("agent container");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}\nthe gateway's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&podman(&["logs", &tag]).stderr)
    );
    let section = |name: &str| -> &str {
        let start = text.find(&format!("== {name}\n")).expect(name) + name.len() + 4;
        let end = text[start..]
            .find("\n== ")
            .map_or(text.len(), |e| start + e);
        &text[start..end]
    };
    for client in ["curl", "python", "node"] {
        let echo: Value = serde_json::from_str(section(client).trim())
            .unwrap_or_else(|_| panic!("{client}: {}", section(client)));
        assert_eq!(echoed(&echo, "x-api-key"), [ANTHROPIC], "{client}");
    }
    let env = section("env");
    assert!(env.contains("HTTPS_PROXY=http://x:aoc_"), "{env}");
    assert!(
        !env.contains(ANTHROPIC) && !env.contains(&key),
        "the agent holds only its proxy token"
    );

    // An acknowledged write survives kill -9.
    let github = json!({ "name": "GitHub", "type": "generic", "value": GITHUB, "hostPattern": "api.test",
        "injectionConfig": { "headerName": "Authorization", "valueFormat": "Bearer {value}" } });
    assert_eq!(
        api(api_port, &key, "POST", "/v1/secrets", Some(github))
            .await
            .0,
        201
    );
    let before = state(api_port, &key).await;
    podman_ok(&["kill", "-s", "KILL", &tag]);
    podman_ok(&["start", &tag]);
    wait_ready(api_port, gw_port, &tag).await;
    assert_eq!(state(api_port, &key).await, before, "lost by kill -9");

    // A stop is a clean exit on SIGTERM, well inside the grace period; the
    // CA, agents and secrets are the same after a start.
    let started = Instant::now();
    podman_ok(&["stop", "-t", "30", &tag]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stop took {:?}",
        started.elapsed()
    );
    assert_eq!(
        podman_ok(&["inspect", "-f", "{{.State.ExitCode}}", &tag]),
        "0"
    );
    podman_ok(&["start", &tag]);
    wait_ready(api_port, gw_port, &tag).await;
    assert_eq!(state(api_port, &key).await, before, "changed by a restart");
    let size: u64 = podman_ok(&["exec", &tag, "stat", "-c", "%s", "/usr/local/bin/onecli"])
        .parse()
        .expect("size");
    assert!(size < 60 << 20, "the binary in the image is {size} bytes");
    let data_mode = podman_ok(&["exec", &tag, "stat", "-c", "%a %u", "/app/data"]);
    assert_eq!(data_mode, "700 10001");
}

fn which(program: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} not on PATH"))
}
