//! Where the gateway may connect (SPEC §3.5): names are resolved here,
//! asynchronously, and the guard judges the resolved address, so a name
//! that rebinds to 127.0.0.1 is refused like the literal.

use std::net::{IpAddr, SocketAddr};

use crate::config::{EgressAllow, ResolveOverride};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EgressError {
    #[error("could not resolve {0}")]
    Unresolvable(String),
    #[error("{host} resolves only to addresses the gateway may not reach ({addr})")]
    Refused { host: String, addr: IpAddr },
}

#[derive(Debug, Clone)]
pub struct EgressGuard {
    pins: Vec<ResolveOverride>,
    allow: Vec<EgressAllow>,
    /// The gateway's own listeners: never an upstream (no loops).
    own: Vec<SocketAddr>,
}

impl EgressGuard {
    pub fn new(pins: Vec<ResolveOverride>, allow: Vec<EgressAllow>, own: Vec<SocketAddr>) -> Self {
        EgressGuard { pins, allow, own }
    }

    /// Resolves `host:port` and returns the first address the guard allows.
    /// `host` is normalized (lowercase, no brackets).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, EgressError> {
        if let Some(pin) = self.pins.iter().find(|p| p.port == port && p.host == host) {
            return Ok(SocketAddr::new(pin.addr, port));
        }
        let host_allowed = self
            .allow
            .iter()
            .any(|a| matches!(a, EgressAllow::Host(h) if h == host));
        let candidates: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|_| EgressError::Unresolvable(host.to_owned()))?
                .collect(),
        };
        let mut refused = None;
        for addr in candidates {
            if self.own.iter().any(|own| is_same_listener(own, &addr)) {
                refused.get_or_insert(addr.ip());
                continue;
            }
            if host_allowed || self.ip_allowed(addr.ip()) {
                return Ok(addr);
            }
            refused.get_or_insert(addr.ip());
        }
        match refused {
            Some(addr) => Err(EgressError::Refused {
                host: host.to_owned(),
                addr,
            }),
            None => Err(EgressError::Unresolvable(host.to_owned())),
        }
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        !is_internal(ip)
            || self.allow.iter().any(
                |a| matches!(a, EgressAllow::Net { addr, prefix } if in_net(ip, *addr, *prefix)),
            )
    }
}

/// Whether connecting to `addr` could reach the listener `own`: the same
/// port on the same address, on a wildcard (`0.0.0.0` and `::` reach the
/// local listeners), on loopback, or on any address of this machine.
/// Broad on purpose (SPEC §6.0: restrictions match broadly), so that no
/// `--allow-egress` makes the gateway its own upstream.
fn is_same_listener(own: &SocketAddr, addr: &SocketAddr) -> bool {
    if own.port() != addr.port() {
        return false;
    }
    let ip = match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    ip == own.ip() || ip.is_unspecified() || ip.is_loopback() || is_local_address(ip)
}

/// Whether `ip` is assigned to this machine: only then can a socket be
/// bound to it.
fn is_local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Loopback, private, link-local (cloud metadata), unique-local, CGNAT,
/// unspecified, multicast and broadcast: never reached unless allowed.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded_v4 = |hi: u16, lo: u16| {
                std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
            };
            // 6to4 (2002::/16) and IPv4-compatible (::/96) carry an IPv4 address.
            if s[0] == 0x2002 && is_internal(IpAddr::V4(embedded_v4(s[1], s[2]))) {
                return true;
            }
            if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_internal(IpAddr::V4(embedded_v4(s[6], s[7])));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x64 && s[1] == 0xff9b)
        }
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn internal_ranges() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "198.18.0.1",
            "64:ff9b:1::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2002:0a00:0001::1",
            "::10.0.0.1",
        ] {
            assert!(is_internal(ip(s)), "{s}");
        }
        for s in [
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "2002:0101:0101::1",
            "198.20.0.1",
        ] {
            assert!(!is_internal(ip(s)), "{s}");
        }
    }

    #[tokio::test]
    async fn literals_are_judged_by_address() {
        let guard = EgressGuard::new(vec![], vec![], vec![]);
        assert!(matches!(
            guard.resolve("127.0.0.1", 443).await,
            Err(EgressError::Refused { .. })
        ));
        assert!(matches!(
            guard.resolve("169.254.169.254", 80).await,
            Err(EgressError::Refused { .. })
        ));
        assert_eq!(
            guard.resolve("1.1.1.1", 443).await,
            Ok("1.1.1.1:443".parse().expect("addr"))
        );
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let guard = EgressGuard::new(vec![], vec![], vec![]);
        assert!(matches!(
            guard.resolve("localhost", 443).await,
            Err(EgressError::Refused { .. })
        ));
    }

    #[tokio::test]
    async fn pins_and_allow_lists_open_the_guard() {
        let pin = "api.test:443:127.0.0.1".parse().expect("pin");
        let guard = EgressGuard::new(
            vec![pin],
            vec![
                "10.0.0.0/8".parse().expect("net"),
                "localhost".parse().expect("host"),
            ],
            vec![],
        );
        assert_eq!(
            guard.resolve("api.test", 443).await,
            Ok("127.0.0.1:443".parse().expect("addr"))
        );
        // A pin is for one port only.
        assert!(guard.resolve("api.test", 80).await.is_err());
        assert_eq!(
            guard.resolve("10.9.9.9", 443).await,
            Ok("10.9.9.9:443".parse().expect("addr"))
        );
        assert!(guard.resolve("192.168.0.1", 443).await.is_err());
        assert!(guard.resolve("localhost", 8080).await.is_ok());
    }

    #[tokio::test]
    async fn own_listeners_are_never_upstreams() {
        let own: SocketAddr = "127.0.0.1:10255".parse().expect("addr");
        let guard = EgressGuard::new(vec![], vec!["127.0.0.0/8".parse().expect("net")], vec![own]);
        assert!(guard.resolve("127.0.0.1", 10255).await.is_err());
        assert!(guard.resolve("127.0.0.1", 10256).await.is_ok());
        // However broad the allow list, no local or wildcard spelling of
        // the own port gets through.
        let everything = vec![
            "0.0.0.0/0".parse().expect("net"),
            "::/0".parse().expect("net"),
        ];
        let guard = EgressGuard::new(vec![], everything, vec![own]);
        for host in [
            "0.0.0.0",
            "127.0.0.2",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "localhost",
        ] {
            assert!(guard.resolve(host, 10255).await.is_err(), "{host}");
        }
        assert!(guard.resolve("0.0.0.0", 10256).await.is_ok());
        // A wildcard listener is reached through loopback too.
        let wildcard: SocketAddr = "0.0.0.0:10255".parse().expect("addr");
        let guard = EgressGuard::new(
            vec![],
            vec!["0.0.0.0/0".parse().expect("net")],
            vec![wildcard],
        );
        assert!(guard.resolve("127.0.0.1", 10255).await.is_err());
    }
}
