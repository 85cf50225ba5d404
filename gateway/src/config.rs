//! The gateway's validated settings. The CLI parses flags into this; nothing
//! here can be invalid once built.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// CA certificate and key PEM files; `None` = generate into the data dir.
    pub ca_files: Option<(PathBuf, PathBuf)>,
    /// Extra roots trusted for upstream TLS, on top of the system roots.
    pub upstream_ca: Option<PathBuf>,
    pub resolve: Vec<ResolveOverride>,
    pub egress_allow: Vec<EgressAllow>,
    pub timeouts: Timeouts,
    /// Base URL of the dashboard, for links in error bodies.
    pub dashboard_url: String,
    pub threads: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    pub leaf_cache_capacity: usize,
    /// Other addresses that are never upstreams (the control service).
    pub protected: Vec<SocketAddr>,
    /// How long a request waits for a human before it is denied.
    pub approval_timeout: Duration,
    /// How long the body of a request to be held may take to arrive: a body
    /// dribbled a byte at a time does not keep an approval slot.
    pub held_body_timeout: Duration,
}

impl GatewayConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        GatewayConfig {
            listen,
            metrics_listen: None,
            data_dir,
            ca_files: None,
            upstream_ca: None,
            resolve: Vec::new(),
            egress_allow: Vec::new(),
            timeouts: Timeouts::default(),
            dashboard_url: "http://localhost:10254".to_owned(),
            threads: 2,
            shutdown_timeout: Duration::from_secs(5),
            leaf_cache_capacity: 10_000,
            protected: Vec::new(),
            approval_timeout: Duration::from_secs(180),
            held_body_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Client must send its request head (or TLS ClientHello) within this.
    pub client_head: Duration,
    /// TCP connect to the upstream.
    pub connect: Duration,
    /// TCP connect plus TLS handshake to the upstream.
    pub tls: Duration,
    /// Longest the upstream may stay silent: waiting for the response head
    /// and between body chunks (long LLM streams need it generous).
    pub read: Duration,
    /// Pooled upstream connections idle longer than this are closed; also
    /// the idle limit of pass-through tunnels.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            client_head: Duration::from_secs(10),
            connect: Duration::from_secs(10),
            tls: Duration::from_secs(15),
            read: Duration::from_secs(300),
            idle: Duration::from_secs(90),
        }
    }
}

/// `--resolve HOST:PORT:ADDR`, curl's syntax: pins a host and port to an
/// address. A pinned address is trusted by the egress guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOverride {
    pub host: String,
    pub port: u16,
    pub addr: IpAddr,
}

impl std::str::FromStr for ResolveOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not HOST:PORT:ADDR");
        let (host, rest) = s.split_once(':').ok_or_else(bad)?;
        let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(ResolveOverride {
            host: host.to_ascii_lowercase(),
            port: port
                .parse()
                .map_err(|_| format!("{s:?}: bad port {port:?}"))?,
            addr: addr
                .parse()
                .map_err(|_| format!("{s:?}: bad address {addr:?}"))?,
        })
    }
}

/// An exception to the egress guard: a network (`10.0.0.0/8`) or a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressAllow {
    Net { addr: IpAddr, prefix: u8 },
    Host(String),
}

impl std::str::FromStr for EgressAllow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        match addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let prefix = match prefix {
                    Some(p) => p
                        .parse::<u8>()
                        .ok()
                        .filter(|&p| p <= max)
                        .ok_or_else(|| format!("{s:?}: bad prefix length"))?,
                    None => max,
                };
                Ok(EgressAllow::Net { addr: ip, prefix })
            }
            Err(_) if prefix.is_none() && !s.is_empty() => {
                Ok(EgressAllow::Host(s.to_ascii_lowercase()))
            }
            Err(_) => Err(format!("{s:?} is neither an address, a network nor a host")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_overrides_parse_like_curl() {
        let r: ResolveOverride = "API.test:443:127.0.0.1".parse().expect("valid");
        assert_eq!(
            r,
            ResolveOverride {
                host: "api.test".into(),
                port: 443,
                addr: "127.0.0.1".parse().expect("ip")
            }
        );
        let r: ResolveOverride = "h:8443:[::1]".parse().expect("valid");
        assert_eq!(r.addr, "::1".parse::<IpAddr>().expect("ip"));
        assert!("h:443".parse::<ResolveOverride>().is_err());
        assert!("h:x:127.0.0.1".parse::<ResolveOverride>().is_err());
        assert!("h:443:nope".parse::<ResolveOverride>().is_err());
    }

    #[test]
    fn egress_allow_parses_nets_and_hosts() {
        assert_eq!(
            "10.0.0.0/8".parse(),
            Ok(EgressAllow::Net {
                addr: "10.0.0.0".parse().expect("ip"),
                prefix: 8
            })
        );
        assert_eq!(
            "::1".parse(),
            Ok(EgressAllow::Net {
                addr: "::1".parse().expect("ip"),
                prefix: 128
            })
        );
        assert_eq!(
            "Intranet.corp".parse(),
            Ok(EgressAllow::Host("intranet.corp".into()))
        );
        assert!("10.0.0.0/33".parse::<EgressAllow>().is_err());
    }
}
