//! How long a change made through the API takes to be enforced by every
//! gateway (SPEC §4.3, BENCH.md): `onecli control`, N gateways subscribed to
//! it, a block rule created per round, and each gateway probed through an
//! open keep-alive tunnel until it answers 403.
//!
//! Also the CPU time the control service and the gateways spend per change
//! (from `/proc/PID/stat`, so Linux only), for capacity planning.
//!
//! `propagation [--onecli PATH] [--gateways N] [--changes N]`
//! (defaults: target/release/onecli, 3 gateways, 200 changes). Loopback only.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use boring::ssl::{SslConnector, SslMethod};
use onecli_benches::origin::{Origin, Protocols, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY_B64: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const HOST: &str = "bench.test";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User + system CPU time of a process so far, from `/proc/PID/stat`.
fn cpu_time(pid: u32, ticks_per_second: f64) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields count from after its `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("stat format")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(Duration::from_secs_f64(ticks / ticks_per_second))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), 100 if unknown.
fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn spawn(onecli: &Path, args: &[String]) -> anyhow::Result<Killed> {
    let child = Command::new(onecli)
        .args(args)
        .env("ONECLI_SECRET_KEY", KEY_B64)
        .env("ONECLI_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", onecli.display()))?;
    Ok(Killed(child))
}

/// One HTTP/1.1 exchange; returns (status, body).
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    request: &str,
) -> anyhow::Result<(u16, Vec<u8>)> {
    s.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await? == 0 {
            bail!("connection closed");
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).await?;
    Ok((status, body))
}

async fn wait_http(port: u16, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
            if let Ok((200, _)) =
                exchange(&mut s, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await
            {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("127.0.0.1:{port}{path} never became ready");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn api(
    port: u16,
    key: &str,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = exchange(&mut s, &req).await?;
    if status >= 300 {
        bail!(
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

type Tunnel = tokio_boring::SslStream<TcpStream>;

async fn tunnel(port: u16, ca: &Path, token: &str, origin_port: u16) -> anyhow::Result<Tunnel> {
    use base64::Engine;
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("x:{token}"));
    let connect = format!("CONNECT {HOST}:{origin_port} HTTP/1.1\r\nHost: {HOST}\r\nProxy-Authorization: Basic {auth}\r\n\r\n");
    let (status, _) = exchange(&mut tcp, &connect).await?;
    if status != 200 {
        bail!("CONNECT answered {status}");
    }
    let mut b = SslConnector::builder(SslMethod::tls())?;
    b.set_ca_file(ca)?;
    b.set_alpn_protos(b"\x08http/1.1")?;
    Ok(tokio_boring::connect(b.build().configure()?, HOST, tcp).await?)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let onecli = PathBuf::from(arg("--onecli").unwrap_or_else(|| "target/release/onecli".into()));
    let gateways: usize = arg("--gateways")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(3);
    let changes: usize = arg("--changes")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(200);
    let dir = tempfile::tempdir()?;
    let origin = Origin::start_tls(dir.path(), &[HOST], Protocols::Both).await?;
    let origin_ca = origin.ca_path.clone().context("TLS origin")?;
    let pki = TestPki::new(&["unused.test"])?;
    let (ca, ca_key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    std::fs::write(&ca, &pki.ca_pem)?;
    std::fs::write(&ca_key, &pki.ca_key_pem)?;

    let api_port = free_port()?;
    let control_dir = dir.path().join("control");
    let _control = spawn(
        &onecli,
        &[
            "control".into(),
            "--listen".into(),
            format!("127.0.0.1:{api_port}"),
            "--data-dir".into(),
            control_dir.display().to_string(),
            "--ca-cert".into(),
            ca.display().to_string(),
        ],
    )?;
    wait_http(api_port, "/v1/health").await?;
    let key = std::fs::read_to_string(control_dir.join("api-key"))?
        .trim()
        .to_owned();
    let token_file = control_dir.join("gateway-token");

    let mut procs = Vec::new();
    let mut ports = Vec::new();
    for i in 0..gateways {
        let port = free_port()?;
        procs.push(spawn(
            &onecli,
            &[
                "gateway".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--data-dir".into(),
                dir.path().join(format!("gw{i}")).display().to_string(),
                "--control-url".into(),
                format!("http://127.0.0.1:{api_port}"),
                "--gateway-token-file".into(),
                token_file.display().to_string(),
                "--ca-cert".into(),
                ca.display().to_string(),
                "--ca-key".into(),
                ca_key.display().to_string(),
                "--upstream-ca".into(),
                origin_ca.display().to_string(),
                "--resolve".into(),
                format!("{HOST}:{}:127.0.0.1", origin.port()),
            ],
        )?);
        ports.push(port);
    }
    for &port in &ports {
        wait_http(port, "/readyz").await?;
    }
    api(
        api_port,
        &key,
        "POST",
        "/v1/agents",
        r#"{"name":"Bench","identifier":"bench"}"#,
    )
    .await?;
    let agents = api(api_port, &key, "GET", "/v1/agents", "").await?;
    let token = agents[0]["accessToken"]
        .as_str()
        .context("token")?
        .to_owned();
    // Let the agent reach every gateway before the clock starts.
    let mut tunnels = Vec::new();
    for &port in &ports {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tunnel(port, &ca, &token, origin.port()).await {
                Ok(t) => {
                    tunnels.push(t);
                    break;
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    let ticks = ticks_per_second();
    let control_pid = _control.0.id();
    let gateway_pids: Vec<u32> = procs.iter().map(|p| p.0.id()).collect();
    let control_before = cpu_time(control_pid, ticks)?;
    let mut gateways_before = Duration::ZERO;
    for &pid in &gateway_pids {
        gateways_before += cpu_time(pid, ticks)?;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(changes * gateways);
    for round in 0..changes {
        let path = format!("/probe-{round}");
        let rule = format!(
            r#"{{"name":"r{round}","hostPattern":"{HOST}","pathPattern":"{path}","action":"block","enabled":true}}"#
        );
        let start = Instant::now();
        api(api_port, &key, "POST", "/v1/rules", &rule).await?;
        for t in tunnels.iter_mut() {
            let deadline = start + Duration::from_secs(10);
            loop {
                let (status, _) =
                    exchange(t, &format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n")).await?;
                if status == 403 {
                    samples.push(start.elapsed());
                    break;
                }
                if Instant::now() > deadline {
                    bail!("a gateway never enforced rule {round}");
                }
            }
        }
    }
    let control_cpu = cpu_time(control_pid, ticks)? - control_before;
    let mut gateways_cpu = Duration::ZERO;
    for &pid in &gateway_pids {
        gateways_cpu += cpu_time(pid, ticks)?;
    }
    let gateways_cpu = gateways_cpu - gateways_before;
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "propagation to {gateways} gateways, {changes} changes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (from the API call to a 403 at the gateway)",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().context("samples")?)
    );
    println!(
        "CPU per change: control service {:.2} ms, each gateway {:.2} ms on average (user + system, clock ticks of 1/{ticks} s)",
        ms(control_cpu) / changes as f64,
        ms(gateways_cpu) / (changes * gateways) as f64,
    );
    Ok(())
}
