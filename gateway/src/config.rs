//! The gateway's validated settings. The CLI parses flags into this; nothing
//! here can be invalid once built.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

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
    /// `--rate-limit-store`: rate limits counted in this Redis, shared by
    /// every gateway that uses it. `None`: each gateway counts alone.
    pub rate_limit_store: Option<RedisUrl>,
    /// The longest a request waits on the store before the gateway counts
    /// alone (with its share of each limit) for a while.
    pub rate_limit_store_timeout: Duration,
    /// Client connections the gateway keeps open at once, and those from
    /// one address: past them a new connection is answered 503 and closed.
    pub max_connections: usize,
    pub max_connections_per_client: usize,
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
            rate_limit_store: None,
            rate_limit_store_timeout: crate::rate_limit::shared::BUDGET,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        }
    }
}

/// Enough for every agent of a busy host, bounded by the file descriptors
/// (one per client connection, one per upstream connection) and memory.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// One address may hold a quarter of them: one host's agents cannot take
/// every connection from the others.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 4_096;

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Client must send its request head (or TLS ClientHello) within this.
    pub client_head: Duration,
    /// A client connection through which no request has come yet (a
    /// CONNECT tunnel after its handshake) is closed after this; between
    /// requests, HTTP/1 keep-alive is 60 s and HTTP/2 `idle`.
    pub client_idle: Duration,
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
            client_idle: Duration::from_secs(60),
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

/// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`: where shared rate limits
/// are counted. The password never leaves this type except to the server:
/// `Display` and `Debug` show `***` in its place, and no parse error
/// repeats the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub username: Option<String>,
    pub password: Option<Zeroizing<String>>,
}

const REDIS_PORT: u16 = 6379;

impl std::str::FromStr for RedisUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = match s.split_once("://") {
            Some(("redis", rest)) => rest,
            Some(("rediss", _)) => {
                return Err(
                    "rediss:// (TLS) is not supported: use redis:// on a private network".into(),
                )
            }
            _ => return Err("the URL must start with redis://".into()),
        };
        if rest.contains(['?', '#']) {
            return Err("a redis:// URL takes no query or fragment".into());
        }
        let (authority, db) = match rest.split_once('/') {
            Some((authority, "")) => (authority, 0),
            Some((authority, db)) => (
                authority,
                db.parse()
                    .ok()
                    .filter(|_| db.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or("the path must be a database number (/0, /1, …)")?,
            ),
            None => (rest, 0),
        };
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((credentials, hostport)) => (Some(credentials), hostport),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        let (username, password) = match credentials {
            None => (None, None),
            Some(credentials) => {
                let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
                let user =
                    percent_decode(user).ok_or("the user name is not valid percent-encoding")?;
                let password = Zeroizing::new(
                    percent_decode(password).ok_or("the password is not valid percent-encoding")?,
                );
                if password.is_empty() {
                    return Err("a user name without a password: give redis://:PASSWORD@HOST or redis://USER:PASSWORD@HOST".into());
                }
                ((!user.is_empty()).then_some(user), Some(password))
            }
        };
        Ok(RedisUrl {
            host,
            port,
            db,
            username,
            password,
        })
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("an IPv6 host needs its closing ]")?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("[{host}] is not an IPv6 address"))?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("a port follows the host after :")?,
                ),
            ),
        }
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let name_ok = |h: &str| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    };
    if !name_ok(host) {
        return Err("the URL names no valid host".into());
    }
    let port = match port {
        None => REDIS_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&n| n != 0 && n.to_string() == p)
            .ok_or_else(|| format!("bad port {p:?}"))?,
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// `%XX` escapes decoded; `None` for a broken escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("redis://")?;
        if self.password.is_some() {
            write!(f, "{}:***@", self.username.as_deref().unwrap_or(""))?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        write!(f, ":{}/{}", self.port, self.db)
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
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

    #[test]
    fn redis_urls_parse_and_never_show_the_password() {
        let url: RedisUrl = "redis://:s3cr%40t@Redis.internal:6380/2"
            .parse()
            .expect("valid");
        assert_eq!(
            (url.host.as_str(), url.port, url.db, url.username.as_deref()),
            ("redis.internal", 6380, 2, None)
        );
        assert_eq!(url.password.as_deref().map(String::as_str), Some("s3cr@t"));
        assert_eq!(url.to_string(), "redis://:***@redis.internal:6380/2");
        assert!(!format!("{url:?}").contains("s3cr"));
        let url: RedisUrl = "redis://ops:pw@10.0.0.5".parse().expect("valid");
        assert_eq!((url.port, url.db), (6379, 0));
        assert_eq!(url.to_string(), "redis://ops:***@10.0.0.5:6379/0");
        let url: RedisUrl = "redis://[::1]:7000/".parse().expect("valid");
        assert_eq!((url.host.as_str(), url.port), ("::1", 7000));
        assert_eq!(url.to_string(), "redis://[::1]:7000/0");
    }

    #[test]
    fn bad_redis_urls_are_refused_without_repeating_them() {
        for bad in [
            "http://h:6379",
            "rediss://:hunter2@h:6379",
            "redis://",
            "redis://:hunter2@",
            "redis://h:0",
            "redis://h:65536",
            "redis://h:+1",
            "redis://h:6379/x",
            "redis://h:6379/1/2",
            "redis://h:6379/-1",
            "redis://h/0?password=hunter2",
            "redis://hunter2@h",
            "redis://:hunter2%zz@h",
            "redis://h o/0",
            "redis://[::1:6379",
        ] {
            let error = bad.parse::<RedisUrl>().expect_err(bad);
            assert!(!error.contains("hunter2"), "{bad}: {error}");
        }
    }
}
