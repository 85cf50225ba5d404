//! A fast origin server for benchmarks and end-to-end tests: TLS (h2 and
//! HTTP/1.1 by ALPN) with a certificate from its own test CA, or plain HTTP.
//!
//! | path | answer |
//! |---|---|
//! | `/small` | 1 KiB body |
//! | `/big` | 1 MiB body |
//! | `/sse?events=N&gap_ms=M` | N server-sent events, M ms apart |
//! | `/hang` | never answers |
//! | `/unauthorized` | 401 with an auth-looking JSON body |
//! | `/bad-key`, `/bad-request` | 400 about a missing key, 400 about something else |
//! | `/redirect` | 302 to `/echo` with the request's query, reflected in `Location`, `Content-Location`, `Refresh` and two `Link`s |
//! | upgrade request | 101, then echoes raw bytes back |
//! | anything else | JSON echo of method, path, query, headers, body length and hash |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use boring::pkey::PKey;
use boring::ssl::{select_next_proto, AlpnError, SslAcceptor, SslMethod};
use boring::x509::X509;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const SMALL_BODY: usize = 1024;
pub const BIG_BODY: usize = 1024 * 1024;

/// A test PKI: a CA and one server certificate for the given names.
pub struct TestPki {
    pub ca_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestPki {
    pub fn new(hosts: &[&str]) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "OneCLI Test Origin CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate()?;
        let mut leaf = CertificateParams::new(Vec::<String>::new())?;
        leaf.distinguished_name.push(
            DnType::CommonName,
            hosts.first().copied().unwrap_or("localhost"),
        );
        for host in hosts {
            leaf.subject_alt_names.push(match host.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*host).try_into()?),
            });
        }
        leaf.use_authority_key_identifier_extension = true;
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            ca_key_pem,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    /// h2 and HTTP/1.1 by ALPN.
    Both,
    Http1Only,
}

pub struct Origin {
    pub addr: SocketAddr,
    /// Path of the CA that signed the origin's certificate (TLS origins).
    pub ca_path: Option<PathBuf>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    /// Starts a TLS origin on 127.0.0.1 with a certificate for `hosts`;
    /// writes its CA to `dir/origin-ca.pem`.
    pub async fn start_tls(
        dir: &Path,
        hosts: &[&str],
        protocols: Protocols,
    ) -> anyhow::Result<Origin> {
        Self::start_tls_on(dir, hosts, protocols, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// The same on `addr` (inside a container of the tests' own).
    pub async fn start_tls_on(
        dir: &Path,
        hosts: &[&str],
        protocols: Protocols,
        addr: SocketAddr,
    ) -> anyhow::Result<Origin> {
        let pki = TestPki::new(hosts)?;
        let ca_path = dir.join("origin-ca.pem");
        std::fs::write(&ca_path, &pki.ca_pem).context("writing the origin CA")?;
        let acceptor = Arc::new(acceptor(&pki, protocols)?);
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    if let Ok(tls) = tokio_boring::accept(&acceptor, tcp).await {
                        serve(TokioIo::new(tls)).await;
                    }
                });
            }
        });
        Ok(Origin {
            addr,
            ca_path: Some(ca_path),
            task,
        })
    }

    /// Starts a plain-HTTP origin on 127.0.0.1.
    pub async fn start_plain() -> anyhow::Result<Origin> {
        Self::start_plain_on("127.0.0.1:0".parse()?).await
    }

    pub async fn start_plain_on(addr: SocketAddr) -> anyhow::Result<Origin> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    serve(TokioIo::new(tcp)).await;
                });
            }
        });
        Ok(Origin {
            addr,
            ca_path: None,
            task,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

fn acceptor(pki: &TestPki, protocols: Protocols) -> anyhow::Result<SslAcceptor> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    let cert = X509::from_pem(pki.cert_pem.as_bytes())?;
    let key = PKey::private_key_from_pem(pki.key_pem.as_bytes())?;
    b.set_certificate(&cert)?;
    b.set_private_key(&key)?;
    let offer: &'static [u8] = match protocols {
        Protocols::Both => b"\x02h2\x08http/1.1",
        Protocols::Http1Only => b"\x08http/1.1",
    };
    b.set_alpn_select_callback(move |_, client| {
        select_next_proto(offer, client).ok_or(AlpnError::NOACK)
    });
    Ok(b.build())
}

async fn serve<I>(io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let _ = builder
        .serve_connection_with_upgrades(io, hyper::service::service_fn(handle))
        .await;
}

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let query = req.uri().query().unwrap_or("").to_owned();
    let response = match req.uri().path() {
        "/small" => Response::new(full(vec![b's'; SMALL_BODY])),
        "/big" => Response::new(full(big_body())),
        "/sse" => sse(&query),
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(full(""))
        }
        "/bad-key" => status_json(
            400,
            r#"{"error":{"type":"invalid_request_error","message":"x-api-key header is required"}}"#,
        ),
        "/bad-request" => status_json(
            400,
            r#"{"error":{"type":"invalid_request_error","message":"messages: field required"}}"#,
        ),
        "/unauthorized" => {
            let mut r = Response::new(full(
                r#"{"error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
            ));
            *r.status_mut() = hyper::StatusCode::UNAUTHORIZED;
            r
        }
        "/redirect" => {
            // Reflects the query, as many real redirects (slash fixes, http→https) do.
            let mut r = Response::new(full(""));
            *r.status_mut() = hyper::StatusCode::FOUND;
            let location = if query.is_empty() {
                "/echo".to_owned()
            } else {
                format!("/echo?{query}")
            };
            // And into every other header that carries a URL, some twice.
            let reflected = [
                ("location", location.clone()),
                ("content-location", location.clone()),
                ("refresh", format!("0; url={location}")),
                ("link", format!("<{location}>; rel=next")),
                ("link", format!("<{location}&page=2>; rel=last")),
            ];
            for (name, value) in reflected {
                if let Ok(v) = hyper::header::HeaderValue::try_from(value) {
                    r.headers_mut().append(name, v);
                }
            }
            r
        }
        // Reflects the whole path, as a slash-fixing redirect does: a
        // credential in the path must not come back through it.
        path if path.ends_with("/reflect") => {
            let mut r = Response::new(full(""));
            *r.status_mut() = hyper::StatusCode::MOVED_PERMANENTLY;
            let location = format!("{path}/");
            for name in ["location", "content-location"] {
                if let Ok(v) = hyper::header::HeaderValue::try_from(location.clone()) {
                    r.headers_mut().append(name, v);
                }
            }
            r
        }
        _ if req.headers().contains_key(hyper::header::UPGRADE) => upgrade(&mut req),
        _ => echo(req, query).await,
    };
    Ok(response)
}

fn status_json(status: u16, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The 1 MiB body: a repeating, position-dependent pattern, so truncation
/// or reordering shows.
pub fn big_body() -> Vec<u8> {
    (0..BIG_BODY).map(|i| (i % 251) as u8).collect()
}

/// FNV-1a, hex: enough to prove bytes arrived intact.
pub fn fnv1a(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

async fn echo(req: Request<Incoming>, query: String) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let value =
            serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::Array(list)) => list.push(value),
            _ => {
                headers.insert(
                    name.as_str().to_owned(),
                    serde_json::Value::Array(vec![value]),
                );
            }
        }
    }
    let body = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": query,
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": bytes.len(),
        "body_fnv1a": fnv1a(&bytes),
    });
    let mut r = Response::new(full(body.to_string()));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn sse(query: &str) -> Response<Body> {
    let param = |name: &str, default: u64| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let events = param("events", 3);
    let gap = Duration::from_millis(param("gap_ms", 200));
    let stream = futures_util::stream::iter(0..events).then(move |i| async move {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        Ok::<_, Infallible>(Frame::data(Bytes::from(format!("data: event {i}\n\n"))))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    r
}

/// Answers 101 (echoing the credential headers it saw, to prove injection
/// on the handshake), then echoes raw bytes.
fn upgrade(req: &mut Request<Incoming>) -> Response<Body> {
    let mut r = Response::new(full(""));
    *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        "connection",
        hyper::header::HeaderValue::from_static("upgrade"),
    );
    if let Some(proto) = req.headers().get(hyper::header::UPGRADE) {
        h.insert("upgrade", proto.clone());
    }
    for seen in ["authorization", "x-api-key", "proxy-authorization"] {
        if let Some(v) = req.headers().get(seen) {
            if let Ok(name) = hyper::header::HeaderName::try_from(format!("x-seen-{seen}")) {
                h.insert(name, v.clone());
            }
        }
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 4096];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                let _ = io.flush().await;
            }
        }
    });
    r
}
