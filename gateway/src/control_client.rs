//! The gateway's side of talking to a control service: plain HTTP/1.1, one
//! request per connection, authenticated by the gateway token. Bodies are
//! read by Content-Length (the control service always sends one), bounded.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::head::{read_response_head, HeadError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("control URL {0:?} is not http://HOST:PORT[/PATH]")]
    BadUrl(String),
    #[error("cannot reach the control service: {0}")]
    Unreachable(String),
    #[error("the control service's answer is malformed: {0}")]
    Malformed(&'static str),
    #[error("project {0:?} is not a project id or identifier (letters, digits, - and _)")]
    BadProject(String),
}

pub struct ControlClient {
    host: String,
    port: u16,
    base_path: String,
    token: Zeroizing<String>,
    /// Sent as `X-Project-Id`: the project an admin key works in.
    project: Option<String>,
}

/// An answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl ControlClient {
    /// `url` is the control service's base URL (`http://control:10254`).
    pub fn new(url: &str, token: Zeroizing<String>) -> Result<Self, ClientError> {
        let bad = || ClientError::BadUrl(url.to_owned());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let base_path = format!("/{}", path.trim_end_matches('/'))
            .trim_end_matches('/')
            .to_owned();
        Ok(ControlClient {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            base_path,
            token,
            project: None,
        })
    }

    /// Works in `project` (an id or identifier): sent as `X-Project-Id`.
    /// Only identifier characters are taken, so that no value can add a
    /// header of its own.
    pub fn with_project(mut self, project: &str) -> Result<Self, ClientError> {
        if project.is_empty()
            || !project
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ClientError::BadProject(project.to_owned()));
        }
        self.project = Some(project.to_owned());
        Ok(self)
    }

    /// `path` starts with `/v1/`; `max_body` bounds what is read back.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Answer, ClientError> {
        tokio::time::timeout(
            timeout,
            self.exchange(method, path, body, timeout, max_body),
        )
        .await
        .map_err(|_| ClientError::Unreachable("no answer in time".into()))?
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Answer, ClientError> {
        let unreachable = |e: std::io::Error| ClientError::Unreachable(e.to_string());
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(unreachable)?;
        let body = body.unwrap_or_default();
        let project = self
            .project
            .as_deref()
            .map(|p| format!("X-Project-Id: {p}\r\n"))
            .unwrap_or_default();
        let head = Zeroizing::new(format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}:{}\r\nAuthorization: Bearer {}\r\n{project}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.base_path,
            self.host,
            self.port,
            self.token.as_str(),
            body.len()
        ));
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(unreachable)?;
        stream.write_all(body).await.map_err(unreachable)?;
        let mut buf = Vec::with_capacity(4096);
        let head = read_response_head(&mut stream, &mut buf, timeout)
            .await
            .map_err(|e| match e {
                HeadError::TimedOut => ClientError::Unreachable("no answer in time".into()),
                _ => ClientError::Malformed("bad response head"),
            })?;
        let length = head
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if length > max_body {
            return Err(ClientError::Malformed("body too large"));
        }
        let mut body = buf.split_off(head.len);
        if body.len() < length {
            let start = body.len();
            body.resize(length, 0);
            stream
                .read_exact(&mut body[start..])
                .await
                .map_err(unreachable)?;
        }
        body.truncate(length);
        Ok(Answer {
            status: head.status,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Result<ControlClient, ClientError> {
        ControlClient::new(url, Zeroizing::new("ogw_x".into()))
    }

    #[test]
    fn control_urls() {
        let c = client("http://127.0.0.1:10254").expect("valid");
        assert_eq!(
            (c.host.as_str(), c.port, c.base_path.as_str()),
            ("127.0.0.1", 10254, "")
        );
        let c = client("http://control.svc/onecli/").expect("valid");
        assert_eq!(
            (c.host.as_str(), c.port, c.base_path.as_str()),
            ("control.svc", 80, "/onecli")
        );
        for bad in ["https://x", "control:10254", "http://:1", "http://h:port"] {
            assert!(client(bad).is_err(), "{bad}");
        }
    }
}
