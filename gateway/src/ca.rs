//! The gateway's certificate authority (SPEC §3.3): ECDSA P-256, generated
//! on first start into `<data-dir>/gateway/` (key 0600) or loaded from PEM
//! files, and reused across restarts.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pingora_core::tls::x509::X509;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, PKCS_ECDSA_P256_SHA256,
};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable CA certificate")]
    BadCert { path: PathBuf },
    #[error("{path} is not a usable private key (PEM, PKCS#8)")]
    BadKey { path: PathBuf },
    #[error("{key} is not the private key of the certificate {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot generate the CA: {0}")]
    Generate(rcgen::Error),
}

pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateAuthority(<key redacted>)")
    }
}

impl CertificateAuthority {
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// Loads `ca.pem`/`ca.key` from `dir`, generating them on first use.
    pub fn load_or_generate(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        if cert_path.exists() && key_path.exists() {
            return Self::load(&cert_path, &key_path);
        }
        fs::create_dir_all(dir).map_err(|source| CaError::Write {
            path: dir.into(),
            source,
        })?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Generate)?;
        let params = ca_params();
        let cert = params.self_signed(&key).map_err(CaError::Generate)?;
        // Key first: a cert without its key would be useless after a crash.
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
        Self::load(&cert_path, &key_path)
    }

    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let read = |p: &Path| {
            fs::read_to_string(p).map_err(|source| CaError::Read {
                path: p.into(),
                source,
            })
        };
        let cert_pem = read(cert_path)?;
        let key_pem = zeroize::Zeroizing::new(read(key_path)?);
        let key = KeyPair::from_pem(&key_pem).map_err(|_| CaError::BadKey {
            path: key_path.into(),
        })?;
        let cert_spki = X509::from_pem(cert_pem.as_bytes())
            .and_then(|c| c.public_key())
            .and_then(|k| k.public_key_to_der())
            .map_err(|_| CaError::BadCert {
                path: cert_path.into(),
            })?;
        if cert_spki != key.subject_public_key_info() {
            return Err(CaError::Mismatch {
                cert: cert_path.into(),
                key: key_path.into(),
            });
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|_| CaError::BadCert {
            path: cert_path.into(),
        })?;
        Ok(CertificateAuthority { issuer, cert_pem })
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "OneCLI Gateway CA");
    dn.push(DnType::OrganizationName, "OneCLI");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let mut serial = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(serial.to_vec().into());
    params
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    write_atomic(path, bytes, 0o600)
}

/// Writes through a temporary file and a rename, so a crash never leaves a
/// half-written key or certificate.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let err = |source| CaError::Write {
        path: path.into(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        CertificateAuthority::load_or_generate(a.path()).expect("ca a");
        CertificateAuthority::load_or_generate(b.path()).expect("ca b");
        let err = CertificateAuthority::load(&a.path().join("ca.pem"), &b.path().join("ca.key"))
            .expect_err("mismatch");
        assert!(matches!(err, CaError::Mismatch { .. }), "{err}");
    }
}
