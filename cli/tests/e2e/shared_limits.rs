//! Rate limits shared by gateways through Redis (`--rate-limit-store`): one
//! `onecli control`, three `onecli gateway` processes, one `redis-server`.
//! Three agents hit all three gateways at once and get exactly their limit;
//! with Redis killed the gateways keep answering, each with its share, and
//! say so in their metrics; with Redis back on the same port, counting is
//! shared again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onecli_benches::origin::{Origin, Protocols, TestPki};
use serde_json::{json, Value};

use crate::harness::{free_port, http_get, request, tls_tunnel_to, HOSTS};

const KEY_B64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const SECRET: &str = "sk-ant-api03-SHARED-LIMITS-secret";
pub(crate) const REDIS_PASSWORD: &str = "redis-e2e-password-never-logged";
const DEADLINE: Duration = Duration::from_secs(20);
/// Each request's bound while Redis is gone: the gateway waits at most
/// 50 ms on it; the rest is a noisy machine's slack.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

/// A child process, killed and reaped when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `redis-server` on a fixed port of its own, persisting nothing.
pub(crate) struct Redis {
    pub(crate) port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
}

impl Redis {
    pub(crate) fn start(dir: &Path) -> Redis {
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = Redis {
            port: free_port(),
            dir,
            proc: None,
        };
        redis.restart();
        redis
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                REDIS_PASSWORD,
            ])
            .arg("--dir")
            .arg(&self.dir);
        let log = self.dir.join("redis.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): this test needs Debian's redis-server \
                     package; scripts/setup installs it"
                )
            });
        let proc = Proc { child, log };
        let deadline = Instant::now() + DEADLINE;
        while !redis_answers(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server never answered:\n{}",
                proc.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.proc = Some(proc);
    }

    fn kill(&mut self) {
        self.proc = None;
    }
}

fn redis_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut first = [0u8; 1];
    s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok() && s.read_exact(&mut first).is_ok()
}

async fn wait_for(port: u16, path: &str, proc: &Proc) {
    let deadline = Instant::now() + DEADLINE;
    while !matches!(http_get(port, path).await, Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "{path} on {port} never answered 200; log:\n{}",
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

struct Gateway {
    port: u16,
    metrics_port: u16,
    proc: Proc,
}

impl Gateway {
    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = http_get(self.metrics_port, "/metrics").await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Waits until the metric reads `want`.
    async fn wait_metric(&self, name: &str, want: f64) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let got = self.metric(name).await;
            if got == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} on gateway {} is {got:?}, never {want}; log:\n{}",
                self.port,
                self.proc.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Setup {
    dir: tempfile::TempDir,
    origin: Origin,
    api_port: u16,
    api_key: String,
    _control: Proc,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let origin = Origin::start_tls(dir.path(), &HOSTS, Protocols::Both)
            .await
            .expect("origin");
        let api_port = free_port();
        let control_dir = dir.path().join("control");
        let control = Proc::spawn(
            Command::new(env!("CARGO_BIN_EXE_onecli"))
                .args(["control", "--listen", &format!("127.0.0.1:{api_port}")])
                .arg("--data-dir")
                .arg(&control_dir)
                .env("ONECLI_SECRET_KEY", KEY_B64)
                .env("ONECLI_LOG", "debug"),
            dir.path().join("control.log"),
        );
        wait_for(api_port, "/v1/health", &control).await;
        let api_key = std::fs::read_to_string(control_dir.join("api-key"))
            .expect("api-key")
            .trim()
            .to_owned();
        // One CA for the three gateways.
        let ca_dir = control_dir.join("gateway");
        std::fs::create_dir_all(&ca_dir).expect("mkdir");
        let pki = TestPki::new(&["unused.test"]).expect("pki");
        std::fs::write(ca_dir.join("ca.pem"), &pki.ca_pem).expect("ca");
        std::fs::write(ca_dir.join("ca.key"), &pki.ca_key_pem).expect("key");
        Setup {
            dir,
            origin,
            api_port,
            api_key,
            _control: control,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir
            .path()
            .join("control")
            .join("gateway")
            .join("ca.pem")
    }

    async fn gateway(&self, name: &str, store: &str) -> Gateway {
        let (port, metrics_port) = (free_port(), free_port());
        let control_dir = self.dir.path().join("control");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onecli"));
        cmd.arg("gateway")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .arg("--data-dir")
            .arg(self.dir.path().join(name))
            .args([
                "--control-url",
                &format!("http://127.0.0.1:{}", self.api_port),
            ])
            .arg("--gateway-token-file")
            .arg(control_dir.join("gateway-token"))
            .arg("--upstream-ca")
            .arg(self.origin.ca_path.as_ref().expect("TLS origin"))
            .arg("--ca-cert")
            .arg(self.ca())
            .arg("--ca-key")
            .arg(control_dir.join("gateway").join("ca.key"))
            .args(["--threads", "2", "--shutdown-timeout", "1s"])
            .env("ONECLI_RATE_LIMIT_STORE", store)
            // The counts must be exact on a loaded machine: a slow answer
            // must not turn into a fallback. A killed Redis refuses
            // connections at once, so the fallback still answers fast.
            .env("ONECLI_RATE_LIMIT_STORE_TIMEOUT", "5s")
            .env("ONECLI_SECRET_KEY", KEY_B64)
            .env("ONECLI_LOG", "debug");
        for host in HOSTS.iter().filter(|h| **h != "localhost") {
            cmd.args([
                "--resolve",
                &format!("{host}:{}:127.0.0.1", self.origin.port()),
            ]);
        }
        let proc = Proc::spawn(&mut cmd, self.dir.path().join(format!("{name}.log")));
        wait_for(port, "/readyz", &proc).await;
        Gateway {
            port,
            metrics_port,
            proc,
        }
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.api_key);
        crate::served::json_call(self.api_port, method, path, body, Some(&auth)).await
    }

    /// Creates agents and returns their tokens, in order.
    async fn agents(&self, identifiers: &[&str]) -> Vec<String> {
        for id in identifiers {
            let body = json!({ "name": id, "identifier": id });
            let (status, agent) = self.api("POST", "/v1/agents", Some(body)).await;
            assert_eq!(status, 201, "{agent}");
        }
        let (_, list) = self.api("GET", "/v1/agents", None).await;
        identifiers
            .iter()
            .map(|id| {
                list.as_array()
                    .and_then(|l| l.iter().find(|a| a["identifier"] == *id))
                    .and_then(|a| a["accessToken"].as_str())
                    .unwrap_or_else(|| panic!("no token for {id}: {list}"))
                    .to_owned()
            })
            .collect()
    }

    /// One request to `path` on api.test through a gateway: status and
    /// `Retry-After`.
    async fn get(&self, gateway: u16, token: &str, path: &str) -> (u16, Option<u64>) {
        let mut t = tls_tunnel_to(gateway, &self.ca(), token, "api.test", self.origin.port()).await;
        let r = request(&mut t, "GET", path, "api.test", &[]).await;
        (
            r.status,
            r.header("retry-after").and_then(|v| v.parse().ok()),
        )
    }
}

/// `per_gateway` requests to `/limited` by each agent through each gateway,
/// all at once (two kept-alive tunnels per agent and gateway); checks every
/// refusal's `Retry-After` and that each agent got exactly 10 through.
async fn burst(setup: &Setup, gateways: &[u16], tokens: &[String], per_gateway: usize) {
    let started = Instant::now();
    let (ca, origin_port) = (setup.ca(), setup.origin.port());
    let mut tasks = Vec::new();
    for (agent, token) in tokens.iter().enumerate() {
        for &gateway in gateways {
            for half in [per_gateway / 2, per_gateway - per_gateway / 2] {
                let (ca, token) = (ca.clone(), token.clone());
                tasks.push(tokio::spawn(async move {
                    let mut t = tls_tunnel_to(gateway, &ca, &token, "api.test", origin_port).await;
                    let mut statuses = Vec::new();
                    for _ in 0..half {
                        let r = request(&mut t, "GET", "/limited", "api.test", &[]).await;
                        let retry_after =
                            r.header("retry-after").and_then(|v| v.parse::<u64>().ok());
                        statuses.push((r.status, retry_after));
                    }
                    (agent, statuses)
                }));
            }
        }
    }
    let mut passed = vec![0; tokens.len()];
    for task in tasks {
        let (agent, statuses) = task.await.expect("client task");
        for (status, retry_after) in statuses {
            match status {
                200 => passed[agent] += 1,
                429 => assert!(
                    retry_after.is_some_and(|s| (1..=6).contains(&s)),
                    "a slot frees every 6 s: Retry-After {retry_after:?}"
                ),
                other => panic!("status {other}"),
            }
        }
    }
    // 10 a minute is one more every 6 s: a burst slower than that (a very
    // busy machine) rightly lets more through.
    let refilled = (started.elapsed().as_secs() / 6) as usize;
    for (agent, passed) in passed.into_iter().enumerate() {
        assert!(
            (10..=10 + refilled).contains(&passed),
            "agent {agent}: {passed} passed in {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_gateways_share_rate_limits_through_redis_and_survive_its_absence() {
    let setup = Setup::start().await;
    let mut redis = Redis::start(setup.dir.path());
    let mut gateways = Vec::new();
    for name in ["gateway-a", "gateway-b", "gateway-c"] {
        gateways.push(setup.gateway(name, &redis.url()).await);
    }
    let ports: Vec<u16> = gateways.iter().map(|g| g.port).collect();
    let tokens = setup
        .agents(&["one", "two", "three", "during", "after"])
        .await;

    // The rule before the secret: a gateway that injects the secret holds the rule.
    let rule = json!({ "name": "ten a minute", "hostPattern": "api.test", "pathPattern": "/limited",
        "action": "rate_limit", "rateLimit": 10, "rateLimitWindow": "minute", "enabled": true });
    assert_eq!(setup.api("POST", "/v1/rules", Some(rule)).await.0, 201);
    let secret =
        json!({ "name": "A", "type": "anthropic", "value": SECRET, "hostPattern": "api.test" });
    assert_eq!(setup.api("POST", "/v1/secrets", Some(secret)).await.0, 201);
    for gateway in &gateways {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut t = tls_tunnel_to(
                gateway.port,
                &setup.ca(),
                &tokens[0],
                "api.test",
                setup.origin.port(),
            )
            .await;
            let r = request(&mut t, "GET", "/v1/messages", "api.test", &[]).await;
            if crate::harness::echoed(&r.json(), "x-api-key") == [SECRET] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gateway {} never got the policy",
                gateway.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        gateway
            .wait_metric("onecli_gateway_rate_limit_gateways", 3.0)
            .await;
    }

    // Three agents, 30 requests each over three gateways at once: exactly 10 pass.
    burst(&setup, &ports, &tokens[..3], 10).await;
    for gateway in &gateways {
        assert_eq!(
            gateway
                .metric("onecli_gateway_rate_limit_fallback_total")
                .await,
            Some(0.0)
        );
        assert_eq!(
            gateway
                .metric("onecli_gateway_rate_limit_store_in_use")
                .await,
            Some(1.0)
        );
    }

    // Redis goes away: every request is still answered, quickly, counted by
    // the gateway alone with its share (10 / 3 gateways = 3).
    redis.kill();
    let a = &gateways[0];
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let (status, retry_after) = setup.get(a.port, &tokens[3], "/limited").await;
        let took = started.elapsed();
        assert!(
            took < ANSWER_BOUND,
            "a request took {took:?} with Redis gone"
        );
        statuses.push((status, retry_after.is_some()));
    }
    assert_eq!(
        statuses,
        [
            (200, false),
            (200, false),
            (200, false),
            (429, true),
            (429, true),
            (429, true)
        ]
    );
    assert_eq!(
        a.metric("onecli_gateway_rate_limit_fallback_total").await,
        Some(6.0)
    );
    for gateway in &gateways {
        gateway
            .wait_metric("onecli_gateway_rate_limit_store_in_use", 0.0)
            .await;
    }

    // Redis returns on the same port: counting is shared there again.
    redis.restart();
    for gateway in &gateways {
        gateway
            .wait_metric("onecli_gateway_rate_limit_store_in_use", 1.0)
            .await;
    }
    burst(&setup, &ports, &tokens[4..], 10).await;
    for (gateway, fallbacks) in gateways.iter().zip([6.0, 0.0, 0.0]) {
        assert_eq!(
            gateway
                .metric("onecli_gateway_rate_limit_fallback_total")
                .await,
            Some(fallbacks)
        );
    }

    // Each switch was said once, and nothing secret was.
    let log = a.proc.log();
    assert_eq!(
        log.matches("rate-limit store unavailable").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("rate-limit store answers again").count(),
        1,
        "{log}"
    );
    for gateway in &gateways {
        let log = gateway.proc.log();
        assert!(log.contains("rate limits counted in the shared store"));
        assert!(!log.contains(REDIS_PASSWORD), "the Redis password in a log");
        assert!(!log.contains(SECRET), "a secret in a log");
        for token in &tokens {
            assert!(!log.contains(token.as_str()), "a token in a log");
        }
    }
}

#[test]
fn a_bad_store_url_stops_the_gateway_with_a_clear_error_and_no_password() {
    let out = Command::new(env!("CARGO_BIN_EXE_onecli"))
        .args(["gateway", "--policy", "/nonexistent.toml"])
        .args(["--rate-limit-store", "redis://:hunter2@127.0.0.1:port"])
        .stdin(Stdio::null())
        .output()
        .expect("onecli");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--rate-limit-store: bad port"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
