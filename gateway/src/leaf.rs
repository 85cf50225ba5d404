//! Leaf certificates for intercepted hosts (SPEC §3.3, PINGORA.md): one
//! process-wide P-256 key, a unique random serial per leaf, short validity,
//! AKI, serverAuth, IP SANs for IP literals. Minted on first use, cached per
//! host (bounded, oldest evicted first) with single-flight minting.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pingora_core::tls::pkey::{PKey, Private};
use pingora_core::tls::x509::X509;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use tokio::sync::OnceCell;

use crate::ca::CertificateAuthority;

/// Leaves live a few days; clients reject long-lived ones.
const LEAF_LIFETIME: Duration = Duration::from_secs(4 * 24 * 3600);
/// Re-mint a cached leaf once less than this much validity remains.
const RENEW_BEFORE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum LeafError {
    #[error("cannot mint a certificate for {host}: {reason}")]
    Mint { host: String, reason: String },
}

pub struct Leaf {
    pub cert: X509,
    renew_at: SystemTime,
}

type Slot = Arc<OnceCell<Arc<Leaf>>>;

pub struct LeafCertCache {
    ca: CertificateAuthority,
    key: KeyPair,
    pkey: PKey<Private>,
    capacity: usize,
    slots: Mutex<Slots>,
    on_mint: Box<dyn Fn() + Send + Sync>,
}

#[derive(Default)]
struct Slots {
    by_host: HashMap<String, Slot>,
    /// Insertion order, for eviction.
    order: VecDeque<String>,
}

impl LeafCertCache {
    pub fn new(
        ca: CertificateAuthority,
        capacity: usize,
        on_mint: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Self, LeafError> {
        let mint_err = |reason: String| LeafError::Mint {
            host: "*".into(),
            reason,
        };
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| mint_err(e.to_string()))?;
        let pkey = PKey::private_key_from_der(&key.serialize_der())
            .map_err(|e| mint_err(e.to_string()))?;
        Ok(LeafCertCache {
            ca,
            key,
            pkey,
            capacity: capacity.max(1),
            slots: Mutex::new(Slots::default()),
            on_mint,
        })
    }

    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The key of every leaf.
    pub fn key(&self) -> &PKey<Private> {
        &self.pkey
    }

    pub fn len(&self) -> usize {
        self.lock().by_host.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf for `host` (normalized), minting it at most once however
    /// many connections ask at the same time.
    pub async fn get(&self, host: &str) -> Result<Arc<Leaf>, LeafError> {
        let slot = self.slot(host);
        let leaf = slot
            .get_or_try_init(|| async { self.mint(host).map(Arc::new) })
            .await?
            .clone();
        if SystemTime::now() < leaf.renew_at {
            return Ok(leaf);
        }
        // Expiring: drop this slot (unless another caller already replaced it) and mint afresh.
        {
            let mut slots = self.lock();
            if slots
                .by_host
                .get(host)
                .is_some_and(|s| Arc::ptr_eq(s, &slot))
            {
                slots.by_host.remove(host);
                slots.order.retain(|h| h != host);
            }
        }
        let slot = self.slot(host);
        Ok(slot
            .get_or_try_init(|| async { self.mint(host).map(Arc::new) })
            .await?
            .clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panic while holding this lock leaves the map consistent (no
        // multi-step invariants), so a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, host: &str) -> Slot {
        let mut slots = self.lock();
        if let Some(slot) = slots.by_host.get(host) {
            return slot.clone();
        }
        while slots.by_host.len() >= self.capacity {
            match slots.order.pop_front() {
                Some(old) => {
                    slots.by_host.remove(&old);
                }
                None => break,
            }
        }
        let slot = Slot::default();
        slots.by_host.insert(host.to_owned(), slot.clone());
        slots.order.push_back(host.to_owned());
        slot
    }

    fn mint(&self, host: &str) -> Result<Leaf, LeafError> {
        let err = |reason: String| LeafError::Mint {
            host: host.to_owned(),
            reason,
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.try_into()
                    .map_err(|e: rcgen::Error| err(e.to_string()))?,
            ),
        }];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        // The leaf key is shared, so rcgen's default serial (derived from
        // the public key) would repeat: NSS rejects repeated serials.
        let mut serial = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(serial.to_vec().into());
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + LEAF_LIFETIME).into();
        let cert = params
            .signed_by(&self.key, self.ca.issuer())
            .map_err(|e| err(e.to_string()))?;
        let cert = X509::from_der(cert.der()).map_err(|e| err(e.to_string()))?;
        (self.on_mint)();
        Ok(Leaf {
            cert,
            renew_at: now + LEAF_LIFETIME - RENEW_BEFORE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cache(capacity: usize) -> (LeafCertCache, Arc<AtomicUsize>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::load_or_generate(dir.path()).expect("ca");
        let minted = Arc::new(AtomicUsize::new(0));
        let m = minted.clone();
        let cache = LeafCertCache::new(
            ca,
            capacity,
            Box::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .expect("cache");
        (cache, minted, dir)
    }

    #[tokio::test]
    async fn leaves_verify_against_the_ca_and_carry_the_right_san() {
        let (cache, _, _dir) = cache(10);
        let ca = X509::from_pem(cache.ca().cert_pem().as_bytes()).expect("ca pem");
        for host in ["api.test", "127.0.0.1", "::1"] {
            let leaf = cache.get(host).await.expect("leaf");
            let ca_key = ca.public_key().expect("ca key");
            assert!(
                leaf.cert.verify(&ca_key).expect("verify runs"),
                "{host} leaf not signed by CA"
            );
            let sans = leaf.cert.subject_alt_names().expect("SANs");
            let san = sans.iter().next().expect("one SAN");
            match host.parse::<IpAddr>() {
                Ok(ip) => {
                    let want = match ip {
                        IpAddr::V4(v4) => v4.octets().to_vec(),
                        IpAddr::V6(v6) => v6.octets().to_vec(),
                    };
                    assert_eq!(san.ipaddress(), Some(want.as_slice()));
                }
                Err(_) => assert_eq!(san.dnsname(), Some(host)),
            }
        }
    }

    #[tokio::test]
    async fn serials_are_unique_with_a_shared_key() {
        let (cache, _, _dir) = cache(10);
        let a = cache.get("a.test").await.expect("leaf");
        let b = cache.get("b.test").await.expect("leaf");
        let serial = |l: &Leaf| l.cert.serial_number().to_bn().expect("bn").to_vec();
        assert_ne!(serial(&a), serial(&b));
    }

    #[tokio::test]
    async fn concurrent_first_requests_mint_once() {
        let (cache, minted, _dir) = cache(10);
        let cache = Arc::new(cache);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get("same.test").await.map(|_| ()) })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("leaf");
        }
        assert_eq!(minted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let (cache, minted, _dir) = cache(3);
        for host in ["a.t", "b.t", "c.t", "d.t"] {
            cache.get(host).await.expect("leaf");
        }
        assert_eq!(cache.len(), 3);
        cache.get("a.t").await.expect("leaf");
        assert_eq!(
            minted.load(Ordering::SeqCst),
            5,
            "the oldest was evicted and minted again"
        );
    }

    #[test]
    fn the_ca_survives_a_restart_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let first = CertificateAuthority::load_or_generate(dir.path()).expect("ca");
        let second = CertificateAuthority::load_or_generate(dir.path()).expect("ca");
        assert_eq!(first.cert_pem(), second.cert_pem());
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
