//! Secrets at rest (SPEC §4.1): AES-256-GCM (BoringSSL), a random 96-bit
//! nonce per value, the record id as associated data, under a 32-byte key
//! from `ONECLI_SECRET_KEY` (base64) or a generated key file (0600).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use boring::symm::{decrypt_aead, encrypt_aead, Cipher};
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
pub const KEY_ENV: &str = "ONECLI_SECRET_KEY";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("{KEY_ENV} must be 32 bytes, base64-encoded")]
    BadEnvKey,
    #[error("{path} must hold 32 bytes, base64-encoded")]
    BadKeyFile { path: String },
    #[error("cannot read or write the key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("a stored value does not decrypt: wrong key, or the data was altered")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
}

/// The key that seals secret values and agent tokens. No `Debug` output of
/// the key, no `Clone`.
pub struct SealingKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

impl SealingKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SealingKey(Zeroizing::new(bytes))
    }

    /// `ONECLI_SECRET_KEY` when set (`env` looks it up), else
    /// `<data-dir>/secret.key`, generated on first use.
    pub fn load(data_dir: &Path, env: Option<String>) -> Result<Self, CryptoError> {
        if let Some(encoded) = env {
            return decode_key(encoded.trim()).ok_or(CryptoError::BadEnvKey);
        }
        let path = data_dir.join("secret.key");
        let name = path.display().to_string();
        let io = |source| CryptoError::KeyFile {
            path: name.clone(),
            source,
        };
        match fs::read_to_string(&path) {
            Ok(text) => {
                decode_key(text.trim()).ok_or(CryptoError::BadKeyFile { path: name.clone() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; 32]);
                rand::Rng::fill(&mut rand::rng(), &mut key[..]);
                let encoded =
                    Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&key[..]));
                fs::create_dir_all(data_dir).map_err(io)?;
                // create_new: two processes racing must not overwrite each other's key.
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                f.write_all(encoded.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(SealingKey(key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// `nonce || ciphertext || tag`, bound to `context` (the record id).
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::Rng::fill(&mut rand::rng(), &mut nonce);
        let mut tag = [0u8; TAG_LEN];
        let ciphertext = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0[..],
            Some(&nonce),
            context,
            plaintext,
            &mut tag,
        )
        .map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0[..],
            Some(nonce),
            context,
            ciphertext,
            tag,
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
    }

    pub fn open_string(
        &self,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<String>, CryptoError> {
        let bytes = self.open(context, sealed)?;
        String::from_utf8(bytes.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

fn decode_key(encoded: &str) -> Option<SealingKey> {
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?,
    );
    let key: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(SealingKey::from_bytes(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn seal_and_open_round_trip_bound_to_their_context() {
        let key = SealingKey::from_bytes([7; 32]);
        let sealed = key.seal(b"secret-1", b"sk-live-value").expect("seal");
        assert!(
            !sealed.windows(13).any(|w| w == b"sk-live-value"),
            "plaintext visible"
        );
        assert_eq!(
            &key.open(b"secret-1", &sealed).expect("open")[..],
            b"sk-live-value"
        );
        assert!(
            key.open(b"secret-2", &sealed).is_err(),
            "moved to another record"
        );
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert!(key.open(b"secret-1", &tampered).is_err());
        assert!(SealingKey::from_bytes([8; 32])
            .open(b"secret-1", &sealed)
            .is_err());
        // A fresh nonce each time.
        assert_ne!(
            sealed,
            key.seal(b"secret-1", b"sk-live-value").expect("seal")
        );
    }

    #[test]
    fn the_key_file_is_generated_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = SealingKey::load(dir.path(), None).expect("generate");
        let sealed = a.seal(b"x", b"v").expect("seal");
        let b = SealingKey::load(dir.path(), None).expect("reload");
        assert_eq!(&b.open(b"x", &sealed).expect("same key")[..], b"v");
        let mode = fs::metadata(dir.path().join("secret.key"))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_env_key_wins_and_is_validated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let key = SealingKey::load(dir.path(), Some(env)).expect("env key");
        assert!(!dir.path().join("secret.key").exists());
        let sealed = key.seal(b"c", b"v").expect("seal");
        assert!(SealingKey::from_bytes([1; 32]).open(b"c", &sealed).is_ok());
        assert!(matches!(
            SealingKey::load(dir.path(), Some("short".into())),
            Err(CryptoError::BadEnvKey)
        ));
        assert!(!format!("{key:?}").contains('1'));
    }
}
