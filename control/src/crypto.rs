//! Secrets at rest (SPEC §4.1): AES-256-GCM (BoringSSL), a random 96-bit
//! nonce per value, the record id as associated data, under a 32-byte key
//! from `ONECLI_SECRET_KEY` (base64) or a generated key file (0600).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
pub use onecli_policy::seal::SealingKey;
use onecli_policy::seal::NONCE_LEN;
use zeroize::Zeroizing;

pub const KEY_ENV: &str = "ONECLI_SECRET_KEY";
/// A file holding the key, as container secrets are mounted.
pub const KEY_FILE_ENV: &str = "ONECLI_SECRET_KEY_FILE";

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
    #[error("cannot read {KEY_FILE_ENV} {path}: {source}")]
    EnvKeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("set {KEY_ENV} or {KEY_FILE_ENV}, not both")]
    TwoKeys,
    #[error("a stored value does not decrypt: wrong key, or the data was altered")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
}

/// The key given by the environment: `ONECLI_SECRET_KEY`, or the contents
/// of the file `ONECLI_SECRET_KEY_FILE` names. Empty variables count as unset.
pub fn key_from_env() -> Result<Option<Zeroizing<String>>, CryptoError> {
    let set = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (set(KEY_ENV), set(KEY_FILE_ENV)) {
        (Some(_), Some(_)) => Err(CryptoError::TwoKeys),
        (Some(key), None) => Ok(Some(Zeroizing::new(key))),
        (None, Some(path)) => {
            let key = fs::read_to_string(&path)
                .map(Zeroizing::new)
                .map_err(|source| CryptoError::EnvKeyFile {
                    path: path.clone(),
                    source,
                })?;
            if decode_key(key.trim()).is_none() {
                return Err(CryptoError::BadKeyFile { path });
            }
            Ok(Some(key))
        }
        (None, None) => Ok(None),
    }
}

/// Loads the key that seals secret values, agent tokens and the policy
/// documents sent to gateways: `ONECLI_SECRET_KEY` when set (`env` looks it
/// up), else `<data-dir>/secret.key`, generated on first use when `create`.
pub fn load_key(
    data_dir: &Path,
    env: Option<Zeroizing<String>>,
    create: bool,
) -> Result<SealingKey, CryptoError> {
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
        Ok(text) => decode_key(text.trim()).ok_or(CryptoError::BadKeyFile { path: name.clone() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut key = Zeroizing::new([0u8; 32]);
            rand::Rng::fill(&mut rand::rng(), &mut key[..]);
            let encoded =
                Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&key[..]));
            crate::store::create_private_dir(data_dir).map_err(io)?;
            // create_new: two processes racing must not overwrite each other's key.
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            f.write_all(encoded.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(SealingKey::from_bytes(*key))
        }
        Err(e) => Err(io(e)),
    }
}

/// Seals with a fresh random nonce.
pub fn seal(key: &SealingKey, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::Rng::fill(&mut rand::rng(), &mut nonce);
    key.seal(nonce, context, plaintext)
        .map_err(|_| CryptoError::Encrypt)
}

pub fn open_string(
    key: &SealingKey,
    context: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<String>, CryptoError> {
    let bytes = key
        .open(context, sealed)
        .map_err(|_| CryptoError::Decrypt)?;
    String::from_utf8(bytes.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
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
    fn a_fresh_nonce_each_time() {
        let key = SealingKey::from_bytes([7; 32]);
        let a = seal(&key, b"id", b"v").expect("seal");
        assert_ne!(a, seal(&key, b"id", b"v").expect("seal"));
        assert_eq!(open_string(&key, b"id", &a).expect("open").as_str(), "v");
    }

    #[test]
    fn the_key_file_is_generated_once_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            matches!(
                load_key(dir.path(), None, false),
                Err(CryptoError::KeyFile { .. })
            ),
            "not created when asked not to"
        );
        let a = load_key(dir.path(), None, true).expect("generate");
        let sealed = seal(&a, b"x", b"v").expect("seal");
        let b = load_key(dir.path(), None, false).expect("reload");
        assert_eq!(
            open_string(&b, b"x", &sealed).expect("same key").as_str(),
            "v"
        );
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
        let key = load_key(dir.path(), Some(Zeroizing::new(env)), true).expect("env key");
        assert!(!dir.path().join("secret.key").exists());
        let sealed = seal(&key, b"c", b"v").expect("seal");
        assert!(SealingKey::from_bytes([1; 32]).open(b"c", &sealed).is_ok());
        assert!(matches!(
            load_key(dir.path(), Some(Zeroizing::new("short".into())), true),
            Err(CryptoError::BadEnvKey)
        ));
    }
}
