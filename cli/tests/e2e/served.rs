//! Starts `onecli serve` (control service + gateway in one process) against
//! the test origin, and talks to its API over real sockets.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onecli_benches::origin::{Origin, Protocols};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{free_port, http_get, HOSTS};

pub struct Served {
    pub dir: tempfile::TempDir,
    pub origin: Origin,
    pub api_port: u16,
    pub gateway_port: u16,
    pub api_key: String,
    pub log_path: PathBuf,
    child: Child,
    extra: Vec<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    pub async fn start() -> Served {
        Self::start_with(&[]).await
    }

    /// With extra `onecli serve` arguments.
    pub async fn start_with(extra: &[&str]) -> Served {
        Self::start_trusting(extra, None).await
    }

    /// With extra arguments, its upstreams also verified against `extra_ca`
    /// (PEM): origins of a test's own.
    pub async fn start_trusting(extra: &[&str], extra_ca: Option<&str>) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let origin = Origin::start_tls(dir.path(), &HOSTS, Protocols::Both)
            .await
            .expect("origin");
        if let (Some(pem), Some(path)) = (extra_ca, origin.ca_path.as_ref()) {
            let mut bundle = std::fs::read_to_string(path).expect("origin CA");
            bundle.push_str(pem);
            std::fs::write(path, bundle).expect("CA bundle");
        }
        let (api_port, gateway_port) = (free_port(), free_port());
        let log_path = dir.path().join("serve-0.log");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn(
            dir.path(),
            &origin,
            api_port,
            gateway_port,
            &log_path,
            &extra,
        );
        let mut served = Served {
            dir,
            origin,
            api_port,
            gateway_port,
            api_key: String::new(),
            log_path,
            child,
            extra,
        };
        served.wait_ready().await;
        served.api_key = std::fs::read_to_string(served.data_dir().join("api-key"))
            .expect("api-key file")
            .trim()
            .to_owned();
        served
    }

    /// `--data-dir` when the test gave one, else `data` in its directory.
    pub fn data_dir(&self) -> PathBuf {
        self.extra
            .iter()
            .skip_while(|a| *a != "--data-dir")
            .nth(1)
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    pub fn gateway_ca(&self) -> PathBuf {
        self.data_dir().join("gateway").join("ca.pem")
    }

    /// The ids of the requests waiting for a human, once there are `n`.
    pub async fn pending(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, listed) = self.api("GET", "/v1/approvals/pending?wait=0", None).await;
            let ids: Vec<String> = listed["requests"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|r| r["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if ids.len() == n {
                return ids;
            }
            assert!(
                Instant::now() < deadline,
                "{} pending, not {n}: {listed}",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A TLS tunnel through this gateway to `host` on the test origin.
    pub async fn tunnel(&self, token: &str, host: &str) -> crate::harness::TlsTunnel {
        crate::harness::tls_tunnel_to(
            self.gateway_port,
            &self.gateway_ca(),
            token,
            host,
            self.origin.port(),
        )
        .await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process (SIGKILL when `hard`, else SIGTERM) and starts a
    /// new one over the same data dir and ports.
    pub async fn restart(&mut self, hard: bool) {
        let signal = if hard { "-KILL" } else { "-TERM" };
        let ok = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        self.child.wait().expect("exited");
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        self.log_path = self.dir.path().join(format!("serve-{n}.log"));
        self.child = spawn(
            self.dir.path(),
            &self.origin,
            self.api_port,
            self.gateway_port,
            &self.log_path,
            &self.extra,
        );
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let api = matches!(http_get(self.api_port, "/v1/health").await, Ok((200, _)));
            let gateway = matches!(http_get(self.gateway_port, "/readyz").await, Ok((200, _)));
            if api && gateway {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "onecli serve not ready; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// One API call with the admin key; (status, JSON body or Null).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {}", self.api_key);
        self.call(method, path, body, Some(&auth)).await
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        auth: Option<&str>,
    ) -> (u16, Value) {
        json_call(self.api_port, method, path, body, auth).await
    }

    pub async fn raw(&self, method: &str, path: &str, body: Option<String>) -> (u16, String) {
        let auth = format!("Bearer {}", self.api_key);
        raw_call(self.api_port, method, path, body, Some(&auth)).await
    }

    /// Creates an agent and returns (id, access token).
    pub async fn agent(&self, identifier: &str) -> (String, String) {
        let (status, created) = self
            .api(
                "POST",
                "/v1/agents",
                Some(json!({ "name": identifier, "identifier": identifier })),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().expect("id").to_owned();
        let (_, list) = self.api("GET", "/v1/agents", None).await;
        let token = list
            .as_array()
            .expect("list")
            .iter()
            .find(|a| a["id"] == id.as_str())
            .and_then(|a| a["accessToken"].as_str())
            .expect("accessToken")
            .to_owned();
        (id, token)
    }
}

fn spawn(
    dir: &Path,
    origin: &Origin,
    api_port: u16,
    gateway_port: u16,
    log: &Path,
    extra: &[String],
) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onecli"));
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{api_port}")])
        .args(["--gateway-listen", &format!("127.0.0.1:{gateway_port}")])
        .arg("--upstream-ca")
        .arg(origin.ca_path.as_ref().expect("TLS origin"))
        .args(["--threads", "2", "--shutdown-timeout", "2s"]);
    for host in HOSTS.iter().filter(|h| **h != "localhost") {
        cmd.args(["--resolve", &format!("{host}:{}:127.0.0.1", origin.port())]);
    }
    if !extra.iter().any(|a| a == "--data-dir") {
        cmd.arg("--data-dir").arg(dir.join("data"));
    }
    cmd.args(extra);
    let log = std::fs::File::create(log).expect("log file");
    cmd.env("ONECLI_LOG", "debug")
        .env_remove("ONECLI_SECRET_KEY");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    cmd.spawn().expect("start onecli serve")
}

/// [`raw_call`] with a JSON body, answered in JSON (`Null` when it is not).
pub async fn json_call(
    port: u16,
    method: &str,
    path: &str,
    body: Option<Value>,
    auth: Option<&str>,
) -> (u16, Value) {
    let (status, text) = raw_call(port, method, path, body.map(|b| b.to_string()), auth).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A plain HTTP/1.1 request with `Connection: close`; (status, body).
pub async fn raw_call(
    port: u16,
    method: &str,
    path: &str,
    body: Option<String>,
    auth: Option<&str>,
) -> (u16, String) {
    let auth = auth.map(|a| ("Authorization", a));
    raw_call_with(port, method, path, body, auth.as_slice()).await
}

/// [`raw_call`] with any headers.
pub async fn raw_call_with(
    port: u16,
    method: &str,
    path: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sends one HTTP/1.1 request with a body on an open stream.
pub async fn request_with_body<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    method: &str,
    path: &str,
    host: &str,
    body: &[u8],
) -> crate::harness::Response {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nAuthorization: Bearer agent-placeholder\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    s.flush().await.expect("flush");
    crate::harness::read_response(s).await.expect("response")
}

/// A HOME of its own, with a bin/ on PATH for stub commands.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("bin")).expect("bin");
        Home { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A stub executable on PATH that exits 0.
    pub fn stub(&self, name: &str) {
        let p = self.path().join("bin").join(name);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").expect("stub");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// `onecli` as a user of this HOME would run it against `s`.
    pub fn onecli(&self, s: &Served) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onecli"));
        let path = format!(
            "{}:{}",
            self.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env_clear()
            .env("HOME", self.path())
            .env("PATH", path)
            .env(
                "ONECLI_API_HOST",
                format!("http://127.0.0.1:{}", s.api_port),
            )
            .env("ONECLI_API_KEY", &s.api_key)
            .env("ONECLI_GATEWAY", format!("127.0.0.1:{}", s.gateway_port))
            .stdin(Stdio::null());
        cmd
    }
}
