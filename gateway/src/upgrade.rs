//! HTTP/1.1 upgrades (WebSocket) relayed by the gateway itself.
//!
//! Pingora 0.9.1 tears an upgraded connection down when the upstream's 101
//! is read before the request's empty body has gone through its internal
//! pipe (cloudflare/pingora#946), which a fast upstream or a busy worker
//! triggers. So upgrade requests never reach Pingora's upstream side: the
//! gateway connects (egress guard, verified TLS), sends the handshake with
//! the credentials injected, and relays the two byte streams through the
//! downstream session, which Pingora switches to raw bytes after a 101.

use std::time::Duration;

use bytes::Bytes;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::egress::EgressError;
use crate::errors::Refusal;
use crate::head::{read_response_head, HeadError, ResponseHead};
use crate::proxy::Target;
use crate::Shared;

/// The largest non-101 answer to an upgrade request the gateway relays.
const MAX_REFUSAL_BODY: usize = 1024 * 1024;

/// What happened, for the request log.
pub enum Outcome {
    /// The upstream answered; this status went to the client.
    Relayed(u16),
    /// Nothing was sent to the client yet: answer with this.
    Refused(Refusal),
}

/// Sends `req` (already prepared: origin-form, credentials injected) to the
/// target and relays the upgraded connection until either side closes.
pub async fn relay(
    shared: &Shared,
    session: &mut Session,
    target: &Target,
    req: &RequestHeader,
) -> Outcome {
    let t = shared.config.timeouts;
    let addr = match shared.egress.resolve(&target.host, target.port).await {
        Ok(addr) => addr,
        Err(EgressError::Refused { .. }) => {
            return Outcome::Refused(Refusal::EgressBlocked {
                host: target.host.clone(),
            })
        }
        Err(EgressError::Unresolvable(_)) => {
            return Outcome::Refused(Refusal::BadGateway {
                message: format!("OneCLI gateway could not resolve {}.", target.host),
            })
        }
    };
    let tcp = match tokio::time::timeout(t.connect, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(_)) => {
            return Outcome::Refused(Refusal::BadGateway {
                message: format!("{} refused the connection.", target.host),
            })
        }
        Err(_) => {
            return Outcome::Refused(Refusal::UpstreamTimeout {
                host: target.host.clone(),
            })
        }
    };
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return handshake_and_pump(shared, session, target, req, tcp).await;
    }
    let config = match shared.upstream_tls.configure() {
        Ok(config) => config,
        Err(_) => {
            return Outcome::Refused(Refusal::BadGateway {
                message: "OneCLI gateway internal error.".into(),
            })
        }
    };
    match tokio::time::timeout(t.tls, tokio_boring::connect(config, &target.host, tcp)).await {
        Ok(Ok(tls)) => handshake_and_pump(shared, session, target, req, tls).await,
        Ok(Err(_)) => Outcome::Refused(Refusal::BadGateway {
            message: format!(
                "TLS with {} failed: its certificate is not trusted or the handshake failed.",
                target.host
            ),
        }),
        Err(_) => Outcome::Refused(Refusal::UpstreamTimeout {
            host: target.host.clone(),
        }),
    }
}

async fn handshake_and_pump<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    session: &mut Session,
    target: &Target,
    req: &RequestHeader,
    mut upstream: S,
) -> Outcome {
    let t = shared.config.timeouts;
    if upstream.write_all(&serialize(req)).await.is_err() || upstream.flush().await.is_err() {
        return Outcome::Refused(Refusal::BadGateway {
            message: format!("{} closed the connection.", target.host),
        });
    }
    let mut buf = Vec::with_capacity(1024);
    let head = match read_response_head(&mut upstream, &mut buf, t.read).await {
        Ok(head) => head,
        Err(HeadError::TimedOut) => {
            return Outcome::Refused(Refusal::UpstreamTimeout {
                host: target.host.clone(),
            })
        }
        Err(_) => {
            return Outcome::Refused(Refusal::BadGateway {
                message: format!("{} sent an invalid response.", target.host),
            })
        }
    };
    let status = head.status;
    let early = buf.split_off(head.len);
    if status != 101 {
        return refused_upgrade(session, head, early, upstream, target).await;
    }
    let Ok(resp) = response_header(&head, true) else {
        return Outcome::Refused(Refusal::BadGateway {
            message: format!("{} sent an invalid response.", target.host),
        });
    };
    if session
        .write_response_header(Box::new(resp), false)
        .await
        .is_err()
    {
        return Outcome::Relayed(status);
    }
    if !early.is_empty()
        && session
            .write_response_body(Some(Bytes::from(early)), false)
            .await
            .is_err()
    {
        return Outcome::Relayed(status);
    }
    pump(session, upstream, t.read).await;
    Outcome::Relayed(status)
}

/// Copies bytes both ways until either side closes or stays silent for `idle`.
async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session,
    mut upstream: S,
    idle: Duration,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut client_open = true;
    loop {
        tokio::select! {
            from_client = session.read_request_body(), if client_open => match from_client {
                Ok(Some(bytes)) => {
                    if upstream.write_all(&bytes).await.is_err() || upstream.flush().await.is_err() {
                        break;
                    }
                }
                // The client finished sending: half-close towards the upstream.
                Ok(None) => {
                    client_open = false;
                    let _ = upstream.shutdown().await;
                }
                Err(_) => break,
            },
            from_upstream = tokio::time::timeout(idle, upstream.read(&mut buf)) => match from_upstream {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => {
                    if session.write_response_body(Some(Bytes::copy_from_slice(&buf[..n])), false).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = session.write_response_body(None, true).await;
}

/// The upstream declined the upgrade: relay its answer with a bounded body.
async fn refused_upgrade<S: AsyncRead + Unpin>(
    session: &mut Session,
    head: ResponseHead,
    mut body: Vec<u8>,
    mut upstream: S,
    target: &Target,
) -> Outcome {
    let header = |name: &str| {
        head.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"));
    let length = header("content-length")
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
    let complete = match (chunked, length) {
        (true, _) => read_chunked(&mut upstream, &mut body).await,
        (false, Some(n)) => read_exact_len(&mut upstream, &mut body, n).await,
        (false, None) => read_to_close(&mut upstream, &mut body).await,
    };
    let resp = response_header(&head, false);
    let (Ok(true), Ok(mut resp)) = (complete, resp) else {
        return Outcome::Refused(Refusal::BadGateway {
            message: format!("{} sent an invalid response.", target.host),
        });
    };
    let _ = resp.insert_header("content-length", body.len().to_string());
    session.set_keepalive(None);
    if session
        .write_response_header(Box::new(resp), false)
        .await
        .is_ok()
    {
        let _ = session
            .write_response_body(Some(Bytes::from(body)), true)
            .await;
    }
    Outcome::Relayed(head.status)
}

async fn read_exact_len<S: AsyncRead + Unpin>(
    s: &mut S,
    body: &mut Vec<u8>,
    len: usize,
) -> std::io::Result<bool> {
    if len > MAX_REFUSAL_BODY {
        return Ok(false);
    }
    if body.len() < len {
        let start = body.len();
        body.resize(len, 0);
        s.read_exact(&mut body[start..]).await?;
    }
    body.truncate(len);
    Ok(true)
}

async fn read_to_close<S: AsyncRead + Unpin>(
    s: &mut S,
    body: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut limited = s.take((MAX_REFUSAL_BODY + 1 - body.len().min(MAX_REFUSAL_BODY)) as u64);
    limited.read_to_end(body).await?;
    Ok(body.len() <= MAX_REFUSAL_BODY)
}

/// Decodes a chunked body into `body` (which starts with what was read past
/// the head). Trailers are dropped.
async fn read_chunked<S: AsyncRead + Unpin>(
    s: &mut S,
    body: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut raw = std::mem::take(body);
    let mut pos = 0;
    loop {
        let Some(line_end) = find_crlf(&raw[pos..]) else {
            if !fill(s, &mut raw).await? {
                return Ok(false);
            }
            continue;
        };
        let line = std::str::from_utf8(&raw[pos..pos + line_end]).unwrap_or("");
        let size_text = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Ok(false);
        };
        if body.len() + size > MAX_REFUSAL_BODY {
            return Ok(false);
        }
        let data_start = pos + line_end + 2;
        if size == 0 {
            return Ok(true);
        }
        while raw.len() < data_start + size + 2 {
            if !fill(s, &mut raw).await? {
                return Ok(false);
            }
        }
        body.extend_from_slice(&raw[data_start..data_start + size]);
        pos = data_start + size + 2;
    }
}

async fn fill<S: AsyncRead + Unpin>(s: &mut S, raw: &mut Vec<u8>) -> std::io::Result<bool> {
    if raw.len() > MAX_REFUSAL_BODY * 2 {
        return Ok(false);
    }
    let mut chunk = [0u8; 8192];
    let n = s.read(&mut chunk).await?;
    raw.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// The upstream's head for the client. Framing headers are the gateway's to
/// set, except that a 101 keeps `Connection` and `Upgrade`.
fn response_header(head: &ResponseHead, upgrade: bool) -> pingora_core::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(head.status, Some(head.headers.len()))?;
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        let hop_by_hop = matches!(
            lower.as_str(),
            "transfer-encoding" | "content-length" | "keep-alive" | "proxy-connection"
        ) || (!upgrade && matches!(lower.as_str(), "connection" | "upgrade"));
        if !hop_by_hop {
            resp.append_header(name.clone(), value.as_slice())?;
        }
    }
    Ok(resp)
}

/// HTTP/1.1 bytes of a request head.
fn serialize(req: &RequestHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.raw_path());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers.iter() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunked_bodies_decode_across_reads() {
        let (mut tx, mut rx) = tokio::io::duplex(64);
        tokio::spawn(async move {
            for part in ["llo\r\n6\r\n", " world\r\n0\r\n\r\n"] {
                tx.write_all(part.as_bytes()).await.expect("write");
            }
        });
        let mut body = b"5\r\nhe".to_vec();
        assert!(read_chunked(&mut rx, &mut body).await.expect("io"));
        assert_eq!(body, b"hello world");
    }

    #[tokio::test]
    async fn bodies_are_bounded() {
        let (_tx, mut rx) = tokio::io::duplex(64);
        let mut body = Vec::new();
        assert!(!read_exact_len(&mut rx, &mut body, MAX_REFUSAL_BODY + 1)
            .await
            .expect("io"));
        let mut body = format!("{:x}\r\n", MAX_REFUSAL_BODY + 1).into_bytes();
        assert!(!read_chunked(&mut rx, &mut body).await.expect("io"));
    }

    #[test]
    fn request_heads_serialize_as_http1() {
        let mut req = RequestHeader::build("GET", b"/ws?x=1", None).expect("req");
        req.insert_header("host", "api.test").expect("header");
        req.insert_header("upgrade", "websocket").expect("header");
        let text = String::from_utf8(serialize(&req)).expect("utf8");
        assert!(text.starts_with("GET /ws?x=1 HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("host: api.test\r\n") && text.contains("upgrade: websocket\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
