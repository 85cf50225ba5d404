//! Pass-through tunnels: bytes copied both ways, untouched, for hosts the
//! policy marks pass-through (certificate-pinned clients, mTLS). Bounded by
//! an idle limit and ended at shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::egress::EgressError;
use crate::errors::Refusal;
use crate::Shared;

/// Resolves, egress-checks and connects to a pass-through upstream.
pub async fn open(shared: &Shared, host: &str, port: u16) -> Result<TcpStream, Refusal> {
    let addr = shared
        .egress
        .resolve(host, port)
        .await
        .map_err(|error| match error {
            EgressError::Refused { .. } => Refusal::EgressBlocked {
                host: host.to_owned(),
            },
            EgressError::Unresolvable(_) => Refusal::BadGateway {
                message: format!("OneCLI gateway could not resolve {host}."),
            },
        })?;
    match tokio::time::timeout(shared.config.timeouts.connect, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(_)) => Err(Refusal::BadGateway {
            message: format!("{host} refused the connection."),
        }),
        Err(_) => Err(Refusal::UpstreamTimeout {
            host: host.to_owned(),
        }),
    }
}

const MAX_COPY_BUFFER: usize = 16 * 1024;

/// Copies bytes both ways until either side closes, the tunnel idles out,
/// or the gateway shuts down.
pub async fn pass_through(
    shared: &Shared,
    mut client: Box<L4Stream>,
    mut upstream: TcpStream,
    early: &[u8],
    shutdown: &ShutdownWatch,
) {
    let timeouts = shared.config.timeouts;
    let _ = upstream.set_nodelay(true);
    if !early.is_empty() && upstream.write_all(early).await.is_err() {
        return;
    }
    let mut shutdown = shutdown.clone();
    let (cr, cw) = tokio::io::split(&mut *client);
    let (ur, uw) = upstream.split();
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    tokio::select! {
        _ = async { tokio::join!(copy(cr, uw, &last, start), copy(ur, cw, &last, start)) } => {}
        _ = idle_watch(&last, start, timeouts.idle) => tracing::debug!("pass-through tunnel idle, closed"),
        _ = shutdown.changed() => {}
    }
}

async fn copy<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut from: R,
    mut to: W,
    last: &AtomicU64,
    start: Instant,
) {
    // Small until the traffic fills it: most tunnels sit idle most of the
    // time, and each holds two of these for as long as it is open.
    let mut buf = vec![0u8; 4 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
                    break;
                }
                last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                if n == buf.len() && buf.len() < MAX_COPY_BUFFER {
                    buf.resize(buf.len() * 2, 0);
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

async fn idle_watch(last: &AtomicU64, start: Instant, idle: Duration) {
    let tick = (idle / 4).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(tick).await;
        let quiet = start
            .elapsed()
            .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
        if quiet >= idle {
            return;
        }
    }
}
