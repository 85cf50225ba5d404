//! Just enough of Redis' protocol (RESP2) for the shared rate limits: one
//! command at a time on one TCP connection, replies parsed as they arrive.
//! No pipelining, no pub/sub, no TLS. The callers bound every call with a
//! deadline; nothing here waits on its own.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::RedisUrl;

/// Largest bulk string or array accepted: our replies are a few integers.
const MAX_LEN: i64 = 1 << 20;
const MAX_DEPTH: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    /// An error reply (`-ERR …`, `-NOSCRIPT …`): the server's words.
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("Redis closed the connection")]
    Closed,
    #[error("Redis sent something that is not RESP: {0}")]
    Protocol(&'static str),
    /// An error reply to a command that had to succeed (AUTH, SELECT).
    #[error("Redis refused {command}: {message}")]
    Refused {
        command: &'static str,
        message: String,
    },
    #[error("Redis answered {0} where it should not")]
    Unexpected(&'static str),
    #[error("no address for the Redis host")]
    NoAddress,
}

pub struct Connection {
    stream: TcpStream,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
}

impl Connection {
    /// Connects, authenticates and selects the database.
    pub async fn open(url: &RedisUrl) -> Result<Connection, RespError> {
        let addr = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await?
            .next()
            .ok_or(RespError::NoAddress)?;
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut conn = Connection {
            stream,
            buf: Vec::with_capacity(256),
        };
        if let Some(password) = &url.password {
            let reply = match &url.username {
                Some(user) => {
                    conn.call(&[b"AUTH", user.as_bytes(), password.as_bytes()])
                        .await?
                }
                None => conn.call(&[b"AUTH", password.as_bytes()]).await?,
            };
            expect_ok("AUTH", reply)?;
        }
        if url.db != 0 {
            let reply = conn
                .call(&[b"SELECT", url.db.to_string().as_bytes()])
                .await?;
            expect_ok("SELECT", reply)?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply. An error reply is a `Reply`,
    /// not an `Err`: the caller decides (NOSCRIPT is expected).
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, RespError> {
        self.stream.write_all(&encode(args)).await?;
        loop {
            if let Some((reply, used)) = parse(&self.buf, 0)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0u8; 512];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(RespError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether an idle connection from the pool can be used again: still
    /// open, and nothing unread on it (a reply that arrived after its
    /// caller gave up would answer the next command).
    pub fn is_reusable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        matches!(self.stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

fn expect_ok(command: &'static str, reply: Reply) -> Result<(), RespError> {
    match reply {
        Reply::Status(s) if s == "OK" => Ok(()),
        Reply::Error(message) => Err(RespError::Refused { command, message }),
        _ => Err(RespError::Unexpected(command)),
    }
}

/// A command as an array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One reply from the front of `buf`, and how many bytes it took; `None`
/// when it has not all arrived yet.
pub fn parse(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, RespError> {
    if depth > MAX_DEPTH {
        return Err(RespError::Protocol("arrays nested too deep"));
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > 64 * 1024 {
            Err(RespError::Protocol("line too long"))
        } else {
            Ok(None)
        };
    };
    let Some((&kind, line)) = buf[..end].split_first() else {
        return Err(RespError::Protocol("empty line"));
    };
    let line = std::str::from_utf8(line).map_err(|_| RespError::Protocol("line is not UTF-8"))?;
    let after = end + 2;
    let number = || {
        line.parse::<i64>()
            .map_err(|_| RespError::Protocol("bad number"))
    };
    match kind {
        b'+' => Ok(Some((Reply::Status(line.to_owned()), after))),
        b'-' => Ok(Some((Reply::Error(line.to_owned()), after))),
        b':' => Ok(Some((Reply::Integer(number()?), after))),
        b'$' => {
            let len = number()?;
            if len == -1 {
                return Ok(Some((Reply::Bulk(None), after)));
            }
            if !(0..=MAX_LEN).contains(&len) {
                return Err(RespError::Protocol("bad bulk length"));
            }
            let len = len as usize;
            let Some(rest) = buf.get(after..after + len + 2) else {
                return Ok(None);
            };
            if &rest[len..] != b"\r\n" {
                return Err(RespError::Protocol("bulk string not terminated"));
            }
            Ok(Some((
                Reply::Bulk(Some(rest[..len].to_vec())),
                after + len + 2,
            )))
        }
        b'*' => {
            let len = number()?;
            if len == -1 {
                return Ok(Some((Reply::Array(None), after)));
            }
            if !(0..=MAX_LEN).contains(&len) {
                return Err(RespError::Protocol("bad array length"));
            }
            let mut items = Vec::with_capacity((len as usize).min(64));
            let mut at = after;
            for _ in 0..len {
                match parse(&buf[at..], depth + 1)? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err(RespError::Protocol("unknown reply type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&[b"EVALSHA", b"ab", b"0"]),
            b"*3\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n0\r\n"
        );
    }

    #[test]
    fn every_reply_kind_parses() {
        let cases: &[(&[u8], Reply)] = &[
            (b"+OK\r\n", Reply::Status("OK".into())),
            (
                b"-NOSCRIPT No matching script\r\n",
                Reply::Error("NOSCRIPT No matching script".into()),
            ),
            (b":-42\r\n", Reply::Integer(-42)),
            (b"$3\r\na\r\n\r\n", Reply::Bulk(Some(b"a\r\n".to_vec()))),
            (b"$-1\r\n", Reply::Bulk(None)),
            (b"*-1\r\n", Reply::Array(None)),
            (
                b"*2\r\n:0\r\n*1\r\n$0\r\n\r\n",
                Reply::Array(Some(vec![
                    Reply::Integer(0),
                    Reply::Array(Some(vec![Reply::Bulk(Some(vec![]))])),
                ])),
            ),
        ];
        for (wire, want) in cases {
            let (got, used) = parse(wire, 0).expect("valid").expect("complete");
            assert_eq!(
                (&got, used),
                (want, wire.len()),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn a_reply_split_anywhere_waits_for_the_rest() {
        let wire = b"*2\r\n:1\r\n$5\r\nhello\r\n+OK\r\n";
        let whole = wire.len() - 5;
        for cut in 0..whole {
            assert!(
                parse(&wire[..cut], 0).expect("valid so far").is_none(),
                "cut at {cut}"
            );
        }
        let (_, used) = parse(wire, 0).expect("valid").expect("complete");
        assert_eq!(used, whole, "the next reply is left in the buffer");
    }

    #[test]
    fn garbage_is_refused() {
        for wire in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$-2\r\n",
            b"$2\r\nabc\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            b"\r\n",
        ] {
            assert!(
                parse(wire, 0).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }
}
