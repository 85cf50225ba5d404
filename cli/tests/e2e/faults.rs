//! Faults around `onecli serve` (issue 17): upstreams that reset mid-body,
//! answer garbage, lie about `Content-Length` or show the wrong
//! certificate; names that do not resolve; a data directory whose disk
//! fills up or turns read-only. Each is answered clearly, nothing stored is
//! lost, and the service goes on (or recovers) by itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boring::pkey::PKey;
use boring::ssl::{SslAcceptor, SslMethod};
use boring::x509::X509;
use onecli_benches::origin::TestPki;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{run, status_and_body};
use crate::served::Served;

/// A TLS origin that misbehaves as each path asks.
struct FaultOrigin {
    port: u16,
    ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SMUGGLED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhijack!";

impl FaultOrigin {
    async fn start(host: &str) -> FaultOrigin {
        let pki = TestPki::new(&[host]).expect("pki");
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
        b.set_certificate(&X509::from_pem(pki.cert_pem.as_bytes()).expect("cert"))
            .expect("set cert");
        b.set_private_key(&PKey::private_key_from_pem(pki.key_pem.as_bytes()).expect("key"))
            .expect("set key");
        let acceptor = Arc::new(b.build());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = tokio_boring::accept(&acceptor, tcp).await {
                        misbehave(tls).await;
                    }
                });
            }
        });
        FaultOrigin {
            port,
            ca_pem: pki.ca_pem,
            task,
        }
    }
}

/// Serves requests on one connection, each as its path says.
async fn misbehave(mut tls: tokio_boring::SslStream<tokio::net::TcpStream>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let answer: Vec<u8> = match path.as_str() {
            "/reset-mid-body" => {
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
                out.extend_from_slice(&[b'r'; 10_000]);
                let _ = tls.write_all(&out).await;
                let _ = tls.flush().await;
                // An abortive close: RST, not FIN.
                #[allow(deprecated)]
                let _ = tls.get_ref().set_linger(Some(Duration::ZERO));
                return;
            }
            "/malformed" => b"HTTP/1.1 abc nonsense\r\nContent-Length: x\r\n\r\n".to_vec(),
            "/garbage" => b"\x00\x01\x02 this is not HTTP at all\r\n\r\n".to_vec(),
            "/longer-than-sent" => {
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n".to_vec();
                out.extend_from_slice(&[b'l'; 100]);
                let _ = tls.write_all(&out).await;
                let _ = tls.shutdown().await;
                return;
            }
            "/shorter-than-sent" => {
                // Ten bytes declared, and a whole second response behind
                // them: a gateway that reused this connection would hand
                // "hijack!" to whoever asked next.
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789".to_vec();
                out.extend_from_slice(SMUGGLED);
                out
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        };
        if tls.write_all(&answer).await.is_err() || tls.flush().await.is_err() {
            return;
        }
    }
}

/// curl through the gateway as `token`: (exit code, status, body).
fn curl(served: &Served, token: &str, urls: &[String]) -> (i32, u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(["-x", &format!("http://127.0.0.1:{}", served.gateway_port)])
        .args(["--proxy-user", &format!("x:{token}")])
        .arg("--cacert")
        .arg(served.gateway_ca());
    for (i, url) in urls.iter().enumerate() {
        if i > 0 {
            cmd.arg("--next")
                .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
                .args(["-x", &format!("http://127.0.0.1:{}", served.gateway_port)])
                .args(["--proxy-user", &format!("x:{token}")])
                .arg("--cacert")
                .arg(served.gateway_ca());
        }
        cmd.arg(url);
    }
    let out = run(&mut cmd);
    let (status, body) = status_and_body(&out);
    (out.status.code().unwrap_or(-1), status, body)
}

fn tail(log: &str) -> &str {
    &log[log.len().saturating_sub(6000)..]
}

fn error_of(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    (
        v["error"].as_str().unwrap_or_default().to_owned(),
        v["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_upstreams_get_clear_answers_and_the_gateway_goes_on() {
    let faulty = FaultOrigin::start("faulty.test").await;
    // The same origin under a name its certificate does not carry, and an
    // origin whose CA the gateway does not trust at all.
    let untrusted = FaultOrigin::start("wrong.test").await;
    let resolve = [
        format!("faulty.test:{}:127.0.0.1", faulty.port),
        format!("misnamed.test:{}:127.0.0.1", faulty.port),
        format!("wrong.test:{}:127.0.0.1", untrusted.port),
    ];
    let mut extra = Vec::new();
    for r in &resolve {
        extra.extend(["--resolve", r.as_str()]);
    }
    let served = Served::start_trusting(&extra, Some(&faulty.ca_pem)).await;
    let (_, token) = served.agent("faults").await;
    let secret = "SECRET-faulty-upstream-key";
    let (status, body) = served
        .api(
            "POST",
            "/v1/secrets",
            Some(json!({"name": "faulty", "type": "generic", "value": secret,
                "hostPattern": "*.test", "injectionConfig": {"headerName": "x-api-key"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let url = |host: &str, port: u16, path: &str| format!("https://{host}:{port}{path}");
    let f = |path: &str| url("faulty.test", faulty.port, path);

    // Reset in the middle of the body: the client sees a failed transfer,
    // never a complete one.
    let (code, status, body) = curl(&served, &token, &[f("/reset-mid-body")]);
    assert_ne!(
        code,
        0,
        "a reset transfer looked complete ({status}, {} bytes)",
        body.len()
    );
    assert!(body.len() < 100_000);

    // Not HTTP: 502 saying so.
    for path in ["/malformed", "/garbage"] {
        let (_, status, body) = curl(&served, &token, &[f(path)]);
        assert_eq!(status, 502, "{path}: {body}");
        let (error, message) = error_of(&body);
        assert_eq!(error, "bad_gateway", "{path}: {body}");
        assert_eq!(
            message, "faulty.test sent a response that is not valid HTTP.",
            "{path}"
        );
    }

    // Content-Length longer than what came: an incomplete transfer, not a
    // short body passed off as whole (curl: 92, the h2 stream reset).
    let (code, _, body) = curl(&served, &token, &[f("/longer-than-sent")]);
    assert_eq!(code, 92, "{body}");

    // Content-Length shorter than what came: exactly the declared body, and
    // the bytes behind it are never read as the next answer.
    let (code, status, body) = curl(
        &served,
        &token,
        &[f("/shorter-than-sent"), f("/after"), f("/after")],
    );
    assert_eq!(code, 0, "{body}");
    assert_eq!(status, 200);
    assert_eq!(
        body, "0123456789\n200ok\n200ok",
        "the smuggled answer came back"
    );

    // Certificates: a name the certificate does not carry, a CA not trusted.
    for (host, port) in [
        ("misnamed.test", faulty.port),
        ("wrong.test", untrusted.port),
    ] {
        let (_, status, body) = curl(&served, &token, &[url(host, port, "/")]);
        assert_eq!(status, 502, "{host}: {body}");
        let (error, message) = error_of(&body);
        assert_eq!(error, "bad_gateway");
        assert_eq!(
            message,
            format!(
                "TLS with {host} failed: its certificate is not trusted or the handshake failed."
            )
        );
    }

    // A name that does not resolve.
    let (_, status, body) = curl(&served, &token, &[url("no-such-host.invalid", 443, "/")]);
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        error_of(&body).1,
        "OneCLI gateway could not resolve no-such-host.invalid."
    );

    // Through all of it the gateway kept serving.
    let (code, status, body) = curl(&served, &token, &[f("/fine")]);
    assert_eq!((code, status, body.as_str()), (0, 200, "ok"));
    let log = served.log();
    assert!(!log.contains(secret), "the secret reached the log");
    assert!(!log.contains(&token), "the token reached the log");
}

/// A small filesystem of its own for a data directory, mounted for the
/// test's life: it can fill up and turn read-only.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs (root, or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, option: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{option}")])
            .arg(self.path())
            .output()
            .expect("remount");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes a file until the disk is full; its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // The last bytes a block did not fit.
        while let Ok(n) = file.write(&block[..512]) {
            if n == 0 {
                break;
            }
        }
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// `onecli serve` over a data directory on a tmpfs of 64 MiB.
async fn served_on(disk: &SmallDisk) -> Served {
    let data = disk.path().join("data");
    Served::start_with(&["--data-dir", data.to_str().expect("utf-8 path")]).await
}

fn secret_named(name: &str) -> Value {
    json!({"name": name, "type": "generic", "value": format!("SECRET-{name}"),
        "hostPattern": "api.test", "injectionConfig": {"headerName": format!("x-{name}")}})
}

async fn names(served: &Served) -> Vec<String> {
    let (status, list) = served.api("GET", "/v1/secrets", None).await;
    assert_eq!(status, 200, "{list}");
    let mut names: Vec<String> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Retries `POST /v1/secrets` until it is stored (the service recovering).
async fn stored_soon(served: &Served, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = served
            .api("POST", "/v1/secrets", Some(secret_named(name)))
            .await;
        if status == 201 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} still not stored: {status} {body}; log:\n{}",
            tail(&served.log())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_is_a_clear_error_loses_nothing_and_passes() {
    let disk = SmallDisk::mount("64m");
    let served = served_on(&disk).await;
    for name in ["before-a", "before-b"] {
        let (status, body) = served
            .api("POST", "/v1/secrets", Some(secret_named(name)))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let filler = disk.fill();

    // Writes fail with a clear answer, once the store's own free pages are
    // used up.
    let mut refused = None;
    for i in 0..200 {
        let mut body = secret_named(&format!("during-{i}"));
        body["value"] = json!("S".repeat(60_000));
        let (status, answer) = served.api("POST", "/v1/secrets", Some(body)).await;
        if status != 201 {
            refused = Some((status, answer));
            break;
        }
    }
    let (status, answer) = refused.expect("a write on a full disk was refused");
    assert_eq!(status, 507, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no space left"), "{answer}");
    // Reads go on, and what was stored is all there.
    let listed = names(&served).await;
    assert!(listed.contains(&"before-a".to_owned()) && listed.contains(&"before-b".to_owned()));
    let (status, _) = served.api("GET", "/v1/health", None).await;
    assert_eq!(status, 200);

    // Space returns: writes work again without a restart.
    std::fs::remove_file(filler).expect("free the disk");
    stored_soon(&served, "after").await;
    let listed = names(&served).await;
    for name in ["after", "before-a", "before-b"] {
        assert!(
            listed.contains(&name.to_owned()),
            "{name} missing: {listed:?}"
        );
    }
    assert!(!served.log().contains("SECRET-before-a"));
}

/// A filesystem with the store open cannot be made read-only by hand
/// (the kernel answers EBUSY; it does so itself only after disk errors,
/// which take the full disk's path above). So: a data directory that is
/// read-only when the service starts is refused with a clear error, and
/// once writable again everything stored is there.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_data_directory_is_refused_at_start_and_loses_nothing() {
    let disk = SmallDisk::mount("64m");
    let served = served_on(&disk).await;
    let (status, body) = served
        .api("POST", "/v1/secrets", Some(secret_named("kept")))
        .await;
    assert_eq!(status, 201, "{body}");
    let data = served.data_dir();
    drop(served);

    disk.remount("ro");
    let mut serve = Command::new(env!("CARGO_BIN_EXE_onecli"));
    serve
        .arg("serve")
        .args([
            "--listen",
            &format!("127.0.0.1:{}", crate::harness::free_port()),
        ])
        .args([
            "--gateway-listen",
            &format!("127.0.0.1:{}", crate::harness::free_port()),
        ])
        .arg("--data-dir")
        .arg(&data)
        .env_remove("ONECLI_SECRET_KEY");
    let out = crate::harness::run(&mut serve);
    assert!(
        !out.status.success(),
        "onecli serve started on a read-only data directory"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(stderr.contains(&data.display().to_string()), "{stderr}");

    disk.remount("rw");
    let served = served_on(&disk).await;
    assert_eq!(names(&served).await, ["kept"]);
    stored_soon(&served, "later").await;
    assert_eq!(names(&served).await, ["kept", "later"]);
}
