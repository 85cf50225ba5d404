//! Reads the first request head off a fresh connection, bounded in size and
//! time, before anything else looks at the bytes.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Large enough for real clients' heads (cookies included), small enough
/// that a slow or hostile client cannot make us buffer much.
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    TooLarge,
    Malformed,
    TimedOut,
    /// The client closed before sending a whole head.
    Closed,
}

pub struct Head {
    pub method: String,
    pub target: String,
    pub proxy_authorization: Option<Vec<u8>>,
    /// Length of the head in the buffer; bytes after it belong to the body
    /// or, after CONNECT, to the tunnel.
    pub len: usize,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("method", &self.method)
            .field("target", &self.target)
            .field(
                "proxy_authorization",
                &self.proxy_authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("len", &self.len)
            .finish()
    }
}

/// Reads until a whole request head is in `buf` and parses it.
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Head, HeadError> {
    read_until(stream, buf, timeout, parse).await
}

/// A response head read from an upstream.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Length of the head in the buffer; what follows is body.
    pub len: usize,
}

/// Reads until a whole response head is in `buf` and parses it.
pub async fn read_response_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<ResponseHead, HeadError> {
    read_until(stream, buf, timeout, parse_response).await
}

async fn read_until<S: AsyncRead + Unpin, T>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    timeout: Duration,
    parse: fn(&[u8]) -> Result<Option<T>, HeadError>,
) -> Result<T, HeadError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head) = parse(buf)? {
            return Ok(head);
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .map_err(|_| HeadError::TimedOut)?
            .map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub(crate) fn parse_response(buf: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => Ok(Some(ResponseHead {
            status: resp.code.ok_or(HeadError::Malformed)?,
            headers: resp
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
            len,
        })),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(_) => Err(HeadError::Malformed),
    }
}

pub(crate) fn parse(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            if len > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            let (Some(method), Some(target)) = (req.method, req.path) else {
                return Err(HeadError::Malformed);
            };
            let proxy_authorization = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
                .map(|h| h.value.to_vec());
            Ok(Some(Head {
                method: method.to_owned(),
                target: target.to_owned(),
                proxy_authorization,
                len,
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(_) => Err(HeadError::Malformed),
    }
}

/// Splits an authority whose port is optional (`host`, `[v6]`, or with
/// `:port`), validating both parts.
pub fn parse_authority(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let bare_v6 = authority
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'));
    let host = match bare_v6 {
        Some(v6) => v6,
        None if !authority.contains(':') => authority,
        None => return split_authority(authority),
    };
    valid_host(host).then_some((host, default_port))
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
}

/// Splits a CONNECT target `host:port` / `[v6]:port`. The port is required.
pub fn split_authority(target: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = target.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    valid_host(host).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_head_split_across_reads() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for part in [
                "CONNECT a.test:443 HTTP/1.1\r\n",
                "Proxy-Authorization: Basic eDp5\r\n",
                "\r\nTLSBYTES",
            ] {
                client.write_all(part.as_bytes()).await.expect("write");
            }
        });
        let mut buf = Vec::new();
        let head = read_head(&mut server, &mut buf, Duration::from_secs(5))
            .await
            .expect("head");
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("CONNECT", "a.test:443")
        );
        assert_eq!(
            head.proxy_authorization.as_deref(),
            Some(&b"Basic eDp5"[..])
        );
        // Bytes past the head may or may not have arrived yet; what did is kept.
        assert!(b"TLSBYTES".starts_with(&buf[head.len..]));
    }

    #[tokio::test]
    async fn oversize_heads_are_refused() {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        use tokio::io::AsyncWriteExt;
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        client.write_all(big.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        assert_eq!(
            read_head(&mut server, &mut buf, Duration::from_secs(5))
                .await
                .err(),
            Some(HeadError::TooLarge)
        );
    }

    #[tokio::test]
    async fn garbage_and_silence_are_errors() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        use tokio::io::AsyncWriteExt;
        client
            .write_all(b"\x16\x03\x01garbage\r\n\r\n")
            .await
            .expect("write");
        let mut buf = Vec::new();
        assert_eq!(
            read_head(&mut server, &mut buf, Duration::from_secs(5))
                .await
                .err(),
            Some(HeadError::Malformed)
        );
        let (_quiet, mut server) = tokio::io::duplex(1024);
        let mut buf = Vec::new();
        assert_eq!(
            read_head(&mut server, &mut buf, Duration::from_millis(20))
                .await
                .err(),
            Some(HeadError::TimedOut)
        );
    }

    #[test]
    fn authorities_with_optional_ports() {
        assert_eq!(parse_authority("a.test", 443), Some(("a.test", 443)));
        assert_eq!(parse_authority("a.test:8080", 443), Some(("a.test", 8080)));
        assert_eq!(parse_authority("[::1]", 80), Some(("::1", 80)));
        assert_eq!(parse_authority("[::1]:81", 80), Some(("::1", 81)));
        for bad in [
            "a.test:99999",
            "a.test:x",
            "user@a.test",
            "",
            "a b",
            "a.test:",
        ] {
            assert_eq!(parse_authority(bad, 80), None, "{bad}");
        }
    }

    #[test]
    fn connect_targets() {
        assert_eq!(split_authority("a.test:443"), Some(("a.test", 443)));
        assert_eq!(split_authority("[::1]:8443"), Some(("::1", 8443)));
        assert_eq!(split_authority("127.0.0.1:80"), Some(("127.0.0.1", 80)));
        for bad in [
            "a.test",
            "a.test:",
            "a.test:0",
            "a.test:99999",
            ":443",
            "a b:443",
            "::1:443",
            "a/b:443",
            "[::1]443",
        ] {
            assert_eq!(split_authority(bad), None, "{bad}");
        }
    }
}
