//! The gateway's listener (PINGORA.md): Pingora's HTTP proxy refuses
//! CONNECT, so this `ServerApp` reads the first request head itself. CONNECT
//! is authenticated and answered here, then the tunnel is intercepted (TLS
//! with a minted leaf, or plain HTTP) and handed to the same `HttpProxy`, or
//! passed through as raw bytes. Anything else is rewound and handed over.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use onecli_policy::{normalize_host, CanonicalRequest, TokenHash};
use pingora_core::apps::ServerApp;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::server::handshake_with_callback;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::protocols::{GetProxyDigest, GetSocketDigest, Stream, ALPN};

use crate::head_deadline::HeadDeadline;
use pingora_core::server::ShutdownWatch;
use pingora_core::tls::ext::{ssl_use_certificate, ssl_use_private_key};
use pingora_http::ResponseHeader;
use pingora_proxy::HttpProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::errors::Refusal;
use crate::head::{read_head, split_authority, HeadError};
use crate::proxy::{enforce_rules, GatewayProxy, Target, Verdict};
use crate::slots::Full;
use crate::{auth, tunnel, Shared};

/// What a CONNECT established, carried to every request in the tunnel
/// through the stream's `ProxyDigest` (h1 and h2 alike).
#[derive(Debug)]
pub struct TunnelFacts {
    /// The agent, by token hash: resolved against the snapshot in force at
    /// each request, so policy changes reach open tunnels.
    pub token: TokenHash,
    /// Normalized CONNECT host.
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

pub struct FrontDoor {
    shared: Arc<Shared>,
    proxy: Arc<HttpProxy<GatewayProxy>>,
}

const TLS_HANDSHAKE_RECORD: u8 = 0x16;
const HTTPS_PORT: u16 = 443;

impl FrontDoor {
    pub fn new(shared: Arc<Shared>, proxy: Arc<HttpProxy<GatewayProxy>>) -> Self {
        FrontDoor { shared, proxy }
    }

    async fn connect(
        self: &Arc<Self>,
        mut l4: Box<L4Stream>,
        mut buf: Vec<u8>,
        head_len: usize,
        token: Option<TokenHash>,
        target: &str,
        shutdown: &ShutdownWatch,
    ) {
        let Some((host, port)) = split_authority(target) else {
            return refuse(&mut l4, Refusal::BadRequest("CONNECT needs host:port")).await;
        };
        let Some(snapshot) = self.shared.policy.current() else {
            return refuse(&mut l4, Refusal::NotReady).await;
        };
        let Some(token) = token.filter(|t| snapshot.agent_by_token_hash(t).is_some()) else {
            return refuse(&mut l4, Refusal::ProxyAuthRequired).await;
        };
        let host = normalize_host(host).into_owned();
        let passthrough = snapshot.is_passthrough(&host, port);
        if passthrough {
            // Nothing inside a pass-through tunnel is visible: the rules
            // judge it once, as `CONNECT /`.
            let target = Target {
                host: host.clone(),
                port,
                tls: true,
            };
            let none: [&[u8]; 0] = [];
            let connect =
                CanonicalRequest::new("CONNECT", "/", none).expect("`CONNECT /` is canonical");
            match enforce_rules(
                &self.shared,
                &snapshot,
                &token,
                &target,
                &connect,
                &mut None,
            )
            .await
            {
                Verdict::Proceed => {}
                Verdict::Refuse(refusal) => return refuse(&mut l4, refusal).await,
                // Nothing in a pass-through tunnel can be shown to a reviewer.
                Verdict::Hold => return refuse(&mut l4, Refusal::ApprovalUnavailable).await,
            }
        }
        drop(snapshot);
        // A pass-through upstream is reached before the client hears 200,
        // so a refusal can still be answered.
        let upstream = if passthrough {
            match tunnel::open(&self.shared, &host, port).await {
                Ok(upstream) => Some(upstream),
                Err(refusal) => return refuse(&mut l4, refusal).await,
            }
        } else {
            None
        };

        if l4
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
            || l4.flush().await.is_err()
        {
            return;
        }
        let mut early = buf.split_off(head_len);
        drop(buf);
        let metrics = &self.shared.metrics;
        metrics.tunnels_open.inc();
        let _open = scopeguard(|| metrics.tunnels_open.dec());

        if let Some(upstream) = upstream {
            metrics.tunnels.with_label_values(&["passthrough"]).inc();
            return tunnel::pass_through(&self.shared, l4, upstream, &early, shutdown).await;
        }
        // Peek at the client's first byte: a TLS handshake is intercepted,
        // anything else is served as plain HTTP (CONNECT host:80).
        if early.is_empty() {
            let mut first = [0u8; 1024];
            match tokio::time::timeout(self.shared.config.timeouts.client_head, l4.read(&mut first))
                .await
            {
                Ok(Ok(n)) if n > 0 => early.extend_from_slice(&first[..n]),
                _ => return,
            }
        }
        let tls = early[0] == TLS_HANDSHAKE_RECORD;
        if !tls && port == HTTPS_PORT {
            // Plain HTTP to the HTTPS port would send credentials in the clear.
            tracing::debug!(host = %host, "plaintext in a CONNECT to 443 refused");
            return;
        }
        l4.rewind(&early);
        drop(early);
        let facts = TunnelFacts {
            token,
            host,
            port,
            tls,
        };
        let mode = if tls { "intercept" } else { "plain" };
        metrics.tunnels.with_label_values(&[mode]).inc();
        let connect_host = facts.host.clone();
        l4.set_proxy_digest(ProxyDigest::new(
            Box::new(established()),
            Some(Box::new(facts)),
        ));

        let stream: Stream = if tls {
            let installer = LeafInstaller {
                shared: self.shared.clone(),
                host: connect_host,
            };
            // Boxed: this future lives as long as the connection, and would
            // otherwise keep room for the handshake's state all that time.
            let handshake = Box::pin(handshake_with_callback(
                &self.shared.acceptor,
                *l4,
                &installer,
            ));
            match tokio::time::timeout(self.shared.config.timeouts.client_head, handshake).await {
                Ok(Ok(tls_stream)) => Box::new(tls_stream),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "client TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        } else {
            l4
        };
        // HTTP/1.x heads get a deadline each (h2 frames its own); both
        // must start a request within the idle limit.
        let timeouts = &self.shared.config.timeouts;
        let stream: Stream = match stream.selected_alpn_proto() {
            Some(ALPN::H2) => Box::new(HeadDeadline::h2(stream, timeouts.client_idle)),
            _ => Box::new(HeadDeadline::new(
                stream,
                timeouts.client_head,
                timeouts.client_idle,
            )),
        };
        ServerApp::process_new(&self.proxy, stream, shutdown).await;
    }
}

#[async_trait]
impl ServerApp for FrontDoor {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut l4 = match stream.into_any().downcast::<L4Stream>() {
            Ok(l4) => l4,
            Err(_) => {
                tracing::error!("listener handed over a stream that is not TCP");
                return None;
            }
        };
        // Counted for the connection's whole life: the proxy serves every
        // request of a connection inside this call.
        let client = client_address(&l4);
        let _slot = match self.shared.connections.try_take(&client) {
            Ok(slot) => slot,
            Err(full) => {
                let limit = match full {
                    Full::Total => "total",
                    Full::PerKey => "per_client",
                };
                let metrics = &self.shared.metrics;
                metrics
                    .connections_refused
                    .with_label_values(&[limit])
                    .inc();
                tracing::warn!(%client, limit, "connection refused: too many open");
                refuse(&mut l4, Refusal::TooManyConnections).await;
                // What the client sent meanwhile, read and dropped briefly:
                // closing with it unread would reset the connection, and the
                // client might lose the answer.
                let mut sink = [0u8; 4096];
                let _ = tokio::time::timeout(std::time::Duration::from_millis(200), async {
                    let mut left = 64 * 1024;
                    while left > 0 {
                        match l4.read(&mut sink).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => left -= n.min(left),
                        }
                    }
                })
                .await;
                return None;
            }
        };
        let metrics = &self.shared.metrics;
        metrics.connections_open.inc();
        let _open = scopeguard(|| metrics.connections_open.dec());
        let mut buf = Vec::with_capacity(1024);
        let head = match read_head(&mut l4, &mut buf, self.shared.config.timeouts.client_head).await
        {
            Ok(head) => head,
            Err(HeadError::TooLarge) => {
                refuse(&mut l4, Refusal::BadRequest("request head too large")).await;
                return None;
            }
            Err(HeadError::Malformed) => {
                refuse(&mut l4, Refusal::BadRequest("not an HTTP request")).await;
                return None;
            }
            Err(HeadError::TimedOut | HeadError::Closed) => return None,
        };
        if head.method.eq_ignore_ascii_case("CONNECT") {
            let token = head
                .proxy_authorization
                .as_deref()
                .and_then(auth::token_hash);
            self.connect(l4, buf, head.len, token, &head.target, shutdown)
                .await;
            return None;
        }
        l4.rewind(&buf);
        let timeouts = &self.shared.config.timeouts;
        let stream: Stream = Box::new(HeadDeadline::new(
            l4,
            timeouts.client_head,
            timeouts.client_idle,
        ));
        ServerApp::process_new(&self.proxy, stream, shutdown).await
    }

    async fn cleanup(&self) {
        // Wakes keep-alive readers inside the proxy at shutdown.
        ServerApp::cleanup(self.proxy.as_ref()).await;
    }
}

async fn refuse(l4: &mut L4Stream, refusal: Refusal) {
    let _ = l4.write_all(&refusal.to_http1()).await;
    let _ = l4.flush().await;
    let _ = AsyncWriteExt::shutdown(l4).await;
}

/// Whose connection this is, for the per-client limit: the IPv4 address
/// (IPv4-mapped IPv6 included), or the IPv6 /64, which one host holds
/// whole. Connections without an address (none here: the listener is TCP)
/// share the unspecified address's slots.
fn client_address(l4: &L4Stream) -> IpAddr {
    let ip = l4
        .get_socket_digest()
        .and_then(|digest| digest.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
        .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    client_key(ip)
}

fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

fn established() -> ResponseHeader {
    ResponseHeader::build(200, Some(0)).expect("200 is a valid status code")
}

/// Installs the leaf for the CONNECT host when the TLS handshake asks for a
/// certificate. The CONNECT host, not the SNI, names the leaf: clients of
/// IP-literal hosts send no SNI.
struct LeafInstaller {
    shared: Arc<Shared>,
    host: String,
}

#[async_trait]
impl TlsAccept for LeafInstaller {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        match self.shared.leaves.get(&self.host).await {
            Ok(leaf) => {
                if let Err(error) = ssl_use_certificate(ssl, &leaf.cert)
                    .and_then(|()| ssl_use_private_key(ssl, self.shared.leaves.key()))
                {
                    tracing::error!(%error, host = %self.host, "cannot install leaf certificate");
                }
            }
            Err(error) => tracing::error!(%error, "leaf certificate unavailable"),
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_64() {
        let key = |s: &str| client_key(s.parse().expect("ip")).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
