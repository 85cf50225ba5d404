//! Requests the gateway forwards itself, outside Pingora's upstream side:
//!
//! - HTTP/1.1 upgrades (WebSocket): Pingora 0.9.1 tears an upgraded
//!   connection down when the upstream's 101 is read before the request's
//!   empty body has gone through its internal pipe (cloudflare/pingora#946);
//! - requests a human approved: their body was read and held while they
//!   waited, and Pingora can replay at most 64 KiB of a consumed body.
//!
//! The gateway connects (egress guard, verified TLS with the same roots),
//! sends the prepared request (credentials injected), and relays the answer
//! through the downstream session: a response with its body streamed, or
//! after a 101 the raw bytes both ways.

use std::time::Duration;

use bytes::Bytes;
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::egress::EgressError;
use crate::errors::Refusal;
use crate::head::{read_response_head, HeadError, ResponseHead};
use crate::proxy::Target;
use crate::Shared;

const CHUNK: usize = 16 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What happened, for the request log.
pub enum Outcome {
    /// The upstream answered; this status went to the client.
    Relayed(u16),
    /// Nothing was sent to the client yet: answer with this.
    Refused(Refusal),
    /// The response was cut off midway: the client must see it broken, not
    /// complete, so its connection is aborted.
    Broken,
}

/// Sends `req` (prepared: origin-form, credentials injected, framed for
/// `body`) and `body` to the target, and relays what comes back, with the
/// query credentials in `injected` scrubbed from its headers.
pub async fn forward(
    shared: &Shared,
    session: &mut Session,
    target: &Target,
    req: &RequestHeader,
    body: &[u8],
    injected: &crate::inject::Injected,
) -> Outcome {
    let mut upstream = match connect(shared, target).await {
        Ok(s) => s,
        Err(refusal) => return Outcome::Refused(refusal),
    };
    let t = shared.config.timeouts;
    let sent = async {
        upstream.write_all(&serialize(req)).await?;
        upstream.write_all(body).await?;
        upstream.flush().await
    };
    if sent.await.is_err() {
        return Outcome::Refused(Refusal::BadGateway {
            message: format!("{} closed the connection.", target.host),
        });
    }
    let mut buf = Vec::with_capacity(1024);
    // Interim answers (100 Continue, 103 Early Hints) are not the response:
    // skip them. 101 is the response to an upgrade.
    let head = loop {
        let head = match read_response_head(&mut upstream, &mut buf, t.read).await {
            Ok(head) => head,
            Err(HeadError::TimedOut) => {
                return Outcome::Refused(Refusal::UpstreamTimeout {
                    host: target.host.clone(),
                })
            }
            Err(_) => return Outcome::Refused(invalid(target)),
        };
        if (100..200).contains(&head.status) && head.status != 101 {
            buf.drain(..head.len);
            continue;
        }
        break head;
    };
    let early = buf.split_off(head.len);
    let status = head.status;
    let upgraded = status == 101;
    let Ok(mut resp) = response_header(&head, upgraded) else {
        return Outcome::Refused(invalid(target));
    };
    crate::inject::scrub_reflected(&mut resp, &injected.url_values);
    if upgraded {
        if session
            .write_response_header(Box::new(resp), false)
            .await
            .is_ok()
            && (early.is_empty()
                || session
                    .write_response_body(Some(Bytes::from(early)), false)
                    .await
                    .is_ok())
        {
            pump(session, upstream, t.read).await;
        }
        return Outcome::Relayed(status);
    }
    let framing = Framing::of(&head, req.method == http::Method::HEAD);
    session.set_keepalive(None);
    if session
        .write_response_header(Box::new(resp), framing == Framing::None)
        .await
        .is_err()
    {
        return Outcome::Relayed(status);
    }
    let mut reader = BufReader::new(std::io::Cursor::new(early).chain(upstream));
    let mut scrub = injected
        .signature
        .as_ref()
        .and_then(|s| crate::inject::BodyScrub::new(s));
    match relay_body(session, &mut reader, framing, t.read, &mut scrub).await {
        Ok(()) => Outcome::Relayed(status),
        Err(error) => {
            tracing::debug!(%error, host = %target.host, "response body relay ended early");
            Outcome::Broken
        }
    }
}

fn invalid(target: &Target) -> Refusal {
    Refusal::BadGateway {
        message: format!("{} sent an invalid response.", target.host),
    }
}

async fn connect(shared: &Shared, target: &Target) -> Result<Box<dyn Io>, Refusal> {
    let t = shared.config.timeouts;
    let addr = shared
        .egress
        .resolve(&target.host, target.port)
        .await
        .map_err(|e| match e {
            EgressError::Refused { .. } => Refusal::EgressBlocked {
                host: target.host.clone(),
            },
            EgressError::Unresolvable(_) => Refusal::BadGateway {
                message: format!("OneCLI gateway could not resolve {}.", target.host),
            },
        })?;
    let tcp = match tokio::time::timeout(t.connect, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(_)) => {
            return Err(Refusal::BadGateway {
                message: format!("{} refused the connection.", target.host),
            })
        }
        Err(_) => {
            return Err(Refusal::UpstreamTimeout {
                host: target.host.clone(),
            })
        }
    };
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return Ok(Box::new(tcp));
    }
    let config = shared
        .upstream_tls
        .configure()
        .map_err(|_| Refusal::BadGateway {
            message: "OneCLI gateway internal error.".into(),
        })?;
    match tokio::time::timeout(t.tls, tokio_boring::connect(config, &target.host, tcp)).await {
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err(_)) => Err(Refusal::BadGateway {
            message: format!(
                "TLS with {} failed: its certificate is not trusted or the handshake failed.",
                target.host
            ),
        }),
        Err(_) => Err(Refusal::UpstreamTimeout {
            host: target.host.clone(),
        }),
    }
}

/// How an HTTP/1.1 response body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

impl Framing {
    fn of(head: &ResponseHead, head_request: bool) -> Framing {
        if head_request
            || (100..200).contains(&head.status)
            || head.status == 204
            || head.status == 304
        {
            return Framing::None;
        }
        let header = |name: &str| {
            head.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
        };
        if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().ends_with(b"chunked"))
        {
            return Framing::Chunked;
        }
        match header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
        {
            Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    }
}

/// Streams the body to the client, decoded; Pingora frames it again.
async fn relay_body<R: AsyncRead + Unpin>(
    session: &mut Session,
    reader: &mut BufReader<R>,
    framing: Framing,
    idle: Duration,
    scrub: &mut Option<crate::inject::BodyScrub>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut send = |n: usize, buf: &[u8]| match scrub.as_mut() {
        Some(scrub) => Bytes::from(scrub.feed(&buf[..n], false)),
        None => Bytes::copy_from_slice(&buf[..n]),
    };
    match framing {
        Framing::None => return Ok(()),
        Framing::Length(mut left) => {
            while left > 0 {
                let want = (left as usize).min(CHUNK);
                let n = timed(idle, reader.read(&mut buf[..want])).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                left -= n as u64;
                write(session, send(n, &buf)).await?;
            }
        }
        Framing::UntilClose => loop {
            let n = timed(idle, reader.read(&mut buf)).await?;
            if n == 0 {
                break;
            }
            write(session, send(n, &buf)).await?;
        },
        Framing::Chunked => loop {
            let mut line = Vec::new();
            timed(idle, (&mut *reader).take(1024).read_until(b'\n', &mut line)).await?;
            let text = std::str::from_utf8(&line).unwrap_or("");
            let size_text = text.split(';').next().unwrap_or("").trim();
            let mut left = u64::from_str_radix(size_text, 16)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            if left == 0 {
                // Trailers, up to the blank line; dropped.
                loop {
                    let mut trailer = Vec::new();
                    let n = timed(
                        idle,
                        (&mut *reader).take(8192).read_until(b'\n', &mut trailer),
                    )
                    .await?;
                    if n == 0 || trailer == b"\r\n" || trailer == b"\n" {
                        break;
                    }
                }
                break;
            }
            while left > 0 {
                let want = (left as usize).min(CHUNK);
                let n = timed(idle, reader.read(&mut buf[..want])).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                left -= n as u64;
                write(session, send(n, &buf)).await?;
            }
            let mut crlf = Vec::new();
            timed(idle, (&mut *reader).take(2).read_until(b'\n', &mut crlf)).await?;
        },
    }
    if let Some(rest) = scrub.as_mut().map(|s| s.feed(&[], true)) {
        write(session, Bytes::from(rest)).await?;
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
}

async fn timed<T>(
    idle: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(idle, f)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

async fn write(session: &mut Session, bytes: Bytes) -> std::io::Result<()> {
    session
        .write_response_body(Some(bytes), false)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Copies bytes both ways until either side closes or stays silent for `idle`.
async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session,
    mut upstream: S,
    idle: Duration,
) {
    let mut buf = vec![0u8; CHUNK];
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

/// The upstream's head for the client. Framing headers are the gateway's to
/// set, except that a 101 keeps `Connection` and `Upgrade`, and a
/// Content-Length body keeps its length.
fn response_header(head: &ResponseHead, upgrade: bool) -> pingora_core::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(head.status, Some(head.headers.len()))?;
    let chunked = Framing::of(head, false) == Framing::Chunked;
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        let hop_by_hop = matches!(
            lower.as_str(),
            "transfer-encoding" | "keep-alive" | "proxy-connection"
        ) || (lower == "content-length" && chunked)
            || (!upgrade && matches!(lower.as_str(), "connection" | "upgrade"));
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

    fn head(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            len: 0,
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(
            Framing::of(&head(200, &[("Content-Length", "5")]), false),
            Framing::Length(5)
        );
        assert_eq!(
            Framing::of(&head(200, &[("content-length", "0")]), false),
            Framing::None
        );
        assert_eq!(
            Framing::of(
                &head(
                    200,
                    &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")]
                ),
                false
            ),
            Framing::Chunked
        );
        assert_eq!(Framing::of(&head(200, &[]), false), Framing::UntilClose);
        assert_eq!(Framing::of(&head(204, &[]), false), Framing::None);
        assert_eq!(
            Framing::of(&head(304, &[("content-length", "9")]), false),
            Framing::None
        );
        assert_eq!(
            Framing::of(&head(200, &[("content-length", "9")]), true),
            Framing::None,
            "HEAD"
        );
    }

    #[test]
    fn response_heads_drop_what_the_gateway_frames() {
        let r = response_header(
            &head(
                200,
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Connection", "close"),
                    ("X-A", "1"),
                ],
            ),
            false,
        )
        .expect("head");
        assert!(
            r.headers.get("transfer-encoding").is_none() && r.headers.get("connection").is_none()
        );
        assert_eq!(r.headers.get("x-a").map(|v| v.as_bytes()), Some(&b"1"[..]));
        let r = response_header(
            &head(101, &[("Connection", "upgrade"), ("Upgrade", "websocket")]),
            true,
        )
        .expect("head");
        assert!(r.headers.get("upgrade").is_some() && r.headers.get("connection").is_some());
        let r = response_header(&head(200, &[("Content-Length", "7")]), false).expect("head");
        assert_eq!(
            r.headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"7"[..])
        );
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
