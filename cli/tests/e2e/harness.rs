//! Starts the real `onecli` binary against a TLS origin we run, and drives
//! it with real clients. Readiness is polled with a deadline, never slept.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use boring::ssl::{SslConnector, SslMethod};
use onecli_benches::origin::{Origin, Protocols};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TOKEN_ALL: &str = "aoc_00000000000000000000000000000000000000000000000000000000000000a1";
pub const TOKEN_RULED: &str =
    "aoc_00000000000000000000000000000000000000000000000000000000000000c3";
pub const TOKEN_PICKY: &str =
    "aoc_00000000000000000000000000000000000000000000000000000000000000b2";
pub const ANTHROPIC_KEY: &str = "sk-ant-api03-SECRET-anthropic-key";
pub const ANTHROPIC_OAUTH: &str = "sk-ant-oat01-SECRET-oauth-token";
pub const OPENAI_KEY: &str = "sk-proj-SECRET-openai";
pub const GITHUB_TOKEN: &str = "ghp_SECRET_github";
pub const QUERY_KEY: &str = "SECRET-query-key";
pub const PLAIN_KEY: &str = "SECRET-plain-key";
pub const ALL_TOKENS: [&str; 3] = [TOKEN_ALL, TOKEN_PICKY, TOKEN_RULED];
pub const ALL_SECRETS: [&str; 6] = [
    ANTHROPIC_KEY,
    ANTHROPIC_OAUTH,
    OPENAI_KEY,
    GITHUB_TOKEN,
    QUERY_KEY,
    PLAIN_KEY,
];

/// Hosts on the origin's certificate, all pinned to it with --resolve.
pub const HOSTS: [&str; 18] = [
    "api.test",
    // `onecli-load --hosts 3` spreads over these.
    "n0.api.test",
    "n1.api.test",
    "n2.api.test",
    "oauth.test",
    "openai.test",
    "generic.test",
    "query.test",
    "other.test",
    "pinned.test",
    "new.test",
    "dead.test",
    "localhost",
    "gmail.googleapis.com",
    "api.github.com",
    "slack.com",
    "en.wikipedia.org",
    // NanoClaw's setup stores its Anthropic key for this host.
    "api.anthropic.com",
];

const DEADLINE: Duration = Duration::from_secs(20);

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn policy(github_token: &str, plain_port: u16) -> String {
    format!(
        r#"
passthrough_hosts = ["pinned.test", "127.0.0.2"]

[[agents]]
name = "All"
identifier = "all"
token = "{TOKEN_ALL}"

[[agents]]
name = "Picky"
identifier = "picky"
token = "{TOKEN_PICKY}"
secret_mode = "selective"
secrets = ["gh"]

# A deny-mode agent with one rule of each kind.
[[agents]]
name = "Ruled"
identifier = "ruled"
token = "{TOKEN_RULED}"
policy_mode = "deny"

[[rules]]
name = "ruled: api.test"
agent = "ruled"
host_pattern = "api.test"
action = "allow"

[[rules]]
name = "ruled: no deletes"
agent = "ruled"
host_pattern = "api.test"
methods = ["DELETE"]
action = "block"

[[rules]]
name = "ruled: three a minute"
agent = "ruled"
host_pattern = "openai.test"
action = "rate_limit"
rate_limit = 3
window = "minute"

[[rules]]
name = "ruled: ask first"
agent = "ruled"
host_pattern = "oauth.test"
action = "manual_approval"

[[secrets]]
name = "anthropic"
type = "anthropic"
value = "{ANTHROPIC_KEY}"
host_pattern = "api.test"

[[secrets]]
name = "anthropic-oauth"
type = "anthropic"
value = "{ANTHROPIC_OAUTH}"
host_pattern = "oauth.test"

[[secrets]]
name = "openai"
type = "openai"
value = "{OPENAI_KEY}"
host_pattern = "openai.test"

[[secrets]]
id = "gh"
name = "github"
type = "generic"
value = "{github_token}"
host_pattern = "generic.test"
path_pattern = "/repos/*"
header_name = "Authorization"
value_format = "token {{value}}"

[[secrets]]
name = "maps"
type = "generic"
value = "{QUERY_KEY}"
host_pattern = "query.test"
param_name = "key"

# Plaintext injection needs the secret's consent.
[[secrets]]
name = "plain"
type = "generic"
value = "{PLAIN_KEY}"
host_pattern = "plain.test:{plain_port}"
header_name = "x-api-key"
allow_plaintext = true

# Naming the port is no consent.
[[secrets]]
name = "plain-port-named"
type = "generic"
value = "{PLAIN_KEY}"
host_pattern = "plain3.test:{plain_port}"
header_name = "x-api-key"

[[secrets]]
name = "plain-no-port"
type = "generic"
value = "{PLAIN_KEY}"
host_pattern = "plain2.test"
header_name = "x-api-key"
"#
    )
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub origin: Origin,
    pub plain: Origin,
    pub gateway: Gateway,
}

pub struct Gateway {
    pub port: u16,
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    pub policy_path: PathBuf,
    pub log_path: PathBuf,
    child: Child,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default, Clone)]
pub struct Options {
    pub extra_args: Vec<String>,
    pub origin_http1_only: bool,
}

impl Env {
    pub async fn start() -> Env {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let protocols = if options.origin_http1_only {
            Protocols::Http1Only
        } else {
            Protocols::Both
        };
        let origin = Origin::start_tls(dir.path(), &HOSTS, protocols)
            .await
            .expect("origin");
        let plain = Origin::start_plain().await.expect("plain origin");
        std::fs::write(
            dir.path().join("policy.toml"),
            policy(GITHUB_TOKEN, plain.port()),
        )
        .expect("policy");
        let gateway = Gateway::start(dir.path(), &origin, &plain, &options.extra_args).await;
        Env {
            dir,
            origin,
            plain,
            gateway,
        }
    }

    /// The test policy, with the GitHub secret set to `github_token`.
    pub fn policy(&self, github_token: &str) -> String {
        policy(github_token, self.plain.port())
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.origin.port())
    }

    pub fn gateway_ca(&self) -> PathBuf {
        self.gateway.data_dir.join("gateway").join("ca.pem")
    }

    /// A curl command through the gateway as the agent with `token`,
    /// trusting `ca` (none: the system roots only).
    pub fn curl_cmd(&self, token: &str, ca: Option<&Path>) -> Command {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "20",
            "-x",
            &format!("http://127.0.0.1:{}", self.gateway.port),
        ])
        .args(["--proxy-user", &format!("x:{token}")]);
        if let Some(ca) = ca {
            cmd.arg("--cacert").arg(ca);
        }
        cmd
    }

    /// curl through the gateway trusting its CA; returns (status, body).
    /// `args` go before the URL.
    pub fn curl(&self, token: &str, args: &[&str], url: &str) -> (u16, String) {
        let ca = self.gateway_ca();
        let mut cmd = self.curl_cmd(token, Some(&ca));
        cmd.args(["-w", "\n%{http_code}"]).args(args).arg(url);
        status_and_body(&run(&mut cmd))
    }

    /// Restarts the gateway over the same data dir and policy.
    pub async fn restart_gateway(&mut self, extra_args: &[String]) {
        let dir = self.dir.path().to_owned();
        // Stop the old one first: the new one takes the same ports.
        let old_port = self.gateway.port;
        self.gateway.child.kill().expect("kill");
        self.gateway.child.wait().expect("wait");
        let mut args = extra_args.to_vec();
        args.extend(["--listen".into(), format!("127.0.0.1:{old_port}")]);
        self.gateway = Gateway::start(&dir, &self.origin, &self.plain, &args).await;
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("spawn client")
}

/// Splits curl's `-w '\n%{http_code}'` trailer off the body.
pub fn status_and_body(out: &Output) -> (u16, String) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

impl Gateway {
    pub async fn start(dir: &Path, origin: &Origin, plain: &Origin, extra: &[String]) -> Gateway {
        let listen_given = extra.iter().any(|a| a == "--listen");
        let port = if listen_given {
            extra
                .iter()
                .skip_while(|a| *a != "--listen")
                .nth(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .expect("port")
        } else {
            free_port()
        };
        let metrics_port = free_port();
        let data_dir = dir.join("data");
        let policy_path = dir.join("policy.toml");
        let log_path = dir.join(format!(
            "gateway-{}.log",
            Instant::now().elapsed().as_nanos() ^ u128::from(metrics_port)
        ));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onecli"));
        cmd.arg("gateway");
        if !listen_given {
            cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
        }
        cmd.args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--policy")
            .arg(&policy_path)
            .arg("--upstream-ca")
            .arg(origin.ca_path.as_ref().expect("TLS origin"))
            .args(["--threads", "2", "--shutdown-timeout", "2s"]);
        for host in HOSTS {
            // dead.test is pinned where nothing listens; localhost is left to DNS.
            let addr = match host {
                "dead.test" => "127.0.0.2",
                "localhost" => continue,
                _ => "127.0.0.1",
            };
            cmd.args(["--resolve", &format!("{host}:{}:{addr}", origin.port())]);
        }
        for host in ["plain.test", "plain2.test", "plain3.test"] {
            cmd.args(["--resolve", &format!("{host}:{}:127.0.0.1", plain.port())]);
        }
        cmd.args(extra);
        cmd.env("ONECLI_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("start onecli gateway");
        let gateway = Gateway {
            port,
            metrics_port,
            data_dir,
            policy_path,
            log_path,
            child,
        };
        gateway.wait_ready().await;
        gateway
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok((200, _)) = http_get(self.port, "/readyz").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway not ready in time; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub async fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .await
            .expect("metrics")
            .1
    }

    /// The value of one metric, named with its labels as printed.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}

/// A plain HTTP/1.1 GET to 127.0.0.1:port; (status, body).
pub async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn basic(token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x:{token}"))
    )
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one response (Content-Length or chunked bodies, or none) off a stream.
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Response> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                String::from_utf8_lossy(&buf).into_owned(),
            ));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut resp = Response {
        status,
        head,
        body: Vec::new(),
    };
    if let Some(len) = resp
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        resp.body = vec![0; len];
        s.read_exact(&mut resp.body).await?;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let line = read_line(s).await?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, line.clone()))?;
            if size == 0 {
                // Trailers, up to the blank line.
                while !read_line(s).await?.is_empty() {}
                break;
            }
            let start = resp.body.len();
            resp.body.resize(start + size, 0);
            s.read_exact(&mut resp.body[start..]).await?;
            read_line(s).await?;
        }
    }
    Ok(resp)
}

/// One CRLF-terminated line, without its end.
async fn read_line<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if s.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Sends a CONNECT and returns the gateway's answer and the socket.
pub async fn connect_raw(port: u16, target: &str, auth: Option<&str>) -> (Response, TcpStream) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to gateway");
    let resp = send_connect(&mut s, target, auth).await;
    (resp, s)
}

/// Sends a CONNECT on an open connection; the gateway's answer.
pub async fn send_connect(s: &mut TcpStream, target: &str, auth: Option<&str>) -> Response {
    let auth = auth
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n").as_bytes())
        .await
        .expect("write");
    read_response(s).await.expect("CONNECT response")
}

pub type TlsTunnel = tokio_boring::SslStream<TcpStream>;

/// A CONNECT tunnel with TLS to the gateway's leaf for `host`, HTTP/1.1.
pub async fn tls_tunnel(env: &Env, token: &str, host: &str) -> TlsTunnel {
    tls_tunnel_to(
        env.gateway.port,
        &env.gateway_ca(),
        token,
        host,
        env.origin.port(),
    )
    .await
}

/// The same, to any gateway: its port, its CA, and the origin's port.
pub async fn tls_tunnel_to(
    gateway_port: u16,
    gateway_ca: &Path,
    token: &str,
    host: &str,
    origin_port: u16,
) -> TlsTunnel {
    let target = format!("{host}:{origin_port}");
    let (resp, tcp) = connect_raw(gateway_port, &target, Some(&basic(token))).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let mut b = SslConnector::builder(SslMethod::tls()).expect("connector");
    b.set_ca_file(gateway_ca).expect("gateway CA");
    b.set_alpn_protos(b"\x08http/1.1").expect("alpn");
    let config = b.build().configure().expect("configure");
    tokio_boring::connect(config, host, tcp)
        .await
        .expect("TLS through the tunnel")
}

/// Sends one request on an open stream and reads the response.
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    s.flush().await.expect("flush");
    read_response(s).await.expect("response")
}

/// Header values the origin echoed.
pub fn echoed(body: &serde_json::Value, name: &str) -> Vec<String> {
    body["headers"][name]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn python(script: &str, args: &[&str]) -> Output {
    run(Command::new("python3").arg("-c").arg(script).args(args))
}

pub fn sockaddr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Percent-encodes a query value.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A Python test server from `tests/e2e/` (`script PORT ARGS…`), killed when
/// dropped: it prints `ready` once listening, then one JSON line a request.
pub struct PyServer {
    child: std::process::Child,
    pub port: u16,
    log: std::sync::mpsc::Receiver<String>,
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PyServer {
    pub fn start(script: &str, args: &[&str]) -> PyServer {
        use std::io::BufRead;
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(format!("{}/tests/e2e/{script}", env!("CARGO_MANIFEST_DIR")))
            .arg(port.to_string())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 test server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = log
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{script} did not start"));
        assert_eq!(first, "ready", "{script}");
        PyServer { child, port, log }
    }

    /// The requests it logged since last asked.
    pub fn seen(&self) -> Vec<serde_json::Value> {
        self.log
            .try_iter()
            .map(|l| serde_json::from_str(&l).expect("log line"))
            .collect()
    }
}
