//! A deadline on every request head of an HTTP/1.x connection that Pingora
//! serves. Pingora times each read of a head, not the head: a client that
//! dribbles a byte every few seconds keeps a partial head (and the
//! connection) forever. This stream wrapper watches the bytes go by: from a
//! head's first byte to its blank line the client has `limit`, after which
//! the read fails and Pingora closes the connection.
//!
//! A head starts with the first byte read while the connection is between
//! requests, and ends at `\r\n\r\n`. The connection is between requests
//! again once a final response head (`HTTP/1.x` with a status of 200 or
//! more) is written: interim answers (`100 Continue`) and upgrades (`101`)
//! keep the request open, so a slow body or a WebSocket is never timed.
//!
//! Before its first byte, a connection has the idle limit: a tunnel opened
//! and then left silent is closed, not kept forever. HTTP/2 connections get
//! only that (h2 times its own frames).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

enum State {
    /// Nothing read yet: the connection may stay silent until `deadline`.
    Fresh { deadline: Pin<Box<Sleep>> },
    /// Between requests: the next byte read starts a head.
    Idle,
    /// Reading a head; `tail` holds its last bytes, to find `\r\n\r\n`
    /// across reads.
    Head {
        deadline: Pin<Box<Sleep>>,
        tail: Vec<u8>,
    },
    /// The head is complete: body, response, or an upgraded stream.
    Request,
}

pub struct HeadDeadline {
    inner: Stream,
    clock: Clock,
}

impl HeadDeadline {
    /// An HTTP/1.x connection: `idle` for its first byte, `head` for each
    /// request head.
    pub fn new(inner: Stream, head: Duration, idle: Duration) -> HeadDeadline {
        HeadDeadline {
            inner,
            clock: Clock::new(head, idle, false),
        }
    }

    /// An HTTP/2 connection: `idle` for its first byte, nothing after.
    pub fn h2(inner: Stream, idle: Duration) -> HeadDeadline {
        HeadDeadline {
            inner,
            clock: Clock::new(idle, idle, true),
        }
    }
}

/// Where the connection stands, from the bytes that went by.
struct Clock {
    limit: Duration,
    /// HTTP/2: once the first byte is in, nothing is timed here.
    h2: bool,
    state: State,
}

impl Clock {
    fn new(limit: Duration, idle: Duration, h2: bool) -> Clock {
        Clock {
            limit,
            h2,
            state: State::Fresh {
                deadline: Box::pin(tokio::time::sleep(idle)),
            },
        }
    }

    fn saw_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if matches!(self.state, State::Fresh { .. }) {
            self.state = if self.h2 { State::Request } else { State::Idle };
        }
        if matches!(self.state, State::Idle) {
            self.state = State::Head {
                deadline: Box::pin(tokio::time::sleep(self.limit)),
                tail: Vec::with_capacity(8),
            };
        }
        if let State::Head { tail, .. } = &mut self.state {
            // The blank line may straddle two reads: look across the seam.
            let mut seam = tail.clone();
            seam.extend_from_slice(&bytes[..bytes.len().min(3)]);
            if contains_blank_line(&seam) || contains_blank_line(bytes) {
                self.state = State::Request;
            } else {
                tail.extend_from_slice(&bytes[bytes.len().saturating_sub(3)..]);
                let excess = tail.len().saturating_sub(3);
                tail.drain(..excess);
            }
        }
    }

    fn saw_write(&mut self, bytes: &[u8]) {
        if !self.h2 && matches!(self.state, State::Request) && is_final_response_head(bytes) {
            self.state = State::Idle;
        }
    }
}

fn contains_blank_line(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == b"\r\n\r\n")
}

/// `HTTP/1.x NNN` with NNN at least 200.
fn is_final_response_head(bytes: &[u8]) -> bool {
    let Some(rest) = bytes
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| bytes.strip_prefix(b"HTTP/1.0 "))
    else {
        return false;
    };
    match rest.get(..3) {
        Some(code) if code.iter().all(u8::is_ascii_digit) => code[0] >= b'2',
        _ => false,
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.clock.saw_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let (deadline, what) = match &mut this.clock.state {
                    State::Head { deadline, .. } => {
                        (deadline, "the request head did not arrive in time")
                    }
                    State::Fresh { deadline } => (deadline, "no request came in time"),
                    State::Idle | State::Request => return Poll::Pending,
                };
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.clock.saw_write(&buf[..n]);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &written {
            if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
                this.clock.saw_write(&first[..first.len().min(*n)]);
            }
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeadDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl std::fmt::Debug for HeadDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadDeadline")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_head(clock: &Clock) -> bool {
        matches!(clock.state, State::Head { .. })
    }

    #[tokio::test]
    async fn heads_are_timed_from_first_byte_to_blank_line() {
        let mut clock = Clock::new(Duration::from_secs(10), Duration::from_secs(60), false);
        assert!(matches!(clock.state, State::Fresh { .. }));
        clock.saw_read(b"");
        assert!(matches!(clock.state, State::Fresh { .. }));
        clock.saw_read(b"GET / HTTP/1.1\r\nHost: a\r");
        assert!(in_head(&clock));
        // The blank line split over three reads.
        clock.saw_read(b"\n");
        clock.saw_read(b"\r");
        assert!(in_head(&clock));
        clock.saw_read(b"\nbody");
        assert!(matches!(clock.state, State::Request));
        // A body, an interim answer and more body: still the same request.
        clock.saw_read(b"more body\r\n\r\n");
        clock.saw_write(b"HTTP/1.1 100 Continue\r\n\r\n");
        clock.saw_read(b"GET /looks-like-a-head");
        assert!(matches!(clock.state, State::Request));
        // The final answer: the next byte starts a new head.
        clock.saw_write(b"HTTP/1.1 200 OK\r\n");
        assert!(matches!(clock.state, State::Idle));
        clock.saw_read(b"G");
        assert!(in_head(&clock));
        clock.saw_read(b"ET / HTTP/1.1\r\n\r\n");
        // An upgrade keeps the stream a request for good.
        clock.saw_write(b"HTTP/1.1 101 Switching Protocols\r\n");
        assert!(matches!(clock.state, State::Request));
    }

    #[tokio::test]
    async fn h2_connections_are_timed_only_until_their_first_byte() {
        let mut clock = Clock::new(Duration::from_secs(60), Duration::from_secs(60), true);
        assert!(matches!(clock.state, State::Fresh { .. }));
        clock.saw_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert!(matches!(clock.state, State::Request));
        // Frames are never read as HTTP/1 heads or answers.
        clock.saw_write(b"HTTP/1.1 200 OK\r\n");
        clock.saw_read(b"GET / HTTP/1.1\r\n");
        assert!(matches!(clock.state, State::Request));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_fails_its_read_at_the_idle_limit_and_not_before() {
        let stream: Stream = Box::new(pingora_core::protocols::l4::stream::Stream::from(
            tokio::net::TcpStream::from_std(loopback_pair()).expect("tokio stream"),
        ));
        let mut wrapped =
            HeadDeadline::new(stream, Duration::from_secs(10), Duration::from_secs(60));
        let mut buf = [0u8; 8];
        let read = tokio::io::AsyncReadExt::read(&mut wrapped, &mut buf);
        tokio::pin!(read);
        tokio::select! {
            _ = &mut read => panic!("a read with nothing sent finished before the limit"),
            _ = tokio::time::sleep(Duration::from_secs(59)) => {}
        }
        let error = read.await.expect_err("the idle limit fails the read");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(error.to_string(), "no request came in time");
    }

    /// The server side of a loopback TCP connection whose client stays
    /// open and silent (leaked for the test's life).
    fn loopback_pair() -> std::net::TcpStream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        std::mem::forget(client);
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        server
    }

    #[test]
    fn final_response_heads() {
        assert!(is_final_response_head(b"HTTP/1.1 200 OK\r\n"));
        assert!(is_final_response_head(b"HTTP/1.0 404 Not Found\r\n"));
        assert!(!is_final_response_head(b"HTTP/1.1 100 Continue\r\n"));
        assert!(!is_final_response_head(
            b"HTTP/1.1 101 Switching Protocols\r\n"
        ));
        assert!(!is_final_response_head(b"{\"HTTP/1.1 200\"}"));
        assert!(!is_final_response_head(b"HTTP/1.1 2"));
    }
}
